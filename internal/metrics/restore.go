package metrics

import "github.com/prometheus/client_golang/prometheus"

// RestoreKinds and RestoreOutcomes are the label values the restore counters exist at 0 for
// (internal/restore's Kinds and Outcomes; a test keeps them equal).
var (
	RestoreKinds    = []string{"db", "container", "snapshot", "node", "postgres"}
	RestoreOutcomes = []string{"success", "failure", "rolled_back", "rollback_failed", "canceled", "timeout", "interrupted"}
)

// Restores holds the restore metrics (every restore is a run; these are its own figures).
type Restores struct {
	// Runs counts restores by kind and outcome.
	Runs *prometheus.CounterVec
	// Duration is the distribution of restore durations by kind.
	Duration *prometheus.HistogramVec
	// LastRTO is the last successful restore's recovery time per kind and target.
	LastRTO *prometheus.GaugeVec
	// LastDowntime is the last successful restore's downtime per kind and target.
	LastDowntime *prometheus.GaugeVec
	// Phase is the duration of each phase of the last restore of a kind.
	Phase *prometheus.GaugeVec
}

func newRestores(reg prometheus.Registerer) *Restores {
	r := &Restores{
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_restore_runs_total",
			Help: "Restores by kind (db, container, snapshot, node, postgres) and outcome (success, failure, rolled_back, rollback_failed, canceled, timeout, interrupted)."}, []string{"kind", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "opsd_restore_duration_seconds", Help: "Duration of restores, whatever their outcome.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400}}, []string{"kind"}),
		LastRTO: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opsd_restore_last_rto_seconds",
			Help: "Recovery time of the last successful restore of the target (start until the service is back)."}, []string{"kind", "target"}),
		LastDowntime: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opsd_restore_last_downtime_seconds",
			Help: "Downtime (service stopped until started again) of the last successful restore of the target."}, []string{"kind", "target"}),
		Phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opsd_restore_phase_seconds",
			Help: "Duration of each phase of the last restore of the kind (download, verify, safety_copy, stop, replace, import, start, probe, ...)."}, []string{"kind", "phase"}),
	}
	for _, k := range RestoreKinds {
		for _, o := range RestoreOutcomes {
			r.Runs.WithLabelValues(k, o)
		}
		r.Duration.WithLabelValues(k)
	}
	reg.MustRegister(r.Runs, r.Duration, r.LastRTO, r.LastDowntime, r.Phase)
	return r
}
