package latency_test

import (
	"fmt"

	"github.com/marketfeed/feedhandler/internal/latency"
)

func Example() {
	var h latency.Histogram // one writer goroutine records
	for i := int64(1); i <= 10_000; i++ {
		h.Record(i * 100) // 100 ns .. 1 ms
	}
	// Any goroutine may read while the writer records.
	fmt.Println("count", h.Count(), "max", h.Max())
	for _, q := range []float64{0.5, 0.99, 0.999} {
		v := h.Quantile(q)
		exact := int64(q*10_000) * 100
		fmt.Printf("p%v within 1%%: %v\n", q*100, abs(v-exact)*100 <= exact)
	}
	// Output:
	// count 10000 max 1000000
	// p50 within 1%: true
	// p99 within 1%: true
	// p99.9 within 1%: true
}

func ExampleSnapshot_Merge() {
	var shard0, shard1 latency.Histogram
	shard0.Record(1_000)
	shard1.Record(3_000)
	var s, total latency.Snapshot
	shard0.Snapshot(&s)
	total.Merge(&s)
	shard1.Snapshot(&s)
	total.Merge(&s)
	fmt.Println(total.Count, total.Min, total.Max, total.Mean())
	// Output: 2 1000 3000 2000
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
