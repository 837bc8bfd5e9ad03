package config

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/schedule"
)

// FuzzParse: no job file, however broken, panics the parser or fails without *Errors; every
// problem it reports has a message; and an accepted file parses the same way twice.
// Seeds: testdata/fuzz/FuzzParse (from testdata/invalid and example.yaml).
func FuzzParse(f *testing.F) {
	f.Add([]byte("node_id: n1\nstate:\n  path: /tmp/s.db\njobs:\n  - name: a\n    kind: noop\n    schedule: \"@daily\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parse(data, "fuzz.yaml", noEnv)
		if err != nil {
			var ce *Errors
			if !errors.As(err, &ce) || len(ce.List) == 0 {
				t.Fatalf("error is not a non-empty *Errors: %T %v", err, err)
			}
			for _, fe := range ce.List {
				if fe.Msg == "" {
					t.Fatalf("a problem without a message: %+v", fe)
				}
			}
			return
		}
		again, err := parse(data, "fuzz.yaml", noEnv)
		if err != nil || again.Hash != cfg.Hash || len(again.Jobs) != len(cfg.Jobs) {
			t.Fatalf("accepted once, then %v", err)
		}
		for _, j := range cfg.Jobs {
			if _, err := j.ParsedSchedule(); err != nil {
				t.Fatalf("accepted job %q has a schedule that does not parse: %v", j.Name, err)
			}
			if j.Timeout <= 0 || j.Timeout.D() > schedule.MaxDuration {
				t.Fatalf("accepted job %q has timeout %v", j.Name, j.Timeout)
			}
			if p := j.Prune; p != nil {
				if p.Grace < 0 || p.AbortUploadsAfter < 0 {
					t.Fatalf("accepted prune job %q with a negative grace", j.Name)
				}
				for _, r := range p.Rules {
					if r.KeepWithin < 0 || r.KeepWithin.D() > schedule.MaxDuration || r.KeepLast > MaxKeep {
						t.Fatalf("accepted prune rule out of range: %+v", r)
					}
				}
			}
		}
		for name, tier := range cfg.Tiers {
			if tier.RetentionDays < 0 || tier.RetentionDays > MaxDays {
				t.Fatalf("accepted tier %s with retention_days %d", name, tier.RetentionDays)
			}
		}
		if s := cfg.Storage.S3; cfg.Storage.Backend == "s3" && (s.DeletesPerSec < 1 || s.DeletesPerSec > 1000 || checkBucket(s.Bucket) != "") {
			t.Fatalf("accepted S3 settings out of range: %+v", s)
		}
		if tok := cfg.HTTP.AdminToken.Value(); tok != "" && len(tok) < MinAdminToken {
			t.Fatalf("accepted a %d-byte admin token", len(tok))
		}
	})
}

var fuzzLabel = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// FuzzKeyTemplate: a key template the config accepts, expanded the way the jobs expand it
// with any name they could be given (names match [A-Za-z0-9][A-Za-z0-9_.-]*), is a safe object
// key: relative, no empty, '.' or '..' element, no control character, under S3's 1024 bytes.
// Seeds: testdata/fuzz/FuzzKeyTemplate.
func FuzzKeyTemplate(f *testing.F) {
	f.Add("platform/{date}/{db}-{date}.db", "auth", "node-1")
	f.Add("nightly/{node}/{instance}/{instance}_{date}.tar.gz", "tenant_a", "n")
	f.Fuzz(func(t *testing.T, tmpl, name, node string) {
		if !fuzzLabel.MatchString(name) || !fuzzLabel.MatchString(node) {
			return
		}
		c := &Config{}
		kinds := []struct {
			required, allowed []string
			placeholder       string
		}{
			{[]string{"{db}"}, []string{"{db}", "{date}", "{node}"}, "{db}"},
			{[]string{"{instance}"}, []string{"{instance}", "{date}", "{time}", "{node}"}, "{instance}"},
			{[]string{"{container}"}, []string{"{container}", "{date}", "{node}"}, "{container}"},
		}
		for _, k := range kinds {
			if len(c.validateKey("key", tmpl, k.required, k.allowed)) > 0 {
				continue
			}
			key := strings.NewReplacer(k.placeholder, name, "{node}", node, "{date}", "20261130", "{time}", "031500").Replace(tmpl)
			if strings.HasPrefix(key, "/") || len(key) > 1024 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("template %q accepted, key %q is unsafe", tmpl, key)
			}
			for _, el := range strings.Split(key, "/") {
				if el == "" || el == "." || el == ".." {
					t.Fatalf("template %q accepted, key %q has element %q", tmpl, key, el)
				}
			}
			if !strings.Contains(key, name) {
				t.Fatalf("template %q accepted, key %q lacks the target name", tmpl, key)
			}
		}
	})
}
