package book

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// applyAll scans a framed stream and applies every message (parse+apply).
func applyAll(bs *Books, buf []byte) int {
	var s itch.Scanner
	s.Reset(buf)
	n := 0
	for m, ok := s.Next(); ok; m, ok = s.Next() {
		bs.Apply(m)
		n++
	}
	return n
}

// BenchmarkApplyDay: 5000 symbols (activity skewed to a few), 2 M live
// orders built up, then 3 M messages of a day's mix (timed), then every
// order deleted so each iteration replays the same stream on the same
// Books. ns/msg is parse+apply of the churn phase only: the build-up and
// drain phases are untimed set-up.
func BenchmarkApplyDay(b *testing.B) {
	p := buildDayPhases(1, 5000, 2_000_000, 3_000_000, true)
	bs, err := New(Config{MaxOrders: 1 << 22, MaxLocates: 8192, MaxLevels: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	for _, ph := range p { // warm up ladders and page in the tables
		applyAll(bs, ph.buf)
	}
	b.ReportAllocs()
	var churn time.Duration
	for b.Loop() {
		applyAll(bs, p[0].buf)
		t0 := time.Now()
		applyAll(bs, p[1].buf)
		churn += time.Since(t0)
		applyAll(bs, p[2].buf)
	}
	b.ReportMetric(float64(churn.Nanoseconds())/float64(b.N*p[1].msgs), "ns/msg")
	if s := bs.Stats(); s.Inconsistencies() != 0 || s.Orders != 0 {
		b.Fatalf("stream not consistent: %+v", s)
	}
}
