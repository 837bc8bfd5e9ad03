package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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

// BenchmarkScrape10k is /metrics with 10,000 tracked targets, as Prometheus fetches it (gzip).
func BenchmarkScrape10k(b *testing.B) {
	srv := httptest.NewServer(promhttp.HandlerFor(trackerRegistry(10000), promhttp.HandlerOpts{}))
	defer srv.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

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
