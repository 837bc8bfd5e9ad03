// Package checks holds the jobs that prove backups can be restored: restore drills (platform
// databases, tenant containers) with measured RTOs, and offsite verification. They are jobs, so
// they get scheduling, status and metrics from the Runner; they hold the prefix lock that pruning
// respects while they read.
package checks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"time"
)

func seconds(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds())) }

func sha256Of(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
