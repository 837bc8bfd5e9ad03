// Package alerts evaluates alert rules on an interval, edge-triggered (fire once on the
// transition, resolve once on the way back) with an optional `for:` duration, keeps their state
// in opsd's state database so a restart neither re-fires nor forgets, and hands transitions to
// notifiers (Sentry, PagerDuty, a webhook) without ever blocking evaluation.
package alerts

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/schedule"
	"github.com/wopr-network/opsd/internal/state"
)

// Eval is one evaluation of a rule.
type Eval struct {
	Firing    bool
	Value     float64
	Threshold float64
	Message   string
}

// Rule is an alert condition.
type Rule interface {
	Name() string
	Evaluate(ctx context.Context, now time.Time) (Eval, error)
}

// Spec is a rule with its delivery settings.
type Spec struct {
	Rule Rule
	// For: the condition must hold this long before the alert fires.
	For time.Duration
	// Severity: critical or error (PagerDuty); default critical for sev1-* names, else error.
	Severity string
	// PerNode: the condition is about this node (host resources, its containers, its own jobs),
	// so each node's firing is its own incident: notifications carry the node in their key.
	PerNode bool
}

// Event is a firing or a resolution, handed to notifiers.
type Event struct {
	Alert     string    `json:"alert"`
	Firing    bool      `json:"firing"`
	Message   string    `json:"message"`
	Severity  string    `json:"severity"`
	Value     float64   `json:"value"`
	Threshold float64   `json:"threshold"`
	At        time.Time `json:"at"`
	Node      string    `json:"node"`
	// PerNode: the alert is about Node (the receiver's dedup key includes it).
	PerNode bool `json:"perNode,omitempty"`
}

// key is the alert's identity at the receivers: "<alert>" for platform-wide alerts,
// "<alert>:<node>" for per-node ones.
func (e Event) key() string {
	if e.PerNode && e.Node != "" {
		return e.Alert + ":" + e.Node
	}
	return e.Alert
}

// Status is an alert's current state, for the API.
type Status struct {
	Name      string     `json:"name"`
	Firing    bool       `json:"firing"`
	Message   string     `json:"message"`
	Value     float64    `json:"value"`
	Threshold float64    `json:"threshold"`
	Since     *time.Time `json:"since,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// Evaluator runs the rules.
type Evaluator struct {
	State    *state.Store
	Metrics  *metrics.Metrics
	Log      zerolog.Logger
	Notify   *Dispatcher
	Node     string
	Interval time.Duration
	// OnEvaluate, when set, is called at every evaluation (before the rules) with whether the
	// state database may have changed since the last one (a commit by this process or another):
	// the daemon's other periodic work shares this wake-up instead of adding its own.
	OnEvaluate func(ctx context.Context, now time.Time, stateChanged bool)

	mu     sync.Mutex
	specs  []Spec
	status map[string]Status
	kick   chan struct{}
	force  bool // the rules changed: evaluate every one at the next evaluation

	evalMu sync.Mutex // one evaluation at a time (Run's, and callers of EvaluateOnce)
	// What lets an evaluation skip the rules whose inputs cannot have changed (see gated); only
	// EvaluateOnce touches them, under evalMu.
	stored    map[string]state.AlertState // the alerts table as last read or written
	savedAt   map[string]time.Time        // when each alert's row was last written
	token     []byte                      // the state database's change token after the last evaluation
	tokenSeen bool                        // token is valid: no commit of ours came after it
}

// ruleTimeout bounds one rule's evaluation: a data source that does not answer (a database
// down or locked by a migration) fails its rule instead of holding every other rule back.
var ruleTimeout = 30 * time.Second

// resaveEvery bounds how long an alert's stored value and message may lag (they are written
// with every change of its state, and this often besides).
const resaveEvery = time.Hour

// NewEvaluator returns an evaluator.
func NewEvaluator(st *state.Store, m *metrics.Metrics, log zerolog.Logger, d *Dispatcher, node string, interval time.Duration) *Evaluator {
	if interval <= 0 {
		interval = time.Minute
	}
	return &Evaluator{State: st, Metrics: m, Log: log, Notify: d, Node: node, Interval: interval, status: map[string]Status{}, kick: make(chan struct{}, 1)}
}

// SetRules replaces the rules (config reload); state of rules that remain is kept.
func (e *Evaluator) SetRules(specs []Spec) {
	e.mu.Lock()
	defer e.mu.Unlock()
	keep := map[string]bool{}
	for _, s := range specs {
		keep[s.Rule.Name()] = true
	}
	for name := range e.status {
		if !keep[name] {
			delete(e.status, name)
			e.Metrics.AlertFiring.DeleteLabelValues(name)
			e.Metrics.AlertValue.DeleteLabelValues(name)
			e.Metrics.AlertThreshold.DeleteLabelValues(name)
		}
	}
	e.specs = specs
	e.force = true
}

// Kick asks for an evaluation now (event-driven rules call it).
func (e *Evaluator) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Run evaluates now, on Kick, and at every multiple of the interval (counted from the Unix epoch:
// schedule.UntilAligned, so the config file's look of the same period shares the wake-up) until
// ctx ends.
func (e *Evaluator) Run(ctx context.Context) {
	t := time.NewTimer(schedule.UntilAligned(time.Now(), e.Interval))
	defer t.Stop()
	e.EvaluateOnce(ctx, time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.EvaluateOnce(ctx, time.Now())
			t.Reset(schedule.UntilAligned(time.Now(), e.Interval))
		case <-e.kick:
			e.EvaluateOnce(ctx, time.Now())
		}
	}
}

// Statuses returns every rule's current status, by name.
func (e *Evaluator) Statuses() []Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Status, 0, len(e.specs))
	for _, s := range e.specs {
		st, ok := e.status[s.Rule.Name()]
		if !ok {
			st = Status{Name: s.Rule.Name()}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func severity(s Spec) string {
	if s.Severity != "" {
		return s.Severity
	}
	return defaultSeverity(s.Rule.Name())
}

// defaultSeverity is an alert's severity when its rule sets none: critical for sev1-* names.
func defaultSeverity(name string) string {
	if strings.HasPrefix(name, "sev1-") {
		return "critical"
	}
	return "error"
}

// EvaluateOnce evaluates the rules at now and notifies transitions. A rule over opsd's own
// records (job_failing, drill_failed, offsite_missing, stale_backups) is skipped while nothing
// was committed to the state database since the last evaluation, it is not pending, its last
// evaluation succeeded and (stale_backups) no tracked target has turned stale since: its value
// cannot have changed. Rules over the outside world (system, docker, gateway) always run.
func (e *Evaluator) EvaluateOnce(ctx context.Context, now time.Time) {
	e.evalMu.Lock()
	defer e.evalMu.Unlock()
	e.mu.Lock()
	specs := append([]Spec(nil), e.specs...)
	force := e.force
	e.force = false
	e.mu.Unlock()
	tok := stateToken(e.State)
	changed := force || tok == nil || !e.tokenSeen || !bytes.Equal(tok, e.token)
	if e.OnEvaluate != nil {
		e.OnEvaluate(ctx, now, changed)
	}
	if changed || e.stored == nil {
		stored, err := e.State.Alerts(ctx)
		if err != nil {
			e.Log.Error().Err(err).Msg("cannot read alert state")
			return
		}
		e.stored = stored
	}
	if e.savedAt == nil {
		e.savedAt = map[string]time.Time{}
	}
	stored := e.stored
	wrote := e.retireRemoved(ctx, now, specs, stored)
	for _, s := range specs {
		name := s.Rule.Name()
		if !changed && e.unchanged(s, now) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, ruleTimeout)
		ev, err := s.Rule.Evaluate(rctx, now)
		cancel()
		st := stored[name]
		st.Name = name
		// Whether the incident its firing opened is keyed by node: as the rule said then (a
		// reload may have changed its kind since), or says now for a row saved before it was kept.
		firedPerNode := s.PerNode
		if st.PerNode != nil {
			firedPerNode = *st.PerNode
		}
		perNode := s.PerNode
		st.PerNode = &perNode // kept with the state: the incident's key once the rule is gone
		status := Status{Name: name, Firing: st.Firing, Message: st.Message, Value: st.Value, Threshold: st.Threshold, Since: st.FiredAt}
		if err != nil {
			// An evaluation error changes nothing: a broken data source neither fires nor resolves.
			status.Error = err.Error()
			e.Log.Warn().Str("alert", name).Err(err).Msg("alert evaluation failed")
			e.setStatus(status)
			continue
		}
		st.Value, st.Threshold, st.UpdatedAt = ev.Value, ev.Threshold, now
		e.Metrics.AlertValue.WithLabelValues(name).Set(ev.Value)
		e.Metrics.AlertThreshold.WithLabelValues(name).Set(ev.Threshold)
		// The node this alert's incident is keyed by at the receivers: the one its firing was
		// announced under (node_id may have changed since, with a restart).
		firedNode := st.Node
		if firedNode == "" {
			firedNode = e.Node
		}
		var transitions []Event
		event := func(firing bool, msg, node string, perNode bool) {
			transitions = append(transitions, Event{Alert: name, Firing: firing, Message: msg, Severity: severity(s), Value: ev.Value,
				Threshold: ev.Threshold, At: now, Node: node, PerNode: perNode})
		}
		fired := Event{Alert: name, Node: firedNode, PerNode: firedPerNode} // the incident its firing opened
		current := Event{Alert: name, Node: e.Node, PerNode: s.PerNode}     // the incident it fires as now
		switch {
		case ev.Firing && !st.Firing:
			if st.PendingSince == nil {
				t := now
				st.PendingSince = &t
			}
			if now.Sub(*st.PendingSince) >= s.For {
				t := now
				st.Firing, st.FiredAt, st.Message, st.PendingSince, st.Node = true, &t, ev.Message, nil, e.Node
				event(true, ev.Message, e.Node, s.PerNode)
			}
		case ev.Firing && st.Firing:
			st.Message = ev.Message
			if fired.key() != current.key() {
				// node_id changed while this node's alert fired, or a reload made the rule's
				// scope another (its kind changed, e.g. sql to system): the incident its firing
				// opened is resolved and the firing continues as the new key's incident (else the
				// old one stays open forever: nothing would ever resolve it).
				why := fmt.Sprintf("node_id changed from %s to %s: the alert continues as %s's incident", firedNode, e.Node, e.Node)
				if firedPerNode != s.PerNode {
					why = "the rule's scope changed in the config (" + scopeName(firedPerNode) + " to " + scopeName(s.PerNode) + "): the alert continues as " + current.key()
				}
				event(false, why, firedNode, firedPerNode)
				event(true, ev.Message, e.Node, s.PerNode)
			}
			st.Node = e.Node
		case !ev.Firing && st.Firing:
			t := now
			st.Firing, st.ResolvedAt, st.PendingSince = false, &t, nil
			event(false, ev.Message, firedNode, firedPerNode) // resolves the incident its firing opened
			st.Message = ev.Message
		default:
			st.PendingSince = nil
			st.Message = ev.Message
		}
		if prev, ok := stored[name]; len(transitions) > 0 || !ok || !sameState(prev, st) || now.Sub(e.savedAt[name]) >= resaveEvery {
			wrote = true
			if err := e.save(ctx, st, transitions); err != nil {
				// Nothing was stored: the next evaluation sees the same transition and tries again.
				e.Log.Error().Err(err).Str("alert", name).Msg("cannot save alert state")
				status.Error = err.Error()
				e.setStatus(status)
				delete(stored, name) // read it again
				e.stored = nil
				continue
			}
			if stored != nil {
				stored[name] = st
			}
			e.savedAt[name] = now
		}
		fire := 0.0
		if st.Firing {
			fire = 1
		}
		e.Metrics.AlertFiring.WithLabelValues(name).Set(fire)
		e.setStatus(Status{Name: name, Firing: st.Firing, Message: st.Message, Value: ev.Value, Threshold: ev.Threshold, Since: st.FiredAt})
		for _, transition := range transitions {
			verb := "alert resolved"
			if transition.Firing {
				verb = "alert firing"
			}
			e.Log.Warn().Str("alert", name).Str("alert_message", transition.Message).Msg(verb) // "message" is the log line's own key
		}
		if len(transitions) > 0 && e.Notify != nil {
			e.Notify.Wake()
		}
	}
	// A commit of ours hides whether another one came during the evaluation: look again.
	e.token, e.tokenSeen = tok, tok != nil && !wrote
}

// unchanged reports whether a rule's value cannot have changed since its last evaluation, with
// nothing committed to the state database since (see EvaluateOnce).
func (e *Evaluator) unchanged(s Spec, now time.Time) bool {
	r, ok := s.Rule.(*StateRule)
	if !ok {
		return false
	}
	name := r.Name()
	if st, ok := e.stored[name]; !ok || st.PendingSince != nil {
		return false
	}
	e.mu.Lock()
	status, seen := e.status[name]
	e.mu.Unlock()
	if !seen || status.Error != "" {
		return false
	}
	switch r.Kind {
	case "job_failing", "drill_failed", "offsite_missing":
		return true
	case "stale_backups":
		next := e.Metrics.Backups.NextStale()
		return next.IsZero() || now.Before(next)
	}
	return false
}

// sameState reports whether two stored states agree on everything but the value, message and
// time of evaluation.
func sameState(a, b state.AlertState) bool {
	eq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	eqBool := func(x, y *bool) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.Firing == b.Firing && a.Node == b.Node && eqBool(a.PerNode, b.PerNode) && a.Threshold == b.Threshold &&
		eq(a.PendingSince, b.PendingSince) && eq(a.FiredAt, b.FiredAt) && eq(a.ResolvedAt, b.ResolvedAt)
}

// scopeName names an alert's scope in messages.
func scopeName(perNode bool) string {
	if perNode {
		return "per node"
	}
	return "platform-wide"
}

// retireRemoved forgets every stored alert whose rule is no longer configured (a reload or a
// restart without it) and reports whether it wrote to the state database. Nothing evaluates
// such an alert again, so one still firing would stay open at the receivers forever: its
// resolution ("the alert rule was removed from the config") is queued in the same transaction
// that deletes its state row, under the key its firing was announced with (a per-node alert's
// node is the one stored with it). A removed rule that was not firing only loses its row.
func (e *Evaluator) retireRemoved(ctx context.Context, now time.Time, specs []Spec, stored map[string]state.AlertState) bool {
	configured := make(map[string]bool, len(specs))
	for _, s := range specs {
		configured[s.Rule.Name()] = true
	}
	wrote := false
	for name, st := range stored {
		if configured[name] {
			continue
		}
		wrote = true
		var err error
		var events []Event
		if st.Firing {
			events = e.removedEvents(ctx, now, st)
		}
		if len(events) > 0 && e.Notify != nil {
			err = e.Notify.EnqueueRemoval(ctx, name, events...)
		} else {
			err = e.State.DeleteAlert(ctx, name)
		}
		if err != nil {
			// Kept: the next evaluation tries again.
			e.Log.Error().Err(err).Str("alert", name).Msg("cannot retire the state of an alert removed from the config")
			continue
		}
		delete(stored, name)
		delete(e.savedAt, name)
		e.Metrics.AlertFiring.DeleteLabelValues(name)
		e.Metrics.AlertValue.DeleteLabelValues(name)
		e.Metrics.AlertThreshold.DeleteLabelValues(name)
		if len(events) == 0 {
			e.Log.Info().Str("alert", name).Msg("alert rule removed from the config: its state is forgotten")
			continue
		}
		for _, ev := range events {
			e.Log.Warn().Str("alert", name).Str("node", ev.Node).Str("alert_message", ev.Message).Msg("alert resolved")
		}
		if e.Notify != nil {
			e.Notify.Wake()
		}
	}
	return wrote
}

// removedEvents returns the resolution of a firing alert whose rule was removed from the
// config, keyed as its firing was: under the node stored with it, per node when its rule was.
// For a row an older opsd saved (its scope unknown) the scope is its newest trigger's in the
// outbox, or, when the outbox no longer has one, both keys are resolved (a resolve of a key
// with no open incident changes nothing at PagerDuty).
func (e *Evaluator) removedEvents(ctx context.Context, now time.Time, st state.AlertState) []Event {
	node := st.Node
	if node == "" {
		node = e.Node
	}
	ev := Event{Alert: st.Name, Message: "the alert rule was removed from the config (it was firing: " + st.Message + ")",
		Severity: defaultSeverity(st.Name), Value: st.Value, Threshold: st.Threshold, At: now, Node: node}
	switch {
	case st.PerNode != nil:
		ev.PerNode = *st.PerNode
	case node == "":
	default:
		it, err := e.State.LastTrigger(ctx, st.Name, st.Name+":"+node)
		if err == nil {
			ev.PerNode = it.Alert != st.Name
			break
		}
		perNode := ev
		perNode.PerNode = true
		return []Event{ev, perNode}
	}
	return []Event{ev}
}

// stateToken identifies the state database's committed content: the WAL index header (its
// change counter moves with every transaction) and the database file's size and time. Nil when
// it cannot be read (every evaluation is then a full one).
func stateToken(st *state.Store) []byte {
	path := st.Path()
	if path == "" {
		return nil
	}
	hdr, err := readSmall(path+"-shm", 48)
	if err != nil || len(hdr) != 48 {
		return nil
	}
	tok := append(make([]byte, 0, 80), hdr...)
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return fmt.Appendf(tok, "%d/%d", fi.Size(), fi.ModTime().UnixNano())
}

// save stores the alert's state and, on transitions, their notifications in the outbox, in one
// transaction.
func (e *Evaluator) save(ctx context.Context, st state.AlertState, transitions []Event) error {
	if len(transitions) == 0 || e.Notify == nil {
		return e.State.SaveAlert(ctx, st)
	}
	return e.Notify.Enqueue(ctx, st, transitions...)
}

func (e *Evaluator) setStatus(s Status) {
	e.mu.Lock()
	e.status[s.Name] = s
	e.mu.Unlock()
}

// compare applies a comparator.
func compare(op string, v, threshold float64) bool {
	switch op {
	case ">=":
		return v >= threshold
	case "<":
		return v < threshold
	case "<=":
		return v <= threshold
	case "==":
		return v == threshold
	}
	return v > threshold
}

func pct(v float64) string { return fmt.Sprintf("%.1f%%", v*100) }
