// Package httpapi serves opsd's HTTP endpoints: /health and /health/ready (the platform's shapes),
// /metrics, the jobs API, the admin API and the reload endpoint. Admin routes need
// `Authorization: Bearer <token>`, compared in constant time.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// Sentinel errors the backends return; the API maps them to status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// Options wire the server to the daemon. Function fields let the daemon swap what they return on
// config reload without restarting the server.
type Options struct {
	Service    string
	State      *state.Store
	StaleAfter func() time.Duration
	// Gatherer is served on /metrics; a *metrics.Registry is served from its cached families.
	Gatherer   prometheus.Gatherer
	AdminToken func() string
	Ready      func() bool
	Log        zerolog.Logger
	// Problems are reasons to be degraded besides stale targets (an unreachable dependency a
	// job needs, a run that could not be recorded); nil means none.
	Problems *health.Problems

	// ListJobs returns the jobs (any JSON-marshalable slice); with full false, error texts are
	// to be shortened with PublicError (the caller is not an admin).
	ListJobs func(ctx context.Context, full bool) any
	// Redact removes secrets from text served by the API (nil: none known).
	Redact func(string) string
	// TriggerJob starts a run now; ErrNotFound for an unknown job, ErrConflict when running.
	TriggerJob func(name string) error
	// JobExists reports whether a job of that name is configured (nil: every name is).
	JobExists func(name string) bool
	// Reload re-reads the config; changed is false when the content was unchanged.
	Reload func(ctx context.Context) (changed bool, err error)
}

// Server is the HTTP server.
type Server struct {
	opts Options
	mux  *http.ServeMux
	srv  *http.Server
	ln   net.Listener

	// Connection bounds (tests shorten them): a client that never finishes its headers, trickles
	// its body, or sits idle between requests is disconnected instead of holding a connection
	// and its goroutine forever. A response must be written within the write timeout of its
	// request; a request's context ends a tenth of it earlier (see bounded), so a handler
	// waiting on something slow still answers with its error.
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	idleTimeout       time.Duration
	writeTimeout      time.Duration
}

// Default connection bounds of the HTTP server. The request bodies served here are small JSON
// objects (at most 64 KiB), so a minute to send headers and body is generous. Go clears the read
// deadline once the body is read, so a slow handler's context is not cancelled by it. Handlers
// answer at once (runs and restores are started, not waited for) or within their context, which
// ends before the write timeout (a store listing that hangs answers 502), so two minutes from
// the request to the end of its response only cut a client that stops reading a large response
// (a /metrics of many targets), which would otherwise hold its connection and goroutine forever.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = time.Minute
	defaultIdleTimeout       = 2 * time.Minute
	defaultWriteTimeout      = 2 * time.Minute
)

// New builds the server and its routes.
func New(o Options) *Server {
	s := &Server{opts: o, mux: http.NewServeMux(),
		readHeaderTimeout: defaultReadHeaderTimeout, readTimeout: defaultReadTimeout, idleTimeout: defaultIdleTimeout,
		writeTimeout: defaultWriteTimeout}
	s.mux.HandleFunc("GET /health", s.health)
	s.mux.HandleFunc("GET /health/ready", s.ready)
	s.mux.Handle("GET /metrics", metrics.Handler(o.Gatherer))
	s.mux.HandleFunc("GET /api/jobs", s.listJobs)
	s.mux.HandleFunc("GET /api/jobs/{name}/runs", s.jobRuns)
	s.mux.HandleFunc("POST /api/jobs/{name}/run", s.admin(s.runJob))
	s.mux.HandleFunc("POST /-/reload", s.admin(s.reload))
	return s
}

// Handle adds a route (the admin API registers its own); admin routes are wrapped by Admin.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Admin wraps a handler with bearer-token authentication.
func (s *Server) Admin(h http.HandlerFunc) http.HandlerFunc { return s.admin(h) }

// Handler returns the root handler (for tests).
func (s *Server) Handler() http.Handler { return s.mux }

// Listen binds the address synchronously (":0" picks a free port) and serves in the background.
func (s *Server) Listen(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.bounded(s.mux), ReadHeaderTimeout: s.readHeaderTimeout, ReadTimeout: s.readTimeout, IdleTimeout: s.idleTimeout,
		WriteTimeout: s.writeTimeout}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Log.Error().Err(err).Msg("http server stopped")
		}
	}()
	return ln.Addr(), nil
}

// bounded ends each request's context a tenth of the write timeout before it: a handler
// waiting on something slow (a store listing, bounded only by S3's 5-minute request timeout)
// then answers with its error while the response can still be written, instead of the client
// getting no answer at all.
func (s *Server) bounded(h http.Handler) http.Handler {
	if s.writeTimeout <= 0 {
		return h
	}
	limit := s.writeTimeout - s.writeTimeout/10
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), limit)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Shutdown stops accepting requests and waits (bounded by ctx) for those in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// WriteJSON writes v as JSON with the status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// WriteError writes {"error": msg}.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, map[string]string{"error": msg})
}

func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		want := s.opts.AdminToken()
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if auth == "" || !ok || token == "" {
			WriteError(w, http.StatusUnauthorized, "Authentication required")
			return
		}
		if want == "" || subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
			WriteError(w, http.StatusUnauthorized, "Invalid or expired token")
			return
		}
		h(w, r)
	}
}

// Health is the /health body (the platform's shape).
type Health struct {
	Status  string        `json:"status"`
	Service string        `json:"service"`
	Backups HealthBackups `json:"backups"`
	// Problems is present only when something besides stale targets makes opsd degraded.
	Problems []health.Problem `json:"problems,omitempty"`
}

// HealthBackups counts tracked and stale targets.
type HealthBackups struct {
	StaleCount   int `json:"staleCount"`
	TotalTracked int `json:"totalTracked"`
}

// health always answers 200 (uptime monitors read the body): "degraded" iff any target is stale
// or a problem is set (a dependency a job needs is unreachable, a run could not be recorded).
// When the state cannot be read it says "degraded" with the error, never "ok".
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	h := Health{Status: "ok", Service: s.opts.Service}
	all, err := s.opts.State.ListBackups(r.Context(), time.Now(), s.opts.StaleAfter())
	if err != nil {
		s.opts.Log.Error().Err(err).Msg("health: cannot read backup status")
		WriteJSON(w, http.StatusOK, map[string]any{"status": "degraded", "service": s.opts.Service, "error": "backup status unavailable", "problems": s.opts.Problems.List()})
		return
	}
	for _, b := range all {
		h.Backups.TotalTracked++
		if b.IsStale {
			h.Backups.StaleCount++
		}
	}
	h.Problems = s.opts.Problems.List()
	if h.Backups.StaleCount > 0 || len(h.Problems) > 0 {
		h.Status = "degraded"
	}
	WriteJSON(w, http.StatusOK, h)
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if !s.opts.Ready() || s.opts.State.Ping(r.Context()) != nil {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "service": s.opts.Service})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready", "service": s.opts.Service})
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]any{"jobs": s.opts.ListJobs(r.Context(), s.isAdmin(r))})
}

// jobRuns serves a job's newest runs. Without the admin token an error is its first line,
// shortened and redacted (no panic stacks, no internal detail); with it, the whole text.
func (s *Server) jobRuns(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	runs, err := s.opts.State.Runs(r.Context(), name, 50)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, "cannot read job runs")
		return
	}
	// A job no longer configured keeps its history; a name never seen is unknown.
	if len(runs) == 0 && s.opts.JobExists != nil && !s.opts.JobExists(name) {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown job %q", name))
		return
	}
	if runs == nil {
		runs = []state.Run{}
	}
	full := s.isAdmin(r)
	for i := range runs {
		if full {
			runs[i].Error = s.redact(runs[i].Error)
		} else {
			runs[i].Error = s.PublicError(runs[i].Error)
		}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"job": r.PathValue("name"), "runs": runs})
}

// isAdmin reports whether the request carries the admin token.
func (s *Server) isAdmin(r *http.Request) bool {
	want := s.opts.AdminToken()
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && want != "" && token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}

func (s *Server) redact(text string) string {
	if s.opts.Redact == nil {
		return text
	}
	return s.opts.Redact(text)
}

// PublicError is the short form of an error text served without authentication: its first line,
// redacted, at most 160 characters.
func (s *Server) PublicError(text string) string {
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	text = s.redact(strings.TrimSpace(text))
	if r := []rune(text); len(r) > 160 {
		text = string(r[:159]) + "…"
	}
	return text
}

func (s *Server) runJob(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	err := s.opts.TriggerJob(name)
	switch {
	case errors.Is(err, ErrNotFound):
		WriteError(w, http.StatusNotFound, fmt.Sprintf("unknown job %q", name))
	case errors.Is(err, ErrConflict):
		WriteError(w, http.StatusConflict, fmt.Sprintf("job %q is already running (here or, for a platform job, on another node)", name))
	case err != nil:
		WriteError(w, http.StatusInternalServerError, err.Error())
	default:
		WriteJSON(w, http.StatusAccepted, map[string]string{"job": name, "status": "started"})
	}
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	changed, err := s.opts.Reload(r.Context())
	if err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	status := "unchanged"
	if changed {
		status = "reloaded"
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": status})
}
