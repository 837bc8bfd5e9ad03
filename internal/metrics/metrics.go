// Package metrics defines every metric opsd exports, in one place, registered on a registry that
// is passed in (never the global default). Label values come from the config and container names,
// never from free text.
package metrics

import (
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every opsd metric.
type Metrics struct {
	BuildInfo *prometheus.GaugeVec

	JobRuns             *prometheus.CounterVec
	JobDuration         *prometheus.HistogramVec
	JobLastDuration     *prometheus.GaugeVec
	JobLastSuccess      *prometheus.GaugeVec
	JobLastRun          *prometheus.GaugeVec
	JobLastRunSuccess   *prometheus.GaugeVec
	JobExpectedInterval *prometheus.GaugeVec
	JobRunning          *prometheus.GaugeVec
	JobSkipped          *prometheus.CounterVec
	JobPhase            *prometheus.GaugeVec

	BytesUploaded *prometheus.CounterVec
	TargetSkipped *prometheus.CounterVec
	Throughput    *CachedGaugeVec
	BackupPhase   *CachedGaugeVec

	ConfigReloadSuccessful prometheus.Gauge
	ConfigReloadTimestamp  prometheus.Gauge
	ConfigReloads          *prometheus.CounterVec

	StorageOps *prometheus.CounterVec

	DrillRTO         *prometheus.GaugeVec
	DrillRTOTarget   *prometheus.GaugeVec
	DrillPhase       *CachedGaugeVec
	DrillLastResult  *prometheus.GaugeVec
	DrillLastSuccess *prometheus.GaugeVec

	OffsiteMissing      *prometheus.GaugeVec
	OffsiteMismatched   *prometheus.GaugeVec
	OffsiteLastVerified *prometheus.GaugeVec

	AlertFiring         *prometheus.GaugeVec
	AlertValue          *prometheus.GaugeVec
	AlertThreshold      *prometheus.GaugeVec
	NotificationsSent   *prometheus.CounterVec
	NotificationsFailed *prometheus.CounterVec

	PruneDeleted    *prometheus.CounterVec
	PruneBytesFreed *prometheus.CounterVec
	PruneKept       *prometheus.GaugeVec
	PruneRefused    *prometheus.GaugeVec
	// PruneForeign counts objects without an opsd upload marker or manifest that the last prune
	// run found and kept (label job_name).
	PruneForeign *prometheus.GaugeVec

	// Backups tracks per-target freshness; staleness is computed at scrape time.
	Backups *BackupTracker

	// Alert outbox (at-least-once delivery).
	NotificationsPending        *prometheus.GaugeVec
	NotificationsGivenUp        *prometheus.GaugeVec
	NotificationAttemptFailures *prometheus.CounterVec
	NotificationsDropped        *prometheus.CounterVec

	// Restore holds the opsd_restore_* metrics.
	Restore *Restores
}

// New creates every metric and registers it (with the Go and process collectors) on reg.
func New(reg prometheus.Registerer, version string) *Metrics {
	jobLabels := []string{"job_name", "kind"}
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	reloadOK := prometheus.NewGauge(prometheus.GaugeOpts{Name: "opsd_config_last_reload_successful", Help: "1 when the last config load or reload succeeded, 0 when it failed (the old config keeps running)."})
	reloadTS := prometheus.NewGauge(prometheus.GaugeOpts{Name: "opsd_config_last_reload_success_timestamp_seconds", Help: "Time of the last successful config load or reload."})
	m := &Metrics{
		BuildInfo: g("opsd_build_info", "Build information; always 1.", "version", "goversion"),
		JobRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_job_runs_total", Help: "Job runs by outcome (success, failure, timeout, canceled, interrupted: a platform run whose node lost its coordination session)."},
			[]string{"job_name", "kind", "outcome"}),
		JobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "opsd_job_duration_seconds", Help: "Duration of job runs.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200}}, jobLabels),
		JobLastDuration:     g("opsd_job_last_duration_seconds", "Duration of the job's last run.", jobLabels...),
		JobLastSuccess:      g("opsd_job_last_success_timestamp_seconds", "Time the job last finished successfully.", jobLabels...),
		JobLastRun:          g("opsd_job_last_run_timestamp_seconds", "Time the job last finished, whatever the outcome.", jobLabels...),
		JobLastRunSuccess:   g("opsd_job_last_run_success", "1 when the job's last run succeeded, else 0.", jobLabels...),
		JobExpectedInterval: g("opsd_job_expected_interval_seconds", "Expected time between runs from the job's schedule (alert: time() - last_success > k * interval).", jobLabels...),
		JobRunning:          g("opsd_job_running", "1 while a run of the job is in progress.", jobLabels...),
		JobSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_job_skipped_total", Help: "Runs not started, by reason (overlap: the previous run was still going)."},
			[]string{"job_name", "kind", "reason"}),
		JobPhase: g("opsd_job_phase_seconds", "Duration of each named phase of the job's last run.", "job_name", "kind", "phase"),
		BytesUploaded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_backup_bytes_uploaded_total", Help: "Bytes of artifacts uploaded to the object store."},
			jobLabels),
		TargetSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_backup_skipped_total", Help: "Targets a backup run skipped, by reason (unchanged: a hot export found no change)."},
			[]string{"job_name", "reason"}),
		Throughput:             NewCachedGaugeVec("opsd_backup_throughput_bytes_per_second", "Stored bytes per second of the target's last backup (exports: compressed bytes over the whole export).", "job_name", "target"),
		BackupPhase:            NewCachedGaugeVec("opsd_backup_phase_seconds", "Duration of each phase of the last backup of a target (copy, check, upload).", "job_name", "target", "phase"),
		ConfigReloadSuccessful: reloadOK,
		ConfigReloadTimestamp:  reloadTS,
		ConfigReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_config_reloads_total", Help: "Config reloads by outcome (success, failure, unchanged)."},
			[]string{"outcome"}),
		StorageOps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_storage_operations_total", Help: "Object-store operations by operation and outcome."},
			[]string{"operation", "outcome"}),
		Backups:             NewBackupTracker(24 * time.Hour),
		DrillRTO:            g("opsd_drill_last_rto_seconds", "Recovery time measured by the drill's last run (sum of its phases, wall clock).", "drill"),
		DrillRTOTarget:      g("opsd_drill_rto_target_seconds", "The drill's recovery time objective.", "drill"),
		DrillPhase:          NewCachedGaugeVec("opsd_drill_phase_seconds", "Duration of each phase of the drill's last run, per target.", "drill", "target", "phase"),
		DrillLastResult:     g("opsd_drill_last_result", "1 when the drill's last run passed, 0 when it failed.", "drill"),
		DrillLastSuccess:    g("opsd_drill_last_success_timestamp_seconds", "Time the drill last passed.", "drill"),
		OffsiteMissing:      g("opsd_offsite_missing_objects", "Objects the last offsite verification expected and did not find.", "job_name"),
		OffsiteMismatched:   g("opsd_offsite_mismatched_objects", "Objects whose size or checksum differed from their manifest in the last verification.", "job_name"),
		OffsiteLastVerified: g("opsd_offsite_last_verified_timestamp_seconds", "Time the offsite copy last verified clean.", "job_name"),
		AlertFiring:         g("opsd_alert_firing", "1 while the alert fires.", "alert"),
		AlertValue:          g("opsd_alert_value", "The value the alert's rule last computed.", "alert"),
		AlertThreshold:      g("opsd_alert_threshold", "The threshold the alert's value is compared with.", "alert"),
		NotificationsSent:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_alert_notifications_total", Help: "Alert notifications delivered, by notifier."}, []string{"notifier"}),
		NotificationsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_alert_notification_failures_total", Help: "Alert notifications that failed after every retry, by notifier."}, []string{"notifier"}),
		PruneDeleted:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_prune_deleted_objects_total", Help: "Objects deleted by pruning."}, []string{"job_name"}),
		PruneBytesFreed:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_prune_bytes_freed_total", Help: "Bytes freed by pruning."}, []string{"job_name"}),
		PruneKept:           g("opsd_prune_kept_backups", "Backups the last prune run kept.", "job_name"),
		PruneRefused:        g("opsd_prune_refused_targets", "Targets the last prune run refused to prune (it would have deleted every backup).", "job_name"),
		PruneForeign:        g("opsd_prune_foreign_objects", "Objects under the pruned prefixes that opsd did not write (no upload marker, no manifest), found and kept by the last prune run.", "job_name"),
	}
	reg.MustRegister(m.BuildInfo, m.JobRuns, m.JobDuration, m.JobLastDuration, m.JobLastSuccess, m.JobLastRun,
		m.JobLastRunSuccess, m.JobExpectedInterval, m.JobRunning, m.JobSkipped, m.JobPhase, m.BytesUploaded,
		m.BackupPhase, m.TargetSkipped, m.Throughput, reloadOK, reloadTS, m.ConfigReloads, m.StorageOps, m.Backups,
		m.DrillRTO, m.DrillRTOTarget, m.DrillPhase, m.DrillLastResult, m.DrillLastSuccess,
		m.OffsiteMissing, m.OffsiteMismatched, m.OffsiteLastVerified,
		m.PruneDeleted, m.PruneBytesFreed, m.PruneKept, m.PruneRefused, m.PruneForeign,
		m.AlertFiring, m.AlertValue, m.AlertThreshold, m.NotificationsSent, m.NotificationsFailed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	// Counters exist at 0 for every label set known at start, so rate() and increase() see the
	// first event (per-job series are created when the scheduler learns the job: InitJob).
	for _, o := range []string{"success", "failure", "unchanged"} {
		m.ConfigReloads.WithLabelValues(o)
	}
	m.newOutboxMetrics(reg)
	m.Restore = newRestores(reg)
	return m
}

// JobCounters says which optional per-job counters a job can increment.
type JobCounters struct {
	SkipReasons []string // opsd_backup_skipped_total reasons
	Prune       bool     // opsd_prune_* counters
}

// InitJob creates a job's counters and histogram at 0 (runs by outcome, overlaps, bytes
// uploaded, duration, and the optional ones in c), so "never happened" reads 0, not absent.
func (m *Metrics) InitJob(job, kind string, outcomes []string, c JobCounters) {
	for _, o := range outcomes {
		m.JobRuns.WithLabelValues(job, kind, o)
	}
	m.JobSkipped.WithLabelValues(job, kind, "overlap")
	m.BytesUploaded.WithLabelValues(job, kind)
	m.JobDuration.WithLabelValues(job, kind)
	for _, r := range c.SkipReasons {
		m.TargetSkipped.WithLabelValues(job, r)
	}
	if c.Prune {
		m.PruneDeleted.WithLabelValues(job)
		m.PruneBytesFreed.WithLabelValues(job)
	}
}

// newOutboxMetrics creates the alert outbox's metrics.
func (m *Metrics) newOutboxMetrics(reg prometheus.Registerer) {
	m.NotificationsPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opsd_alert_notifications_pending",
		Help: "Alert notifications in the outbox that no receiver has accepted yet (they are retried with backoff, across restarts), by notifier."}, []string{"notifier"})
	m.NotificationsGivenUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opsd_alert_notifications_failed",
		Help: "Alert notifications in the outbox that were given up after every retry, by notifier."}, []string{"notifier"})
	m.NotificationAttemptFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_alert_notification_attempt_failures_total",
		Help: "Alert notification attempts the receiver did not accept (each is retried until the last attempt), by notifier."}, []string{"notifier"})
	m.NotificationsDropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "opsd_alert_notifications_dropped_total",
		Help: "Pending alert notifications removed from the outbox undelivered, by notifier and reason: superseded (a newer notification of the same incident replaced it) or overflow (the oldest beyond the notifier's cap)."}, []string{"notifier", "reason"})
	reg.MustRegister(m.NotificationsPending, m.NotificationsGivenUp, m.NotificationAttemptFailures, m.NotificationsDropped)
}

// ForgetJob removes a job's series (the job was removed from the config or renamed).
func (m *Metrics) ForgetJob(job, kind string) {
	for _, v := range []*prometheus.GaugeVec{m.JobLastDuration, m.JobLastSuccess, m.JobLastRun, m.JobLastRunSuccess, m.JobExpectedInterval, m.JobRunning} {
		v.DeleteLabelValues(job, kind)
	}
	l := prometheus.Labels{"job_name": job}
	m.BackupPhase.DeletePartialMatch(l)
	m.Throughput.DeletePartialMatch(l)
	for _, v := range []*prometheus.GaugeVec{m.JobPhase, m.OffsiteMissing, m.OffsiteMismatched, m.OffsiteLastVerified, m.PruneKept, m.PruneRefused} {
		v.DeletePartialMatch(l)
	}
	for _, v := range []*prometheus.CounterVec{m.JobRuns, m.JobSkipped, m.BytesUploaded, m.TargetSkipped, m.PruneDeleted, m.PruneBytesFreed} {
		v.DeletePartialMatch(l)
	}
	m.JobDuration.DeletePartialMatch(l)
	m.PruneForeign.DeleteLabelValues(job)
}

// TargetState is what the tracker knows about one backup target of one job.
type TargetState struct {
	// Job is the job backing the target up (label job_name): a target backed up by two jobs
	// (nightly and hot exports) has two series, so one cannot hide the other's failure.
	Job         string
	Kind        string
	Node        string
	LastSuccess time.Time // zero: never
	LastOK      bool      // the last attempt succeeded
	SizeBytes   int64
	// At is when the state was recorded (the last attempt): of two states, the newer one is the
	// truth (SetIfNewer). Not exported.
	At time.Time
}

// BackupTracker exports per-target freshness. Staleness follows the clock (a target goes stale
// with no event) and is brought up to date at each scrape, from memory: the scrape path never
// lists the bucket. Its families are kept rendered: a Set re-renders the target's three lines,
// and a scrape writes them as they are (see Registry).
type BackupTracker struct {
	mu         sync.Mutex
	targets    map[string]*tracked
	nextFlip   time.Time // the first time a fresh target turns stale (zero: no fresh target)
	nStale     int
	staleAfter time.Duration
	now        func() time.Time

	lastSuccess, size, stale, count *family
}

// tracked is a target of a job, as exported.
type tracked struct {
	name  string
	s     TargetState
	stale bool
}

// NewBackupTracker returns an empty tracker.
func NewBackupTracker(staleAfter time.Duration) *BackupTracker {
	l := []string{"target", "kind", "node", "job_name"}
	t := &BackupTracker{
		targets:     map[string]*tracked{},
		staleAfter:  staleAfter,
		now:         time.Now,
		lastSuccess: newFamily("opsd_backup_last_success_timestamp_seconds", "Time of the target's last successful backup (absent when never).", prometheus.GaugeValue, l...),
		size:        newFamily("opsd_backup_last_size_bytes", "Size of the target's last successful backup artifact.", prometheus.GaugeValue, l...),
		stale:       newFamily("opsd_backup_stale", "1 when the target is stale: never backed up, last attempt failed, or last success older than the stale threshold.", prometheus.GaugeValue, l...),
		count:       newFamily("opsd_backup_targets", "Tracked backup targets by staleness.", prometheus.GaugeValue, "stale"),
	}
	t.setCounts()
	return t
}

// SetStaleAfter changes the threshold (config reload).
func (t *BackupTracker) SetStaleAfter(d time.Duration) {
	t.mu.Lock()
	t.staleAfter = d
	t.refresh(t.now(), true)
	t.mu.Unlock()
}

// trackKey is the tracker's key of a (job, target).
func trackKey(job, target string) string { return target + "\x00" + job }

func splitKey(k string) (target, job string) {
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

func (e *tracked) labels() []string { return []string{e.name, e.s.Kind, e.s.Node, e.s.Job} }

// isStale is the staleness of s at now; flip is when a fresh target turns stale.
func (t *BackupTracker) isStale(s TargetState, now time.Time) (stale bool, flip time.Time) {
	if s.LastSuccess.IsZero() || !s.LastOK || now.Sub(s.LastSuccess) > t.staleAfter {
		return true, time.Time{}
	}
	return false, s.LastSuccess.Add(t.staleAfter).Add(time.Millisecond)
}

// Set records the state of a target of the job s.Job.
func (t *BackupTracker) Set(target string, s TargetState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.setLocked(target, s)
}

// setLocked is Set with t.mu held.
func (t *BackupTracker) setLocked(target string, s TargetState) {
	k := trackKey(s.Job, target)
	e := t.targets[k]
	if e == nil {
		e = &tracked{name: target}
		t.targets[k] = e
	} else {
		if e.s.Kind != s.Kind || e.s.Node != s.Node {
			t.unexport(e) // another label set
		}
		if e.stale {
			t.nStale--
		}
	}
	e.s = s
	t.export(e, t.now())
	t.setCounts()
}

// SetIfNewer records the state of a target of the job s.Job unless the tracker holds a state
// recorded at s.At or later (what a run of this process set after the state database was read);
// it reports whether it did.
func (t *BackupTracker) SetIfNewer(target string, s TargetState) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.targets[trackKey(s.Job, target)]; e != nil && !s.At.After(e.s.At) {
		return false
	}
	t.setLocked(target, s)
	return true
}

// DeleteForIfNotNewer stops exporting a job's target that was retired at at, unless the tracker
// holds a state recorded after at; it reports whether it did.
func (t *BackupTracker) DeleteForIfNotNewer(job, target string, at time.Time) bool {
	k := trackKey(job, target)
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.targets[k]
	if !ok || e.s.At.After(at) {
		return false
	}
	t.remove(k, e)
	t.setCounts()
	return true
}

// export renders a target's series at now; t.mu is held and e is not counted in nStale.
func (t *BackupTracker) export(e *tracked, now time.Time) {
	l := e.labels()
	var flip time.Time
	e.stale, flip = t.isStale(e.s, now)
	if e.stale {
		t.nStale++
		t.stale.set(1, l...)
	} else {
		t.stale.set(0, l...)
		if t.nextFlip.IsZero() || flip.Before(t.nextFlip) {
			t.nextFlip = flip
		}
	}
	if e.s.LastSuccess.IsZero() {
		t.lastSuccess.delete(l...)
		t.size.delete(l...)
	} else {
		t.lastSuccess.set(float64(e.s.LastSuccess.UnixMilli())/1000, l...)
		t.size.set(float64(e.s.SizeBytes), l...)
	}
}

// unexport removes a target's series; t.mu is held.
func (t *BackupTracker) unexport(e *tracked) {
	l := e.labels()
	t.stale.delete(l...)
	t.lastSuccess.delete(l...)
	t.size.delete(l...)
}

// remove stops exporting a target; t.mu is held.
func (t *BackupTracker) remove(k string, e *tracked) {
	t.unexport(e)
	if e.stale {
		t.nStale--
	}
	delete(t.targets, k)
}

func (t *BackupTracker) setCounts() {
	t.count.set(float64(t.nStale), "true")
	t.count.set(float64(len(t.targets)-t.nStale), "false")
}

// refresh brings staleness up to date at now: only when a fresh target may have turned stale
// since (or always, with all); t.mu is held.
func (t *BackupTracker) refresh(now time.Time, all bool) {
	if !all && (t.nextFlip.IsZero() || now.Before(t.nextFlip)) {
		return
	}
	t.nextFlip = time.Time{}
	for _, e := range t.targets {
		stale, flip := t.isStale(e.s, now)
		if stale != e.stale {
			v := 0.0
			if stale {
				v, t.nStale = 1, t.nStale+1
			} else {
				t.nStale--
			}
			e.stale = stale
			t.stale.set(v, e.labels()...)
		}
		if !stale && (t.nextFlip.IsZero() || flip.Before(t.nextFlip)) {
			t.nextFlip = flip
		}
	}
	t.setCounts()
}

// NextStale returns when the next fresh target turns stale with no event (zero: no target is
// fresh): what changes between two looks without a backup recorded.
func (t *BackupTracker) NextStale() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refresh(t.now(), false)
	return t.nextFlip
}

// Get returns the state of a target, of the first job (by name) that backs it up (see GetFor).
func (t *BackupTracker) Get(target string) (TargetState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var best string
	found := false
	for k := range t.targets {
		if name, _ := splitKey(k); name == target && (!found || k < best) {
			best, found = k, true
		}
	}
	if !found {
		return TargetState{}, false
	}
	return t.targets[best].s, true
}

// GetFor returns the state of a job's target.
func (t *BackupTracker) GetFor(job, target string) (TargetState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.targets[trackKey(job, target)]
	if !ok {
		return TargetState{}, false
	}
	return e.s, true
}

// Delete stops exporting a target of no particular job (see DeleteFor).
func (t *BackupTracker) Delete(target string) { t.DeleteFor("", target) }

// DeleteFor stops exporting a job's target (retired, or the job was removed).
func (t *BackupTracker) DeleteFor(job, target string) {
	k := trackKey(job, target)
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.targets[k]; ok {
		t.remove(k, e)
		t.setCounts()
	}
}

// Targets returns the tracked target names, sorted (a target of two jobs once).
func (t *BackupTracker) Targets() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[string]bool{}
	out := make([]string, 0, len(t.targets))
	for k := range t.targets {
		name, _ := splitKey(k)
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Describe implements prometheus.Collector.
func (t *BackupTracker) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range []*family{t.lastSuccess, t.size, t.stale, t.count} {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector (the protobuf format, and registries that are not a
// Registry).
func (t *BackupTracker) Collect(ch chan<- prometheus.Metric) {
	var out []prometheus.Metric
	for _, f := range t.lockFamilies(t.now()) {
		out = f.collect(out)
	}
	t.unlockFamilies()
	for _, m := range out {
		ch <- m
	}
}

func (t *BackupTracker) lockFamilies(time.Time) []*family {
	t.mu.Lock()
	t.refresh(t.now(), false)
	return []*family{t.lastSuccess, t.size, t.stale, t.count}
}

func (t *BackupTracker) unlockFamilies() { t.mu.Unlock() }
