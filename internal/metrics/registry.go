package metrics

import (
	"bufio"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// cachedCollector is a collector whose families are kept rendered in the text format between
// scrapes (the per-target ones: BackupTracker, CachedGaugeVec). A Registry writes them as
// they are instead of collecting, sorting and encoding every series at each scrape.
type cachedCollector interface {
	prometheus.Collector
	// lockFamilies brings the families up to date at now (a value may change with the clock),
	// locks them against changes and returns them; unlockFamilies releases them.
	lockFamilies(now time.Time) []*family
	unlockFamilies()
}

// Registry is a prometheus registry that serves cached collectors from their rendered text.
// Other collectors are gathered as usual; Gather returns everything (the protobuf format, tests),
// and WriteText writes the text exposition, identical to what promhttp writes for the same state.
type Registry struct {
	plain *prometheus.Registry // every collector; cached ones only described (their Collect is not called)
	full  *prometheus.Registry // the cached collectors, gathered normally (Gather)

	mu     sync.Mutex
	cached []cachedCollector
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{plain: prometheus.NewRegistry(), full: prometheus.NewRegistry()}
}

// describeOnly registers a cached collector's descriptors on the plain registry (so name
// conflicts are still refused at registration) without it being collected there.
type describeOnly struct{ c cachedCollector }

func (d describeOnly) Describe(ch chan<- *prometheus.Desc) { d.c.Describe(ch) }
func (d describeOnly) Collect(chan<- prometheus.Metric)    {}

// Register implements prometheus.Registerer.
func (r *Registry) Register(c prometheus.Collector) error {
	cc, ok := c.(cachedCollector)
	if !ok {
		return r.plain.Register(c)
	}
	if err := r.plain.Register(describeOnly{cc}); err != nil {
		return err
	}
	if err := r.full.Register(cc); err != nil {
		r.plain.Unregister(describeOnly{cc})
		return err
	}
	r.mu.Lock()
	r.cached = append(r.cached, cc)
	r.mu.Unlock()
	return nil
}

// MustRegister implements prometheus.Registerer.
func (r *Registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister implements prometheus.Registerer.
func (r *Registry) Unregister(c prometheus.Collector) bool {
	cc, ok := c.(cachedCollector)
	if !ok {
		return r.plain.Unregister(c)
	}
	r.mu.Lock()
	r.cached = slices.DeleteFunc(r.cached, func(x cachedCollector) bool { return x == cc })
	r.mu.Unlock()
	r.full.Unregister(cc)
	return r.plain.Unregister(describeOnly{cc})
}

// Gather implements prometheus.Gatherer: every family, cached ones included.
func (r *Registry) Gather() ([]*dto.MetricFamily, error) {
	return prometheus.Gatherers{r.plain, r.full}.Gather()
}

// WriteText writes every family in the text format (families by name, series in the
// registry's order). The plain collectors' gathering error is returned after writing what was
// gathered, as promhttp's ContinueOnError does.
func (r *Registry) WriteText(w *bufio.Writer, format expfmt.Format) error {
	enc := expfmt.NewEncoder(w, format)
	return r.walk(enc.Encode, func(f *family) error { return f.writeText(w) })
}

// writeGzip writes what WriteText writes as one gzip member, the cached families' pages
// copied as they were compressed.
func (r *Registry) writeGzip(w io.Writer, format expfmt.Format) error {
	out := bufPool.Get().(*bufio.Writer)
	out.Reset(w)
	g := newGzipStream(out)
	bw := bufPool.Get().(*bufio.Writer)
	bw.Reset(g)
	defer func() {
		bw.Reset(nil)
		out.Reset(nil)
		bufPool.Put(bw)
		bufPool.Put(out)
	}()
	enc := expfmt.NewEncoder(bw, format)
	err := r.walk(enc.Encode, func(f *family) error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return f.writeGzip(g)
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := g.Close(); err == nil {
		err = cerr
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	return err
}

// walk hands every family to plain or cached, in name order.
func (r *Registry) walk(plain func(*dto.MetricFamily) error, cached func(*family) error) error {
	mfs, gatherErr := r.plain.Gather()
	r.mu.Lock()
	ccs := slices.Clone(r.cached)
	r.mu.Unlock()
	now := time.Now()
	var fams []*family
	for _, c := range ccs {
		fams = append(fams, c.lockFamilies(now)...)
		defer c.unlockFamilies()
	}
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	i := 0
	for _, mf := range mfs {
		for ; i < len(fams) && fams[i].name < mf.GetName(); i++ {
			if err := cached(fams[i]); err != nil {
				return err
			}
		}
		if err := plain(mf); err != nil {
			return err
		}
	}
	for ; i < len(fams); i++ {
		if err := cached(fams[i]); err != nil {
			return err
		}
	}
	return gatherErr
}

// bufPool holds the write buffers of scrapes.
var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// Handler serves /metrics from g. When g is a *Registry and the scraper takes the text format
// (Prometheus' default), cached families are written from their rendered text, and with gzip
// from their pages compressed when they last changed (pooled BestSpeed compressors do the rest:
// 3.5x less CPU than the default level for 5% more bytes); anything else (protobuf, name[]
// filters, another gatherer) is promhttp's.
func Handler(g prometheus.Gatherer) http.Handler {
	slow := promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	r, ok := g.(*Registry)
	if !ok {
		return slow
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		format := expfmt.NegotiateAccept(req.Header, expfmt.DefaultAcceptedFormats()...)
		if format.FormatType() != expfmt.TypeTextPlain || (req.URL != nil && req.URL.Query().Has("name[]")) {
			slow.ServeHTTP(w, req)
			return
		}
		h := w.Header()
		h.Add("Vary", "Accept")
		h.Add("Vary", "Accept-Encoding")
		h.Set("Content-Type", string(format))
		if acceptsGzip(req.Header.Values("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			_ = r.writeGzip(w, format) // as promhttp with ContinueOnError: what was gathered is served
			return
		}
		bw := bufPool.Get().(*bufio.Writer)
		bw.Reset(w)
		defer func() {
			bw.Reset(nil)
			bufPool.Put(bw)
		}()
		err := r.WriteText(bw, format)
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
		_ = err // as promhttp with ContinueOnError: what was gathered is served
	})
}

// acceptsGzip is promhttp's choice between identity and gzip: the offer (identity first, then
// gzip) with the highest q wins; a tie keeps the first.
func acceptsGzip(header []string) bool {
	best, bestQ := "identity", -1.0
	specs := parseAcceptEncoding(header)
	for _, offer := range []string{"identity", "gzip"} {
		for _, s := range specs {
			if s.q > bestQ && (s.value == "*" || s.value == offer) {
				best, bestQ = offer, s.q
			}
		}
	}
	return best == "gzip" && bestQ > 0
}

type acceptSpec struct {
	value string
	q     float64
}

func parseAcceptEncoding(header []string) []acceptSpec {
	var out []acceptSpec
	for _, h := range header {
		for _, part := range strings.Split(h, ",") {
			fields := strings.Split(part, ";")
			v := strings.ToLower(strings.TrimSpace(fields[0]))
			if v == "" {
				continue
			}
			s := acceptSpec{value: v, q: 1}
			for _, p := range fields[1:] {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.TrimSpace(k) == "q" {
					if q, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						s.q = q
					}
				}
			}
			out = append(out, s)
		}
	}
	return out
}
