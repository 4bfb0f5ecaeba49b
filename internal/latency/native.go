package latency

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// NativeSchema is the Prometheus native-histogram schema HistogramMetric
// exports: 2^3 = 8 buckets per power of two, a growth factor of 1.09 per
// bucket (client_golang's NativeHistogramBucketFactor 1.1 picks the same).
const NativeSchema = 3

// HistogramMetric returns s as one Prometheus histogram carrying both
// representations, as client_golang's own histograms do when both are
// configured: classic buckets at bounds (seconds, ascending; see
// DefaultBuckets) for scrapers that only read the text format, and native
// (sparse, exponential) buckets of NativeSchema for scrapers that negotiate
// the protobuf format. Values are exported in seconds.
//
// Every internal bucket is placed in the native bucket that holds its upper
// bound, and counted in a classic bucket only when its upper bound is <= the
// bucket's bound, so neither representation ever counts a value below a
// bound it may exceed (resolution: one internal bucket, 1.6%).
//
// It is meant for scrapes: it allocates the exported buckets, never touching
// the recording side.
func HistogramMetric(desc *prometheus.Desc, s *Snapshot, bounds []float64, created time.Time, labelValues ...string) prometheus.Metric {
	if len(bounds) == 0 {
		bounds = DefaultBuckets
	}
	m := &histMetric{desc: desc, labels: prometheus.MakeLabelPairs(desc, labelValues)}
	h := &m.h
	count, sum := s.Count, float64(s.Sum)/1e9
	h.SampleCount, h.SampleSum = &count, &sum
	if !created.IsZero() {
		h.CreatedTimestamp = timestamppb.New(created)
	}
	// Classic buckets: cumulative counts.
	h.Bucket = make([]*dto.Bucket, len(bounds))
	for i, b := range bounds {
		c := s.CountAtOrBelow(int64(math.Round(b * 1e9)))
		ub := b
		h.Bucket[i] = &dto.Bucket{CumulativeCount: &c, UpperBound: &ub}
	}
	// Native buckets: zero bucket for 0 ns, then sparse positive buckets.
	schema := int32(NativeSchema)
	var zeroThreshold float64
	var zero uint64
	h.Schema, h.ZeroThreshold, h.ZeroCount = &schema, &zeroThreshold, &zero
	var (
		emitted bool  // a native bucket was appended
		lastOut int   // index of the last appended native bucket
		prevCnt int64 // its count (deltas are against it)
		cur     int   // index of the native bucket being summed
		curCnt  int64
	)
	emit := func() {
		if curCnt == 0 {
			return
		}
		switch {
		case !emitted:
			h.PositiveSpan = append(h.PositiveSpan, newSpan(int32(cur)))
		case cur-lastOut > 1:
			h.PositiveSpan = append(h.PositiveSpan, newSpan(int32(cur-lastOut-1)))
		}
		*h.PositiveSpan[len(h.PositiveSpan)-1].Length++
		h.PositiveDelta = append(h.PositiveDelta, curCnt-prevCnt)
		emitted, lastOut, prevCnt = true, cur, curCnt
	}
	for i, c := range s.Counts {
		if c == 0 {
			continue
		}
		_, hi := BucketBounds(i)
		if hi <= 0 {
			zero += c
			continue
		}
		if idx := nativeIndex(float64(hi) / 1e9); idx != cur || curCnt == 0 {
			emit()
			cur, curCnt = idx, 0
		}
		curCnt += int64(c)
	}
	emit()
	if len(h.PositiveSpan) == 0 && zero == 0 {
		// An empty native histogram still needs a span to be told apart
		// from a classic-only one.
		h.PositiveSpan = []*dto.BucketSpan{newSpan(0)}
	}
	return m
}

// nativeIndex is the index of the native bucket (schema NativeSchema) that
// holds v > 0: bucket i covers (2^((i-1)/8), 2^(i/8)].
func nativeIndex(v float64) int {
	frac, exp := math.Frexp(v) // v = frac * 2^exp, frac in [0.5, 1)
	const n = 1 << NativeSchema
	// log2(v) = exp + log2(frac), log2(frac) in [-1, 0).
	idx := int(math.Ceil((float64(exp) + math.Log2(frac)) * n))
	// Guard against rounding at exact powers: v must be <= upper bound of idx
	// and > upper bound of idx-1.
	for v > math.Exp2(float64(idx)/n) {
		idx++
	}
	for idx > math.MinInt32 && v <= math.Exp2(float64(idx-1)/n) {
		idx--
	}
	return idx
}

func newSpan(offset int32) *dto.BucketSpan {
	var n uint32
	return &dto.BucketSpan{Offset: &offset, Length: &n}
}

type histMetric struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	h      dto.Histogram
}

func (m *histMetric) Desc() *prometheus.Desc { return m.desc }

func (m *histMetric) Write(out *dto.Metric) error {
	out.Label = m.labels
	out.Histogram = &m.h
	return nil
}
