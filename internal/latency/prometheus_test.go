package latency

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCollectorHistogram(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var h1, h2 Histogram
	var vals []int64
	for i := range 20_000 {
		v := int64(math.Exp(rng.Float64() * math.Log(2e9)))
		vals = append(vals, v)
		if i%2 == 0 {
			h1.Record(v)
		} else {
			h2.Record(v)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(CollectorOpts{
		Name: "test_latency_seconds", Help: "test", ConstLabels: prometheus.Labels{"stage": "apply"},
	}, &h1, &h2))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "test_latency_seconds" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v", mfs)
	}
	m := mfs[0].GetMetric()[0]
	if l := m.GetLabel(); len(l) != 1 || l[0].GetName() != "stage" || l[0].GetValue() != "apply" {
		t.Fatalf("labels %v", l)
	}
	ph := m.GetHistogram()
	if ph.GetSampleCount() != uint64(len(vals)) {
		t.Fatalf("sample count %d want %d", ph.GetSampleCount(), len(vals))
	}
	var sum float64
	for _, v := range vals {
		sum += float64(v)
	}
	if math.Abs(ph.GetSampleSum()-sum/1e9) > 1e-6*sum/1e9 {
		t.Fatalf("sample sum %g want %g", ph.GetSampleSum(), sum/1e9)
	}
	if len(ph.GetBucket()) != len(DefaultBuckets) {
		t.Fatalf("%d buckets, want %d", len(ph.GetBucket()), len(DefaultBuckets))
	}
	for _, b := range ph.GetBucket() {
		le := int64(b.GetUpperBound() * 1e9)
		// Exact answer lies between the counts at le minus one bucket width and at le.
		var atLe, atLow uint64
		low := le - le/subSize - 1
		for _, v := range vals {
			if v <= le {
				atLe++
			}
			if v <= low {
				atLow++
			}
		}
		if got := b.GetCumulativeCount(); got > atLe || got < atLow {
			t.Errorf("le=%g: cumulative %d, want within [%d,%d]", b.GetUpperBound(), got, atLow, atLe)
		}
	}
}

func TestCollectorSummary(t *testing.T) {
	var h Histogram
	for i := int64(1); i <= 1000; i++ {
		h.Record(i * 1000) // 1us .. 1ms
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(CollectorOpts{Name: "sum_latency_seconds", Help: "test", Summary: true}, &h))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	s := mfs[0].GetMetric()[0].GetSummary()
	if s.GetSampleCount() != 1000 {
		t.Fatalf("count %d", s.GetSampleCount())
	}
	if len(s.GetQuantile()) != len(DefaultQuantiles) {
		t.Fatalf("%d quantiles", len(s.GetQuantile()))
	}
	for _, q := range s.GetQuantile() {
		want := math.Ceil(q.GetQuantile()*1000) * 1000 / 1e9
		if math.Abs(q.GetValue()-want) > want/128 {
			t.Errorf("q%v = %g want %g", q.GetQuantile(), q.GetValue(), want)
		}
	}
}
