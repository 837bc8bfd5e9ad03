package restore

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
)

// Backup is an object of the store a restore could use: its key, size, time and whether it has
// a manifest (without one it is not a backup: cut short or foreign).
type Backup struct {
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	Modified    time.Time `json:"modified"`
	HasManifest bool      `json:"hasManifest"`
}

// Backups lists the objects under prefix (manifests aside), only those of target when it is
// set (the database, container or instance the key template names).
func Backups(ctx context.Context, store storage.Store, keys *layout.Layout, prefix, target string) ([]Backup, error) {
	objs, err := storage.ListAll(ctx, store, prefix)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, o := range objs {
		have[o.Key] = true
	}
	rows := []Backup{}
	for _, o := range objs {
		if artifact.IsManifest(o.Key) {
			continue
		}
		if _, f, _ := keys.Owner(o.Key); target != "" && f.Target != target {
			continue
		}
		rows = append(rows, Backup{o.Key, o.Size, o.ModTime, have[artifact.ManifestKey(o.Key)]})
	}
	return rows, nil
}

// WriteBackups prints backups as a table.
func WriteBackups(w io.Writer, rows []Backup) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSIZE\tMODIFIED\tMANIFEST")
	for _, r := range rows {
		m := "yes"
		if !r.HasManifest {
			m = "NO (not a backup)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", printableKey(r.Key), artifact.HumanBytes(r.Size), r.Modified.Format(time.RFC3339), m)
	}
	tw.Flush()
}

// printableKey is key as it is when every character is printable, else quoted (Go syntax): a
// key holding a newline, a tab or a terminal escape, which anyone who can write to the bucket can
// make, cannot forge rows or drive the operator's terminal.
func printableKey(key string) string {
	if strings.IndexFunc(key, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(key)
	}
	return key
}
