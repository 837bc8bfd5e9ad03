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

// seconds formats a duration in seconds for reports, with the precision a short restore needs
// (a drill of small databases takes well under a second: "0.042s", never "0s").
func seconds(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.3fs", d.Seconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds()))
}

func sha256Of(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
