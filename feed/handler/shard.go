package handler

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/internal/latency"
	"github.com/marketfeed/feedhandler/internal/mem"
	"github.com/marketfeed/feedhandler/internal/single"
	"github.com/marketfeed/feedhandler/internal/spsc"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// maxMsgLen is the longest ITCH 5.0 message (NOII, 50 bytes) rounded up so a
// slot is 80 bytes. A longer message (a type's fields and bytes after them)
// is handed to a shard cut to its first maxMsgLen bytes: longer than any
// type's fields still, so the shard's books apply it by them and count it
// Long, as the whole message is applied and counted in run to completion
// (TestLongMessagesSameBooks).
const maxMsgLen = 53

// minMsgLen is the shortest delivered message handed to the books: a type
// byte and a locate, by which it is routed. A shorter one is counted in
// Stats.BadMessages; one shorter than its type's fields, in the books'
// Malformed.
const minMsgLen = 3

// slot is one ITCH message handed from the receive thread to a shard, by
// value (no pointers).
type slot struct {
	seq      uint64
	rxTime   int64 // receive timestamp of its packet (the backend's: kernel or first user-space sight)
	pickup   int64 // when the receive thread took the batch that made it deliverable
	kind     uint8 // 0: an ITCH message; else a marker (markerStale)
	n        uint8
	repaired bool // delivered by recovery (Arbiter.Repairing): recorded apart
	data     [maxMsgLen]byte
}

// Marker slots, ordered with the messages.
const (
	// markerStale: a gap was declared before this point: books may be
	// missing messages from here on.
	markerStale = 1 + iota
	// markerRebuild: a snapshot follows: flag and publish the books as
	// they are, empty them, and publish nothing until markerRebuilt.
	markerRebuild
	// markerRebuilt: the snapshot is loaded: publish every book.
	markerRebuilt
	// markerWhole: no gap is open any more: clear the stale flag.
	markerWhole
	// markerWithdraw: the locate in data[1:3] was given to a symbol the
	// filter leaves out: end its book (shard.withdraw).
	markerWithdraw
	// markerClaim: a Stock Directory message gave the locate in
	// data[1:3], another shard's, the symbol in data[3:11] (zero bytes:
	// none, withdrawn): book.Books.Claim.
	markerClaim
)

// ShardStats are one shard's counters.
type ShardStats struct {
	Applied       uint64 // messages applied to its books
	Published     uint64 // snapshots published
	Batches       uint64
	Book          book.Stats
	Ring          spsc.Stats
	PublishErrors uint64 // books not published (no shm slot, a bad symbol), each once until the next rebuild (Publisher.Errors)
	Rebound       uint64 // locates whose shm slot was retired (bound to another symbol by a new session): moved to a fresh slot, or to none when no slot is left (also in PublishErrors) or the symbol filter leaves the new symbol out
	// StaleBinds: snapshots not published because the shm writer refused
	// their binding, another shard's binding of the symbol standing in
	// the way (Publisher.StaleBinds: this shard lags a session change;
	// Publisher.DuplicateBinds: the other lags a Stock Directory that
	// freed the symbol). Only sharding has them.
	StaleBinds uint64
	// DuplicateSymbols: Stock Directory messages that gave one of the
	// shard's locates a symbol another locate (of any shard) holds in the
	// session (book.Stats.DuplicateSymbol): the first locate keeps the
	// symbol, the later one's book is kept but not published. The same
	// in every mode, summed over the shards.
	DuplicateSymbols uint64
	Stale            bool // the shard's books are flagged PossiblyStale (an unrecovered gap)
	// Sweeping: a market-wide republish is under way (a change of the
	// flag above, a System Event), a chunk a batch: some books in the shm
	// file do not show it yet.
	Sweeping bool
	Books    int // books the shard has published (registered in shm)
	// Thread is how the thread applying the shard's messages is
	// scheduled: its own thread when sharded, the receive thread in run
	// to completion.
	Thread ThreadSched
}

// shard owns the books of the locates routed to it: it is their single
// writer, and publishes their snapshots.
type shard struct {
	id    int
	core  int // -1: not pinned
	ring  *spsc.Ring[slot]
	books *book.Books
	pub   *Publisher

	rtPriority int // SCHED_FIFO priority of its thread; 0: normal scheduling
	// fault handles a panic recovered by its thread's loop (Handler.shmFault;
	// nil: the panic goes on).
	fault  func(p any, thread string) bool
	thread ThreadSched // set by its thread before Start returns

	hist     latency.Histogram // receive timestamp to publish, per live message
	histPath latency.Histogram // pickup by the receive thread to publish: the handler's own path
	histRep  latency.Histogram // receive timestamp to publish of repaired messages (waited for recovery)

	// applied and batches have one writer, the shard's thread (in run to
	// completion the receive thread): it adds with single.Add, no locked
	// add a batch; a reader that sees applied move sees what the batch
	// published (single's release).
	applied atomic.Uint64 // messages applied (read by the pipeline to know it drained)
	alive   atomic.Uint64 // sharded: passes of the shard thread's stats points, for the heartbeat (housekeeping)

	batches    atomic.Uint64 // batches applied and published (its writer only adds)
	rebuilding bool          // between markerRebuild and markerRebuilt: publish nothing
	// rebuilt is shared by the shards of a sharded pipeline (nil in run
	// to completion), and rebuilds counts the markerRebuild this shard
	// met: see settleRebuild.
	rebuilt  *rebuildCount
	rebuilds uint64

	// Run to completion (ring == nil): the receive thread applies each
	// message as the arbiter delivers it and ends the batch with endBatch.
	pending bool   // something was applied or marked since the last endBatch
	nMsgs   uint64 // messages applied since the last endBatch
	runs    []run  // a run of messages per packet, for the latency histograms

	mu    sync.Mutex // guards stats, copied out every few tens of milliseconds
	stats ShardStats

	// tail builds a batchTrace per run-to-completion batch with -tags
	// tailtrace; without it, an empty struct (not the last field: a
	// zero-size last field would be padded).
	tail tailState

	// stages times a run-to-completion batch's stages, per message, when
	// built with -tags stagetiming (else untouched; offered is also set
	// with -tags tailtrace).
	stages struct {
		offered int64 // when the batch's packets were offered (parsed, arbitrated, applied)
		applyNs int64 // time in book apply so far in the batch
		offer   latency.Histogram
		apply   latency.Histogram
		publish latency.Histogram
	}
}

// batchTrace is one run-to-completion batch, as -tags tailtrace records
// it: what its messages' path (pickup to publish end) was made of.
type batchTrace struct {
	pickup, offered, end int64 // pickup; packets offered (parsed, arbitrated, applied); publish ended
	due                  int64 // receive time of the batch's oldest packet
	maxGap               int64 // longest interval between two clock readings from pickup to offered (one after each packet's offer)
	idleGap              int64 // longest stop of the receive loop between the previous batch and this pickup (the benchmark's receiver measures it)
	pkts, runs           int32 // packets offered; packets that applied messages
	msgs, books          int32 // messages applied; books published
	vcs, ivcs            int32 // after a slow batch only: the thread's voluntary and involuntary switches since the previous slow batch's end (filled by the benchmark's receiver)
}

// run is the messages of one packet applied in the current batch: they
// share their receive and pickup times.
type run struct {
	rxTime, pickup int64
	n              int
	repaired       bool
}

// maxRuns bounds the packets a run-to-completion batch records before it
// is ended early (published and recorded): a receive batch is at most a
// few hundred packets, a recovered range or a snapshot can be more.
const maxRuns = 1024

// newShard returns a shard with a ring of ringSize slots fed by the
// receive thread, or with ringSize 0 a ring-less shard that the receive
// thread drives itself (run to completion).
func newShard(id, core int, ringSize int, bcfg book.Config, w *shm.Writer, depth int) (*shard, error) {
	bs, err := book.New(bcfg)
	if err != nil {
		return nil, err
	}
	if ringSize == 0 {
		s := &shard{id: id, core: core, books: bs, pub: NewPublisher(w, bs, depth), runs: make([]run, 0, maxRuns+1)}
		s.touch()
		return s, nil
	}
	r, err := spsc.New[slot](ringSize)
	if err != nil {
		return nil, err
	}
	r.SetBackoff(shardBackoff(core >= 0))
	s := &shard{id: id, core: core, ring: r, books: bs, pub: NewPublisher(w, bs, depth)}
	s.touch()
	return s, nil
}

// shardBackoff is how the two ends of a shard's ring wait: both are
// locked to their threads (the receive thread and the shard's), so they
// yield and sleep in the kernel. A pinned shard owns its core: it polls
// hard before sleeping, so that a message waits nanoseconds, not a
// scheduler tick. An unpinned one shares the CPUs with the receive thread
// and everything else, and spins briefly.
func shardBackoff(pinned bool) spsc.Backoff {
	if pinned {
		return spsc.Backoff{Spins: 1 << 16, Yields: 1 << 14, MinSleep: time.Microsecond, MaxSleep: 20 * time.Microsecond, Thread: true}
	}
	return spsc.Backoff{Thread: true}
}

// touch touches what the shard's thread writes as it goes, all zero here
// (mem.Touch): the latency histograms (16 KiB each: the first latency in a
// new range would fault its bucket's page in on the hot thread) and the
// runs.
func (s *shard) touch() {
	for _, h := range []*latency.Histogram{&s.hist, &s.histPath, &s.histRep} {
		mem.Touch(mem.Of(h))
	}
	mem.Touch(mem.Bytes(s.runs[:cap(s.runs)]))
}

// run applies and publishes until the ring is closed and drained. It
// reports its thread's pinning on pinErr before the receive thread starts
// (Start), having set the ring's backoff for the thread as pinned: a
// shard whose core cannot be had (a CPU outside the process's affinity,
// the cgroup's cpuset) runs unpinned, and waits as an unpinned one.
func (s *shard) run(pinErr chan<- error) {
	runtime.LockOSThread() // never unlocked: the pinned thread exits with the goroutine
	err := setupThread(s.core, s.rtPriority, &s.thread)
	if s.core >= 0 && s.thread.Core < 0 {
		s.ring.SetBackoff(shardBackoff(false))
	}
	pinErr <- err
	// A store into the shm file truncated under the writer is a panic,
	// which loop recovers (shmFault), not a crash of the process.
	debug.SetPanicOnFault(true)
	if s.loop() {
		s.discard()
	}
}

// discard releases what the ring holds until it is drained, after a fault
// on the shm file (loop): the receive thread never waits for room in the
// ring of a shard that stopped, and Stop finds it drained.
func (s *shard) discard() {
	for {
		if batch := s.ring.PeekWait(256, 50*time.Millisecond); len(batch) != 0 {
			for i := range batch {
				if batch[i].kind == markerRebuild && s.rebuilt != nil {
					// Passed, for a shard waiting in settleRebuild
					// (again, if the fault came after it passed).
					s.rebuilt.passed.Add(1)
				}
			}
			s.ring.Release(len(batch))
			continue
		}
		s.alive.Add(1)
		if s.ring.Drained() {
			return
		}
	}
}

// loop is the shard thread's loop, until its ring is drained after Stop,
// or until a store into the shm file faults (true: the file was truncated
// under the writer, reported by shmFault). The recover is deferred once
// per thread, not per message.
func (s *shard) loop() (faulted bool) {
	defer func() {
		if p := recover(); p != nil {
			if s.fault == nil {
				panic(p)
			}
			faulted = s.fault(p, "shard "+strconv.Itoa(s.id))
		}
	}()
	const batchMax = 256
	lastStats := clock.Now()
	for {
		var batch []slot
		if s.pub.Sweeping() && !s.rebuilding {
			// A market-wide republish under way: a chunk of it
			// whenever the ring is empty (FlushSome adds one after
			// each batch too).
			if batch = s.ring.Peek(batchMax); len(batch) == 0 {
				s.pub.FlushSome()
				continue
			}
		} else if batch = s.ring.PeekWait(batchMax, 50*time.Millisecond); len(batch) == 0 {
			s.alive.Add(1)
			if !s.rebuilding {
				// Idle: a duplicate refused here may be free now,
				// another shard having retired the binding in its
				// way (Publisher.flush asks again).
				s.pub.FlushSome()
			}
			s.copyStats(true)
			// Drained, not Closed: the wait may have timed out before
			// the receive thread's last messages and Stop's Close.
			if s.ring.Drained() {
				return false
			}
			continue
		}
		msgs := 0
		for i := range batch {
			m := &batch[i]
			if m.kind != 0 {
				switch loc := uint16(m.data[1])<<8 | uint16(m.data[2]); m.kind {
				case markerWithdraw:
					s.withdraw(loc)
					continue
				case markerClaim:
					s.books.Claim(loc, itch.Symbol(m.data[3:11]))
					continue
				}
				s.marker(m.kind)
				continue
			}
			loc, changed := s.books.Apply(itch.Msg(m.data[:m.n]))
			s.pub.Applied(loc, changed, m.seq, m.rxTime)
			msgs++
		}
		if !s.rebuilding {
			s.pub.FlushSome()
		}
		now := clock.Now()
		s.record(batch, now)
		s.ring.Release(len(batch))
		single.Add(&s.applied, uint64(msgs))
		single.Add(&s.batches, 1)
		lastStats = min(lastStats, now) // the wall clock stepped back: copy 50 ms on, not once it is back
		if now-lastStats > int64(50*time.Millisecond) {
			s.alive.Add(1)
			if s.copyStats(false) {
				lastStats = now
			}
		}
	}
}

// record adds the batch's messages to the latency histograms, one Record
// per run of messages that share their timestamps (a packet's messages).
func (s *shard) record(batch []slot, now int64) {
	var path pathRun
	for i := 0; i < len(batch); {
		if batch[i].kind != 0 {
			i++
			continue
		}
		rxTime, pickup, rep := batch[i].rxTime, batch[i].pickup, batch[i].repaired
		j := i + 1
		for j < len(batch) && batch[j].kind == 0 && batch[j].rxTime == rxTime && batch[j].pickup == pickup && batch[j].repaired == rep {
			j++
		}
		s.recordRun(now, rxTime, pickup, j-i, rep, &path)
		i = j
	}
	s.recordPath(&path, now)
}

// pathRun is the live messages of a batch's runs that were picked up
// together (one receive batch: each packet a run, with its own receive
// time, and one pickup): their path latency (now - pickup) is one value,
// recorded once for all of them (recordPath) rather than once a run.
// The histogram is the same: RecordN(v, a) then RecordN(v, b) counts
// and sums as RecordN(v, a+b).
type pathRun struct {
	pickup int64
	n      int
}

// recordRun records n messages that share their timestamps: live ones in
// the latency histograms, repaired ones (they waited for a recovery) apart.
// Their path latency is added to path, recorded when a run of another
// pickup follows, and at the batch's end by recordPath.
func (s *shard) recordRun(now, rxTime, pickup int64, n int, repaired bool, path *pathRun) {
	if repaired {
		s.histRep.RecordN(now-rxTime, n)
		return
	}
	s.hist.RecordN(now-rxTime, n)
	if path.n > 0 && path.pickup != pickup {
		s.recordPath(path, now)
	}
	path.pickup = pickup
	path.n += n
}

// recordPath records path's messages in the path latency and empties it.
func (s *shard) recordPath(path *pathRun, now int64) {
	s.histPath.RecordN(now-path.pickup, path.n) // nothing when n is 0
	path.n = 0
}

// marker acts on a control slot. Markers are not messages: they are not
// counted as applied.
func (s *shard) marker(kind uint8) {
	switch kind {
	case markerStale:
		s.pub.SetStale(true)
	case markerRebuild:
		// Readers keep the last whole books, flagged, until the new
		// ones are complete.
		s.pub.SetStale(true)
		s.pub.Flush()
		s.settleRebuild()
		s.books.Reset()
		s.pub.BooksReset()
		s.rebuilding = true
	case markerRebuilt:
		s.rebuilding = false
		s.pub.MarkAllDirty()
	case markerWhole:
		s.pub.SetStale(false)
	}
}

// rebuildCount counts the markerRebuild the shards of a sharded pipeline
// passed (settleRebuild).
type rebuildCount struct {
	passed atomic.Uint64
	shards uint64
}

// settleRebuild runs at a markerRebuild, sharded, once the shard published
// its books as they are and before it empties them. A book refused because
// another shard's binding of its symbol stood (a duplicate whose holder, in
// that shard, left the symbol: the claim promoted it here) is asked again
// when that shard retires the binding, at its next flush; the rebuild
// empties the books and forgets the refusal, so a rebuild (a session
// change) that came first left the book, which run to completion publishes
// when the holder leaves, out of the file until the new session announces
// it. The marker is in every shard's ring at the same point of the feed, and
// each shard's flush before it retires what the feed before it left: a
// shard with such a refusal waits here until every shard passed that
// flush, then asks again. Only then: the others do not wait, and nothing is
// added to a rebuild without one. The wait is for the other shards to reach
// the marker (their backlog); a shard that stopped on a fault counts its
// markers as it discards them.
func (s *shard) settleRebuild() {
	c := s.rebuilt
	if c == nil {
		return
	}
	s.rebuilds++
	c.passed.Add(1)
	if !s.pub.Promoted() {
		return
	}
	for want := s.rebuilds * c.shards; c.passed.Load() < want; {
		s.alive.Add(1)
		time.Sleep(20 * time.Microsecond)
	}
	s.pub.Flush()
}

// withdraw ends the book of locate loc, which a Stock Directory message
// gave to a symbol the filter leaves out (admission.withdrawn): emptied
// and counted (book.Books.Withdraw), its old symbol's slot retired at the
// next publish (Publisher.Withdrawn).
func (s *shard) withdraw(loc uint16) {
	s.books.Withdraw(loc)
	s.pub.Withdrawn(loc)
}

// apply applies one message on the receive thread (run to completion); the
// books are published when the batch ends (endBatch).
func (s *shard) apply(msg []byte, seq uint64, rxTime, pickup int64, repaired bool) {
	s.applyOne(msg, seq, rxTime)
	s.addRun(1, rxTime, pickup, repaired)
}

// applyOne applies one message to the books on the receive thread and
// tells the publisher; the caller counts it (addRun).
func (s *shard) applyOne(msg []byte, seq uint64, rxTime int64) {
	var t0 int64
	if stageTiming {
		t0 = clock.Now()
	}
	loc, changed := s.books.Apply(itch.Msg(msg))
	if stageTiming {
		s.stages.applyNs += clock.Now() - t0
	}
	s.pub.Applied(loc, changed, seq, rxTime)
}

// addRun counts n messages applied on the receive thread (run to
// completion), received at rxTime and picked up at pickup, in the batch's
// latency runs.
func (s *shard) addRun(n int, rxTime, pickup int64, repaired bool) {
	s.nMsgs += uint64(n)
	s.pending = true
	if k := len(s.runs); k > 0 && s.runs[k-1].rxTime == rxTime && s.runs[k-1].pickup == pickup && s.runs[k-1].repaired == repaired {
		s.runs[k-1].n += n
		return
	}
	s.runs = append(s.runs, run{rxTime: rxTime, pickup: pickup, n: n, repaired: repaired})
	if len(s.runs) > maxRuns {
		// Full: end the batch now. Its publish covers the n messages
		// just applied, and so does its record: their run is in it.
		s.endBatch()
	}
}

// mark acts on a marker on the receive thread (run to completion).
func (s *shard) mark(kind uint8) {
	s.marker(kind)
	s.pending = true
}

// endIdle reports whether endBatch has nothing to do: nothing applied
// since the last one, no republish under way, no tail trace. Inlinable,
// so that the receive loop asks it before calling endBatch at the end of
// every round (an empty round's call for nothing was about 15
// instructions).
func (s *shard) endIdle() bool { return !tailTrace && !s.pending && !s.pub.Sweeping() }

// endBatch publishes what the batch changed (conflated: each changed book
// once) and records the batch's latencies, as a shard thread does after
// each ring batch, and returns the time it read after the publish. It does
// nothing, and returns 0, when nothing happened since the last.
//
// The latencies end after the last book of the batch is written, not at
// the snapshots' PublishTime (read before the first): the path includes
// the whole publish.
func (s *shard) endBatch() int64 {
	if s.endIdle() {
		return 0
	}
	if !s.pending {
		if s.pub.Sweeping() && !s.rebuilding {
			// The next chunk of a market-wide republish: the receive
			// loop ends every round with endBatch, packets or not.
			s.pub.FlushSome()
		}
		if tailTrace {
			s.tail.close()
		}
		return 0
	}
	s.pending = false
	if !s.rebuilding {
		s.pub.FlushSome()
	}
	now := clock.Now()
	if stageTiming || tailTrace {
		st := &s.stages
		if stageTiming && st.offered != 0 && len(s.runs) > 0 {
			n := int(s.nMsgs)
			st.offer.RecordN(st.offered-s.runs[0].pickup, n)
			st.apply.RecordN(st.applyNs, n)
			st.publish.RecordN(now-st.offered, n)
		}
		if tailTrace {
			s.tail.end(st.offered, now, s.runs, s.nMsgs, s.pub.Published)
		}
		st.offered, st.applyNs = 0, 0
	}
	var path pathRun
	for _, r := range s.runs {
		s.recordRun(now, r.rxTime, r.pickup, r.n, r.repaired, &path)
	}
	s.recordPath(&path, now)
	s.runs = s.runs[:0]
	single.Add(&s.applied, s.nMsgs)
	s.nMsgs = 0
	single.Add(&s.batches, 1)
	return now
}

// copyStats publishes the shard's counters for other goroutines. It runs
// every few tens of milliseconds, never per message. With wait false it
// gives up, and returns false, when a reader holds the lock: a hot thread
// never waits for a reader.
func (s *shard) copyStats(wait bool) bool {
	// Lock first: a failed attempt (a reader holds the lock) then costs one
	// TryLock, not a walk of the books' statistics.
	if wait {
		s.mu.Lock()
	} else if !s.mu.TryLock() {
		return false
	}
	s.stats.Applied = s.applied.Load()
	s.stats.Batches, s.stats.Published, s.stats.PublishErrors = s.batches.Load(), s.pub.Published, s.pub.Errors
	s.stats.Rebound, s.stats.StaleBinds = s.pub.Rebound, s.pub.StaleBinds+s.pub.DuplicateBinds
	s.stats.Book = s.books.Stats()
	s.stats.DuplicateSymbols = s.stats.Book.DuplicateSymbol
	if s.ring != nil {
		s.stats.Ring = s.ring.Stats()
	} else {
		s.stats.Ring = spsc.Stats{}
	}
	s.stats.Stale, s.stats.Sweeping, s.stats.Books = s.pub.stale, s.pub.Sweeping(), s.pub.Books
	s.mu.Unlock()
	return true
}

func (s *shard) statsCopy() ShardStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	if s.ring != nil {
		st.Ring = s.ring.Stats()
	}
	st.Thread = s.thread
	return st
}
