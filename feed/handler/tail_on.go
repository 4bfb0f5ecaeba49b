//go:build tailtrace

package handler

import (
	"cmp"

	"github.com/marketfeed/feedhandler/feed/rx"
)

// tailTrace is on: each run-to-completion batch leaves a batchTrace
// (BenchmarkPipelinePaced attributes its slow messages). It adds to the
// path a clock read after each packet's offer, a pass over the batch's
// packets for the oldest receive time, and the stages' offered clock
// read, with the record appended at the batch's end.
const tailTrace = true

// tailState builds the current batch's trace and keeps the trace.
type tailState struct {
	// One batchTrace per batch, up to the slice's capacity (the
	// benchmark's receiver sizes it); the fields below build the current
	// one.
	trace   []batchTrace
	pkts    int    // packets offered in the batch
	due     int64  // the oldest offered packet's receive time
	lastT   int64  // the batch's previous clock reading
	maxGap  int64  // the longest interval between two readings before the publish
	idleGap int64  // the longest stop of the loop between the previous batch and this one (set by the benchmark's receiver)
	books0  uint64 // pub.Published when the batch was picked up
	open    bool   // begin ran and the batch's last endBatch has not: end records (not the loop's later endBatch of what Tick or recovery released)
}

// begin starts a batch's trace at its pickup; published is the shard's
// pub.Published.
func (t *tailState) begin(pickup int64, pkts []rx.Packet, published uint64) {
	t.lastT, t.maxGap, t.pkts, t.books0, t.open = pickup, 0, len(pkts), published, true
	t.due = pickup
	for i := range pkts {
		t.due = min(t.due, pkts[i].RxTime)
	}
}

// close ends the batch without a record: its last endBatch had nothing
// to publish.
func (t *tailState) close() { t.open = false }

// mark notes a clock reading now inside the batch.
func (t *tailState) mark(now int64) {
	t.maxGap = max(t.maxGap, now-t.lastT)
	t.lastT = now
}

// end appends the batch's record at endBatch: offered is the stages'
// offered (0 when apply ended the batch early, at maxRuns: the batch
// stays open for its remaining packets), now the end of its publish,
// runs and msgs what it applied.
func (t *tailState) end(offered, now int64, runs []run, msgs, published uint64) {
	if !t.open {
		return
	}
	if offered != 0 {
		t.open = false
	}
	if len(runs) > 0 && len(t.trace) < cap(t.trace) {
		// Ended before the batch's last offer (apply ends a batch at maxRuns):
		// its offers ended at the last reading.
		off := cmp.Or(offered, t.lastT)
		t.trace = append(t.trace, batchTrace{pickup: runs[0].pickup, offered: off, end: now,
			due: t.due, maxGap: t.maxGap, idleGap: t.idleGap, pkts: int32(t.pkts), runs: int32(len(runs)),
			msgs: int32(msgs), books: int32(published - t.books0)})
	}
	t.books0 = published
}

// The benchmark's receiver (tail_test.go) reads and fills these.

func (t *tailState) setTrace(buf []batchTrace) { t.trace = buf }
func (t *tailState) traced() []batchTrace      { return t.trace }
func (t *tailState) setIdleGap(ns int64)       { t.idleGap = ns }
