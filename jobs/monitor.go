package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// platformKinds act on the platform's shared state (the platform databases, the whole bucket):
// wherever they run, they are one job of the fleet and share one Sentry cron monitor. Every
// other kind works on what the node it runs on holds (its containers, its WOPR_HOME
// directories), so each node gets its own monitor and one silent node is not hidden by the
// others' check-ins.
var platformKinds = map[string]bool{
	"sqlite_backup":   true,
	"sqlite_drill":    true,
	"offsite_verify":  true,
	"prune":           true,
	"container_drill": true,
	"node_drill":      true,
	"postgres_backup": true,
	"postgres_drill":  true,
}

// NodeScoped reports whether jobs of the kind work on the node they run on.
func NodeScoped(kind string) bool { return !platformKinds[kind] }

// MonitorSlug returns the Sentry cron monitor slug of a job: its name, and for a node-scoped
// kind its name and the node ("containers-nightly-node-1"). Slugs are lowercase letters,
// digits, '-' and '_', at most 50 characters (a longer one ends in a hash of the full name).
func MonitorSlug(job, kind, node string) string {
	s := job
	if NodeScoped(kind) && node != "" {
		s = job + "-" + node
	}
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	slug := b.String()
	if len(slug) > 50 {
		sum := sha256.Sum256([]byte(s))
		slug = slug[:41] + "-" + hex.EncodeToString(sum[:4])
	}
	return slug
}
