package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/wopr-network/opsd/internal/demo"
)

// BenchmarkBackup copies a 50 MB WAL database (the pinned-snapshot online backup).
func BenchmarkBackup(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src.db")
	if err := demo.ItemsDB(src, 45000); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(src)
	b.SetBytes(st.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := filepath.Join(dir, "dst.db")
		if err := Backup(context.Background(), src, dst); err != nil {
			b.Fatal(err)
		}
		RemoveDB(dst)
	}
}

// BenchmarkCheck is PRAGMA integrity_check on a 50 MB database.
func BenchmarkCheck(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src.db")
	if err := demo.ItemsDB(src, 45000); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(src)
	b.SetBytes(st.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Check(context.Background(), src); err != nil {
			b.Fatal(err)
		}
	}
}
