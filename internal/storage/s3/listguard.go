package s3

import (
	"context"
	"fmt"
	"net/http"
	"sync"
)

// listGuard follows one List: the continuation tokens whose page the server already answered.
// A server that hands back a token it gave before (IsTruncated always true, the same token)
// would be paged forever, the same keys again and again, or none at all.
type listGuard struct {
	mu       sync.Mutex
	answered map[string]bool
}

type listGuardKey struct{}

// withListGuard returns a context whose page requests the transport checks for a token that
// was already answered.
func withListGuard(ctx context.Context) context.Context {
	return context.WithValue(ctx, listGuardKey{}, &listGuard{answered: map[string]bool{}})
}

// guardedTransport refuses a listing's page request whose continuation token was answered
// before in the same listing. A retry after a failed attempt sends the token again: only an
// answered (200) page counts.
type guardedTransport struct{ http.RoundTripper }

func (t guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	g, _ := req.Context().Value(listGuardKey{}).(*listGuard)
	tok := req.URL.Query().Get("continuation-token")
	if g == nil || tok == "" {
		return t.RoundTripper.RoundTrip(req)
	}
	g.mu.Lock()
	again := g.answered[tok]
	g.mu.Unlock()
	if again {
		if len(tok) > 64 {
			tok = tok[:64] + "..."
		}
		return nil, fmt.Errorf("the server handed back continuation token %q it already answered: its listing does not advance", tok)
	}
	resp, err := t.RoundTripper.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusOK {
		g.mu.Lock()
		g.answered[tok] = true
		g.mu.Unlock()
	}
	return resp, err
}
