// Package layout is the only owner of object keys. It builds every key from the configured key
// templates (plain strings handed in by the caller) and answers every reader's question: the
// artifacts of a target, the newest one with a manifest, the platform sets of a date, which
// node and target (container, instance, database) a key belongs to.
//
// One time-zone rule holds for every key: {date}, {time} and {stamp} are UTC.
package layout

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Date formats used in keys (always UTC).
const (
	DateFormat  = "20060102"
	TimeFormat  = "150405"
	StampFormat = "20060102T150405Z"
)

// Date returns t's {date} in keys: YYYYMMDD in UTC.
func Date(t time.Time) string { return t.UTC().Format(DateFormat) }

// Stamp returns t's {stamp} (safety copies): YYYYMMDDTHHMMSSZ in UTC.
func Stamp(t time.Time) string { return t.UTC().Format(StampFormat) }

// ParseDate parses a {date} value (YYYYMMDD, UTC midnight).
func ParseDate(s string) (time.Time, error) {
	if !dateRe.MatchString(s) {
		return time.Time{}, fmt.Errorf("date %q is not YYYYMMDD", s)
	}
	return time.Parse(DateFormat, s)
}

// IsDate reports whether s is a valid YYYYMMDD date.
func IsDate(s string) bool {
	_, err := ParseDate(s)
	return err == nil
}

var (
	dateRe   = regexp.MustCompile(`^\d{8}$`)
	anyDate  = regexp.MustCompile(`\d{8}`)
	fieldsRe = regexp.MustCompile(`\{[a-z]+\}`)
)

// KeyDate returns the last valid YYYYMMDD date in a key's base name (keys written from templates
// that name the date elsewhere, or by older tools).
func KeyDate(key string) (time.Time, bool) {
	m := anyDate.FindAllString(key[strings.LastIndexByte(key, '/')+1:], -1)
	for i := len(m) - 1; i >= 0; i-- {
		if t, err := time.Parse(DateFormat, m[i]); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// Fields are the values of a key's placeholders. Empty fields are unknown (when listing) or
// unconstrained (when matching).
type Fields struct {
	Node string
	// Target is the {container}, {instance}, {db}, {database} or {target} of the key.
	Target string
	Date   string // {date}: YYYYMMDD, UTC
	Time   string // {time}: HHMMSS, UTC
	Stamp  string // {stamp}: YYYYMMDDTHHMMSSZ, UTC
	ID     string // {id}: a free name (on-demand snapshots)
}

// placeholders and what each matches.
var placeholders = map[string]string{
	"{node}":      `[^/]+`,
	"{container}": `[^/]+`,
	"{instance}":  `[^/]+`,
	"{db}":        `[^/]+`,
	"{database}":  `[^/]+`,
	"{target}":    `[^/]+`,
	"{date}":      `\d{8}`,
	"{time}":      `\d{6}`,
	"{stamp}":     `\d{8}T\d{6}Z`,
	"{id}":        `[^/]+`,
}

func (f Fields) value(ph string) string {
	switch ph {
	case "{node}":
		return f.Node
	case "{container}", "{instance}", "{db}", "{database}", "{target}":
		return f.Target
	case "{date}":
		return f.Date
	case "{time}":
		return f.Time
	case "{stamp}":
		return f.Stamp
	case "{id}":
		return f.ID
	}
	return ""
}

func (f *Fields) set(ph, v string) bool {
	p := map[string]*string{"{node}": &f.Node, "{container}": &f.Target, "{instance}": &f.Target, "{db}": &f.Target, "{database}": &f.Target,
		"{target}": &f.Target, "{date}": &f.Date, "{time}": &f.Time, "{stamp}": &f.Stamp, "{id}": &f.ID}[ph]
	if *p != "" && *p != v {
		return false // a placeholder used twice must have one value
	}
	*p = v
	return true
}

// matches reports whether every non-empty field of want equals f's.
func (f Fields) matches(want Fields) bool {
	eq := func(a, b string) bool { return a == "" || b == "" || a == b } // "": unconstrained, or not in the template
	return eq(f.Node, want.Node) && eq(f.Target, want.Target) && eq(f.Date, want.Date) && eq(f.Time, want.Time) &&
		eq(f.Stamp, want.Stamp) && eq(f.ID, want.ID)
}

// KeyTime returns the key's own time ({date} plus {time}, or {stamp}); false when it names none.
func (f Fields) KeyTime() (time.Time, bool) {
	if f.Stamp != "" {
		t, err := time.Parse(StampFormat, f.Stamp)
		return t, err == nil
	}
	if f.Date == "" {
		return time.Time{}, false
	}
	s, layout := f.Date, DateFormat
	if f.Time != "" {
		s, layout = s+f.Time, DateFormat+TimeFormat
	}
	t, err := time.Parse(layout, s)
	return t, err == nil
}

// Template is one parsed key template, e.g. nightly/{node}/{container}/{container}_{date}.tar.gz.
// Keys written from it may carry a format suffix (.zst, .age) after the template's text, and a
// template's trailing .gz is optional when matching: a key written before the job switched
// between gzip and zstd (.tar.gz, .tar.zst) still belongs to it.
type Template struct {
	raw    string
	re     *regexp.Regexp
	groups []string // the placeholder of each capture group
}

// Parse parses a key template: its placeholders must be ones this package knows.
func Parse(raw string) (Template, error) {
	if raw == "" {
		return Template{}, fmt.Errorf("parse key template: empty")
	}
	var re strings.Builder
	re.WriteString("^")
	t := Template{raw: raw}
	last := 0
	for _, loc := range fieldsRe.FindAllStringIndex(raw, -1) {
		ph := raw[loc[0]:loc[1]]
		pat, ok := placeholders[ph]
		if !ok {
			return Template{}, fmt.Errorf("parse key template %q: unknown placeholder %s", raw, ph)
		}
		re.WriteString(regexp.QuoteMeta(raw[last:loc[0]]))
		re.WriteString("(" + pat + ")")
		t.groups = append(t.groups, ph)
		last = loc[1]
	}
	re.WriteString(regexp.QuoteMeta(strings.TrimSuffix(raw[last:], ".gz")))
	re.WriteString(`(?:\.gz)?(?:\.zst)?(?:\.age)?$`)
	t.re = regexp.MustCompile(re.String())
	return t, nil
}

// MustParse is Parse for the built-in templates; it panics on a bad one.
func MustParse(raw string) Template {
	t, err := Parse(raw)
	if err != nil {
		panic(err)
	}
	return t
}

// String returns the template's text.
func (t Template) String() string { return t.raw }

// Key expands the template with f's values.
func (t Template) Key(f Fields) string {
	return fieldsRe.ReplaceAllStringFunc(t.raw, func(ph string) string {
		if _, ok := placeholders[ph]; !ok {
			return ph
		}
		return f.value(ph)
	})
}

// Match parses a key written from the template (with or without a format suffix).
func (t Template) Match(key string) (Fields, bool) {
	if t.re == nil {
		return Fields{}, false
	}
	m := t.re.FindStringSubmatch(key)
	if m == nil {
		return Fields{}, false
	}
	var f Fields
	for i, ph := range t.groups {
		if !f.set(ph, m[i+1]) {
			return Fields{}, false
		}
	}
	return f, true
}

// Prefix returns the longest folder every key with f's known fields lies under: the template's
// text up to its first unknown placeholder, cut after the last "/".
func (t Template) Prefix(f Fields) string {
	var b strings.Builder
	last := 0
	for _, loc := range fieldsRe.FindAllStringIndex(t.raw, -1) {
		b.WriteString(t.raw[last:loc[0]])
		v := f.value(t.raw[loc[0]:loc[1]])
		if v == "" {
			last = -1
			break
		}
		b.WriteString(v)
		last = loc[1]
	}
	if last >= 0 {
		b.WriteString(t.raw[last:])
	}
	s := b.String()
	return s[:strings.LastIndexByte(s, '/')+1]
}
