package handler

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/race"
)

// jsonLog is the handler's logger as the product runs it (log.format:
// json), writing nowhere: what a log line allocates is counted, which
// zerolog.Nop (every event disabled) hides.
func jsonLog() zerolog.Logger { return zerolog.New(io.Discard).With().Timestamp().Logger() }

// TestBadAnswerLogAllocatesNothing: a re-request server answering with
// another session (yesterday's) all day has a line logged once a minute
// on the receive thread (logBadAnswers), the last bad answer described.
// The line allocates nothing: it named the answer's source with
// netip.AddrPort.String, a string on the heap each time.
func TestBadAnswerLogAllocatesNothing(t *testing.T) {
	srv, h, _, rec := scriptedRecovery(t, time.Hour, time.Hour)
	h.log = jsonLog()
	pkt := func(session string, seq uint64) []byte {
		b := moldudp64.NewBuilder(moldudp64.NewSession(session), seq, 0)
		b.Add(orderMsg("BAD", seq, seq))
		return append([]byte(nil), b.Flush()...)
	}
	now := time.Now().UnixNano()
	for seq := uint64(1); seq <= 5; seq++ {
		if seq != 3 {
			now += int64(time.Millisecond)
			h.arb.Offer(0, pkt("BAD", seq), now)
		}
	}
	now += int64(time.Second)
	h.arb.Tick(now)
	rec.poll(now) // 3 is re-requested
	_, from := srv.request(t)
	bad := pkt("OTHER", 3)
	answer := func() {
		want := rec.client.Stats.Bad() + 1
		srv.answer(t, from, bad)
		for i := 0; rec.client.Stats.Bad() != want; i++ {
			if i == 2000 {
				t.Fatalf("the bad answer was not read: %+v", rec.client.Stats)
			}
			time.Sleep(time.Millisecond)
			rec.poll(now)
		}
		now += int64(badAnswersLogEvery) // the next is logged
		rec.poll(now)
	}
	answer()
	if a, exact := race.AllocsPerRun(t, 20, answer); exact && a != 0 {
		t.Fatalf("a bad re-request answer logged allocates %v times", a)
	}
	if st := rec.client.Stats; st.WrongSession != 22 || rec.badLogged != 22 {
		t.Fatalf("%d answers of another session, %d logged; want 22, 22", st.WrongSession, rec.badLogged)
	}
}

// TestSnapshotKeepsItsBuffer: a snapshot (one per gap with snapshot
// recovery only: many a day on a lossy path) was downloaded into a new
// buffer of at least 1 MiB each time, grown by append to the spin's size
// and dropped once loaded: garbage the size of the market per snapshot,
// the heap grown to the memory limit (docs/TUNING.md) and the collector
// run after a few. The buffer is kept and reused. What is left per
// snapshot is the fetch's goroutine and context (and the fetch's own: a
// GLIMPSE login dials TCP), a few small objects: counted in bytes here,
// the buffer's megabyte not among them.
func TestSnapshotKeepsItsBuffer(t *testing.T) {
	var lines atomic.Uint64
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		fn(dirMsg("SNAP"))
		return Snapshot{Next: lines.Load()}, nil // where the lines are
	}
	h, _ := oneShardHandler(t, 0, smallBooks)
	h.log = jsonLog()
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Second, Grace: time.Microsecond, Hold: time.Millisecond},
		RecoveryConfig{Snapshot: fetch, SnapshotRetry: time.Millisecond})
	ev := itch.SystemEventFields{EventCode: 'Q'}
	const snapshots = 20
	pkts := make([][]byte, 3*snapshots+4)
	for i := range pkts {
		pkts[i] = sessionPacket("SNP", uint64(i+1), ev.Append(nil))
	}
	now := time.Now().UnixNano()
	seq := 0 // pkts[seq] has sequence number seq+1
	snapshot := func() {
		now += int64(time.Second)
		h.arb.Offer(0, pkts[seq], now)
		seq += 2 // the next is lost
		h.arb.Offer(0, pkts[seq], now)
		seq++
		lines.Store(uint64(seq + 1))
		now += int64(time.Second)
		h.arb.Tick(now)             // the gap is declared: a snapshot is fetched
		pollFetched(t, h, rec, now) // and loaded (at the lines: not held)
	}
	snapshot() // the session confirmed, no snapshot yet
	snapshot()
	loaded := rec.stats.Snapshots
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range snapshots - 2 {
		snapshot()
	}
	runtime.ReadMemStats(&after)
	if rec.stats.Snapshots != loaded+snapshots-2 || h.arb.Next() != uint64(seq+1) {
		t.Fatalf("%d snapshots loaded, next %d; want %d, %d", rec.stats.Snapshots, h.arb.Next(), loaded+snapshots-2, seq+1)
	}
	if per := (after.TotalAlloc - before.TotalAlloc) / (snapshots - 2); per > 64<<10 {
		t.Fatalf("a snapshot allocates %d bytes (%d objects)", per, (after.Mallocs-before.Mallocs)/(snapshots-2))
	}
}

// TestSnapshotBufferBounded: the download buffer of a snapshot of full
// books (every order an 'F', the larger Add Order, every locate a
// directory) is within glimpse.BufferBytes of the books' capacity, what
// config.Memory counts for it, and is kept for the next fetch; a runaway
// fetch (a server that never ends its snapshot, cut at
// recovery.snapshot.max_size) leaves no buffer past that bound behind.
// Before, the buffer stayed at the runaway's size for the rest of the
// process.
func TestSnapshotBufferBounded(t *testing.T) {
	books := book.Config{MaxOrders: 1 << 16, MaxLocates: 64, MaxLevels: 1 << 12}
	var lines atomic.Uint64
	var runaway atomic.Bool
	var sent atomic.Int64 // bytes of messages handed on by the last fetch
	keep := glimpse.BufferBytes(int64(books.MaxOrders), int64(books.MaxLocates))
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		var n int64
		give := func(m []byte) { fn(m); n += int64(len(m)) }
		for loc := uint16(1); loc <= uint16(books.MaxLocates); loc++ {
			give(filterDir(loc, fmt.Sprintf("S%d", loc)))
		}
		for ref := uint64(1); ; ref++ {
			if !runaway.Load() && ref > uint64(books.MaxOrders) {
				break
			}
			if runaway.Load() && n > 2*keep {
				sent.Store(n)
				return Snapshot{}, fmt.Errorf("%w: runaway", glimpse.ErrTooLong)
			}
			a := itch.AddOrderMPIDFields{Header: itch.Header{Locate: uint16(1 + ref%uint64(books.MaxLocates))}, OrderRef: ref, Side: 'B',
				Shares: 100, Stock: itch.NewSymbol(fmt.Sprintf("S%d", 1+ref%uint64(books.MaxLocates))), Price: uint32(10000 + ref%32), Attribution: itch.MPID{'N', 'S', 'D', 'Q'}}
			give(a.Append(nil))
		}
		sent.Store(n)
		return Snapshot{Next: lines.Load()}, nil
	}
	h, _ := oneShardHandler(t, 0, books)
	h.cfg.Book, h.cfg.ShardCores = books, []int{-1}
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Second, Grace: time.Microsecond, Hold: time.Millisecond},
		RecoveryConfig{Snapshot: fetch, SnapshotRetry: time.Millisecond})
	if rec.snapKeep != keep {
		t.Fatalf("recovery keeps buffers up to %d bytes, want glimpse.BufferBytes' %d", rec.snapKeep, keep)
	}
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := time.Now().UnixNano()
	seq := uint64(1)
	snapshot := func() {
		now += int64(time.Second)
		h.arb.Offer(0, sessionPacket("SNP", seq, ev.Append(nil)), now)
		seq += 2 // the next is lost
		h.arb.Offer(0, sessionPacket("SNP", seq, ev.Append(nil)), now)
		seq++
		lines.Store(seq)
		now += int64(time.Second)
		h.arb.Tick(now)
		pollFetched(t, h, rec, now)
	}
	snapshot() // the session confirmed
	snapshot()
	if rec.stats.Snapshots == 0 || rec.snapBuf == nil || int64(cap(rec.snapBuf)) > keep {
		t.Fatalf("a snapshot of full books (%d bytes of messages), %d loaded: buffer kept of %d bytes; want one of at most glimpse.BufferBytes' %d",
			sent.Load(), rec.stats.Snapshots, cap(rec.snapBuf), keep)
	}
	runaway.Store(true)
	failures := rec.stats.SnapshotFailures
	snapshot()
	if rec.stats.SnapshotFailures != failures+1 {
		t.Fatalf("the runaway fetch: %d failures, want %d", rec.stats.SnapshotFailures, failures+1)
	}
	if int64(cap(rec.snapBuf)) > keep {
		t.Fatalf("after a runaway fetch of %d bytes of messages the download buffer kept is %d bytes; want none above glimpse.BufferBytes' %d",
			sent.Load(), cap(rec.snapBuf), keep)
	}
}

// TestReadyAllocatesNothing: /readyz, probed every few seconds all day by
// a load balancer, asks Ready, which copied the stats into a new Stats:
// its shards' slice (and the recovery's ranges and events) on the heap
// at every probe. It reuses one now, as the stats line does.
func TestReadyAllocatesNothing(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		h, _, _, _ := startScriptedLog(t, mode, shards, 20_000, nil, -1, jsonLog())
		defer h.Stop()
		waitFor(t, "the script applied", func() bool { st := h.Stats(); return st.Applied() == st.Routed && st.Arbiter.Delivered == 20_000 })
		var ok bool
		var why string
		if n, exact := race.AllocsPerRun(t, 50, func() { ok, why = h.Ready() }); exact && n != 0 {
			t.Errorf("Ready (%v, %q) allocates %.1f times", ok, why, n)
		}
	})
}
