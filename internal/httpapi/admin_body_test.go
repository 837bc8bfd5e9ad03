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

// TestContainerRestoreBodyIsStrict: POST /api/admin/backups/{containerId}/restore refuses, like
// the node restore, a body with an unknown field (a misspelt "targetNodeId" or "allowBinds")
// or data after the object, naming the problem; it accepts the node restore's allowBinds and
// allowHostAccess and passes them on. Unknown fields were ignored, so a restore meant for another
// node, or with a host access that was never granted, started anyway.
func TestContainerRestoreBodyIsStrict(t *testing.T) {
	s := New(Options{Gatherer: prometheus.NewRegistry(), AdminToken: func() string { return "tok" }, Log: zerolog.Nop()})
	var got []ContainerRestoreRequest
	s.EnableAdmin(AdminOptions{Restore: func(_ context.Context, id string, o ContainerRestoreRequest) (int64, error) {
		if id != "tenant_a" {
			t.Errorf("container %q", id)
		}
		got = append(got, o)
		return 7, nil
	}})
	post := func(body string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/api/admin/backups/tenant_a/restore", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	const key = "nightly/n1/tenant_a/tenant_a_20261130.tar.gz"
	for body, names := range map[string]string{
		`{"remotePath": "` + key + `", "targetNode": "n2"}`:       "targetNode",
		`{"remotePath": "` + key + `", "allowBind": ["/srv"]}`:    "allowBind",
		`{"remotePath": "` + key + `"} {"remotePath": "x"}`:       "data after the JSON object",
		`{"targetNodeId": "n1"}`:                                  "remotePath",
		``:                                                        "remotePath",
		`{"remotePath": "` + key + `", "allowHostAccess": "yes"}`: "allowHostAccess",
		`{"remotePath": "` + key + `", "allowBinds": ["/srv"], "allowHostAcess": 1}`: "allowHostAcess",
	} {
		if code, text := post(body); code != http.StatusBadRequest || !strings.Contains(text, names) {
			t.Errorf("%s: %d %s, want 400 naming %s", body, code, text, names)
		}
	}
	if len(got) != 0 {
		t.Fatalf("restores started from refused bodies: %+v", got)
	}
	code, text := post(`{"remotePath": "` + key + `", "targetNodeId": "n1", "allowBinds": ["/srv/bots", "/opt/data"], "allowHostAccess": true}`)
	if code != http.StatusAccepted || !strings.Contains(text, `"id":7`) {
		t.Fatalf("valid body: %d %s", code, text)
	}
	if len(got) != 1 || got[0].RemotePath != key || got[0].TargetNodeID != "n1" || strings.Join(got[0].AllowBinds, ",") != "/srv/bots,/opt/data" || !got[0].AllowHostAccess {
		t.Fatalf("passed on: %+v", got)
	}
	if code, text := post(`{"remotePath": "` + key + `"}`); code != http.StatusAccepted || len(got) != 2 || got[1].AllowHostAccess || len(got[1].AllowBinds) != 0 {
		t.Fatalf("without the allow fields: %d %s, %+v", code, text, got)
	}
}
