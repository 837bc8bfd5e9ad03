package metrics

import (
	"compress/gzip"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrapeText fetches h's exposition in the text format, gzip-compressed or not.
func scrapeText(t testing.TB, h http.Handler, gz bool) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body io.Reader = rec.Body
	if rec.Header().Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = zr
	} else if gz {
		t.Fatal("gzip asked for, not served")
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q", ct)
	}
	return dropRuntime(string(b))
}

// dropRuntime removes the Go and process collectors' lines (their values differ between two
// registries).
func dropRuntime(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		name := strings.TrimPrefix(strings.TrimPrefix(l, "# HELP "), "# TYPE ")
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// op is a change to the metrics, applied to the cached registry as it happens and replayed on
// a fresh one.
type op func(m *Metrics)

// TestCachedScrapeMatchesFreshRegistry applies random target updates (new targets, changed
// states and label sets, deletions, forgotten jobs, per-target gauges, the clock moving so
// targets turn stale, a new stale threshold) to metrics on a Registry, scraping it between
// changes, and compares each scrape with promhttp's exposition of a fresh prometheus registry
// that replays every change: the cached families must be byte for byte what the library writes.
func TestCachedScrapeMatchesFreshRegistry(t *testing.T) {
	defer func(n int) { pageSize = n }(pageSize)
	pageSize = 3 // many pages, most reused from one scrape to the next
	rng := rand.New(rand.NewSource(20))
	start := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	now := start
	clock := func() time.Time { return now }
	reg := NewRegistry()
	m := New(reg, "test")
	m.Backups.now = clock
	h := Handler(reg)
	var log []op
	do := func(o op) { o(m); log = append(log, o) }
	names := []string{"a", "ab", "b", `q"uote`, `back\slash`, "new\nline", "ünï", "tenant_00001", "tenant_00002", "tenant_10", "tenant_9", ""}
	pick := func(s []string) string { return s[rng.Intn(len(s))] }
	jobs := []string{"nightly", "hot", "", "platform-db-backup"}
	kinds := []string{"container", "sqlite", "snapshot"}
	for step := 0; step < 400; step++ {
		target, job := pick(names), pick(jobs)
		switch rng.Intn(10) {
		case 0, 1, 2, 3:
			s := TargetState{Job: job, Kind: pick(kinds), Node: pick([]string{"n1", "n2"}), LastOK: rng.Intn(4) > 0, SizeBytes: rng.Int63n(1 << 40)}
			if rng.Intn(5) > 0 {
				s.LastSuccess = now.Add(-time.Duration(rng.Intn(48*60)) * time.Minute)
			}
			do(func(m *Metrics) { m.Backups.Set(target, s) })
		case 4:
			do(func(m *Metrics) { m.Backups.DeleteFor(job, target) })
		case 5:
			v := rng.Float64() * 1e9
			do(func(m *Metrics) { m.Throughput.WithLabelValues(job, target).Set(v) })
		case 6:
			phase, v := pick([]string{"copy", "check", "upload"}), float64(rng.Intn(100))/8
			do(func(m *Metrics) { m.BackupPhase.WithLabelValues(job, target, phase).Set(v) })
			do(func(m *Metrics) { m.DrillPhase.WithLabelValues(job, target, phase).Set(v) })
		case 7:
			if rng.Intn(4) == 0 {
				do(func(m *Metrics) { m.ForgetJobSeries(job) })
			} else {
				do(func(m *Metrics) { m.ForgetTarget(job, target) })
			}
		case 8:
			now = now.Add(time.Duration(rng.Intn(6*60)) * time.Minute)
		case 9:
			if rng.Intn(5) == 0 {
				d := time.Duration(1+rng.Intn(48)) * time.Hour
				do(func(m *Metrics) { m.Backups.SetStaleAfter(d) })
			}
		}
		if step%7 != 0 {
			continue
		}
		fresh := prometheus.NewRegistry()
		fm := New(fresh, "test")
		fm.Backups.now = clock
		for _, o := range log {
			o(fm)
		}
		want := scrapeText(t, promhttp.HandlerFor(fresh, promhttp.HandlerOpts{}), false)
		gz := step%3 != 0
		if got := scrapeText(t, h, gz); got != want {
			t.Fatalf("step %d (gzip %v): cached exposition differs from a fresh registry's:\n%s", step, gz, lineDiff(want, got))
		}
		// The Registry's Gather (protobuf, tests) has the same content.
		if got := scrapeText(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), false); got != want {
			t.Fatalf("step %d: Registry.Gather differs from a fresh registry's:\n%s", step, lineDiff(want, got))
		}
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "line %d\n- %s\n+ %s\n", i+1, a, c)
			if b.Len() > 2000 {
				break
			}
		}
	}
	return b.String()
}

// TestHandlerNegotiation: protobuf scrapes and name[] filters are promhttp's; gzip follows
// Accept-Encoding as promhttp chooses it.
func TestHandlerNegotiation(t *testing.T) {
	reg := NewRegistry()
	m := New(reg, "test")
	m.Backups.Set("a", TargetState{Kind: "sqlite", LastOK: true, LastSuccess: time.Now()})
	h := Handler(reg)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, "protobuf") || !strings.Contains(rec.Body.String(), "opsd_backup_stale") {
		t.Fatalf("protobuf scrape: Content-Type %q", ct)
	}
	req = httptest.NewRequest(http.MethodGet, "/metrics?name[]=opsd_backup_targets", nil)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if b := rec.Body.String(); !strings.Contains(b, "opsd_backup_targets{") || strings.Contains(b, "opsd_backup_stale") {
		t.Fatalf("name[] filter not applied:\n%s", b)
	}
	for header, gz := range map[string]bool{"gzip": true, "": false, "identity": false, "gzip;q=0": false, "deflate, gzip, br, zstd": true, "gzip, identity": false, "*": false, "identity;q=0.5, gzip": true} {
		if got := acceptsGzip([]string{header}); got != gz {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", header, got, gz)
		}
	}
}

// TestRegistryRefusesConflicts: a cached family's name is still checked at registration.
func TestRegistryRefusesConflicts(t *testing.T) {
	reg := NewRegistry()
	reg.MustRegister(NewCachedGaugeVec("x_total", "x", "a"))
	if err := reg.Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "x_total", Help: "y"})); err == nil {
		t.Fatal("a plain metric with a cached family's name was registered")
	}
	if err := reg.Register(NewCachedGaugeVec("x_total", "x", "b")); err == nil {
		t.Fatal("two cached families of one name were registered")
	}
}

// TestCRCCombine: the CRC of a text laid out from pages is the CRC of the whole text.
func TestCRCCombine(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		a, b := make([]byte, rng.Intn(5000)), make([]byte, rng.Intn(5000))
		rng.Read(a)
		rng.Read(b)
		want := crc32.ChecksumIEEE(append(append([]byte(nil), a...), b...))
		if got := multmodp(x2nmodp(int64(len(b)), 3), crc32.ChecksumIEEE(a)) ^ crc32.ChecksumIEEE(b); got != want {
			t.Fatalf("lengths %d+%d: combined %08x, want %08x", len(a), len(b), got, want)
		}
	}
}
