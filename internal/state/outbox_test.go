package state

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestOutboxFilledByAnOlderOpsdIsCompacted: an outbox an older opsd filled during a long receiver
// outage (thousands of pending rows of a few flapping incidents, no action column) is readable
// after the upgrade, and CompactOutbox bounds it: per notifier and incident the latest state
// (and the first trigger when it ended resolved), then at most the cap, oldest dropped first.
func TestOutboxFilledByAnOlderOpsdIsCompacted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	s.Close()
	// Downgrade the outbox to the older opsd's table and fill it as it did.
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DROP TABLE alert_outbox; CREATE TABLE alert_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, notifier TEXT NOT NULL,
		alert TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL, last_error TEXT, done_at INTEGER)`); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC).UnixMilli()
	rows := 0
	for i := 0; i < 1000; i++ {
		for _, alert := range []string{"disk:node-1", "gateway-error-rate"} {
			firing := i%2 == 0
			if alert == "gateway-error-rate" && i == 999 {
				firing = true // ends firing
			}
			for _, n := range []string{"pagerduty", "webhook"} {
				payload := fmt.Sprintf(`{"alert":%q,"firing":%v,"message":"flap %d"}`, alert, firing, i)
				if _, err := db.Exec(`INSERT INTO alert_outbox (notifier, alert, payload, status, attempts, created_at, next_attempt_at) VALUES (?, ?, ?, 'pending', 3, ?, ?)`,
					n, alert, payload, t0+int64(i), t0+int64(i)); err != nil {
					t.Fatal(err)
				}
				rows++
			}
		}
	}
	// An unreadable row (never coalesced: its action is unknown).
	if _, err := db.Exec(`INSERT INTO alert_outbox (notifier, alert, payload, created_at, next_attempt_at) VALUES ('webhook', 'x', 'not json', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s = open(t, path)
	pending, err := s.PendingOutbox(ctx)
	if err != nil || len(pending) != rows+1 {
		t.Fatalf("%d pending (%v), want %d", len(pending), err, rows+1)
	}
	if pending[0].Action != ActionTrigger || pending[4].Action != ActionResolve || pending[rows].Action != "" {
		t.Fatalf("actions not read from the payload: %+v %+v %+v", pending[0], pending[4], pending[rows])
	}
	dropped, err := s.CompactOutbox(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	// disk:node-1 ended resolved: first trigger + resolve; gateway-error-rate ended firing: its
	// newest trigger. The webhook also has the unreadable row: 4 rows, the cap.
	if want := (OutboxDropped{Superseded: 1000 + 999 - 1 - 1}); dropped["pagerduty"] != want || dropped["webhook"] != want {
		t.Fatalf("dropped %+v, want %+v per notifier", dropped, want)
	}
	pending, err = s.PendingOutbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range pending {
		got = append(got, fmt.Sprintf("%s %s %s", it.Notifier, it.Alert, it.Action))
	}
	want := []string{
		"pagerduty disk:node-1 trigger", "webhook disk:node-1 trigger",
		"pagerduty disk:node-1 resolve", "webhook disk:node-1 resolve",
		"pagerduty gateway-error-rate trigger", "webhook gateway-error-rate trigger",
		"webhook x ",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("left pending:\n%v\nwant\n%v", got, want)
	}
	if p := pending[2].Payload; p != `{"alert":"disk:node-1","firing":false,"message":"flap 999"}` {
		t.Fatalf("the resolve kept is not the newest: %s", p)
	}
	if p := pending[0].Payload; p != `{"alert":"disk:node-1","firing":true,"message":"flap 0"}` {
		t.Fatalf("the trigger kept is not the first: %s", p)
	}

	// A cap below that drops the oldest, resolutions last (the webhook keeps its resolve over
	// the newer trigger; the unreadable row, newest, is given up at delivery).
	dropped, err = s.CompactOutbox(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if dropped["pagerduty"] != (OutboxDropped{Overflow: 1}) || dropped["webhook"] != (OutboxDropped{Overflow: 2}) {
		t.Fatalf("dropped %+v", dropped)
	}
	pending, _ = s.PendingOutbox(ctx)
	got = nil
	for _, it := range pending {
		got = append(got, fmt.Sprintf("%s %s %s", it.Notifier, it.Alert, it.Action))
	}
	if want := "[pagerduty disk:node-1 resolve webhook disk:node-1 resolve pagerduty gateway-error-rate trigger webhook x ]"; fmt.Sprint(got) != want {
		t.Fatalf("after the cap: %v", got)
	}
}

// TestOutboxCapKeepsResolutions: over the cap, the oldest triggers are dropped before any
// resolution: a resolution queued before a flood of new incidents (the receiver down) still
// reaches the receiver, which would otherwise keep that incident open for ever.
func TestOutboxCapKeepsResolutions(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	at := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	enqueue := func(alert, action string) {
		t.Helper()
		firing := action == ActionTrigger
		payload := fmt.Sprintf(`{"alert":%q,"firing":%v}`, alert, firing)
		if _, err := s.SaveAlertAndEnqueue(ctx, AlertState{Name: alert, Firing: firing, UpdatedAt: at},
			[]OutboxItem{{Notifier: "pagerduty", Alert: alert, Action: action, Payload: payload, CreatedAt: at}}, 3); err != nil {
			t.Fatal(err)
		}
		at = at.Add(time.Minute)
	}
	enqueue("backup-stale", ActionResolve) // its trigger was delivered before the outage
	for i := range 5 {
		enqueue(fmt.Sprintf("incident-%d", i), ActionTrigger)
	}
	items, err := s.PendingOutbox(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, it.Alert+"/"+it.Action)
	}
	want := []string{"backup-stale/resolve", "incident-3/trigger", "incident-4/trigger"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pending after the cap: %v, want %v", got, want)
	}
}

// TestColumnAddedByAnotherOpsdMeanwhile: the daemon and a CLI command opening a state database of
// an older opsd at once both add the new columns; the one that loses the race opens it anyway
// (it failed with "duplicate column name").
func TestColumnAddedByAnotherOpsdMeanwhile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	s.Close()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`ALTER TABLE alerts DROP COLUMN node`); err != nil {
		t.Fatal(err)
	}
	testHookBeforeAddColumn = func(table, column string) {
		if column == "node" {
			if _, err := db.Exec(`ALTER TABLE alerts ADD COLUMN node TEXT`); err != nil {
				t.Errorf("the other opsd's ALTER: %v", err)
			}
		}
	}
	t.Cleanup(func() { testHookBeforeAddColumn = nil })
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("open while another opsd added the column: %v", err)
	}
	s2.Close()
}
