package metrics

import (
	"bufio"
	"compress/gzip"
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
	mfs, gatherErr := r.plain.Gather()
	r.mu.Lock()
	cached := slices.Clone(r.cached)
	r.mu.Unlock()
	now := time.Now()
	var fams []*family
	for _, c := range cached {
		fams = append(fams, c.lockFamilies(now)...)
		defer c.unlockFamilies()
	}
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	enc := expfmt.NewEncoder(w, format)
	i := 0
	for _, mf := range mfs {
		for ; i < len(fams) && fams[i].name < mf.GetName(); i++ {
			if err := fams[i].writeText(w); err != nil {
				return err
			}
		}
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	for ; i < len(fams); i++ {
		if err := fams[i].writeText(w); err != nil {
			return err
		}
	}
	return gatherErr
}

var (
	// gzipPool holds gzip writers at BestSpeed: 3.5x less CPU than the default level for a
	// scrape 5% larger (measured on 10,000 targets: 4.5 ms and 149 KB against 16 ms and 142 KB).
	gzipPool = sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
		return w
	}}
	bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}
)

// Handler serves /metrics from g. When g is a *Registry and the scraper takes the text format
// (Prometheus' default), cached families are written from their rendered text through a pooled
// gzip writer; anything else (protobuf, name[] filters, another gatherer) is promhttp's.
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
		var out io.Writer = w
		if acceptsGzip(req.Header.Values("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			gz := gzipPool.Get().(*gzip.Writer)
			gz.Reset(w)
			defer func() {
				_ = gz.Close()
				gz.Reset(nil)
				gzipPool.Put(gz)
			}()
			out = gz
		}
		bw := bufPool.Get().(*bufio.Writer)
		bw.Reset(out)
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
