// Package telemetry sets up opsd's logging (zerolog: JSON, or console on a terminal) and Sentry,
// both behind a Redactor so secrets from the config never leave the process.
package telemetry

import (
	"bytes"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// Redacted replaces a secret wherever it appears.
const Redacted = "[redacted]"

// Redactor removes known secret values from text. The set is replaced on config reload.
type Redactor struct {
	secrets atomic.Pointer[[]string]
}

// NewRedactor returns a redactor for the given secrets.
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Set(secrets)
	return r
}

// Set replaces the secrets. Values shorter than 4 bytes are ignored (they would mangle text).
func (r *Redactor) Set(secrets []string) {
	var s []string
	for _, v := range secrets {
		if len(v) >= 4 {
			s = append(s, v)
		}
	}
	// Longest first, so a secret containing another is replaced whole.
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	r.secrets.Store(&s)
}

// Redact returns s with every secret replaced.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	for _, v := range *r.secrets.Load() {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Redacted)
		}
	}
	return s
}

func (r *Redactor) redactBytes(p []byte) []byte {
	for _, v := range *r.secrets.Load() {
		if bytes.Contains(p, []byte(v)) {
			p = bytes.ReplaceAll(p, []byte(v), []byte(Redacted))
		}
	}
	return p
}

// redactWriter redacts every log line before it is written: the last line of defence, whatever
// a log call or a wrapped error happened to include.
type redactWriter struct {
	mu sync.Mutex
	w  io.Writer
	r  *Redactor
}

func (w *redactWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.w.Write(w.r.redactBytes(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// NewLogger returns a logger writing to w: JSON, or a console format when format is "console",
// or "auto" and w is a terminal. Every line passes through the redactor.
func NewLogger(w io.Writer, level, format string, r *Redactor) zerolog.Logger {
	if format == "" || format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	}
	var out io.Writer = &redactWriter{w: w, r: r}
	if format == "console" {
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger()
}
