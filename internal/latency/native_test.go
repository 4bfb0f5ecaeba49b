package latency

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHistogramMetricNative checks the native buckets against the recorded
// values: at every native bucket boundary B the cumulative count is at most
// the number of values <= B and at least the number of values <= B minus one
// internal bucket width (1/64), and the classic buckets agree the same way.
func TestHistogramMetricNative(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var h Histogram
	var vals []int64
	for range 50_000 {
		v := int64(math.Exp(rng.Float64() * math.Log(5e9)))
		if rng.IntN(100) == 0 {
			v = 0
		}
		vals = append(vals, v)
		h.Record(v)
	}
	var s Snapshot
	h.Snapshot(&s)
	desc := prometheus.NewDesc("test_seconds", "test", []string{"feed"}, nil)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectorFunc{desc, func(ch chan<- prometheus.Metric) {
		ch <- HistogramMetric(desc, &s, nil, time.Unix(1, 0), "itch")
	}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ph := mfs[0].GetMetric()[0].GetHistogram()
	if ph.GetSchema() != NativeSchema || ph.GetSampleCount() != uint64(len(vals)) {
		t.Fatalf("schema %d count %d", ph.GetSchema(), ph.GetSampleCount())
	}
	if got := mfs[0].GetMetric()[0].GetLabel(); len(got) != 1 || got[0].GetValue() != "itch" {
		t.Fatalf("labels %v", got)
	}
	countLE := func(bound float64) (exact, loose uint64) {
		for _, v := range vals {
			x := float64(v) / 1e9
			if x <= bound {
				exact++
			}
			if x <= bound*(1-1.0/64) {
				loose++
			}
		}
		return
	}
	zero := ph.GetZeroCount()
	if e, _ := countLE(0); zero != e {
		t.Errorf("zero bucket %d, want %d", zero, e)
	}
	cum := zero
	var idx int32
	var cnt int64
	di := 0
	buckets := 0
	for si, sp := range ph.GetPositiveSpan() {
		if si == 0 {
			idx = sp.GetOffset()
		} else {
			idx += sp.GetOffset()
		}
		for range sp.GetLength() {
			cnt += ph.GetPositiveDelta()[di]
			di++
			if cnt < 0 {
				t.Fatalf("negative bucket count at %d", idx)
			}
			cum += uint64(cnt)
			buckets++
			ub := math.Exp2(float64(idx) / (1 << NativeSchema))
			exact, loose := countLE(ub)
			if cum > exact || cum < loose {
				t.Errorf("native bucket %d (le %g): cumulative %d, want in [%d, %d]", idx, ub, cum, loose, exact)
			}
			idx++
		}
	}
	if cum != uint64(len(vals)) || buckets == 0 {
		t.Errorf("native buckets hold %d of %d values (%d buckets)", cum, len(vals), buckets)
	}
	if len(ph.GetBucket()) != len(DefaultBuckets) {
		t.Fatalf("%d classic buckets", len(ph.GetBucket()))
	}
	for _, b := range ph.GetBucket() {
		exact, loose := countLE(b.GetUpperBound())
		if c := b.GetCumulativeCount(); c > exact || c < loose {
			t.Errorf("classic bucket le %g: %d, want in [%d, %d]", b.GetUpperBound(), c, loose, exact)
		}
	}
}

func TestNativeIndex(t *testing.T) {
	for _, v := range []float64{1, 2, 0.5, 1e-9, 3e-7, 1.0905077326652577, 10} {
		i := nativeIndex(v)
		up, lo := math.Exp2(float64(i)/8), math.Exp2(float64(i-1)/8)
		if !(v <= up && v > lo) {
			t.Errorf("nativeIndex(%g) = %d: bucket (%g, %g]", v, i, lo, up)
		}
	}
	if nativeIndex(1) != 0 || nativeIndex(2) != 8 {
		t.Errorf("nativeIndex(1) = %d, nativeIndex(2) = %d; want 0, 8", nativeIndex(1), nativeIndex(2))
	}
}

type collectorFunc struct {
	d *prometheus.Desc
	f func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.d }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.f(ch) }
