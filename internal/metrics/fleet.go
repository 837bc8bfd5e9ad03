package metrics

import "github.com/prometheus/client_golang/prometheus"

// Fleet holds the fleet-coordination metrics (registered only when coordination is configured).
type Fleet struct {
	// Nodes counts the fleet's nodes by state (alive, lost).
	Nodes *prometheus.GaugeVec
	// LastSeen is each node's last heartbeat (on the coordination database's clock).
	LastSeen *prometheus.GaugeVec
	// Up is 1 while the coordination database answers.
	Up prometheus.Gauge
}

// NewFleet registers the fleet metrics on reg, with every known label set at 0.
func NewFleet(reg prometheus.Registerer) *Fleet {
	f := &Fleet{
		Nodes:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opsd_fleet_nodes", Help: "Nodes in the coordination database by state: alive, or lost (a node that backs up containers and missed its heartbeats)."}, []string{"state"}),
		LastSeen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "opsd_fleet_node_last_seen_timestamp_seconds", Help: "Each node's last heartbeat to the coordination database."}, []string{"node"}),
		Up:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "opsd_coordination_up", Help: "1 while the coordination database answers; platform-scoped jobs do not run without it."}),
	}
	f.Nodes.WithLabelValues("alive")
	f.Nodes.WithLabelValues("lost")
	reg.MustRegister(f.Nodes, f.LastSeen, f.Up)
	return f
}
