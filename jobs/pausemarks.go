package jobs

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wopr-network/opsd/internal/docker"
)

// A container export with `pause: true` freezes a running container for its export and always
// unpauses it, unless opsd dies in between (SIGKILL, OOM, the host's opsd container restarted):
// then the tenant's container stayed paused, its bot down, until someone noticed. Before it
// pauses a container, the export writes a pause mark (a file beside the state database naming
// the container and the process); it removes the mark once the container is unpaused. The
// next start of opsd, and every export run, unpause the containers whose mark a process that is
// gone left behind (ContainerExport.RecoverPaused).

// pauseMarkPrefix starts the name of every pause mark.
const pauseMarkPrefix = "opsd-paused-"

// processNonce tells this process from an earlier one that ran under the same PID (opsd in a
// container gets the same PID after every restart).
var processNonce = strings.ToLower(rand.Text()[:16])

// pauseMark is the content of a pause mark.
type pauseMark struct {
	ID    string    `json:"id"`
	Name  string    `json:"name"`
	PID   int       `json:"pid"`
	Nonce string    `json:"nonce"`
	At    time.Time `json:"at"`
}

func pauseMarkPath(dir, id string) string {
	return filepath.Join(dir, pauseMarkPrefix+id)
}

// markPaused writes the pause mark of a container about to be paused.
func markPaused(dir, id, name string) error {
	if dir == "" {
		return nil
	}
	b, _ := json.Marshal(pauseMark{ID: id, Name: name, PID: os.Getpid(), Nonce: processNonce, At: time.Now().UTC()})
	if err := os.WriteFile(pauseMarkPath(dir, id), b, 0o600); err != nil {
		return fmt.Errorf("mark %s paused: %w", name, err)
	}
	return nil
}

// unmarkPaused removes a container's pause mark once it is unpaused.
func unmarkPaused(dir, id string) {
	if dir != "" {
		os.Remove(pauseMarkPath(dir, id))
	}
}

// PauseUnpauser is what RecoverPaused needs of the Docker engine.
type PauseUnpauser interface {
	Inspect(ctx context.Context, id string, size bool) (docker.Details, error)
	Unpause(ctx context.Context, id string) error
}

// recoverPaused unpauses the containers an export of a process that is gone paused and never
// unpaused (their pause marks in dir), removes their marks, and returns the names it unpaused.
// Marks of a live process (an export in progress, here or in a CLI command) are left alone; so
// is a container that is no longer paused or no longer exists (its mark is removed).
func recoverPaused(ctx context.Context, dir string, engine PauseUnpauser) ([]string, error) {
	if dir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read pause marks: %w", err)
	}
	var unpaused []string
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), pauseMarkPrefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var m pauseMark
		if json.Unmarshal(b, &m) != nil || m.ID == "" {
			os.Remove(p) // a mark cut short by the crash: the engine is asked about no container
			continue
		}
		if (m.PID == os.Getpid() && m.Nonce == processNonce) || (m.PID != os.Getpid() && processAlive(m.PID)) {
			continue // an export in progress
		}
		d, err := engine.Inspect(ctx, m.ID, false)
		switch {
		case docker.IsNotFound(err):
			os.Remove(p)
		case err != nil:
			errs = append(errs, fmt.Errorf("unpause %s (paused by an export opsd did not survive): %w", m.Name, err))
		case !d.Paused:
			os.Remove(p)
		default:
			if err := engine.Unpause(ctx, m.ID); err != nil {
				errs = append(errs, fmt.Errorf("unpause %s (paused by an export opsd did not survive): %w", m.Name, err))
				continue
			}
			os.Remove(p)
			unpaused = append(unpaused, m.Name)
		}
	}
	return unpaused, errors.Join(errs...)
}

// processAlive reports whether a process with that PID exists.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
