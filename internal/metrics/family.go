package metrics

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// family is one metric family kept rendered in the text exposition format: each series' line is
// rendered by expfmt when its value changes, and the series are kept in the order the registry
// sorts them in (label values compared in label-name order), so a scrape writes the lines as
// they are. Its owner locks it.
type family struct {
	name    string
	help    string
	typ     prometheus.ValueType
	desc    *prometheus.Desc
	labels  []string // label names as declared: values are passed in this order
	order   []int    // indexes into labels, sorted by label name: the exposition's sort key
	header  []byte   // "# HELP ...\n# TYPE ...\n"
	zheader zpage    // header, compressed at the first gzip scrape (not at start: an unscraped daemon needs no compressor)

	pages []zpage // sorted in runs of pageSize series, compressed when first written after a change

	series map[string]*series
	sorted []*series // exposition order; may hold deleted series until the next tidy
	added  []*series // series created since the last tidy, not yet in sorted
	gone   int       // deleted series still in sorted or added
}

// series is one labelled value of a family.
type series struct {
	values []string // label values in the family's declared order
	value  float64
	line   []byte // the rendered sample line, with its newline
	gone   bool
	page   int // index in pages (-1: not in sorted yet)
}

// newFamily returns an empty family of gauges or counters.
func newFamily(name, help string, typ prometheus.ValueType, labels ...string) *family {
	f := &family{name: name, help: help, typ: typ, labels: labels, series: map[string]*series{},
		desc: prometheus.NewDesc(name, help, labels, nil)}
	f.order = make([]int, len(labels))
	for i := range f.order {
		f.order[i] = i
	}
	sort.Slice(f.order, func(i, j int) bool { return labels[f.order[i]] < labels[f.order[j]] })
	text := f.render(make([]string, len(labels)), 0)
	f.header = text[:headerLen(text)]
	return f
}

// headerLen is the length of the HELP and TYPE lines at the start of a rendered family.
func headerLen(text []byte) int {
	n := 0
	for i := 0; i < 2; i++ {
		n += bytes.IndexByte(text[n:], '\n') + 1
	}
	return n
}

// render renders a one-series family with expfmt (header included), so cached lines are
// byte for byte what the registry would write.
func (f *family) render(values []string, v float64) []byte {
	m := &dto.Metric{Label: make([]*dto.LabelPair, len(f.order))}
	for i, j := range f.order {
		m.Label[i] = &dto.LabelPair{Name: &f.labels[j], Value: &values[j]}
	}
	typ := dto.MetricType_GAUGE
	if f.typ == prometheus.CounterValue {
		typ = dto.MetricType_COUNTER
		m.Counter = &dto.Counter{Value: &v}
	} else {
		m.Gauge = &dto.Gauge{Value: &v}
	}
	var b bytes.Buffer
	if _, err := expfmt.MetricFamilyToText(&b, &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: &typ, Metric: []*dto.Metric{m}}); err != nil {
		panic(fmt.Sprintf("metrics: render %s: %v", f.name, err)) // names and labels are checked by NewDesc
	}
	return b.Bytes()
}

func (f *family) key(values []string) string {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: %s: %d label values for %d labels %v", f.name, len(values), len(f.labels), f.labels))
	}
	for _, v := range values {
		if !utf8.ValidString(v) {
			panic(fmt.Sprintf("metrics: %s: label value %q is not valid UTF-8", f.name, v))
		}
	}
	return strings.Join(values, "\xff")
}

// set creates the series if needed and sets its value.
func (f *family) set(v float64, values ...string) {
	k := f.key(values)
	s := f.series[k]
	if s == nil {
		s = &series{values: slices.Clone(values), page: -1}
		f.series[k] = s
		f.added = append(f.added, s)
	} else if s.value == v && s.line != nil {
		return
	}
	if s.page >= 0 {
		f.pages[s.page].ok = false
	}
	s.value = v
	text := f.render(s.values, v)
	s.line = text[headerLen(text):]
}

// ensure creates the series at 0 when it does not exist.
func (f *family) ensure(values ...string) {
	if _, ok := f.series[f.key(values)]; !ok {
		f.set(0, values...)
	}
}

// get returns a series' value.
func (f *family) get(values ...string) (float64, bool) {
	s, ok := f.series[f.key(values)]
	if !ok {
		return 0, false
	}
	return s.value, true
}

// delete removes a series; it reports whether it existed.
func (f *family) delete(values ...string) bool {
	k := f.key(values)
	s, ok := f.series[k]
	if !ok {
		return false
	}
	f.drop(k, s)
	return true
}

func (f *family) drop(k string, s *series) {
	delete(f.series, k)
	s.gone = true
	f.gone++
}

// deleteMatch removes the series whose labels have the given values (unknown label names match
// nothing, as in prometheus' DeletePartialMatch) and returns how many.
func (f *family) deleteMatch(l prometheus.Labels) int {
	idx := make([]int, 0, len(l))
	want := make([]string, 0, len(l))
	for name, v := range l {
		i := slices.Index(f.labels, name)
		if i < 0 {
			return 0
		}
		idx, want = append(idx, i), append(want, v)
	}
	n := 0
	for k, s := range f.series {
		match := true
		for j, i := range idx {
			if s.values[i] != want[j] {
				match = false
				break
			}
		}
		if match {
			f.drop(k, s)
			n++
		}
	}
	return n
}

// reset removes every series.
func (f *family) reset() {
	for k, s := range f.series {
		f.drop(k, s)
	}
}

func (f *family) less(a, b *series) int {
	for _, i := range f.order {
		if a.values[i] != b.values[i] {
			return strings.Compare(a.values[i], b.values[i])
		}
	}
	return 0
}

// tidy brings sorted up to date: deleted series out, new ones merged in (a sort of only the
// new ones and one pass over the rest).
func (f *family) tidy() {
	if len(f.added) == 0 && f.gone == 0 {
		return
	}
	isGone := func(s *series) bool { return s.gone }
	added := slices.DeleteFunc(f.added, isGone)
	old := slices.DeleteFunc(f.sorted, isGone)
	slices.SortFunc(added, f.less)
	if len(old) == 0 {
		f.sorted = added
	} else {
		merged := make([]*series, 0, len(old)+len(added))
		i, j := 0, 0
		for i < len(old) && j < len(added) {
			if f.less(added[j], old[i]) < 0 {
				merged, j = append(merged, added[j]), j+1
			} else {
				merged, i = append(merged, old[i]), i+1
			}
		}
		merged = append(append(merged, old[i:]...), added[j:]...)
		f.sorted = merged
	}
	f.added, f.gone = nil, 0
	f.pages = make([]zpage, (len(f.sorted)+pageSize-1)/pageSize)
	for i, s := range f.sorted {
		s.page = i / pageSize
	}
}

// writeGzip writes the family into a gzip stream from its compressed pages, compressing those
// that changed.
func (f *family) writeGzip(g *gzipStream) error {
	f.tidy()
	if len(f.sorted) == 0 {
		return nil
	}
	if !f.zheader.ok {
		f.zheader.compress(f.header)
	}
	if err := g.page(&f.zheader); err != nil {
		return err
	}
	var text []byte
	for i := range f.pages {
		p := &f.pages[i]
		if !p.ok {
			text = text[:0]
			for _, s := range f.sorted[i*pageSize : min((i+1)*pageSize, len(f.sorted))] {
				text = append(text, s.line...)
			}
			p.compress(text)
		}
		if err := g.page(p); err != nil {
			return err
		}
	}
	return nil
}

// writeText writes the family in the text format (nothing when it has no series, as the
// registry drops empty families).
func (f *family) writeText(w *bufio.Writer) error {
	f.tidy()
	if len(f.sorted) == 0 {
		return nil
	}
	if _, err := w.Write(f.header); err != nil {
		return err
	}
	for _, s := range f.sorted {
		if _, err := w.Write(s.line); err != nil {
			return err
		}
	}
	return nil
}

// collect appends the family's series as constant metrics (for the protobuf format and tests).
func (f *family) collect(out []prometheus.Metric) []prometheus.Metric {
	for _, s := range f.series {
		out = append(out, prometheus.MustNewConstMetric(f.desc, f.typ, s.value, s.values...))
	}
	return out
}
