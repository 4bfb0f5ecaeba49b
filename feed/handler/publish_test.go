package handler

import (
	"errors"
	"fmt"
	"runtime/debug"
	"testing"
	"time"
	"unsafe"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/mem"
	"github.com/marketfeed/feedhandler/internal/race"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestLocStateSize: a message and a publish touch one cache line of the
// Publisher's per-locate state.
func TestLocStateSize(t *testing.T) {
	if s := unsafe.Sizeof(locState{}); s != 32 {
		t.Fatalf("locState is %d bytes, want 32", s)
	}
}

// TestBooksResetRestartsMessages: the snapshot's Messages counts the
// messages applied to its book. After BooksReset (a rebuild, or a new
// session binding the locate to another symbol) the count starts again, as
// the slot's version does; before the fix it carried the old book's count
// (3 + 2 = 5 below).
func TestBooksResetRestartsMessages(t *testing.T) {
	_, r, bs, p := publisherLab(t, 4, tinyBooks)
	buf := make([]byte, r.Info().MaxSnapshot)
	session := func(sym string, msgs int, seq0 uint64) {
		t.Helper()
		bs.Announce(7, itch.NewSymbol(sym))
		for i := range msgs {
			ok := bs.AddOrder(7, uint64(i+1), book.Bid, 100, 1000+uint32(i))
			p.Applied(7, ok, seq0+uint64(i), int64(seq0)+int64(i))
		}
		p.Flush()
		if p.Errors != 0 {
			t.Fatalf("%s: %d publish errors", sym, p.Errors)
		}
		v, err := r.ReadSymbol(sym, buf)
		if err != nil {
			t.Fatal(err)
		}
		if v.Messages() != uint64(msgs) || v.Seq() != seq0+uint64(msgs)-1 || v.Version != 1 {
			t.Fatalf("%s: messages %d seq %d version %d, want %d, %d, 1", sym, v.Messages(), v.Seq(), v.Version, msgs, seq0+uint64(msgs)-1)
		}
	}
	session("SNAP", 3, 10)
	// A new session: the books are emptied, locate 7 is MSFT now.
	bs.Reset()
	p.BooksReset()
	session("MSFT", 2, 1)
	if p.Rebound != 1 {
		t.Fatalf("rebound %d, want 1", p.Rebound)
	}
}

// TestShardLagsSessionChange: two book shards share the writer. Shard A
// saw the new session first (AAPL is its locate 9 now); shard B lags,
// still in the old session, and publishes AAPL's old book at locate 5 for
// the first time (no slot bound yet). That binding is refused (StaleBinds):
// A's, of the new session, stays, and A keeps publishing into its slot.
// When B reaches the session change (locate 5 is MSFT), AAPL is found at 9
// with A's book. Before the retired-slot fix A kept publishing into a slot
// that B's binding had retired and, once B rebound locate 5, AAPL was
// found nowhere; before the epochs B's binding retired A's slot and A
// bound AAPL again.
func TestShardLagsSessionChange(t *testing.T) {
	lab := newShardLab(t)
	add := lab.add
	buf := make([]byte, lab.r.Info().MaxSnapshot)
	bsA, a := lab.shard(t)
	bsB, b := lab.shard(t)
	a.BooksReset() // A saw the session change
	bsA.Announce(9, itch.NewSymbol("AAPL"))
	add(bsA, a, 9, 2000)
	bsB.Announce(5, itch.NewSymbol("AAPL")) // the old session's AAPL
	add(bsB, b, 5, 1000)
	add(bsA, a, 9, 2001)
	if b.StaleBinds != 1 || a.Rebound != 0 {
		t.Fatalf("B's stale binds %d, want 1; A rebound %d, want 0", b.StaleBinds, a.Rebound)
	}
	// B reaches the session change: locate 5 is MSFT.
	bsB.Reset()
	b.BooksReset()
	bsB.Announce(5, itch.NewSymbol("MSFT"))
	add(bsB, b, 5, 3000)
	loc, ok := lab.r.Lookup("AAPL")
	if !ok || loc != 9 {
		t.Fatalf("AAPL at %d (found %v), want 9", loc, ok)
	}
	v, err := lab.r.Read(9, buf)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := v.Bid(0); string(v.Symbol()) != "AAPL" || l.Price != 2001 {
		t.Fatalf("AAPL read as %q best bid %d, want shard A's 2001", v.Symbol(), l.Price)
	}
	if a.Errors != 0 || b.Errors != 0 {
		t.Fatalf("publish errors: A %d, B %d", a.Errors, b.Errors)
	}
}

// TestShardLagNoPingPong (review 9): shard A saw a session change (AAPL is
// its locate 9), shard B lags it (AAPL is still its locate 5) and both
// keep publishing. Before the epochs every publish of B's old book retired
// A's slot and rebound AAPL to 5, and A's next publish did the same back:
// two slots burned a round until the file was full, while readers found
// AAPL at the old session's locate. Now B's binding is refused and
// counted, every round, and A's stays.
func TestShardLagNoPingPong(t *testing.T) {
	lab := newShardLab(t)
	add := lab.add
	buf := make([]byte, lab.r.Info().MaxSnapshot)
	bsA, a := lab.shard(t)
	bsB, b := lab.shard(t)
	a.BooksReset()                          // A saw the session change
	bsA.Announce(9, itch.NewSymbol("AAPL")) // new session (A is ahead)
	bsB.Announce(5, itch.NewSymbol("AAPL")) // old session (B lags)
	const rounds = 10
	staleSeen := 0
	for i := range rounds {
		add(bsA, a, 9, 2000+uint32(i))
		add(bsB, b, 5, 1000+uint32(i))
		if loc, ok := lab.r.Lookup("AAPL"); ok && loc == 5 {
			v, err := lab.r.Read(5, buf)
			if err == nil {
				l, _ := v.Bid(0)
				t.Logf("round %d: AAPL found at old locate 5, best bid %d (old session's book)", i, l.Price)
			}
			staleSeen++
		}
	}
	u := lab.w.SlotUsage()
	t.Logf("slots: %+v; errors A %d B %d; rebound A %d B %d; stale binds B %d", u, a.Errors, b.Errors, a.Rebound, b.Rebound, b.StaleBinds)
	if u.Used > 4 || a.Errors+b.Errors > 0 || staleSeen > 0 {
		t.Fatalf("a lagging shard burned %d of %d slots (retired %d), publish errors A %d B %d, readers found AAPL at the old session's locate %d times",
			u.Used, u.Capacity, u.Retired, a.Errors, b.Errors, staleSeen)
	}
	if u != (shm.SlotUsage{Capacity: 16, Used: 1}) || b.StaleBinds != rounds || a.Published != rounds || b.Published != 0 {
		t.Fatalf("slots %+v, B's stale binds %d, published A %d B %d: want 1 slot used, %d stale binds, A publishing every round, B none",
			u, b.StaleBinds, a.Published, b.Published, rounds)
	}
	if v, err := lab.r.ReadSymbol("AAPL", buf); err != nil || v.Locate() != 9 {
		t.Fatalf("read AAPL: %v", err)
	} else if l, _ := v.Bid(0); l.Price != 2000+rounds-1 {
		t.Fatalf("AAPL best bid %d, want A's last %d", l.Price, 2000+rounds-1)
	}
	// Skipping a refused locate's snapshot (the lagging shard's every
	// publish until it reaches the session change) allocates nothing and
	// does not ask the writer again (a refused Rebind builds an error).
	const runs = 100
	if n, exact := race.AllocsPerRun(t, runs, func() {
		b.Applied(5, true, lab.ref, 0)
		b.Flush()
	}); exact && n != 0 {
		t.Fatalf("a skipped publish allocates %v times", n)
	}
	if b.StaleBinds != rounds+runs+1 || lab.w.SlotUsage() != (shm.SlotUsage{Capacity: 16, Used: 1}) {
		t.Fatalf("stale binds %d, want %d; slots %+v", b.StaleBinds, rounds+runs+1, lab.w.SlotUsage())
	}
}

// TestDuplicateSymbolInSession: a bad feed gives one symbol to two locates
// in one session (no shard lags). The first binding stays and keeps being
// published, the second is never bound (the books find it a duplicate:
// counted once, at its Stock Directory message, not per publish), and no
// slot is burned. Before the epochs the two locates took the symbol from
// each other at every publish, two slots a round.
func TestDuplicateSymbolInSession(t *testing.T) {
	w, r, bs, p := reassignLab(t, 8) // epoch 1, as in a running handler
	bs.Announce(9, itch.NewSymbol("AAPL"))
	bs.Announce(5, itch.NewSymbol("AAPL")) // the same symbol again: bad input
	const rounds = 5
	for i := range rounds {
		p.Applied(9, bs.AddOrder(9, uint64(2*i+1), book.Bid, 100, 2000+uint32(i)), uint64(2*i+1), 0)
		p.Applied(5, bs.AddOrder(5, uint64(2*i+2), book.Bid, 100, 1000+uint32(i)), uint64(2*i+2), 0)
		p.Flush()
	}
	if u := w.SlotUsage(); u != (shm.SlotUsage{Capacity: 8, Used: 1}) {
		t.Fatalf("slots %+v: want 1 used, none retired", u)
	}
	if d := bs.Stats().DuplicateSymbol; d != 1 || p.DuplicateBinds != 0 || p.StaleBinds != 0 || p.Errors != 0 || p.Published != rounds || p.Rebound != 0 {
		t.Fatalf("duplicate symbols %d (want 1), writer refusals %d, stale binds %d, errors %d, published %d (want %d), rebound %d",
			d, p.DuplicateBinds, p.StaleBinds, p.Errors, p.Published, rounds, p.Rebound)
	}
	if loc, ok := r.Lookup("AAPL"); !ok || loc != 9 {
		t.Fatalf("AAPL at %d (found %v), want the first binding, 9", loc, ok)
	}
	if _, err := r.Read(5, make([]byte, r.Info().MaxSnapshot)); !errors.Is(err, shm.ErrUnknownLocate) {
		t.Fatalf("read of the duplicate locate 5: %v, want ErrUnknownLocate", err)
	}
	// The next rebuild (a new session) starts over: the duplicate's
	// refusal does not outlive it.
	bs.Reset()
	p.BooksReset()
	bs.Announce(5, itch.NewSymbol("MSFT"))
	p.Applied(5, bs.AddOrder(5, 100, book.Bid, 100, 3000), 100, 0)
	p.Flush()
	if loc, ok := r.Lookup("MSFT"); !ok || loc != 5 || bs.Stats().DuplicateSymbol != 1 {
		t.Fatalf("after a rebuild: MSFT at %d (found %v), duplicate symbols %d", loc, ok, bs.Stats().DuplicateSymbol)
	}
}

// TestShardLagBoundBefore: the lagging shard B had bound AAPL (its locate
// 5) before shard A's rebuild; A, in the new session, moves AAPL to locate
// 9 and retires B's slot. B's next publish finds its slot retired and
// binds again, which the writer refuses (A's binding is of a later
// epoch): counted, not published, A's binding stays. Before the epochs B
// took AAPL back, and each shard's next publish took it again.
func TestShardLagBoundBefore(t *testing.T) {
	lab := newShardLab(t)
	add := lab.add
	bsA, a := lab.shard(t)
	bsB, b := lab.shard(t)
	bsB.Announce(5, itch.NewSymbol("AAPL")) // the old session
	add(bsB, b, 5, 1000)
	a.BooksReset() // A reaches the new session first
	bsA.Announce(9, itch.NewSymbol("AAPL"))
	for i := range 3 {
		add(bsA, a, 9, 2000+uint32(i))
		add(bsB, b, 5, 1001+uint32(i))
	}
	if loc, ok := lab.r.Lookup("AAPL"); !ok || loc != 9 {
		t.Fatalf("AAPL at %d (found %v), want 9", loc, ok)
	}
	if u := lab.w.SlotUsage(); u != (shm.SlotUsage{Capacity: 16, Used: 2, Retired: 1}) {
		t.Fatalf("slots %+v: want B's old slot retired and A's live, no more", u)
	}
	if b.StaleBinds != 3 || b.Published != 1 || a.Published != 3 || a.Errors+b.Errors != 0 || a.Rebound+b.Rebound != 0 {
		t.Fatalf("B: stale binds %d published %d; A: published %d; errors %d, rebound %d",
			b.StaleBinds, b.Published, a.Published, a.Errors+b.Errors, a.Rebound+b.Rebound)
	}
}

// shardLab is a 16-slot shm file at depth 2 with a reader, for tests of
// shards (Publishers with their own books) sharing one writer.
type shardLab struct {
	t   *testing.T
	w   *shm.Writer
	r   *shm.Reader
	ref uint64 // the last order reference added
}

func newShardLab(t *testing.T) *shardLab {
	w, r := shmFeed(t, shm.Config{Instruments: 16, Depth: 2})
	return &shardLab{t: t, w: w, r: r}
}

// shmFeed creates a feed file with cfg (its name made for t) and opens a
// reader on it; both are closed at cleanup.
func shmFeed(t *testing.T, cfg shm.Config) (*shm.Writer, *shm.Reader) {
	t.Helper()
	cfg.Name = shmtest.Name(t, "fh-handler-test")
	w, err := shm.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	// The writer never beats (the handler's heartbeat is not running): a
	// poll that finds nothing looks at the writer (Follower.Poll), and a
	// test that outlives the default stale limit (a second, under load)
	// would read it as dead.
	r, err := shm.OpenWith(cfg.Name, shm.OpenOptions{StaleAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return w, r
}

// shard returns a shard's books and its Publisher into the lab's file.
func (l *shardLab) shard(t *testing.T) (*book.Books, *Publisher) {
	bs, err := book.New(book.Config{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	return bs, NewPublisher(l.w, bs, 2)
}

// add adds a 100-share bid at price to locate loc of bs and publishes it
// through p.
func (l *shardLab) add(bs *book.Books, p *Publisher, loc uint16, price uint32) {
	l.t.Helper()
	l.ref++
	p.Applied(loc, bs.AddOrder(loc, l.ref, book.Bid, 100, price), l.ref, 0)
	p.Flush()
}

// TestPublisherMemoryResident checks that a shard's publisher's
// per-locate state and dirty list, written as each locate's first message
// comes, are resident from newShard on, in both modes. (The shard's
// latency histograms are touched too, shard.touch, but the allocator
// usually zeroes the shard's memory, touching them already: a test here
// could not tell.) The heap's free memory is handed back to the kernel
// first (debug.FreeOSMemory), so that the Publisher's cannot be pages
// that earlier tests left resident.
func TestPublisherMemoryResident(t *testing.T) {
	for _, ring := range []int{0, 64} {
		debug.FreeOSMemory()
		_, s := oneShardHandler(t, ring, smallBooks)
		for _, c := range []struct {
			name string
			b    []byte
		}{{"locs", mem.Bytes(s.pub.locs[:])}, {"dirty", mem.Bytes(s.pub.dirty[:cap(s.pub.dirty)])}} {
			in, n, err := mem.Resident(c.b)
			if err != nil {
				t.Fatal(err)
			}
			if in != n || n == 0 {
				t.Errorf("ring %d: %s: %d of its %d pages resident", ring, c.name, in, n)
			}
		}
	}
}

// TestPublisherSweepsInChunks: a market-wide change (here the stale flag)
// republishes every book, SweepChunk books a FlushSome after the batch's
// own; a book that changed in the batch is published once and does not
// count in the chunk; a change during a sweep starts a whole new lap from
// where it is (each book follows the latest change); Flush finishes a
// sweep.
func TestPublisherSweepsInChunks(t *testing.T) {
	const n = 300
	p, bs, r := sweepLab(t, n)
	buf := make([]byte, r.Info().MaxSnapshot)
	// stale counts the books that read with the flag.
	stale := func() (k int) {
		t.Helper()
		for loc := uint16(1); loc <= n; loc++ {
			if v := sweepRead(t, r, loc, buf); v.Flags()&bookfb.FlagsPossiblyStale != 0 {
				k++
			}
		}
		return k
	}
	flushSome := func(want int) { t.Helper(); sweepFlush(t, p, want) }
	p.SetStale(true)
	flushSome(64)
	if k := stale(); k != 64 || !p.Sweeping() {
		t.Fatalf("after one chunk: %d books flagged, sweeping %v; want 64, true", k, p.Sweeping())
	}
	// Book 250 changes in the batch: published with it, not twice, and
	// the chunk is still 64 others.
	p.Applied(250, bs.AddOrder(250, 10_000, book.Bid, 100, 1001), 1000, 2)
	flushSome(65)
	// Book 100 (already swept) changes: the same.
	p.Applied(100, bs.AddOrder(100, 10_001, book.Bid, 100, 1001), 1001, 3)
	flushSome(65)
	if k := stale(); k != 64*3+1 { // books 1-192 and 250
		t.Fatalf("after three chunks: %d books flagged, want %d", k, 64*3+1)
	}
	// The flag clears in the middle: a whole lap from book 193.
	p.SetStale(false)
	for range n / 64 {
		flushSome(64)
	}
	if !p.Sweeping() {
		t.Fatal("sweep ended early")
	}
	flushSome(n % 64)
	if k := stale(); k != 0 || p.Sweeping() {
		t.Fatalf("after the sweep: %d books flagged, sweeping %v; want 0, false", k, p.Sweeping())
	}
	flushSome(0)
	// Flush finishes a sweep at once.
	p.MarkAllDirty()
	p.SetStale(true)
	flushSome(64)
	before := p.Published
	p.Flush()
	if got := p.Published - before; got != n-64 || p.Sweeping() || stale() != n {
		t.Fatalf("Flush published %d (want %d), sweeping %v, %d flagged", got, n-64, p.Sweeping(), stale())
	}
	if p.Errors != 0 {
		t.Fatalf("%d publish errors", p.Errors)
	}
}

// TestPublisherSweepNotStarved (review of round 13): changes that come
// more often than a sweep's lap (300 books, 64 a chunk, a change every 3
// chunks) still reach every book: each is republished while they keep
// coming, and after the last one every book follows it within a lap's
// chunks. A sweep that started again from the first book at each change
// never republished the books after the 192nd.
func TestPublisherSweepNotStarved(t *testing.T) {
	const n = 300
	p, _, r := sweepLab(t, n)
	buf := make([]byte, r.Info().MaxSnapshot)
	read := func(loc uint16) shm.View { t.Helper(); return sweepRead(t, r, loc, buf) }
	before := make([]uint64, n+1)
	for loc := uint16(1); loc <= n; loc++ {
		before[loc] = read(loc).Version
	}
	for cycle := range 200 {
		p.SetStale(cycle%2 == 0)
		for range 3 {
			p.FlushSome()
		}
	}
	for loc := uint16(1); loc <= n; loc++ {
		if v := read(loc).Version; v == before[loc] {
			t.Fatalf("book %d not republished by 200 changes (version %d)", loc, v)
		}
	}
	p.SetStale(true)
	for range (n + 63) / 64 {
		p.FlushSome()
	}
	if p.Sweeping() {
		t.Fatal("still sweeping after a lap's chunks")
	}
	for loc := uint16(1); loc <= n; loc++ {
		if v := read(loc); v.Flags()&bookfb.FlagsPossiblyStale == 0 {
			t.Fatalf("book %d without the stale flag", loc)
		}
	}
}

// sweepFlush calls p.FlushSome and fails unless it published want books.
func sweepFlush(t *testing.T, p *Publisher, want int) {
	t.Helper()
	before := p.Published
	p.FlushSome()
	if got := int(p.Published - before); got != want {
		t.Fatalf("FlushSome published %d books, want %d", got, want)
	}
}

// sweepRead reads locate loc's snapshot from r into buf.
func sweepRead(t *testing.T, r *shm.Reader, loc uint16, buf []byte) shm.View {
	t.Helper()
	v, err := r.Read(loc, buf)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sweepLab is a Publisher (SweepChunk 64) of n books, locates 1 to n, each
// with one order and published once, and a reader of its file.
func sweepLab(t *testing.T, n int) (*Publisher, *book.Books, *shm.Reader) {
	t.Helper()
	_, r, bs, p := publisherLab(t, n+1, book.Config{MaxOrders: 1 << 12, MaxLocates: n, MaxLevels: 1 << 10})
	p.SweepChunk = 64
	for loc := uint16(1); loc <= uint16(n); loc++ {
		bs.Announce(loc, itch.NewSymbol(fmt.Sprintf("S%d", loc)))
		p.Applied(loc, bs.AddOrder(loc, uint64(loc), book.Bid, 100, 1000), uint64(loc), 1)
	}
	p.Flush()
	return p, bs, r
}

// TestRebuildCutsSweep: a rebuild that comes while a sweep is under way
// (the stale flag, one chunk in) first finishes it, so that readers keep
// every last whole book, flagged; the sweep then ends with the books, and
// the next ones (the end of the rebuild, the end of the gap) republish the
// rebuilt books only. The books the new session has not rebuilt keep their
// old snapshot and its flag.
func TestRebuildCutsSweep(t *testing.T) {
	const n, rebuilt = 300, 3
	p, bs, r := sweepLab(t, n)
	s := &shard{books: bs, pub: p}
	buf := make([]byte, r.Info().MaxSnapshot)
	read := func(loc uint16) shm.View { t.Helper(); return sweepRead(t, r, loc, buf) }
	flushSome := func(want int) { t.Helper(); sweepFlush(t, p, want) }

	s.marker(markerStale)
	flushSome(64)
	if !p.Sweeping() {
		t.Fatal("not sweeping after one chunk")
	}
	before := p.Published
	s.marker(markerRebuild)
	if got := p.Published - before; got != n-64 || p.Sweeping() || len(p.listed) != 0 {
		t.Fatalf("rebuild: published %d (want %d), sweeping %v, %d listed", got, n-64, p.Sweeping(), len(p.listed))
	}
	version := make([]uint64, n+1)
	for loc := uint16(1); loc <= n; loc++ {
		v := read(loc)
		if v.Flags()&bookfb.FlagsPossiblyStale == 0 {
			t.Fatalf("book %d without the stale flag when the rebuild starts", loc)
		}
		version[loc] = v.Version
	}
	// The rebuild applies the first books of the new session; the shard
	// publishes nothing until it ends.
	for loc := uint16(1); loc <= rebuilt; loc++ {
		bs.Announce(loc, itch.NewSymbol(fmt.Sprintf("S%d", loc)))
		p.Applied(loc, bs.AddOrder(loc, uint64(10_000+loc), book.Ask, 200, 2000), uint64(10_000+loc), 1)
	}
	s.marker(markerRebuilt)
	flushSome(rebuilt)
	if p.Sweeping() {
		t.Fatal("still sweeping after the rebuilt books")
	}
	s.marker(markerWhole)
	flushSome(rebuilt)
	flushSome(0)
	for loc := uint16(1); loc <= n; loc++ {
		v := read(loc)
		stale := v.Flags()&bookfb.FlagsPossiblyStale != 0
		switch {
		case loc <= rebuilt && (stale || v.Version == version[loc]):
			t.Errorf("rebuilt book %d: stale %v, version %d (was %d)", loc, stale, v.Version, version[loc])
		case loc > rebuilt && (!stale || v.Version != version[loc]):
			t.Errorf("book %d, not rebuilt: stale %v, version %d (was %d)", loc, stale, v.Version, version[loc])
		}
	}
	if p.Errors != 0 {
		t.Fatalf("%d publish errors", p.Errors)
	}
}

// publisherLab is a test shm file of slots instruments, depth 2, its
// writer and a reader, books of cfg and their Publisher (epoch 0: before
// the first BooksReset).
func publisherLab(t *testing.T, slots int, cfg book.Config) (*shm.Writer, *shm.Reader, *book.Books, *Publisher) {
	t.Helper()
	w, r := shmFeed(t, shm.Config{Instruments: slots, Depth: 2, SingleWriter: true})
	bs, err := book.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w, r, bs, NewPublisher(w, bs, 2)
}

// tinyBooks are books of 64 orders and levels, 16 locates.
var tinyBooks = book.Config{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64}

// reassignLab is a Publisher of small books into a test shm file of
// slots instruments, depth 2, at epoch 1 as in a running handler, and a
// reader of the file.
func reassignLab(t *testing.T, slots int) (*shm.Writer, *shm.Reader, *book.Books, *Publisher) {
	t.Helper()
	w, r, bs, p := publisherLab(t, slots, tinyBooks)
	p.BooksReset()
	return w, r, bs, p
}

// TestLocateReassignedRebinds: a Stock Directory message gives a known
// locate another symbol in the same session (book.Stats.LocateReassigned).
// The old symbol's slot is retired, so a reader of AAPL finds nothing
// rather than MSFT's book, and MSFT is found at the locate with its own
// book only. Before the fix the publisher kept the locate's slot, bound
// to AAPL: AAPL's readers read MSFT's book (with AAPL's orders in it).
func TestLocateReassignedRebinds(t *testing.T) {
	w, r, bs, p := reassignLab(t, 4)
	h := itch.Header{Locate: 7, Timestamp: 34200_000_000_000}
	apply := applier(bs, p)
	apply(1, &itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("AAPL")})
	apply(2, &itch.AddOrderFields{Header: h, OrderRef: 1, Side: 'B', Shares: 100, Stock: itch.NewSymbol("AAPL"), Price: 1000000})
	p.Flush()
	buf := make([]byte, r.Info().MaxSnapshot)
	if v, err := r.ReadSymbol("AAPL", buf); err != nil || v.BidLevels() != 1 {
		t.Fatalf("AAPL before: %v, bid levels %d", err, v.BidLevels())
	}
	apply(3, &itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("MSFT")})
	apply(4, &itch.AddOrderFields{Header: h, OrderRef: 2, Side: 'S', Shares: 300, Stock: itch.NewSymbol("MSFT"), Price: 2000000})
	p.Flush()
	if bs.Stats().LocateReassigned != 1 {
		t.Fatalf("reassigned %d, want 1", bs.Stats().LocateReassigned)
	}
	if loc, ok := r.Lookup("AAPL"); ok {
		t.Errorf("AAPL still found at locate %d after locate 7 became MSFT", loc)
	}
	v, err := r.ReadSymbol("MSFT", buf)
	if err != nil {
		t.Fatalf("MSFT: %v", err)
	}
	if v.Locate() != 7 || v.BidLevels() != 0 || v.AskLevels() != 1 || v.Version != 1 {
		t.Errorf("MSFT: locate %d, %d bid and %d ask levels, version %d; want 7, 0, 1, 1", v.Locate(), v.BidLevels(), v.AskLevels(), v.Version)
	}
	if u := w.SlotUsage(); u != (shm.SlotUsage{Capacity: 4, Used: 2, Retired: 1}) {
		t.Errorf("slots %+v: want AAPL's retired and MSFT's live", u)
	}
	if p.Rebound != 1 || p.Errors != 0 {
		t.Errorf("rebound %d, errors %d; want 1, 0", p.Rebound, p.Errors)
	}
	// Later batches publish into MSFT's slot without binding again.
	apply(5, &itch.AddOrderFields{Header: h, OrderRef: 3, Side: 'S', Shares: 100, Stock: itch.NewSymbol("MSFT"), Price: 2000100})
	p.Flush()
	if v, err := r.ReadSymbol("MSFT", buf); err != nil || v.AskLevels() != 2 || v.Version != 2 || p.Rebound != 1 {
		t.Errorf("MSFT next batch: %v, ask levels %d, version %d, rebound %d", err, v.AskLevels(), v.Version, p.Rebound)
	}
}

// TestRegSHOFlags: Reg SHO actions '1' (restriction in effect, an intra-day
// drop) and '2' (restriction remains in effect, from the day before) both
// flag the snapshot ShortSaleRestricted; '0' (no price test) clears it, and
// a book before any action (0, far below '1' in bookFlags' one unsigned
// compare) is not flagged. Before the fix '2' published a restricted stock
// as unrestricted.
func TestRegSHOFlags(t *testing.T) {
	bs, err := book.New(book.Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	h := itch.Header{Locate: 1, Timestamp: 34200_000_000_000}
	bs.Apply(itch.Msg((&itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("AAPL")}).Append(nil)))
	if bookFlags(bs.Book(1))&bookfb.FlagsShortSaleRestricted != 0 {
		t.Error("no Reg SHO action yet: ShortSaleRestricted, want none")
	}
	for _, c := range []struct {
		action     byte
		restricted bool
	}{{'1', true}, {'0', false}, {'2', true}, {'0', false}} {
		bs.Apply(itch.Msg((&itch.RegSHOFields{Header: h, Stock: itch.NewSymbol("AAPL"), Action: c.action}).Append(nil)))
		if got := bookFlags(bs.Book(1))&bookfb.FlagsShortSaleRestricted != 0; got != c.restricted {
			t.Errorf("Reg SHO action %q: ShortSaleRestricted %v, want %v", c.action, got, c.restricted)
		}
	}
}

// TestLocateSwap: two known locates swap symbols, in one batch and across
// two batches (a new day's directory met unseen). Each symbol ends at its
// new locate with its new book only; neither old book stays readable.
// Before the fix each Rebind was refused as a duplicate (its symbol still
// bound to the other locate in the same epoch), nothing was retired, and
// both locates stopped publishing: readers kept the pre-swap books.
func TestLocateSwap(t *testing.T) {
	for _, batches := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d batches", batches), func(t *testing.T) {
			_, r, bs, p := reassignLab(t, 8)
			seq := uint64(0)
			apply := func(e itch.Encoder) {
				seq++
				loc, changed := bs.Apply(itch.Msg(e.Append(nil)))
				p.Applied(loc, changed, seq, int64(seq))
			}
			h := func(loc uint16) itch.Header { return itch.Header{Locate: loc, Timestamp: 34200_000_000_000} }
			aapl, msft := itch.NewSymbol("AAPL"), itch.NewSymbol("MSFT")
			apply(&itch.StockDirectoryFields{Header: h(7), Stock: aapl})
			apply(&itch.StockDirectoryFields{Header: h(8), Stock: msft})
			apply(&itch.AddOrderFields{Header: h(7), OrderRef: 1, Side: 'B', Shares: 100, Stock: aapl, Price: 1000000})
			apply(&itch.AddOrderFields{Header: h(8), OrderRef: 2, Side: 'B', Shares: 100, Stock: msft, Price: 2000000})
			p.Flush()
			apply(&itch.StockDirectoryFields{Header: h(7), Stock: msft})
			if batches == 2 {
				p.Flush()
			}
			apply(&itch.StockDirectoryFields{Header: h(8), Stock: aapl})
			apply(&itch.AddOrderFields{Header: h(8), OrderRef: 3, Side: 'S', Shares: 5, Stock: aapl, Price: 1000500})
			p.Flush()
			buf := make([]byte, r.Info().MaxSnapshot)
			for _, c := range []struct {
				sym        string
				loc        uint16
				bids, asks int
			}{{"AAPL", 8, 0, 1}, {"MSFT", 7, 0, 0}} {
				loc, ok := r.Lookup(c.sym)
				if !ok || loc != c.loc {
					t.Errorf("%s at locate %d (found %v), want %d", c.sym, loc, ok, c.loc)
					continue
				}
				v, err := r.ReadSymbol(c.sym, buf)
				if err != nil || v.BidLevels() != uint32(c.bids) || v.AskLevels() != uint32(c.asks) {
					t.Errorf("%s: %v, %d bid and %d ask levels, want %d and %d", c.sym, err, v.BidLevels(), v.AskLevels(), c.bids, c.asks)
				}
			}
			if p.Errors != 0 {
				t.Errorf("%d publish errors", p.Errors)
			}
		})
	}
}

// TestRebindFullCountsRebound: a Stock Directory message gives a known
// locate another symbol when the file has no slot left. The writer retires
// the old symbol's slot (a reader of AAPL must not find MSFT's book) and
// then finds no slot for MSFT (ErrFull): the locate was unbound from its
// symbol all the same, so it counts in Rebound, and the snapshot not
// published counts in Errors. Before the fix the failed Rebind's retirement
// was dropped: Rebound stayed 0 while the slot counts showed one retired.
func TestRebindFullCountsRebound(t *testing.T) {
	w, r, bs, p := reassignLab(t, 1) // epoch 1, as in a running handler
	h := itch.Header{Locate: 7, Timestamp: 34200_000_000_000}
	apply := applier(bs, p)
	apply(1, &itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("AAPL")})
	apply(2, &itch.AddOrderFields{Header: h, OrderRef: 1, Side: 'B', Shares: 100, Stock: itch.NewSymbol("AAPL"), Price: 1000000})
	p.Flush()
	// A new session without a restart: locate 7 is MSFT now, and the one
	// slot is AAPL's.
	bs.Reset()
	p.BooksReset()
	apply(3, &itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("MSFT")})
	apply(4, &itch.AddOrderFields{Header: h, OrderRef: 2, Side: 'S', Shares: 300, Stock: itch.NewSymbol("MSFT"), Price: 2000000})
	p.Flush()
	if loc, ok := r.Lookup("AAPL"); ok {
		t.Errorf("AAPL still found at locate %d after locate 7 became MSFT", loc)
	}
	if _, ok := r.Lookup("MSFT"); ok {
		t.Errorf("MSFT found with no slot left for it")
	}
	u := w.SlotUsage()
	if u != (shm.SlotUsage{Capacity: 1, Used: 1, Retired: 1}) || p.Rebound != 1 || p.Errors != 1 {
		t.Fatalf("slots %+v, rebound %d, errors %d; want AAPL's slot retired, rebound 1 (the retirement), errors 1 (MSFT not published)",
			u, p.Rebound, p.Errors)
	}
	// The next batch does not ask again (no slot until a restart), nor
	// count the book again: no more retirement, no more error.
	apply(5, &itch.AddOrderFields{Header: h, OrderRef: 3, Side: 'S', Shares: 100, Stock: itch.NewSymbol("MSFT"), Price: 2000100})
	p.Flush()
	if p.Rebound != 1 || p.Errors != 1 {
		t.Fatalf("next batch: rebound %d, errors %d; want 1, 1", p.Rebound, p.Errors)
	}
}

// TestFullFileRefusalRemembered: a locate the writer found no slot for
// (ErrFull: retired slots are not reused until a restart) gets none for
// the rest of the epoch, so its later snapshots are skipped without asking
// the writer again. Before, each one called Rebind, under the writer's
// lock, which built its error (allocations on the publishing thread of a
// Publisher that "allocates nothing after NewPublisher").
//
// Errors (shard_publish_errors_total, "books not published") counts the
// book once until the next rebuild: before, it counted each snapshot, at
// every change of the book and at every sweep (MarkAllDirty), so its
// value said nothing of how many books lacked a slot.
func TestFullFileRefusalRemembered(t *testing.T) {
	_, bs, p, apply := refusalPublisher(t, 1)
	h := itch.Header{Locate: 7, Timestamp: 34200_000_000_000}
	h8 := itch.Header{Locate: 8, Timestamp: 34200_000_000_000}
	apply(1, &itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("AAPL")})
	apply(2, &itch.StockDirectoryFields{Header: h8, Stock: itch.NewSymbol("MSFT")})
	p.Flush() // AAPL takes the one slot; MSFT gets none
	if p.Errors != 1 {
		t.Fatalf("errors %d, want 1 (MSFT, no slot)", p.Errors)
	}
	seq := uint64(2)
	add := &itch.AddOrderFields{Header: h8, Side: 'B', Shares: 100, Stock: itch.NewSymbol("MSFT"), Price: 1000000}
	allocs, exact := race.AllocsPerRun(t, 100, func() {
		seq++
		add.OrderRef++
		apply(seq, add)
		p.Flush()
	})
	if (exact && allocs != 0) || p.Errors != 1 {
		t.Fatalf("a book with no slot: %v allocations a publish, errors %d after 101 more snapshots; want 0, 1 (the book counted once)", allocs, p.Errors)
	}
	for range 3 {
		p.MarkAllDirty()
		p.Flush()
	}
	if p.Errors != 1 {
		t.Fatalf("errors %d after 3 sweeps; want 1 (the book counted once)", p.Errors)
	}
	// A rebuild forgets the refusal: the writer is asked again (still no
	// slot) and the book counted again.
	bs.Reset()
	p.BooksReset()
	apply(seq+1, &itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("AAPL")})
	apply(seq+2, &itch.StockDirectoryFields{Header: h8, Stock: itch.NewSymbol("MSFT")})
	p.Flush()
	p.MarkAllDirty()
	p.Flush()
	if p.Errors != 2 {
		t.Fatalf("errors %d after a rebuild; want 2 (MSFT refused again, counted once more)", p.Errors)
	}
}

// TestIncompleteBookPublishedStale: an add dropped for want of capacity
// (book.max_orders) publishes its book at once flagged PossiblyStale, its
// levels lacking the order; another book is not flagged; the StaleBooks
// gauge counts it. Before, the drop was counted, nothing was published, and
// the book's next snapshot went out unflagged, wrong for as long as the
// order lived.
func TestIncompleteBookPublishedStale(t *testing.T) {
	_, r, bs, p := publisherLab(t, 4, book.Config{MaxOrders: 2, MaxLocates: 3, MaxLevels: 64})
	for loc := uint16(1); loc <= 2; loc++ {
		bs.Announce(loc, itch.NewSymbol(fmt.Sprintf("S%d", loc)))
		p.Applied(loc, bs.AddOrder(loc, uint64(loc), book.Bid, 100, 1000), uint64(loc), 1)
	}
	p.Flush()
	buf := make([]byte, r.Info().MaxSnapshot)
	before := sweepRead(t, r, 1, buf).Version
	p.Applied(1, bs.AddOrder(1, 3, book.Ask, 100, 1100), 3, 1) // no room: dropped
	p.Flush()
	v := sweepRead(t, r, 1, buf)
	if v.Version == before || v.Flags()&bookfb.FlagsPossiblyStale == 0 || v.AskLevels() != 0 {
		t.Errorf("after the dropped add: version %d (was %d), flags %v, ask levels %d; want it republished, PossiblyStale, no ask",
			v.Version, before, v.Flags(), v.AskLevels())
	}
	if v := sweepRead(t, r, 2, buf); v.Flags()&bookfb.FlagsPossiblyStale != 0 {
		t.Errorf("the other book flagged %v", v.Flags())
	}
	st := Stats{Shards: []ShardStats{{Book: bs.Stats(), Books: 2}}}
	if n := st.StaleBooks(); n != 1 {
		t.Errorf("StaleBooks %d, want 1", n)
	}
}

// TestWithdrawnThenAnnouncedSwept: after a rebuild (BooksReset), a Stock
// Directory message gives locate 3 a symbol the filter leaves out
// (Withdrawn), then, in the same batch, one gives it a subscribed symbol
// and the book an order. The book must be among those a market-wide
// change republishes: a gap's stale flag, then its clearing, reach it
// while it stays quiet. Before the fix Withdrawn made the locate dirty
// without listing it, so the Applied that followed did not list it either
// (it lists only a locate it makes dirty): no sweep ever republished the
// book, which showed no stale flag through a gap.
func TestWithdrawnThenAnnouncedSwept(t *testing.T) {
	_, r, bs, p := reassignLab(t, 8)
	apply := applier(bs, p)
	h := itch.Header{Locate: 3, Timestamp: 34200_000_000_000}
	p.Withdrawn(3) // the admission's view of the old session: given to an unsubscribed symbol
	apply(1, &itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("WANT")})
	apply(2, &itch.AddOrderFields{Header: h, OrderRef: 1, Side: 'B', Shares: 100, Stock: itch.NewSymbol("WANT"), Price: 10_000})
	p.Flush()
	buf := make([]byte, r.Info().MaxSnapshot)
	stale := func() bool {
		t.Helper()
		v, err := r.ReadSymbol("WANT", buf)
		if err != nil {
			t.Fatal(err)
		}
		if v.BidLevels() != 1 {
			t.Fatalf("WANT: %d bid levels, want 1", v.BidLevels())
		}
		return v.Flags()&bookfb.FlagsPossiblyStale != 0
	}
	if stale() {
		t.Fatal("WANT flagged stale before any gap")
	}
	p.SetStale(true)
	p.Flush()
	if !stale() {
		t.Fatal("a gap's stale flag never reached WANT: the sweep does not list it")
	}
	p.SetStale(false)
	p.Flush()
	if stale() {
		t.Fatal("WANT still flagged stale after the gap was repaired")
	}
}

// TestBadSymbolCountedOnce: a locate whose Stock Directory gave it no
// symbol (all spaces), which the writer refuses, counts in Errors once
// until its locate gets a symbol, and is not asked again meanwhile.
// Before, each snapshot called Rebind (its lock, its error built) and
// counted.
func TestBadSymbolCountedOnce(t *testing.T) {
	r, _, p, apply := refusalPublisher(t, 4)
	h := itch.Header{Locate: 7, Timestamp: 34200_000_000_000}
	apply(1, &itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("")})
	p.Flush()
	if p.Errors != 1 {
		t.Fatalf("errors %d, want 1 (no symbol)", p.Errors)
	}
	add := &itch.AddOrderFields{Header: h, Side: 'B', Shares: 100, Price: 1000000}
	allocs, exact := race.AllocsPerRun(t, 20, func() {
		add.OrderRef++
		apply(1+add.OrderRef, add)
		p.Flush()
	})
	p.MarkAllDirty()
	p.Flush()
	if (exact && allocs != 0) || p.Errors != 1 {
		t.Fatalf("a book the writer refuses: %v allocations a publish, errors %d after 21 more snapshots and a sweep; want 0, 1", allocs, p.Errors)
	}
	// The locate gets a symbol: published.
	apply(100, &itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("AAPL")})
	p.Flush()
	if _, ok := r.Lookup("AAPL"); !ok || p.Errors != 1 {
		t.Fatalf("AAPL found %v, errors %d; want it published, no more error", ok, p.Errors)
	}
}

// refusalPublisher returns a reader of a feed file of the given number of
// slots, books, their Publisher (in epoch 1, as in a running handler) and
// a function applying a message to the books and telling the Publisher,
// which allocates nothing.
func refusalPublisher(t *testing.T, slots int) (*shm.Reader, *book.Books, *Publisher, func(uint64, itch.Encoder)) {
	t.Helper()
	_, r, bs, p := publisherLab(t, slots, book.Config{MaxOrders: 1 << 10, MaxLocates: 16, MaxLevels: 64})
	p.BooksReset()
	return r, bs, p, applier(bs, p)
}

// applier returns a function applying message e, numbered seq, to bs and
// telling p, which allocates nothing (it encodes into one buffer).
func applier(bs *book.Books, p *Publisher) func(seq uint64, e itch.Encoder) {
	var buf []byte
	return func(seq uint64, e itch.Encoder) {
		buf = e.Append(buf[:0])
		loc, changed := bs.Apply(itch.Msg(buf))
		p.Applied(loc, changed, seq, int64(seq))
	}
}
