package alerts

import (
	"time"

	"github.com/wopr-network/opsd/internal/coord"
)

// NodeLostSpec is the built-in node-lost alert of a node that takes part in fleet coordination,
// evaluated on the fleet's last heartbeat view (no query of its own).
func NodeLostSpec(f *coord.Fleet, lostAfter func() time.Duration) Spec {
	return Spec{Rule: &NodeLost{RuleName: "node-lost", Nodes: f.Nodes, LostAfter: lostAfter}}
}
