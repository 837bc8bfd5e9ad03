package httpapi

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
)

// ListSnapshots lists a target's stored backups (artifacts with manifests) of every kind the key
// layout knows, newest first: nightly and hot exports, directory snapshots, on-demand snapshots,
// platform sets. The target's node is the one its backups were last recorded from (node when it
// has none). A target that is no single path element has none.
func ListSnapshots(ctx context.Context, keys *layout.Layout, store storage.Store, st *state.Store, node, target string) ([]Snapshot, error) {
	if strings.ContainsAny(target, "/\\") || target == "" || target == "." || target == ".." {
		return nil, nil
	}
	if b, err := st.GetBackup(ctx, target, time.Now(), time.Hour); err == nil && b.NodeID != "" {
		node = b.NodeID
	}
	list, err := keys.Artifacts(ctx, store, layout.Fields{Node: node, Target: target},
		layout.Nightly, layout.Hot, layout.Snapshot, layout.OnDemand, layout.SQLite)
	if err != nil {
		return nil, err
	}
	var out []Snapshot
	for _, a := range list {
		date := a.Object.ModTime.UTC().Format(time.RFC3339)
		if t, err := layout.ParseDate(a.Date); err == nil {
			date = t.Format("2006-01-02")
		}
		out = append(out, Snapshot{Path: a.Key, Date: date, SizeMB: float64(a.Object.Size) / (1024 * 1024)})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Date > out[j].Date || (out[i].Date == out[j].Date && out[i].Path > out[j].Path)
	})
	return out, nil
}
