// Package latency records latencies in a fixed-size log-linear histogram
// (in the spirit of HdrHistogram) and exports them to Prometheus.
//
// Buckets: values below 128 ns are counted exactly; above that each power of
// two is split into 64 equal buckets, so a bucket is at most 1/64 (1.6%) of
// its lower bound wide. Quantile answers with the middle of the bucket that
// holds the requested rank, clamped to the recorded minimum and maximum, so
// its relative error is at most 1/128 (< 0.8%) of the exact value. The range
// is 0 to MaxTrackable (2^36 ns, about 68.7 s); larger values are counted in
// the last bucket (Max still reports them exactly) and negative values as 0.
//
// Threading: a Histogram has one writer goroutine, which alone calls Record
// and Merge. Any goroutine may read it at the same time (Snapshot, Quantile,
// Count, Max), because every counter is an atomic word; a snapshot taken
// during recording is a consistent-enough view (each bucket exact, the set
// of buckets possibly a few records apart). Record costs one bucket index
// computation and two adds, allocates nothing, and takes no lock: the
// writer alone changes the counters, so its adds are plain ones, stores a
// reader's atomic load sees whole (package single; atomic adds under the
// race detector). Two writers of one Histogram lose counts.
//
// A Snapshot is a plain copy that a reader owns: Merge combines shards,
// Since turns two cumulative snapshots into the values of the interval
// between them (for a periodic stats line), Quantile/Mean/CountAtOrBelow
// answer questions. Snapshots are 16 KiB; keep one around rather than
// taking a fresh one per call.
//
// Typical use: one Histogram per pipeline stage per goroutine (receive to
// book-apply, apply to publish), merged at read time by a Collector:
//
//	var h latency.Histogram
//	h.Record(time.Since(start).Nanoseconds())   // writer
//	p99 := h.Quantile(0.99)                      // any goroutine
//	prometheus.MustRegister(latency.NewCollector(latency.CollectorOpts{
//		Name: "feedhandler_apply_latency_seconds", Help: "..."}, &h))
package latency
