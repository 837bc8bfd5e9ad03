package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestNodeRestoreRefusesUnknownFields: a misspelt field of POST /api/admin/nodes/{node}/restore
// ("onyl", "exlude") is refused with 400 naming it; it was ignored, so a request for one
// container restored every container of the node, or the ones it meant to exclude.
func TestNodeRestoreRefusesUnknownFields(t *testing.T) {
	s := New(Options{Gatherer: prometheus.NewRegistry(), AdminToken: func() string { return "tok" }, Log: zerolog.Nop()})
	var got []NodeRestoreRequest
	s.EnableAdmin(AdminOptions{NodeRestore: func(_ context.Context, _ string, o NodeRestoreRequest) (int64, error) {
		got = append(got, o)
		return 1, nil
	}})
	post := func(body string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/api/admin/nodes/n1/restore", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	for _, body := range []string{`{"onyl": ["tenant_a"]}`, `{"only": ["tenant_a"], "exlude": ["tenant_b"]}`, `{"only": ["tenant_a"]} {"only": []}`} {
		if code, text := post(body); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", body, code, text)
		} else if strings.Contains(body, "onyl") && !strings.Contains(text, "onyl") {
			t.Errorf("%s: the error does not name the field: %s", body, text)
		}
	}
	if len(got) != 0 {
		t.Fatalf("restores started from refused bodies: %+v", got)
	}
	for _, body := range []string{``, `{}`, `{"only": ["tenant_a"], "parallel": 2}`} {
		if code, text := post(body); code != http.StatusAccepted {
			t.Errorf("%q: %d %s, want 202", body, code, text)
		}
	}
}
