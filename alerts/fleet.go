package alerts

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/coord"
)

// NodeLost is the built-in `node-lost` rule: it fires when a node that backs up tenant
// containers has sent no heartbeat to the coordination database for longer than LostAfter, and
// resolves when every such node is back. Ages use the database's clock, so node clock skew does
// not matter.
type NodeLost struct {
	RuleName  string
	Nodes     func(ctx context.Context) ([]coord.NodeInfo, error)
	LostAfter func() time.Duration
}

// Name returns the rule's name.
func (r *NodeLost) Name() string { return r.RuleName }

// Evaluate lists the lost nodes.
func (r *NodeLost) Evaluate(ctx context.Context, now time.Time) (Eval, error) {
	nodes, err := r.Nodes(ctx)
	if err != nil {
		return Eval{}, fmt.Errorf("node-lost: %w", err)
	}
	lost := coord.LostNodes(nodes, now, r.LostAfter())
	ev := Eval{Value: float64(len(lost)), Threshold: 0, Firing: len(lost) > 0}
	if ev.Firing {
		ev.Message = fmt.Sprintf("%d node(s) backing up tenant containers sent no heartbeat for over %s: %s", len(lost), r.LostAfter(), strings.Join(lost, ", "))
	} else {
		ev.Message = "every node that backs up tenant containers is alive"
	}
	return ev, nil
}
