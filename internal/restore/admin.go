package restore

import (
	"context"
	"fmt"
	"strings"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
)

// MaxParallel is the most containers a node restore restores at once.
const MaxParallel = 64

// CheckContainerRequest validates an admin container restore on node nodeID: the request is
// for this node (targetNode empty or nodeID), key belongs to the container and is a backup (it
// has a manifest). It returns the store prefix the restore locks.
func CheckContainerRequest(ctx context.Context, store storage.Store, keys *layout.Layout, nodeID, targetNode, container, key string) (string, error) {
	if targetNode != "" && targetNode != nodeID {
		return "", fmt.Errorf("%w: this is node %s; send the request to the opsd on %s", httpapi.ErrBadRequest, nodeID, targetNode)
	}
	if !keys.BelongsTo(key, container) {
		return "", httpapi.ErrForbidden
	}
	if _, err := artifact.ReadManifest(ctx, store, key); err != nil {
		return "", fmt.Errorf("%w: %s has no manifest: not a backup", httpapi.ErrNotFound, key)
	}
	return strings.SplitN(key, "/", 2)[0] + "/", nil
}

// CheckNodeRequest validates an admin node restore of node: parallel and startParallel are 0
// (the default) to MaxParallel and the store has container backups of node.
func CheckNodeRequest(ctx context.Context, store storage.Store, keys *layout.Layout, node string, parallel, startParallel int, only, exclude []string) error {
	if parallel < 0 || parallel > MaxParallel {
		return fmt.Errorf("%w: parallel must be 1 to %d", httpapi.ErrBadRequest, MaxParallel)
	}
	if startParallel < 0 || startParallel > MaxParallel {
		return fmt.Errorf("%w: startParallel must be 1 to %d", httpapi.ErrBadRequest, MaxParallel)
	}
	cands, err := NodeCandidates(ctx, store, keys, node)
	if err != nil {
		return err
	}
	if len(cands) == 0 {
		return fmt.Errorf("%w: no container backups of node %s", httpapi.ErrNotFound, node)
	}
	if err := unknownNames(cands, only, exclude); err != nil {
		return fmt.Errorf("%w: %v", httpapi.ErrBadRequest, err)
	}
	return nil
}
