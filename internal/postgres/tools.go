package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Tools locates the PostgreSQL client programs (pg_dump, pg_restore).
type Tools struct {
	// BinDir holds pg_dump and pg_restore ("" means found on PATH).
	BinDir string
}

// FindTools returns the tools in binDir, or when binDir is "", in the newest Debian
// /usr/lib/postgresql/N/bin that has pg_dump, or else on PATH.
func FindTools(binDir string) (Tools, error) {
	if binDir != "" {
		for _, tool := range []string{"pg_dump", "pg_restore"} {
			if _, err := os.Stat(filepath.Join(binDir, tool)); err != nil {
				return Tools{}, fmt.Errorf("find %s: %w", tool, err)
			}
		}
		return Tools{BinDir: binDir}, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil {
			continue
		}
		if hasTools(d) && v > bestV {
			best, bestV = d, v
		}
	}
	if best != "" {
		return Tools{BinDir: best}, nil
	}
	p, err := exec.LookPath("pg_dump")
	if err != nil || !hasTools(filepath.Dir(p)) {
		return Tools{}, ErrNoTools
	}
	return Tools{BinDir: filepath.Dir(p)}, nil
}

// ErrNoTools is FindTools' error when neither PATH nor /usr/lib/postgresql/*/bin holds pg_dump
// and pg_restore.
var ErrNoTools = errors.New("find pg_dump and pg_restore: not on PATH nor under /usr/lib/postgresql/*/bin " +
	"(install postgresql-client of the server's major version or newer, set pg_bin_dir, or use the opsd image, which ships them)")

func hasTools(dir string) bool {
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if _, err := os.Stat(filepath.Join(dir, tool)); err != nil {
			return false
		}
	}
	return true
}

// Path returns the path of a tool.
func (t Tools) Path(name string) string {
	if t.BinDir == "" {
		return name
	}
	return filepath.Join(t.BinDir, name)
}

var versionRe = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// Version runs `TOOL --version` and returns its major version and full version line.
func (t Tools) Version(ctx context.Context, tool string) (int, string, error) {
	out, err := exec.CommandContext(ctx, t.Path(tool), "--version").Output()
	if err != nil {
		return 0, "", fmt.Errorf("%s --version: %w", tool, err)
	}
	line := strings.TrimSpace(string(out))
	m := versionRe.FindStringSubmatch(line)
	if m == nil {
		return 0, line, fmt.Errorf("%s --version: cannot read a version in %q", tool, line)
	}
	major, _ := strconv.Atoi(m[1])
	return major, line, nil
}

// CheckDumpVersion fails when pg_dump's major version is older than the server's (pg_dump refuses
// to dump a newer server, and an older dump could not be trusted).
func (t Tools) CheckDumpVersion(ctx context.Context, serverMajor int) (string, error) {
	major, line, err := t.Version(ctx, "pg_dump")
	if err != nil {
		return "", err
	}
	if major < serverMajor {
		return line, fmt.Errorf("pg_dump %d (%s) is older than the server (PostgreSQL %d): install postgresql-client-%d or set pg_bin_dir", major, t.Path("pg_dump"), serverMajor, serverMajor)
	}
	return line, nil
}

// tail keeps the last bytes written to it (a child's stderr for error messages).
type tail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

func (t *tail) reason(err error) error {
	if s := t.String(); s != "" {
		return fmt.Errorf("%w: %s", err, s)
	}
	return err
}

// DumpOptions tune Dump.
type DumpOptions struct {
	// Snapshot makes pg_dump use a snapshot exported by the caller's open transaction.
	Snapshot string
	// Uncompressed passes --compress=0: the caller compresses the stream itself (parallel zstd is
	// several times faster than pg_dump's single-threaded gzip).
	Uncompressed bool
	// OnStart is called with pg_dump's command once it started (tests read its argv and env).
	OnStart func(*exec.Cmd)
	// ApplicationName names pg_dump's session on the server (PGAPPNAME): the caller finds it by
	// that name to end it when the dump is abandoned.
	ApplicationName string
	// ClientCheck makes pg_dump's server session check every 2 s that pg_dump is still there
	// while it runs or waits (client_connection_check_interval, PostgreSQL 14 and later), so a
	// session whose pg_dump died with opsd while queued behind a lock ends instead of holding
	// its other tables' locks until the lock holder commits.
	ClientCheck bool
}

// sessionDSN is dsn with the session settings of o in its connection string. They are not
// passed in libpq's environment (PGAPPNAME, PGOPTIONS): a DSN that sets application_name or
// options itself overrides that, and the session would neither carry the name it is ended by
// nor check its client.
func (o DumpOptions) sessionDSN(dsn DSN) DSN {
	if dsn.u == nil || (o.ApplicationName == "" && !o.ClientCheck) {
		return dsn
	}
	u := *dsn.u
	q := u.Query()
	if o.ApplicationName != "" {
		q.Set("application_name", o.ApplicationName)
	}
	if o.ClientCheck {
		q.Set("options", strings.TrimSpace(q.Get("options")+" -c client_connection_check_interval=2000"))
	}
	u.RawQuery = encodeQuery(q)
	dsn.u = &u
	return dsn
}

// DumpStream is pg_dump's custom-format output. Reading it to the end returns io.EOF only when
// pg_dump exited 0 and `pg_restore --list`, fed the same bytes as they passed, read the archive;
// otherwise the last read returns the reason. Close stops both processes.
type DumpStream struct {
	dump, list       *exec.Cmd
	out              io.ReadCloser
	listIn           io.WriteCloser
	listDead         bool
	dumpErr, listErr *tail
	listOut          *bytes.Buffer
	cancel           context.CancelFunc
	cleanup          func()
	n                int64
	done             bool
	err              error
	closeOnce        sync.Once
	dsn              DSN
}

// Dump starts `pg_dump --format=custom` of the DSN's database and `pg_restore --list` beside it.
func (t Tools) Dump(ctx context.Context, dsn DSN, o DumpOptions) (*DumpStream, error) {
	env, cleanup, err := dsn.childEnv()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	args := []string{"--format=custom", "--no-password"}
	if o.Snapshot != "" {
		args = append(args, "--snapshot="+o.Snapshot)
	}
	if o.Uncompressed {
		args = append(args, "--compress=0")
	}
	args = append(args, "--dbname="+o.sessionDSN(dsn).String())
	s := &DumpStream{dsn: dsn, cancel: cancel, cleanup: cleanup, dumpErr: &tail{max: 4096}, listErr: &tail{max: 4096}, listOut: &bytes.Buffer{}}
	s.dump = exec.CommandContext(cctx, t.Path("pg_dump"), args...)
	s.dump.Env = env
	// Both die with opsd (SIGKILL, OOM): pg_dump queued behind a lock would write nothing to its
	// dead pipe, so nothing else would end it.
	s.dump.SysProcAttr = dieWithParent(&syscall.SysProcAttr{})
	s.dump.Stderr = s.dumpErr
	// pg_dump writes into a pipe opsd reads: a 1 MiB pipe (Linux's default maximum for
	// unprivileged processes) instead of 64 KiB lets pg_dump run ahead 16 times further before
	// it blocks, so each side is woken far less often on a busy machine.
	pr, pw, err := os.Pipe()
	if err != nil {
		s.abort()
		return nil, fmt.Errorf("pg_dump: %w", err)
	}
	growPipe(pw)
	s.dump.Stdout, s.out = pw, pr
	s.list = exec.CommandContext(cctx, t.Path("pg_restore"), "--list")
	s.list.Env = env
	s.list.SysProcAttr = dieWithParent(&syscall.SysProcAttr{})
	s.list.Stderr = s.listErr
	s.list.Stdout = &limitWriter{w: s.listOut, n: 1 << 20}
	if s.listIn, err = s.list.StdinPipe(); err != nil {
		pr.Close()
		pw.Close()
		s.abort()
		return nil, fmt.Errorf("pg_restore --list: %w", err)
	}
	if err := s.list.Start(); err != nil {
		pr.Close()
		pw.Close()
		s.abort()
		return nil, fmt.Errorf("start pg_restore --list: %w", err)
	}
	err = s.dump.Start()
	pw.Close() // the child holds its copy: EOF comes when pg_dump exits
	if err != nil {
		pr.Close()
		s.listIn.Close()
		s.list.Wait()
		s.abort()
		return nil, fmt.Errorf("start pg_dump: %w", err)
	}
	if o.OnStart != nil {
		o.OnStart(s.dump)
	}
	return s, nil
}

func (s *DumpStream) abort() {
	s.cancel()
	s.cleanup()
}

// Read reads the dump, passing every byte to pg_restore --list until it has read what it needs.
func (s *DumpStream) Read(p []byte) (int, error) {
	if s.done {
		return 0, s.err
	}
	n, err := s.out.Read(p)
	if n > 0 {
		s.n += int64(n)
		if !s.listDead {
			if _, werr := s.listIn.Write(p[:n]); werr != nil {
				// pg_restore --list stops reading once it has the table of contents.
				s.listDead = true
				s.listIn.Close()
			}
		}
	}
	if err == io.EOF {
		s.finish()
		return n, s.err
	}
	if err != nil {
		s.finishWith(fmt.Errorf("read pg_dump output: %w", err))
		return n, s.err
	}
	return n, nil
}

func (s *DumpStream) finishWith(err error) {
	s.done, s.err = true, err
	s.cancel()
	s.listIn.Close()
	s.out.Close() // pg_dump, if still writing, gets EPIPE
	s.dump.Wait()
	s.list.Wait()
	s.cleanup()
}

func (s *DumpStream) finish() {
	s.done = true
	s.listIn.Close()
	derr := s.dump.Wait()
	s.out.Close()
	lerr := s.list.Wait()
	s.cancel()
	s.cleanup()
	switch {
	case derr != nil:
		s.err = fmt.Errorf("pg_dump of %s: %w", s.dsn, redactErr(s.dumpErr.reason(derr), s.dsn.password))
	case s.n == 0:
		s.err = errors.New("pg_dump wrote nothing")
	case lerr != nil:
		s.err = fmt.Errorf("pg_restore --list cannot read the dump: %w", s.listErr.reason(lerr))
	case !strings.Contains(s.listOut.String(), "Format: CUSTOM"):
		s.err = errors.New("pg_restore --list did not recognise a custom-format archive")
	default:
		s.err = io.EOF
	}
}

// Close stops pg_dump and pg_restore when the stream was not read to its end.
func (s *DumpStream) Close() error {
	s.closeOnce.Do(func() {
		if !s.done {
			s.finishWith(errors.New("dump closed before its end"))
		}
	})
	return nil
}

// Bytes is how many bytes pg_dump wrote so far.
func (s *DumpStream) Bytes() int64 { return s.n }

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// TOCEntry is one line of `pg_restore --list`.
type TOCEntry struct {
	Type   string // e.g. "TABLE", "TABLE DATA", "INDEX"
	Schema string
	Name   string
}

// List runs `pg_restore --list FILE` and returns its entries.
func (t Tools) List(ctx context.Context, file string) ([]TOCEntry, error) {
	errs := &tail{max: 4096}
	cmd := exec.CommandContext(ctx, t.Path("pg_restore"), "--list", file)
	cmd.Stderr = errs
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pg_restore --list: %w", errs.reason(err))
	}
	var entries []TOCEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == ';' {
			continue
		}
		// "214; 1259 16384 TABLE public t opsd"
		_, rest, ok := strings.Cut(line, "; ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 4 {
			continue
		}
		f = f[2:]
		for _, typ := range []string{"TABLE DATA", "SEQUENCE SET", "MATERIALIZED VIEW DATA", "TABLE", "INDEX", "SEQUENCE", "SCHEMA"} {
			words := strings.Fields(typ)
			if len(f) >= len(words)+2 && strings.Join(f[:len(words)], " ") == typ {
				entries = append(entries, TOCEntry{Type: typ, Schema: f[len(words)], Name: f[len(words)+1]})
				break
			}
		}
	}
	return entries, nil
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	Jobs int
	// NoOwner skips ownership and privileges (a drill on a server without the platform's roles).
	NoOwner bool
	// Settings are session settings ("name=value") for every connection pg_restore opens, passed
	// in PGOPTIONS as -c name=value: a drill's throwaway database commits without waiting for the
	// WAL flush and builds indexes in memory (ScratchSettings).
	Settings []string
	// OnStart is called with pg_restore's command once it started (tests read its argv and env).
	OnStart func(*exec.Cmd)
}

var settingRe = regexp.MustCompile(`^[a-z_][a-z0-9_.]*=[A-Za-z0-9_.+-]+$`)

// ScratchSettings are the session settings for restoring into a database that is dropped after
// (a drill): commits do not wait for the WAL flush (synchronous_commit=off: a crash could only
// lose the scratch database, which is dropped anyway), and each index build may sort up to
// maintenanceWorkMemMB in memory (maintenance_work_mem; the server's default of 64 MB makes a
// primary key of a few million rows sort on disk). Each of pg_restore's --jobs connections may
// use that much while it builds an index. 0 keeps the server's maintenance_work_mem.
func ScratchSettings(maintenanceWorkMemMB int) []string {
	s := []string{"synchronous_commit=off"}
	if maintenanceWorkMemMB > 0 {
		s = append(s, fmt.Sprintf("maintenance_work_mem=%dMB", maintenanceWorkMemMB))
	}
	return s
}

// pgOptions renders settings as PGOPTIONS; a setting that is not name=value with a plain value
// is refused (PGOPTIONS splits on spaces).
func pgOptions(settings []string) (string, error) {
	var b strings.Builder
	for _, kv := range settings {
		if !settingRe.MatchString(kv) {
			return "", fmt.Errorf("pg_restore: session setting %q is not name=value with a plain value", kv)
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("-c " + kv)
	}
	return b.String(), nil
}

// Restore runs `pg_restore --exit-on-error --jobs N --dbname DSN FILE`.
func (t Tools) Restore(ctx context.Context, dsn DSN, file string, o RestoreOptions) error {
	opts, err := pgOptions(o.Settings)
	if err != nil {
		return err
	}
	env, cleanup, err := dsn.childEnv()
	if err != nil {
		return err
	}
	defer cleanup()
	if opts != "" {
		env = append(env, "PGOPTIONS="+opts)
	}
	args := []string{"--exit-on-error", "--no-password", fmt.Sprintf("--jobs=%d", max(o.Jobs, 1))}
	if o.NoOwner {
		args = append(args, "--no-owner", "--no-privileges")
	}
	args = append(args, "--dbname="+dsn.String(), file)
	errs := &tail{max: 4096}
	cmd := exec.CommandContext(ctx, t.Path("pg_restore"), args...)
	cmd.Env, cmd.Stderr = env, errs
	killGroup(cmd)
	err = cmd.Start()
	if err == nil {
		if o.OnStart != nil {
			o.OnStart(cmd)
		}
		err = cmd.Wait()
	}
	if err != nil {
		return fmt.Errorf("pg_restore into %s: %w", dsn.Database(), redactErr(errs.reason(err), dsn.password))
	}
	return nil
}

// growPipe raises a pipe's capacity to 1 MiB (F_SETPIPE_SZ); where that is not allowed the pipe
// keeps its size, which only costs speed.
func growPipe(f *os.File) {
	const fSetPipeSz = 1031
	sc, err := f.SyscallConn()
	if err != nil {
		return
	}
	sc.Control(func(fd uintptr) {
		syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, 1<<20)
	})
}

// killGroup makes a cancelled command kill its whole process group: pg_restore --jobs forks its
// workers, which hold the stderr pipe Wait reads to its end and keep loading their table after
// the leader is killed (a cancelled drill or restore would wait for them, and they would outlive
// it). WaitDelay bounds Wait should a process escape the group. The command is also killed when
// opsd dies (SIGKILL, OOM): it would otherwise go on restoring into a database nobody drops.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = dieWithParent(&syscall.SysProcAttr{Setpgid: true})
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	cmd.WaitDelay = 10 * time.Second
}

// ResolveServer parses a job's server DSN and finds the client tools in binDir (as FindTools).
func ResolveServer(dsn, binDir string) (DSN, Tools, error) {
	d, err := ParseDSN(dsn)
	if err != nil {
		return DSN{}, Tools{}, err
	}
	tools, err := FindTools(binDir)
	return d, tools, err
}
