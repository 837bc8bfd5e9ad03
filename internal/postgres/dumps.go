package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
)

// NewestDump finds the newest dump of database with a manifest under prefix (within lookback
// dates, or on date exactly when given).
func NewestDump(ctx context.Context, store storage.Store, prefix, database string, lookback int, date string) (string, artifact.Manifest, error) {
	sets, err := layout.DateSets(ctx, store, prefix)
	if err != nil {
		return "", artifact.Manifest{}, err
	}
	for i, s := range sets {
		if date != "" && s.Date != date {
			continue
		}
		if date == "" && i >= lookback {
			break
		}
		ms, err := s.Manifests(ctx, store, "postgres")
		if err != nil {
			return "", artifact.Manifest{}, err
		}
		if m, ok := ms[database]; ok {
			return s.Date, m, nil
		}
	}
	if date != "" {
		return "", artifact.Manifest{}, fmt.Errorf("no dump of %s with a manifest under %s%s/", database, prefix, date)
	}
	return "", artifact.Manifest{}, fmt.Errorf("no dump of %s with a manifest in the newest %d dates under %s", database, lookback, prefix)
}

// ScratchName returns a unique database name for a drill or restore of database.
func ScratchName(prefix, database string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s_%s_%s_%s", prefix, scratchClean(database), time.Now().UTC().Format("20060102"), hex.EncodeToString(b))
}

func scratchClean(database string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, strings.ToLower(database))
	if len(clean) > 30 {
		clean = clean[:30]
	}
	return clean
}

// scratchLockClass is the first key of the advisory locks that mark scratch databases in use
// (the two-int form: apart from the coordination's bigint keys).
const scratchLockClass = 0x6f707364 // "opsd"

// HoldScratch marks the scratch database name as in use for as long as c's session lasts (a
// session advisory lock, taken before the database is created): DropLeftoverScratch of another
// run leaves it alone, even while no session is connected to it (between its creation and
// pg_restore's first connection, or between pg_restore and the checks). A run that dies loses
// its session, and with it the mark.
func HoldScratch(ctx context.Context, c *pgx.Conn, name string) error {
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1::int4, hashtext($2))", scratchLockClass, name); err != nil {
		return fmt.Errorf("hold scratch database %s: %w", name, err)
	}
	return nil
}

// DropLeftoverScratch drops the scratch databases of database (ScratchName(prefix, database))
// that a killed run left on the server, and returns their names. One another run holds
// (HoldScratch), or with a session connected (DROP DATABASE without FORCE refuses it), is left
// alone: it may be another run's, in progress.
func DropLeftoverScratch(ctx context.Context, c *pgx.Conn, prefix, database string) ([]string, error) {
	re := regexp.MustCompile("^" + regexp.QuoteMeta(prefix+"_"+scratchClean(database)+"_") + `[0-9]{8}_[0-9a-f]{8}$`)
	rows, err := c.Query(ctx, "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", prefix+"_")
	if err != nil {
		return nil, fmt.Errorf("list scratch databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list scratch databases: %w", err)
	}
	var dropped []string
	for _, n := range names {
		if !re.MatchString(n) {
			continue
		}
		var free bool
		if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::int4, hashtext($2))", scratchLockClass, n).Scan(&free); err != nil {
			return dropped, fmt.Errorf("drop scratch database %s: %w", n, err)
		}
		if !free {
			continue // a live run's
		}
		_, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+Quote(n))
		c.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1::int4, hashtext($2))", scratchLockClass, n)
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use
				continue
			}
			return dropped, fmt.Errorf("drop scratch database %s: %w", n, err)
		}
		dropped = append(dropped, n)
	}
	return dropped, nil
}
