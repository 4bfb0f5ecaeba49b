package handler

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/latency"
)

// Tail attribution of BenchmarkPipelinePaced/run-to-completion, built with
// -tags tailtrace: the handler records one batchTrace per batch (its
// pickup, the end of its offers, the end of its publish, the oldest
// packet's receive time, the longest interval between two clock readings
// before the publish (one after each packet's offer), packets, messages and books), and the paced
// receiver, which runs on the receive thread, adds to each slow batch the
// thread's voluntary and involuntary context switches since the previous
// slow batch's end (getrusage(RUSAGE_THREAD) after a slow batch only,
// outside the measured path: a switch is not placed more precisely than
// that). logTail then sorts the slow messages by cause.

// tailTraceCap bounds the batches traced (about 200k batches a second).
const tailTraceCap = 1 << 21

// traceBegin runs on the receive thread in every Receive call, at since
// (ns since the start), before n packets are returned (before the
// batch's pickup when n > 0).
func (r *pacedRx) traceBegin(since int64, n int) {
	if r.h == nil {
		if r.h = r.handler; r.h == nil {
			return
		}
		r.h.inline.tail.setTrace(r.traceBuf[:0])
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &r.ru); err != nil {
			panic(err)
		}
		r.lastLoop = since
	}
	r.idleGap = max(r.idleGap, since-r.lastLoop)
	r.lastLoop = since
	if n > 0 {
		r.h.inline.tail.setIdleGap(r.idleGap)
		r.idleGap = 0
		r.trace0 = len(r.h.inline.tail.traced())
	}
}

// Release runs on the receive thread right after the batch's endBatch
// (its publish and its latencies recorded). After a batch slower than
// tailSlowNs it reads the thread's context switches: those since the
// previous slow batch are put on this one. cause blames them only when the
// batch shows the thread stopped (before its pickup or inside it): a
// switch may have come anywhere since the previous slow batch.
func (r *pacedRx) Release(pkts []rx.Packet) {
	if tailTrace && r.h != nil {
		if tr := r.h.inline.tail.traced(); len(tr) > r.trace0 {
			if t := &tr[len(tr)-1]; t.end-t.pickup > tailSlowNs {
				var ru unix.Rusage
				if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
					panic(err)
				}
				t.vcs, t.ivcs = int32(ru.Nvcsw-r.ru.Nvcsw), int32(ru.Nivcsw-r.ru.Nivcsw)
				r.ru = ru
			}
			r.trace0 = len(tr)
		}
		r.lastLoop = int64(time.Since(r.start))
	}
	r.scriptRx.Release(pkts)
}

const tailSlowNs = 5_000

// Causes of a slow batch, the first that applies. The thread stopped
// before the batch when the loop stopped stalledNs or more before its
// pickup (idleGap), inside it when two clock readings before the publish
// are stalledNs apart (maxGap) or the publish is stalledNs longer than
// publishPerBookNs per book.
const (
	causeVoluntary   = iota // the thread stopped, and parked since the previous slow batch (a Go scheduler hand-off: sysmon's preemption, a lock)
	causeInvoluntary        // the thread stopped, and the kernel ran another thread on its core since the previous slow batch
	causeStall              // no such switch, but the thread stopped inside the batch
	causeIdleStall          // no switch, no stall inside; backlogPkts or more packets, and the thread stopped before the pickup: the path is the drain of what piled up during that stop
	causeCascade            // the same without a stop before, and the batch just before neither slow by a switch or a stop: what piled up in the loop's short gaps or a slow batch with no cause found (a backlog after a batch slow by a switch or a stop takes that batch's cause, see cause)
	causeOther              // none of those: a slow batch of one or two packets
	nCauses
)

var causeNames = [nCauses]string{"switch, voluntary", "switch, involuntary", "stall inside the batch", "backlog after a stall", "backlog, no stop found", "other (1-2 packets)"}

const (
	stalledNs        = 4_000
	publishPerBookNs = 400
	backlogPkts      = 3
)

// cause is the cause of batch t. opened is the cause of the batch just
// before it when that one was slower than tailSlowNs, else -1: a backlog
// with no stop before it is the rest of the drain that batch opened, and
// takes its cause when that is a switch or a stop.
func (t *batchTrace) cause(opened int) int {
	before := t.idleGap >= stalledNs
	inside := t.maxGap >= stalledNs || t.end-t.offered >= stalledNs+int64(t.books)*publishPerBookNs
	switch {
	case t.vcs > 0 && (before || inside):
		return causeVoluntary
	case t.ivcs > 0 && (before || inside):
		return causeInvoluntary
	case inside:
		return causeStall
	case t.pkts >= backlogPkts && before:
		return causeIdleStall
	case t.pkts >= backlogPkts && opened >= 0 && opened <= causeIdleStall:
		return opened
	case t.pkts >= backlogPkts:
		return causeCascade
	}
	return causeOther
}

// causes is the cause of each batch of the trace, in order (see cause).
func causes(trace []batchTrace) []int8 {
	cs := make([]int8, len(trace))
	opened := -1
	for i := range trace {
		t := &trace[i]
		cs[i] = int8(t.cause(opened))
		opened = -1
		if t.end-t.pickup > tailSlowNs {
			opened = int(cs[i])
		}
	}
	return cs
}

// logTail logs, for the messages whose path (pickup to publish end) is over
// 5 µs and over 20 µs, their share by cause and what their batches were
// like, and the path by batch size.
func logTail(b *testing.B, trace []batchTrace, path *latency.Snapshot) {
	if len(trace) == 0 {
		return
	}
	var total int64
	for i := range trace {
		total += int64(trace[i].msgs)
	}
	// The trace's own path quantiles, against the histogram's: the trace
	// misses the batches before the receiver knew the handler. Both are
	// message-weighted, in the same buckets.
	var byPath latency.Histogram
	for i := range trace {
		byPath.RecordN(trace[i].end-trace[i].pickup, int(trace[i].msgs))
	}
	q := byPath.Quantile
	b.Logf("tail: %d batches, %d messages traced; path p50/p99/p99.9 %d/%d/%d ns (histogram: %d/%d/%d)",
		len(trace), total, q(0.5), q(0.99), q(0.999), path.Quantile(0.5), path.Quantile(0.99), path.Quantile(0.999))
	cs := causes(trace)
	for _, thr := range []int64{5_000, 20_000} {
		var msgs [nCauses]int64
		var nb [nCauses]int
		var pkts, runs, books, offer, publish, wait, gap, idle [nCauses]float64
		var slow int64
		for i := range trace {
			t := &trace[i]
			if t.end-t.pickup <= thr {
				continue
			}
			c, m := cs[i], float64(t.msgs)
			slow += int64(t.msgs)
			msgs[c] += int64(t.msgs)
			nb[c]++
			pkts[c] += m * float64(t.pkts)
			runs[c] += m * float64(t.runs)
			books[c] += m * float64(t.books)
			offer[c] += m * float64(t.offered-t.pickup)
			publish[c] += m * float64(t.end-t.offered)
			wait[c] += m * float64(t.pickup-t.due)
			gap[c] += m * float64(t.maxGap)
			idle[c] += m * float64(t.idleGap)
		}
		b.Logf("tail: path > %d us: %d messages (%.2f%%) in %d batches; by cause (a backlog with no stop before takes the cause of the slow batch before it; message-weighted means of their batches):",
			thr/1000, slow, 100*float64(slow)/float64(total), sum(nb[:]))
		b.Logf("tail:   %-24s %7s %7s %6s %6s %6s %6s %9s %9s %9s %9s %9s", "cause", "share", "batches", "pkts", "new", "books", "msgs", "offer-ns", "publ-ns", "wait-ns", "maxgap-ns", "idlegap-ns")
		for c := range nCauses {
			if msgs[c] == 0 {
				continue
			}
			m := float64(msgs[c])
			b.Logf("tail:   %-24s %6.1f%% %7d %6.1f %6.1f %6.1f %6.1f %9.0f %9.0f %9.0f %9.0f %9.0f", causeNames[c], 100*m/float64(slow), nb[c],
				pkts[c]/m, runs[c]/m, books[c]/m, m/float64(nb[c]), offer[c]/m, publish[c]/m, wait[c]/m, gap[c]/m, idle[c]/m)
		}
	}
	// The path by batch size: what draining n packets costs.
	buckets := []int32{1, 2, 4, 8, 16, 32, 64, 1 << 30}
	var lines []string
	for i := 0; i+1 < len(buckets); i++ {
		var paths []int64
		var m int64
		for j := range trace {
			t := &trace[j]
			if t.pkts >= buckets[i] && t.pkts < buckets[i+1] && t.vcs == 0 && t.ivcs == 0 {
				paths = append(paths, t.end-t.pickup)
				m += int64(t.msgs)
			}
		}
		if len(paths) == 0 {
			continue
		}
		slices.Sort(paths)
		lines = append(lines, fmt.Sprintf("[%d,%d) pkts: %.2f%% of msgs, %d batches, path p50 %d p90 %d ns",
			buckets[i], buckets[i+1], 100*float64(m)/float64(total), len(paths), paths[len(paths)/2], paths[len(paths)*9/10]))
	}
	for _, l := range lines {
		b.Logf("tail: by batch size (no switch): %s", l)
	}
	if p := os.Getenv("FH_TAIL_DUMP"); p != "" {
		dumpTrace(b, p, trace)
	}
}

func sum(v []int) (s int) {
	for _, x := range v {
		s += x
	}
	return s
}

// dumpTrace writes the trace as text, one batch a line, for offline
// analysis (FH_TAIL_DUMP=file).
func dumpTrace(b *testing.B, path string, trace []batchTrace) {
	buf := []byte("pickup offered end due maxgap idlegap pkts runs msgs books vcs ivcs\n")
	for _, t := range trace {
		for _, v := range []int64{t.pickup, t.offered, t.end, t.due, t.maxGap, t.idleGap, int64(t.pkts), int64(t.runs), int64(t.msgs), int64(t.books), int64(t.vcs)} {
			buf = strconv.AppendInt(buf, v, 10)
			buf = append(buf, ' ')
		}
		buf = strconv.AppendInt(buf, int64(t.ivcs), 10)
		buf = append(buf, '\n')
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.Error(err)
	}
}
