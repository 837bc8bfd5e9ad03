package jobs

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A ping asks the server to close the connection: nothing stays open between pings minutes
// apart (an idle kept-alive connection costs a socket and a wake-up when it is closed).
func TestHTTPPingLeavesNoConnectionOpen(t *testing.T) {
	var closeAsked []bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		closeAsked = append(closeAsked, r.Close)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	p := &HTTPPing{JobName: "heartbeat", URL: srv.URL, Method: http.MethodGet}
	for range 2 {
		res, err := p.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res.Summary != "status 200" {
			t.Fatalf("summary %q", res.Summary)
		}
	}
	if len(closeAsked) != 2 || !closeAsked[0] || !closeAsked[1] {
		t.Fatalf("Connection: close asked per request: %v, want [true true]", closeAsked)
	}
}
