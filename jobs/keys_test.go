package jobs

import (
	"testing"
	"time"

	"filippo.io/age"
)

// TestKeysUseUTCDates: the one time-zone rule. A backup taken at 00:30 in Berlin on the 26th
// (23:30 UTC on the 25th) is keyed by the 25th, whatever zone the clock reports, and the format
// suffix follows compression and encryption.
func TestKeysUseUTCDates(t *testing.T) {
	at := time.Date(2026, 11, 26, 0, 30, 0, 0, time.FixedZone("CET", 3600))
	id, _ := age.GenerateX25519Identity()
	b := NewSQLiteBackup("db", SQLiteBackupConfig{Node: "n1", Compression: "zstd", Recipients: []age.Recipient{id.Recipient()}}, nil)
	if k := b.Key("auth", at); k != "platform/20261125/auth-20261125.db.zst.age" {
		t.Fatalf("sqlite key %s", k)
	}
	c := NewContainerExport("c", ContainerExportConfig{Node: "n1", KeyTemplate: "x/{container}/{date}/{node}.tar", Compression: "zstd"}, nil, nil, nil)
	if k := c.Key("tenant_a", at); k != "x/tenant_a/20261125/n1.tar.zst" {
		t.Fatalf("container key %s", k)
	}
	hot := NewContainerExport("h", ContainerExportConfig{ChangedOnly: true, Recipients: []age.Recipient{id.Recipient()}}, nil, nil, nil)
	if k := hot.Key("tenant_a", at); k != "latest/tenant_a/latest.tar.gz.age" {
		t.Fatalf("hot key %s", k)
	}
	if _, err := NewSQLiteBackup("bad", SQLiteBackupConfig{KeyTemplate: "platform/{day}/{db}.db"}, nil).Run(t.Context()); err == nil {
		t.Fatal("a template with an unknown placeholder ran")
	}
}
