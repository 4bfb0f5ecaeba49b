package latency

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBuckets are the upper bounds, in seconds, that a Collector exports
// when CollectorOpts.Buckets is empty: 1-2-5 steps from 100 ns to 10 s.
var DefaultBuckets = []float64{
	100e-9, 200e-9, 500e-9,
	1e-6, 2e-6, 5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6,
	1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 200e-3, 500e-3,
	1, 2, 5, 10,
}

// DefaultQuantiles are what a summary Collector exports when
// CollectorOpts.Quantiles is empty.
var DefaultQuantiles = []float64{0.5, 0.9, 0.99, 0.999}

// CollectorOpts describe the exported metric.
type CollectorOpts struct {
	Name        string            // full metric name, e.g. "feedhandler_apply_latency_seconds"
	Help        string            // help text
	ConstLabels prometheus.Labels // optional
	// Summary exports a Prometheus summary with Quantiles instead of a
	// histogram with Buckets.
	Summary   bool
	Buckets   []float64 // histogram upper bounds in seconds, ascending (default DefaultBuckets)
	Quantiles []float64 // summary quantiles (default DefaultQuantiles)
}

// Collector is a prometheus.Collector over one or more Histograms (for
// example one per book shard), merged at scrape time. Values are exported
// in seconds. Bucket counts are exact below 128 ns and within one
// histogram bucket width (1.6%) of the bound above.
type Collector struct {
	desc      *prometheus.Desc
	summary   bool
	bounds    []float64 // seconds
	quantiles []float64
	hs        []*Histogram

	mu  sync.Mutex // guards the scratch snapshots
	one Snapshot
	sum Snapshot
}

// NewCollector returns a collector exporting the merge of hs.
func NewCollector(opts CollectorOpts, hs ...*Histogram) *Collector {
	c := &Collector{
		desc:      prometheus.NewDesc(opts.Name, opts.Help, nil, opts.ConstLabels),
		summary:   opts.Summary,
		bounds:    opts.Buckets,
		quantiles: opts.Quantiles,
		hs:        hs,
	}
	if len(c.bounds) == 0 {
		c.bounds = DefaultBuckets
	}
	if len(c.quantiles) == 0 {
		c.quantiles = DefaultQuantiles
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum = Snapshot{}
	for _, h := range c.hs {
		h.Snapshot(&c.one)
		c.sum.Merge(&c.one)
	}
	s := &c.sum
	// The const metrics keep their maps, so these are fresh per scrape.
	var m prometheus.Metric
	var err error
	if c.summary {
		quant := make(map[float64]float64, len(c.quantiles))
		for _, q := range c.quantiles {
			quant[q] = float64(s.Quantile(q)) / 1e9
		}
		m, err = prometheus.NewConstSummary(c.desc, s.Count, float64(s.Sum)/1e9, quant)
	} else {
		// Classic and native buckets in one metric (see HistogramMetric).
		m = HistogramMetric(c.desc, s, c.bounds, time.Time{})
	}
	if err != nil {
		m = prometheus.NewInvalidMetric(c.desc, fmt.Errorf("collect latency %s: %w", c.desc, err))
	}
	ch <- m
}
