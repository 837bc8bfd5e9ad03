package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/wopr-network/opsd/internal/schedule"
)

// FieldError is one problem in a job file: the YAML path, the line and what is wrong.
type FieldError struct {
	Path string
	Line int
	Msg  string
}

// Error formats the problem as `jobs[2].schedule (line 14): invalid cron expression ...`.
func (e FieldError) Error() string {
	switch {
	case e.Path != "" && e.Line > 0:
		return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg)
	case e.Path != "":
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Errors is every problem found in one file, in file order.
type Errors struct {
	File string
	List []FieldError
}

// Error lists every problem, one per line, each prefixed with the file.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, fe := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File + ": ")
		}
		b.WriteString(fe.Error())
	}
	return b.String()
}

type decoder struct {
	errs  []FieldError
	lines map[string]int
	env   func(string) (string, bool)
}

func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	jobType      = reflect.TypeOf(Job{})
	durationType = reflect.TypeOf(Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
)

// decode decodes n into v (settable), recording the line of every path it visits.
func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if _, seen := d.lines[path]; path != "" && !seen {
		d.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // `key:` with no value keeps the default
	}
	switch {
	case v.Type() == jobType:
		d.decodeJob(path, n, v)
		return
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(path, n, v.Elem())
		return
	case v.Kind() == reflect.Struct:
		d.decodeStruct(path, n, v, nil)
		return
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n.Line, "expected a list, got %s", describe(n))
			return
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(fmt.Sprintf("%s[%d]", path, i), item, out.Index(i))
		}
		v.Set(out)
		return
	case v.Kind() == reflect.Map:
		if !d.mapping(path, n) {
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		d.eachKey(path, n, func(_ int, p string, k, val *yaml.Node) {
			elem := reflect.New(v.Type().Elem()).Elem()
			if old := v.MapIndex(reflect.ValueOf(k.Value)); old.IsValid() {
				elem.Set(old)
			}
			d.decode(p, val, elem)
			v.SetMapIndex(reflect.ValueOf(k.Value), elem)
		})
		return
	}
	d.decodeScalar(path, n, v)
}

func (d *decoder) decodeScalar(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n.Line, "expected a single value, got %s", describe(n))
		return
	}
	s, err := expandEnv(n.Value, d.env)
	if err != nil {
		d.fail(path, n.Line, "%v", err)
		return
	}
	switch {
	case v.Type() == durationType:
		dur, err := schedule.ParseDuration(s)
		if err != nil {
			d.fail(path, n.Line, "%v", err)
			return
		}
		if dur < 0 {
			d.fail(path, n.Line, "duration %q must not be negative", s)
			return
		}
		v.SetInt(int64(dur))
	case v.Type() == byteSizeType:
		b, err := ParseByteSize(s)
		if err != nil {
			d.fail(path, n.Line, "%v", err)
			return
		}
		v.SetInt(b)
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			d.fail(path, n.Line, "expected true or false, got %q", s)
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		i, err := strconv.ParseInt(s, 10, 64)
		if errors.Is(err, strconv.ErrRange) || err == nil && (i > math.MaxInt32 || i < math.MinInt32) {
			d.fail(path, n.Line, "number %s is out of range", s)
			return
		}
		if err != nil {
			d.fail(path, n.Line, "expected a whole number, got %q", s)
			return
		}
		v.SetInt(i)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) {
			d.fail(path, n.Line, "expected a number, got %q", s)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(path, n.Line, "cannot decode into %s", v.Type())
	}
}

// decodeStruct decodes a mapping into a struct by yaml tags. Keys in extra (if not nil) that the
// struct does not know are returned to the caller instead of being reported as unknown.
func (d *decoder) decodeStruct(path string, n *yaml.Node, v reflect.Value, extra *[]int) {
	if !d.mapping(path, n) {
		return
	}
	fields, known := structFields(v.Type())
	d.eachKey(path, n, func(i int, p string, k, val *yaml.Node) {
		idx, ok := fields[k.Value]
		switch {
		case ok:
			d.decode(p, val, v.Field(idx))
		case extra != nil:
			*extra = append(*extra, i)
		default:
			d.unknown(p, k, known)
		}
	})
}

// mapping reports a node that is not a mapping and returns whether it is one.
func (d *decoder) mapping(path string, n *yaml.Node) bool {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "expected a mapping, got %s", describe(n))
		return false
	}
	return true
}

// eachKey calls fn, in order, for every key of a mapping with the key's index in n.Content and
// its path, recording the key's line; a key given again is reported and its value skipped.
func (d *decoder) eachKey(path string, n *yaml.Node, fn func(i int, p string, k, val *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		if seen[k.Value] {
			d.fail(p, k.Line, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		d.lines[p] = k.Line
		fn(i, p, k, val)
	}
}

func (d *decoder) unknown(path string, k *yaml.Node, known []string) {
	if s := closest(k.Value, known); s != "" {
		d.fail(path, k.Line, "unknown key %q (did you mean %q?)", k.Value, s)
		return
	}
	d.fail(path, k.Line, "unknown key %q", k.Value)
}

// decodeJob decodes the common keys of a job, then hands the rest to the settings of its kind.
func (d *decoder) decodeJob(path string, n *yaml.Node, v reflect.Value) {
	var extra []int
	d.decodeStruct(path, n, v, &extra)
	if n.Kind != yaml.MappingNode {
		return
	}
	kind := v.FieldByName("Kind").String()
	settings, ok := kindFields()[kind]
	if !ok {
		// Validate reports the unknown or missing kind; its keys cannot be checked.
		return
	}
	field := v.Field(settings)
	field.Set(reflect.New(field.Type().Elem()))
	sub := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line}
	for _, i := range extra {
		sub.Content = append(sub.Content, n.Content[i], n.Content[i+1])
	}
	st := field.Elem()
	fields, kindKnown := structFields(st.Type())
	_, jobKnown := structFields(v.Type())
	clean := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line}
	for i := 0; i+1 < len(sub.Content); i += 2 {
		k := sub.Content[i]
		if _, ok := fields[k.Value]; !ok {
			known := append(append([]string{}, kindKnown...), jobKnown...)
			p := join(path, k.Value)
			if s := closest(k.Value, known); s != "" {
				d.fail(p, k.Line, "unknown key %q for kind %s (did you mean %q?)", k.Value, kind, s)
			} else {
				d.fail(p, k.Line, "unknown key %q for kind %s", k.Value, kind)
			}
			continue
		}
		clean.Content = append(clean.Content, sub.Content[i], sub.Content[i+1])
	}
	d.decodeStruct(path, clean, st, nil)
}

type fieldSet struct {
	index map[string]int
	names []string
}

var fieldCache sync.Map // reflect.Type -> fieldSet

// structFields returns a struct's fields by yaml tag and the tags in order, computed once per
// type (a file with 40,000 jobs decodes 40,000 of each).
func structFields(t reflect.Type) (map[string]int, []string) {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(fieldSet).index, fs.(fieldSet).names
	}
	fs := fieldSet{index: map[string]int{}}
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		fs.index[tag] = i
		fs.names = append(fs.names, tag)
	}
	fieldCache.Store(t, fs)
	return fs.index, fs.names
}

// kindFields maps each job kind to the index of its settings field in Job.
var kindFields = sync.OnceValue(func() map[string]int {
	m := map[string]int{}
	for i := 0; i < jobType.NumField(); i++ {
		if k := jobType.Field(i).Tag.Get("kind"); k != "" {
			m[k] = i
		}
	}
	return m
})

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

// expandEnv replaces ${VAR} and ${VAR:-default}; $$ is a literal $. An unset variable without a
// default is an error, so a typo never silently becomes an empty bucket name or token; so is a
// variable that is set but empty (write ${VAR:-} to allow an empty value). Errors never quote
// the value, which may be a secret.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ at character %d (write $$ for a literal $)", i+1)
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("invalid environment variable name in ${...} at character %d (letters, digits and _; write $$ for a literal $)", i+1)
		}
		val, ok := lookup(name)
		switch {
		case ok && val != "":
			b.WriteString(val)
		case hasDef:
			b.WriteString(def)
		case ok:
			return "", fmt.Errorf("environment variable %s is set but empty (use ${%s:-} to allow an empty value)", name, name)
		default:
			return "", fmt.Errorf("environment variable %s is not set (use ${%s:-default} for a default)", name, name)
		}
		i += end
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// MaxByteSize is the largest size a job file may write (1TiB).
const MaxByteSize = 1 << 40

// ParseByteSize parses "16MiB", "512KiB", "1GiB", "5MB", "1024": at most MaxByteSize.
func ParseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			n = strings.TrimSpace(n)
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v < 0 || n == "" || strings.Trim(n, "0123456789.") != "" {
				return 0, fmt.Errorf("invalid size %q (use e.g. 16MiB)", s)
			}
			if v*float64(u.mult) > MaxByteSize {
				return 0, fmt.Errorf("size %q is larger than the 1TiB limit", s)
			}
			return int64(v * float64(u.mult)), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil && errors.Is(err, strconv.ErrRange) || err == nil && v > MaxByteSize {
		return 0, fmt.Errorf("size %q is larger than the 1TiB limit", s)
	}
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q (use e.g. 16MiB)", s)
	}
	return v, nil
}

// closest returns the known name within edit distance 2 of s, if any.
func closest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

var osLookupEnv = os.LookupEnv
