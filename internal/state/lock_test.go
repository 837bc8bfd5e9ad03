package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStateLockIsExclusiveAndNamesTheHolder(t *testing.T) {
	db := filepath.Join(t.TempDir(), "state.db")
	l, err := AcquireLock(db)
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireLock(db)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("%s is held by pid %d", LockPath(db), os.Getpid())) {
		t.Fatalf("second lock: %v", err)
	}
	l.Release()
	l2, err := AcquireLock(db)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Release()
}

func TestCLILockSeenByDaemon(t *testing.T) {
	db := filepath.Join(t.TempDir(), "state.db")
	running, release, err := CLIsRunning(db)
	if err != nil || running {
		t.Fatalf("no CLI: %v %v", running, err)
	}
	release()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, err := AcquireCLILock(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if running, release, err = CLIsRunning(db); err != nil || !running {
		t.Fatalf("with a CLI: %v %v", running, err)
	}
	release()
	cli.Release()
	if running, release, err = CLIsRunning(db); err != nil || running {
		t.Fatalf("after the CLI: %v %v", running, err)
	}
	release()
}
