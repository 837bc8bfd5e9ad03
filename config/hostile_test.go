package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hangGuard is how long a hostile input may take before the test calls it a hang. It is not a
// speed bound (those are measured in allocations and comparisons below): it only trips when a
// check blocks (a FIFO read) or runs away (an expansion that never ends).
const hangGuard = 2 * time.Minute

// bounded runs f, failing the test if it hangs, and returns the bytes f allocated.
func bounded(t *testing.T, what string, f func()) uint64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatalf("%s: still running after %s (blocked or runaway)", what, hangGuard)
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const maxHostileAlloc = 100 << 20 // 100 MiB

func wantRefused(t *testing.T, err error, wantMsg string) {
	t.Helper()
	var ce *Errors
	if !errors.As(err, &ce) {
		t.Fatalf("want a refusal containing %q, got %v", wantMsg, err)
	}
	if !strings.Contains(err.Error(), wantMsg) {
		t.Fatalf("error %q does not contain %q", err, wantMsg)
	}
}

// TestAliasBombRefusedCheaply: a 1 KB file whose aliases expand to 10^12 values is refused
// without expanding it: under 100 MiB allocated in all.
func TestAliasBombRefusedCheaply(t *testing.T) {
	var b strings.Builder
	b.WriteString("node_id: n1\nstate:\n  path: /tmp/s.db\njobs: &a0 [{name: a, kind: noop, schedule: \"@daily\"}]\n")
	for i := 1; i <= 12; i++ {
		b.WriteString(fmt.Sprintf("x%d: &a%d [%s]\n", i, i, strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9)+fmt.Sprintf("*a%d", i-1)))
	}
	// The bomb inside a field the schema knows (a job's list of tables) as well as at the top.
	b.WriteString("alerts:\n  rules: *a12\n")
	data := []byte(b.String())
	var err error
	alloc := bounded(t, "alias bomb", func() { _, err = parse(data, "bomb.yaml", noEnv) })
	wantRefused(t, err, "YAML aliases expand to more than 100000 values")
	if alloc > maxHostileAlloc {
		t.Fatalf("refusing a %d-byte alias bomb allocated %d MiB", len(data), alloc>>20)
	}
}

// TestAliasesWithinBudgetStillWork: the ordinary use of anchors (one encryption block shared by
// jobs) is not refused.
func TestAliasesWithinBudgetStillWork(t *testing.T) {
	yaml := `node_id: n1
state:
  path: /tmp/s.db
jobs:
  - name: a
    kind: noop
    schedule: &sched "@daily"
    timeout: &t 5m
  - name: b
    kind: noop
    schedule: *sched
    timeout: *t
`
	cfg, err := parse([]byte(yaml), "", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Jobs[1].Schedule != "@daily" || cfg.Jobs[1].Timeout.D() != 5*time.Minute {
		t.Fatalf("alias not followed: %+v", cfg.Jobs[1])
	}
}

// TestDeepNestingRefused: 9,000 levels of flow nesting and 200 levels of block nesting are
// refused with a line, cheaply.
func TestDeepNestingRefused(t *testing.T) {
	flow := "node_id: n1\nstate:\n  path: /tmp/s.db\nx: " + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + "\n"
	var block strings.Builder
	block.WriteString("node_id: n1\nstate:\n  path: /tmp/s.db\nx:\n")
	for i := 1; i <= 200; i++ {
		block.WriteString(strings.Repeat("  ", i) + fmt.Sprintf("k%d:\n", i))
	}
	for name, data := range map[string]string{"flow": flow, "block": block.String()} {
		var err error
		alloc := bounded(t, name, func() { _, err = parse([]byte(data), "", noEnv) })
		wantRefused(t, err, "nested deeper than 32 levels")
		if alloc > maxHostileAlloc {
			t.Fatalf("%s: allocated %d MiB", name, alloc>>20)
		}
	}
}

// TestFileOverLimitRefused: a job file over 4 MiB is refused by Load without reading it all,
// and by Parse.
func TestFileOverLimitRefused(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.yaml")
	data := []byte("node_id: n1\n# " + strings.Repeat("x", 64<<20) + "\n")
	if err := os.WriteFile(big, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	alloc := bounded(t, "load big", func() { _, err = Load(big) })
	if err == nil || !strings.Contains(err.Error(), "larger than the 4MiB limit") || !strings.Contains(err.Error(), big) {
		t.Fatalf("Load of a 64 MiB file: %v", err)
	}
	if alloc > 16<<20 {
		t.Fatalf("refusing a 64 MiB file allocated %d MiB: it was read", alloc>>20)
	}
	_, err = parse(data[:MaxFileSize+1], "big.yaml", noEnv)
	wantRefused(t, err, "more than the 4MiB limit for a job file")
}

// TestConfigPathNotRegular: a FIFO or directory as the job file itself is refused at once.
func TestConfigPathNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "opsd.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for path, want := range map[string]string{fifo: "a named pipe (FIFO), not a regular file", dir: "a directory, not a regular file", "/dev/zero": "a character device"} {
		var err error
		bounded(t, path, func() { _, err = Load(path) })
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Load(%s) = %v, want %q", path, err, want)
		}
	}
	// The watcher's look at the file does not block on the FIFO either.
	bounded(t, "fileSum of a FIFO", func() { fileSum(fifo) })
}

// TestHostileSecretFiles: a *_file secret that is a FIFO (no writer: a read would block
// forever), /dev/zero (a read would never end), a directory, an oversized or an empty file is
// refused quickly, naming the key and line.
func TestHostileSecretFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "token.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, MaxSecretFileSize+1), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	exact := filepath.Join(dir, "exact")
	os.WriteFile(exact, []byte(strings.Repeat("k", MaxSecretFileSize)), 0o600)
	for path, want := range map[string]string{
		fifo:        "http.admin_token_file (line 3): cannot read secret file: a named pipe (FIFO), not a regular file",
		"/dev/zero": "http.admin_token_file (line 3): cannot read secret file: a character device, not a regular file",
		dir:         "http.admin_token_file (line 3): cannot read secret file: a directory, not a regular file",
		big:         "http.admin_token_file (line 3): cannot read secret file: larger than the 64KiB limit (65537 bytes)",
		empty:       "http.admin_token_file (line 3): secret file " + empty + " is empty",
	} {
		yaml := "node_id: n1\nhttp:\n  admin_token_file: " + path + "\nstate:\n  path: /tmp/s.db\n"
		var err error
		alloc := bounded(t, path, func() { _, err = parse([]byte(yaml), "", noEnv) })
		if err == nil || err.Error() != want {
			t.Errorf("%s:\n got %v\nwant %s", path, err, want)
		}
		if alloc > maxHostileAlloc {
			t.Errorf("%s: allocated %d MiB", path, alloc>>20)
		}
	}
	yaml := "node_id: n1\nhttp:\n  admin_token_file: " + exact + "\nstate:\n  path: /tmp/s.db\n"
	if cfg, err := parse([]byte(yaml), "", noEnv); err != nil || len(cfg.HTTP.AdminToken.Value()) != MaxSecretFileSize {
		t.Fatalf("a 64KiB secret file: %v", err)
	}
	// An identity file that is a FIFO is refused the same way.
	yaml = "node_id: n1\nstate:\n  path: /tmp/s.db\njobs:\n  - name: d\n    kind: sqlite_drill\n    schedule: \"@daily\"\n    identity_file: " + fifo + "\n"
	var err error
	bounded(t, "identity FIFO", func() { _, err = parse([]byte(yaml), "", noEnv) })
	wantRefused(t, err, "jobs[0].identity_file (line 8): cannot read "+fifo+": a named pipe (FIFO), not a regular file")
}

// TestManyErrorsCheapToReport: 40,000 jobs with two errors each (a 2.6 MB file) are all
// reported, sorted by line, with O(n log n) comparisons and bounded memory. (The old insertion
// sort made 3.2 billion comparisons on this file.)
func TestManyErrorsCheapToReport(t *testing.T) {
	var b strings.Builder
	b.WriteString("node_id: n1\nstate:\n  path: /tmp/s.db\njobs:\n")
	const jobs = 40_000
	for i := 0; i < jobs; i++ {
		fmt.Fprintf(&b, "  - name: Job%d\n    kind: noop\n    schedule: \"61 * * * *\"\n", i)
	}
	data := []byte(b.String())
	if len(data) > MaxFileSize {
		t.Fatalf("test file is %d bytes", len(data))
	}
	var comparisons int
	orig := lineLess
	lineLess = func(a, b FieldError) bool { comparisons++; return orig(a, b) }
	defer func() { lineLess = orig }()
	var err error
	alloc := bounded(t, "40,000 bad jobs", func() { _, err = parse(data, "", noEnv) })
	var ce *Errors
	if !errors.As(err, &ce) || len(ce.List) != 2*jobs {
		t.Fatalf("want %d errors, got %v", 2*jobs, len(ce.List))
	}
	for i := 1; i < len(ce.List); i++ {
		if ce.List[i].Line < ce.List[i-1].Line {
			t.Fatalf("errors out of line order at %d", i)
		}
	}
	n := 2 * jobs
	if limit := 4 * n * 17; comparisons > limit { // 17 > log2(80,000)
		t.Fatalf("sorting %d errors took %d comparisons (limit %d): not O(n log n)", n, comparisons, limit)
	}
	if alloc > 1<<30 {
		t.Fatalf("checking a 2.6 MB file allocated %d MiB", alloc>>20)
	}
	t.Logf("%d errors, %d comparisons, %d MiB allocated", n, comparisons, alloc>>20)
}

// TestNoSecretInErrors: whatever is wrong with a secret-holding value, no error quotes it.
func TestNoSecretInErrors(t *testing.T) {
	const secret = "Zq9sEcReTvAlUe"
	values := []string{
		secret + "${UNTERMINATED",
		"${" + secret + "-bad-name}",
		"${" + secret + "}", // an unset variable named like the secret is still named: not a value
		"x${BAD NAME}" + secret,
		secret + "}${",
	}
	fields := []string{
		"http:\n  admin_token: %q\n",
		"storage:\n  backend: s3\n  s3:\n    endpoint: nyc3.digitaloceanspaces.com\n    access_key: %q\n    secret_key: %[1]q\n",
		"sentry:\n  dsn: %q\n",
		"alerts:\n  notify:\n    pagerduty:\n      routing_key: %q\n    webhook:\n      url: %[1]q\n      token: %[1]q\n",
		"jobs:\n  - name: p\n    kind: http_ping\n    schedule: \"@daily\"\n    url: %q\n",
	}
	for _, f := range fields {
		for i, v := range values {
			yaml := "node_id: n1\nstate:\n  path: /tmp/s.db\n" + fmt.Sprintf(f, v)
			_, err := parse([]byte(yaml), "", noEnv)
			if err == nil {
				t.Fatalf("%q in %q was accepted", v, f)
			}
			if i == 2 {
				continue // the variable's name is in the file, not a secret
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error echoes the secret:\n%v", err)
			}
		}
	}
	// A secret that also reaches a plain field is not echoed by that field's error.
	env := envOf(map[string]string{"DO_SPACES_SECRET_KEY": secret + "/+="})
	yaml := "node_id: ${DO_SPACES_SECRET_KEY}\nstate:\n  path: /tmp/s.db\nstorage:\n  backend: s3\n  s3:\n    endpoint: minio:9000\n    access_key: AK\n"
	if _, err := parse([]byte(yaml), "", env); err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), `node_id (line 1): "[redacted]" may only hold`) {
		t.Errorf("secret in node_id: %v", err)
	}
	// An unquoted secret that starts with * is a YAML alias: the error does not name it.
	if _, err := parse([]byte("node_id: n1\nhttp:\n  admin_token: *"+secret+"\n"), "", noEnv); err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("alias-looking secret: %v", err)
	}
	// Valid-looking but wrong secrets: a DSN or URL that does not parse is not quoted either.
	for f, v := range map[string]string{"sentry:\n  dsn: %q\n": "https://host/" + secret, "jobs:\n  - name: p\n    kind: http_ping\n    schedule: \"@daily\"\n    url: %q\n": "ftp://" + secret + "@host/"} {
		yaml := "node_id: n1\nstate:\n  path: /tmp/s.db\n" + fmt.Sprintf(f, v)
		if _, err := parse([]byte(yaml), "", noEnv); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("bad DSN/URL: %v", err)
		}
	}
}

// TestSetButEmptyVariables: ${VAR} set to "" is an error naming it; ${VAR:-} allows it; an
// empty S3_BUCKET never silently becomes the default bucket.
func TestSetButEmptyVariables(t *testing.T) {
	env := envOf(map[string]string{"EMPTY": "", "S3_BUCKET": ""})
	if _, err := parse([]byte("node_id: n${EMPTY:-}1\nstate:\n  path: /tmp/s.db\n"), "", env); err != nil {
		t.Fatalf("${EMPTY:-}: %v", err)
	}
	_, err := parse([]byte("node_id: n1\nstate:\n  path: /tmp/s.db\nstorage:\n  backend: s3\n  s3:\n    endpoint: minio:9000\n    access_key: AK\n    secret_key: SK\n"), "", env)
	wantRefused(t, err, "S3_BUCKET is set but empty")
}

// TestRangesDocumented: the numbers at the edge of each documented range are accepted.
func TestRangesDocumented(t *testing.T) {
	yaml := `node_id: n1
state:
  path: /tmp/s.db
http:
  listen: "[::1]:65535"
  admin_token: 0123456789abcdef
scheduler:
  max_concurrent: 64
tiers:
  free:
    keep_daily: 100000
    retention_days: 36500
storage:
  backend: s3
  s3:
    endpoint: 10.0.0.7:9000
    bucket: my.bucket-1
    access_key: AK
    secret_key: SK
    deletes_per_second: 1000
    part_size: 5GiB
jobs:
  - name: p
    kind: prune
    schedule: "0 4 * * 7"
    timeout: 36500d
    rules:
      - prefix: logs/
        keep_within: 5214w
`
	if _, err := parse([]byte(yaml), "", noEnv); err != nil {
		t.Fatal(err)
	}
}

// TestSyntaxErrorLines: the line named is the line of the problem, not the start of the
// mapping or list around it.
func TestSyntaxErrorLines(t *testing.T) {
	for yaml, line := range map[string]int{
		"node_id: n1\n- b\n":                             2,
		"a:\n  b: 1\n c: 2\n":                            3,
		"jobs:\n  - name: x\n    kind: noop\n  bad\n":    4,
		"node_id: n1\nstate:\n  path: x\n\tbad: 1\n":     4,
		"a: 1\nb: *nope\n":                               2,
		"a:\n  - 1\n  - 2\n  - 3\n  - 4\n  - 5\n c: 3\n": 7,
	} {
		_, err := parse([]byte(yaml), "", noEnv)
		var ce *Errors
		if !errors.As(err, &ce) || ce.List[0].Line != line {
			t.Errorf("%q: %v, want line %d", yaml, err, line)
		}
	}
}

// bigJobFile is a job file just under MaxFileSize: 70,000-odd valid jobs, then tail.
func bigJobFile(tail string) []byte {
	var b strings.Builder
	b.WriteString("node_id: n1\nstate:\n  path: /tmp/s.db\njobs:\n")
	for i := 0; b.Len() < MaxFileSize-len(tail)-64; i++ {
		fmt.Fprintf(&b, "  - name: job%d\n    kind: noop\n    schedule: \"@daily\"\n", i)
	}
	b.WriteString(tail)
	return []byte(b.String())
}

// TestLargestFilesCheckedWithinBounds: a valid file at the size limit, and one with a syntax
// error on its last line, are checked with bounded allocation (the syntax error's line is not
// refined by re-parsing prefixes of a file this big).
func TestLargestFilesCheckedWithinBounds(t *testing.T) {
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"valid":        {bigJobFile(""), ""},
		"syntax error": {bigJobFile("   bad: 1\n"), "did not find expected '-' indicator"},
	} {
		var err error
		alloc := bounded(t, name, func() { _, err = parse(c.data, "", noEnv) })
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Fatalf("%s: %v", name, err)
		}
		if alloc > 512<<20 {
			t.Fatalf("%s: checking a %d-byte file allocated %d MiB", name, len(c.data), alloc>>20)
		}
		t.Logf("%s: %d MiB allocated", name, alloc>>20)
	}
}

// TestByteSizes: sizes parse with units and fractions; NaN, Inf, hex floats, negatives and
// sizes past 1TiB are refused, never wrapped.
func TestByteSizes(t *testing.T) {
	for in, want := range map[string]int64{"16MiB": 16 << 20, "1.5KiB": 1536, ".5MiB": 512 << 10, "1024": 1024, "1TiB": 1 << 40, "5MB": 5e6} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"NaNMiB", "InfGiB", "0x1p3MiB", "-1KiB", "1e3KiB", "MiB", "1.1TiB", "9999999999999999999999", "2000GB", "1099511627777"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
}
