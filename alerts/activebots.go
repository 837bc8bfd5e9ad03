package alerts

import (
	"context"

	"github.com/wopr-network/opsd/internal/coord"
)

// ActiveBots is /admin/health's fleet figure: the whole fleet's running tenant containers from
// the alive nodes' heartbeats (fleet; nil without coordination), else this node's when it
// exports containers (exports), counted on the engine; false when neither knows.
func ActiveBots(fleet *coord.Fleet, exports func() bool, engine ContainerLister) func(context.Context) (int, bool) {
	return func(ctx context.Context) (int, bool) {
		if fleet != nil {
			if n, ok := fleet.ActiveBots(); ok {
				return n, true
			}
		}
		if !exports() {
			return 0, false
		}
		return RunningContainers(ctx, engine, "tenant_")
	}
}
