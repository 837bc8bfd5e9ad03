package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

func trackerRegistry(n int) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	m := New(reg, "test")
	now := time.Now()
	for i := 0; i < n; i++ {
		m.Backups.Set(fmt.Sprintf("tenant_%05d", i), TargetState{Kind: "container", Node: "n1", LastSuccess: now.Add(-time.Duration(i) * time.Minute), LastOK: true, SizeBytes: int64(i)})
	}
	return reg
}

func TestTrackerStaleness(t *testing.T) {
	tr := NewBackupTracker(24 * time.Hour)
	now := time.Now()
	tr.now = func() time.Time { return now }
	tr.Set("fresh", TargetState{Kind: "sqlite", LastSuccess: now.Add(-time.Hour), LastOK: true})
	tr.Set("old", TargetState{Kind: "sqlite", LastSuccess: now.Add(-25 * time.Hour), LastOK: true})
	tr.Set("failed", TargetState{Kind: "sqlite", LastSuccess: now.Add(-time.Hour), LastOK: false})
	tr.Set("never", TargetState{Kind: "sqlite"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(tr)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, _ := http.Get(srv.URL)
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, want := range []string{`opsd_backup_stale{job_name="",kind="sqlite",node="",target="fresh"} 0`, `opsd_backup_stale{job_name="",kind="sqlite",node="",target="old"} 1`,
		`opsd_backup_stale{job_name="",kind="sqlite",node="",target="failed"} 1`, `opsd_backup_stale{job_name="",kind="sqlite",node="",target="never"} 1`, `opsd_backup_targets{stale="true"} 3`} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(body, `opsd_backup_last_success_timestamp_seconds{job_name="",kind="sqlite",node="",target="never"}`) {
		t.Error("a target never backed up has a last-success timestamp")
	}
}

// scrapeState fills m as a nightly export of n containers leaves it: each target tracked, with
// its throughput and three phase durations (perTarget false: the tracker only).
func scrapeState(m *Metrics, n int, perTarget bool) {
	now := time.Now()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("tenant_%05d", i)
		m.Backups.Set(name, TargetState{Job: "containers-nightly", Kind: "container", Node: "n1", LastSuccess: now.Add(-time.Duration(i) * time.Second), LastOK: true, SizeBytes: int64(i) << 20})
		if perTarget {
			m.Throughput.WithLabelValues("containers-nightly", name).Set(float64(i) * 1234.5)
			for _, p := range []string{"copy", "check", "upload"} {
				m.BackupPhase.WithLabelValues("containers-nightly", name, p).Set(float64(i%600) / 10)
			}
		}
	}
}

// BenchmarkScrape is /metrics as Prometheus fetches it (text, gzip), served by Handler from a
// Registry, per scrape: "tracker" has the tracker's families only (the earlier benchmark's
// state), "nightly" adds each target's throughput and phases, and "changing" re-records 100
// targets between scrapes (a backup running).
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		for _, c := range []struct {
			name                string
			perTarget, changing bool
		}{{"tracker", false, false}, {"nightly", true, false}, {"changing", true, true}} {
			b.Run(fmt.Sprintf("%s/targets=%d", c.name, n), func(b *testing.B) {
				reg := NewRegistry()
				m := New(reg, "bench")
				scrapeState(m, n, c.perTarget)
				h := Handler(reg)
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.Header.Set("Accept-Encoding", "gzip")
				var size int
				h.ServeHTTP(&countWriter{h: http.Header{}}, req) // the first scrape compresses every page
				b.ReportAllocs()
				cpu0 := cpuTime()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if c.changing {
						b.StopTimer()
						now := time.Now()
						for j := 0; j < 100; j++ {
							k := (i*100 + j) % n
							m.Backups.Set(fmt.Sprintf("tenant_%05d", k), TargetState{Job: "containers-nightly", Kind: "container", Node: "n1", LastSuccess: now, LastOK: true, SizeBytes: int64(k)})
						}
						b.StartTimer()
					}
					w := &countWriter{h: http.Header{}}
					h.ServeHTTP(w, req)
					size = w.n
				}
				// CPU time (the process's, GC included) is what a busy machine does not distort.
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
				b.ReportMetric(float64(size)/1024, "KiB/scrape")
			})
		}
	}
}

// BenchmarkScrapePromhttp is the same scrape through promhttp over a plain registry: what
// /metrics cost before the cache.
func BenchmarkScrapePromhttp(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("nightly/targets=%d", n), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			scrapeState(New(reg, "bench"), n, true)
			h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.ServeHTTP(&countWriter{h: http.Header{}}, req)
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// countWriter is a ResponseWriter that counts the body's bytes.
type countWriter struct {
	h http.Header
	n int
}

func (w *countWriter) Header() http.Header { return w.h }
func (w *countWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
func (w *countWriter) WriteHeader(int) {}

// TestTrackerCacheFollowsTheClock: cached metrics still turn stale when a target ages past the
// threshold, and changes show at once.
func TestTrackerCacheFollowsTheClock(t *testing.T) {
	tr := NewBackupTracker(time.Hour)
	now := time.Now()
	tr.now = func() time.Time { return now }
	tr.Set("a", TargetState{Kind: "sqlite", LastSuccess: now, LastOK: true})
	stale := func() float64 {
		ch := make(chan prometheus.Metric, 10)
		tr.Collect(ch)
		close(ch)
		for m := range ch {
			if strings.Contains(m.Desc().String(), "opsd_backup_stale") {
				var d dto.Metric
				m.Write(&d)
				return d.GetGauge().GetValue()
			}
		}
		return -1
	}
	if stale() != 0 {
		t.Fatal("fresh target stale")
	}
	now = now.Add(59 * time.Minute)
	if stale() != 0 {
		t.Fatal("stale before the threshold")
	}
	now = now.Add(2 * time.Minute)
	if stale() != 1 {
		t.Fatal("the cache hid the target going stale")
	}
	tr.Set("a", TargetState{Kind: "sqlite", LastSuccess: now, LastOK: true})
	if stale() != 0 {
		t.Fatal("the cache hid a new success")
	}
}
