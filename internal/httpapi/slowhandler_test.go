package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestSlowHandlerStillAnswers: a handler that waits on something slow (the object store's
// listing behind GET .../snapshots hangs: S3's request_timeout is 5 minutes, the write timeout 2)
// answers with its error before the write timeout cuts the response. Before, its context lasted
// past the write timeout: the handler's 502 was written to a dead deadline and the client got
// no answer at all (an empty reply), nothing saying what failed.
func TestSlowHandlerStillAnswers(t *testing.T) {
	s := New(Options{Gatherer: prometheus.NewRegistry(), AdminToken: func() string { return "tok" }, Log: zerolog.Nop()})
	s.writeTimeout = 2 * time.Second
	s.EnableAdmin(AdminOptions{Snapshots: func(ctx context.Context, _ string) ([]Snapshot, error) {
		<-ctx.Done() // a store that does not answer: the listing ends with its context
		return nil, ctx.Err()
	}})
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	req, _ := http.NewRequest("GET", "http://"+addr.String()+"/api/admin/backups/tenant_a/snapshots", nil)
	req.Header.Set("Authorization", "Bearer tok")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // only keeps a failing test from hanging
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("no answer from a handler whose store hung: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusBadGateway || !strings.Contains(body["error"], "object store") {
		t.Fatalf("answer %d %v (%v), want 502 naming the object store", resp.StatusCode, body, err)
	}
}
