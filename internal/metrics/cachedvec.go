package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CachedGaugeVec is a gauge vector kept rendered between scrapes, for families with a series
// per target (thousands of series that change one at a time). It has the GaugeVec methods opsd
// uses; on a Registry it is written from its rendered lines, elsewhere it collects normally.
type CachedGaugeVec struct {
	mu sync.Mutex
	f  *family
}

// NewCachedGaugeVec returns an empty vector.
func NewCachedGaugeVec(name, help string, labels ...string) *CachedGaugeVec {
	return &CachedGaugeVec{f: newFamily(name, help, prometheus.GaugeValue, labels...)}
}

// CachedGauge is one series of a CachedGaugeVec.
type CachedGauge struct {
	v      *CachedGaugeVec
	values []string
}

// WithLabelValues returns the series with these label values (in the declared order), created
// at 0 if new. It panics on a wrong number of values, as prometheus' GaugeVec does.
func (v *CachedGaugeVec) WithLabelValues(values ...string) CachedGauge {
	v.mu.Lock()
	v.f.ensure(values...)
	v.mu.Unlock()
	return CachedGauge{v: v, values: append([]string(nil), values...)}
}

// With is WithLabelValues with the labels by name.
func (v *CachedGaugeVec) With(l prometheus.Labels) CachedGauge {
	values := make([]string, len(v.f.labels))
	for i, n := range v.f.labels {
		values[i] = l[n]
	}
	return v.WithLabelValues(values...)
}

// Set sets the value.
func (g CachedGauge) Set(x float64) {
	g.v.mu.Lock()
	g.v.f.set(x, g.values...)
	g.v.mu.Unlock()
}

// Add adds d to the value.
func (g CachedGauge) Add(d float64) {
	g.v.mu.Lock()
	x, _ := g.v.f.get(g.values...)
	g.v.f.set(x+d, g.values...)
	g.v.mu.Unlock()
}

// Sub subtracts d from the value.
func (g CachedGauge) Sub(d float64) { g.Add(-d) }

// Inc adds 1.
func (g CachedGauge) Inc() { g.Add(1) }

// Dec subtracts 1.
func (g CachedGauge) Dec() { g.Add(-1) }

// SetToCurrentTime sets the value to the current Unix time in seconds.
func (g CachedGauge) SetToCurrentTime() {
	g.Set(float64(time.Now().UnixNano()) / 1e9)
}

// Value returns the current value (0 when the series was deleted).
func (g CachedGauge) Value() float64 {
	g.v.mu.Lock()
	defer g.v.mu.Unlock()
	x, _ := g.v.f.get(g.values...)
	return x
}

// DeleteLabelValues removes a series; it reports whether it existed.
func (v *CachedGaugeVec) DeleteLabelValues(values ...string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.f.delete(values...)
}

// DeletePartialMatch removes every series whose labels include l and returns how many.
func (v *CachedGaugeVec) DeletePartialMatch(l prometheus.Labels) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.f.deleteMatch(l)
}

// Reset removes every series.
func (v *CachedGaugeVec) Reset() {
	v.mu.Lock()
	v.f.reset()
	v.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (v *CachedGaugeVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.f.desc }

// Collect implements prometheus.Collector.
func (v *CachedGaugeVec) Collect(ch chan<- prometheus.Metric) {
	v.mu.Lock()
	ms := v.f.collect(nil)
	v.mu.Unlock()
	for _, m := range ms {
		ch <- m
	}
}

func (v *CachedGaugeVec) lockFamilies(time.Time) []*family {
	v.mu.Lock()
	return []*family{v.f}
}

func (v *CachedGaugeVec) unlockFamilies() { v.mu.Unlock() }
