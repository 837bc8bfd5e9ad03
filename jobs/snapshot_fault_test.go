package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// withSnapshotHook installs f as the directory snapshot's hook for the test.
func withSnapshotHook(t *testing.T, f func(path string)) {
	t.Helper()
	remove := setSnapshotHook(f)
	t.Cleanup(remove)
}

// TestDirSnapshotInstanceVanishingIsNotABackup: the instance's directory goes away under the
// snapshot (the tenant deleted, or its volume unmounted or remounted during the night's run).
// Before, the walk recorded "vanished" as a warning and published what it had read, down to an
// empty archive, as the instance's backup: a second run of the day replaced the good backup
// with it (and an on-demand snapshot of a free tenant, kept 1, would make prune delete the
// real one). The run must fail for that instance and the good backup stay at its key.
func TestDirSnapshotInstanceVanishingIsNotABackup(t *testing.T) {
	cases := map[string]func(root string){
		// Gone before its walk started (between the listing and its turn).
		"removed before its walk": func(root string) {
			if err := os.RemoveAll(root); err != nil {
				t.Fatal(err)
			}
		},
		// Gone half way: its first file already read.
		"removed during its walk": func(root string) {
			if err := os.RemoveAll(root); err != nil {
				t.Fatal(err)
			}
		},
		// Replaced by another, empty directory (a volume remounted empty).
		"replaced during its walk": func(root string) {
			if err := os.Rename(root, root+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
		},
	}
	stores := map[string]func(t *testing.T) storage.Store{
		"local": func(t *testing.T) storage.Store {
			s, err := local.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"in-process-s3": func(t *testing.T) storage.Store {
			return storagetest.NewS3(t, storagetest.NewFakeS3(t).Config)
		},
	}
	for sname, newStore := range stores {
		for name, fault := range cases {
			t.Run(sname+"/"+name, func(t *testing.T) {
				ctx := context.Background()
				base := t.TempDir()
				root := filepath.Join(base, "inst-1")
				os.MkdirAll(filepath.Join(root, "memory"), 0o755)
				for _, f := range []string{"a.md", "b.md", "memory/c.md"} {
					os.WriteFile(filepath.Join(root, f), []byte("content of "+f), 0o644)
				}
				store := newStore(t)
				r := newRig(t)
				j := NewDirSnapshot("wopr-home", DirSnapshotConfig{BaseDir: base, Node: "n1", Now: func() time.Time { return day1 }}, store)
				if o := r.runner.Run(ctx, j, time.Minute, TriggerManual); !o.OK() {
					t.Fatalf("first run: %v", o.Err)
				}
				key := "nightly/n1/inst-1/inst-1_20261125.tar.gz"
				good, err := artifact.ReadManifest(ctx, store, key)
				if err != nil {
					t.Fatal(err)
				}

				fired := false
				withSnapshotHook(t, func(p string) {
					if fired {
						return
					}
					if (name == "removed before its walk") == (p == root) {
						fired = true
						fault(root)
					}
				})
				o := r.runner.Run(ctx, j, time.Minute, TriggerManual)
				if !fired {
					t.Fatal("the hook never fired: the fault was not injected")
				}
				if o.OK() {
					t.Fatalf("a snapshot whose directory went away succeeded: %s", o.Run.Summary)
				}
				if len(o.Result.Targets) != 1 || o.Result.Targets[0].Status != TargetFailed || !strings.Contains(o.Result.Targets[0].Err.Error(), "inst-1") {
					t.Fatalf("targets: %+v", o.Result.Targets)
				}
				t.Logf("target error: %v", o.Result.Targets[0].Err)
				m, err := artifact.ReadManifest(ctx, store, key)
				if err != nil || m.SHA256 != good.SHA256 || m.Size != good.Size {
					t.Fatalf("the good backup was replaced: %+v %v", m, err)
				}
				if files := archiveFiles(t, store, key); files["inst-1/memory/c.md"] != "content of memory/c.md" {
					t.Fatalf("archive at the key: %v", keys(files))
				}
				st, err := r.state.GetBackup(ctx, "inst-1", time.Now(), time.Hour)
				if err != nil || st.LastBackupSuccess {
					t.Fatalf("status after the failed run: %+v %v", st, err)
				}
				artifacttest.Check(t, store, "")
			})
		}
	}
}

// TestDirSnapshotFileSwappedUnderTheWalk: a tenant controls the files of its WOPR_HOME. One it
// swaps between the walk's look at it and its read, for a symbolic link to a host file or for
// a FIFO, or a directory it swaps for a link to a host directory: the snapshot must neither read the host file into the tenant's backup (a restore
// would hand it to the tenant) nor block forever on the FIFO's open (a hung nightly run, past
// its timeout, and every later run skipped as an overlap).
func TestDirSnapshotFileSwappedUnderTheWalk(t *testing.T) {
	for _, swap := range []string{"symlink", "fifo", "directory symlink"} {
		t.Run(swap, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			secret := filepath.Join(dir, "host-secret")
			os.WriteFile(secret, []byte("the host's secret"), 0o600)
			base := filepath.Join(dir, "homes")
			root := filepath.Join(base, "inst-1")
			os.MkdirAll(root, 0o755)
			os.WriteFile(filepath.Join(root, "a.md"), []byte("aaa"), 0o644)
			victim := filepath.Join(root, "b.md")
			os.WriteFile(victim, []byte(strings.Repeat("b", 100)), 0o644) // longer than the host file
			os.WriteFile(filepath.Join(root, "c.md"), []byte("ccc"), 0o644)
			// A directory of the tenant's, and a host directory holding a secret.
			os.MkdirAll(filepath.Join(root, "sub"), 0o755)
			os.WriteFile(filepath.Join(root, "sub", "notes.md"), []byte("notes"), 0o644)
			hostDir := filepath.Join(dir, "host-dir")
			os.MkdirAll(hostDir, 0o700)
			os.WriteFile(filepath.Join(hostDir, "notes.md"), []byte("the host directory's secret"), 0o600)
			if swap == "directory symlink" {
				victim = filepath.Join(root, "sub")
			}
			store, _ := local.New(filepath.Join(dir, "store"))
			swapped := false
			withSnapshotHook(t, func(p string) {
				if p != victim || swapped {
					return
				}
				swapped = true
				os.Remove(victim)
				var err error
				switch swap {
				case "symlink":
					err = os.Symlink(secret, victim)
				case "fifo":
					err = syscall.Mkfifo(victim, 0o644)
				default:
					os.RemoveAll(victim)
					err = os.Symlink(hostDir, victim)
				}
				if err != nil {
					t.Error(err)
				}
			})
			r := newRig(t)
			j := NewDirSnapshot("wopr-home", DirSnapshotConfig{BaseDir: base, Node: "n1", Now: func() time.Time { return day1 }}, store)
			done := make(chan Outcome, 1)
			go func() { done <- r.runner.Run(ctx, j, time.Minute, TriggerManual) }()
			var o Outcome
			select {
			case o = <-done:
			case <-time.After(2 * time.Minute):
				t.Fatal("the snapshot never ended: it blocked on the swapped file")
			}
			if !swapped {
				t.Fatal("the hook never fired: the fault was not injected")
			}
			if !o.OK() {
				t.Fatalf("snapshot: %v", o.Err)
			}
			files := archiveFiles(t, store, "nightly/n1/inst-1/inst-1_20261125.tar.gz")
			for name, content := range files {
				if strings.Contains(content, "secret") {
					t.Fatalf("the host file was read into the tenant's backup as %s", name)
				}
			}
			if files["inst-1/a.md"] != "aaa" || files["inst-1/c.md"] != "ccc" {
				t.Fatalf("archive: %v", files)
			}
			if note := o.Result.Targets[0].Note; !strings.Contains(note, strings.TrimPrefix(victim, base+"/")) {
				t.Fatalf("the swapped file is not reported: %q", note)
			}
			artifacttest.Check(t, store, "")
		})
	}
}
