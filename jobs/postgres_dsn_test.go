package jobs

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// TestPostgresBackupKeywordDSN: the job accepts libpq's key=value settings as well as a URL.
// With the right password the dump succeeds and pg_dump's argv and /proc/PID/cmdline hold no
// password; with a wrong one (quoted, with spaces and a quote in it) the error says why and
// does not contain it.
func TestPostgresBackupKeywordDSN(t *testing.T) {
	server, tools := pgtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t, server, "opsd_kv")
	if err := pgtest.Fill(ctx, db, 50); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(db.String())
	if err != nil {
		t.Fatal(err)
	}
	quote := func(s string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'" }
	kv := func(password string) postgres.DSN {
		t.Helper()
		s := "host=" + u.Hostname() + " port=" + u.Port() + " user=" + u.User.Username() + " password=" + quote(password) +
			" dbname=" + db.Database() + " sslmode=disable"
		d, err := postgres.ParseDSN(s)
		if err != nil {
			t.Fatalf("parse key=value dsn: %v", err)
		}
		if d.Password() != password || d.Database() != db.Database() || strings.Contains(d.String(), password) {
			t.Fatalf("key=value dsn parsed as %s (password ok: %v)", d, d.Password() == password)
		}
		return d
	}
	store := storagetest.NewS3(t, storagetest.NewFakeS3(t).Config)

	var argv, cmdline string
	good := pgBackupJob(server, kv(server.Password()), tools, store, func(c *PostgresBackupConfig) {
		c.OnDumpStart = func(cmd *exec.Cmd) {
			argv = strings.Join(cmd.Args, " ")
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline")
			cmdline = string(b)
		}
	})
	res, err := good.Run(ctx)
	if err != nil {
		t.Fatalf("backup with a key=value dsn: %v", err)
	}
	if res.Bytes == 0 || argv == "" || strings.Contains(argv+cmdline, server.Password()) {
		t.Fatalf("bytes %d, argv %q (password in argv or cmdline: %v)", res.Bytes, argv, strings.Contains(argv+cmdline, server.Password()))
	}

	wrongPW := `wr0ng pass'w\ord`
	_, err = pgBackupJob(server, kv(wrongPW), tools, store, nil).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("wrong password: %v", err)
	}
	if strings.Contains(err.Error(), wrongPW) || strings.Contains(err.Error(), "wr0ng") {
		t.Fatalf("the error shows the password: %v", err)
	}
}
