package handler

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/latency"
	"github.com/marketfeed/feedhandler/internal/race"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
	"github.com/rs/zerolog"
)

// TestHandlerFilterAndBadMessages: with a symbol filter, only the
// subscribed instruments' messages (and the market-wide ones, locate 0)
// reach the books, the others are counted as filtered and never published;
// a block too short to route is counted as bad and skipped, one longer
// than a shard's slot applied by its type's fields and counted Long; the
// published books equal a reference fed the admitted messages only. Both
// modes: run to completion admits and applies a packet's messages in one
// pass (routeInline), sharding through routeMsg.
func TestHandlerFilterAndBadMessages(t *testing.T) { forEachMode(t, testHandlerFilterAndBadMessages) }

func testHandlerFilterAndBadMessages(t *testing.T, mode Mode, shards []int) {
	pkts := dayPackets(t, 20_000)
	msgs := dayMessages(t, pkts)
	// Subscribe to every other instrument of the day's directory.
	var symbols []string
	subscribed := map[uint16]bool{}
	n := 0
	for _, ms := range msgs {
		for _, m := range ms {
			if m[0] == itch.TypeStockDirectory {
				if n++; n%2 == 0 {
					symbols = append(symbols, itch.StockDirectory(m).Stock().String())
					subscribed[uint16(m[1])<<8|uint16(m[2])] = true
				}
			}
		}
	}
	if len(symbols) < 2 {
		t.Fatalf("the day lists %d instruments", n)
	}
	ref, err := book.New(book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	var script []rx.Packet
	now := time.Now().UnixNano()
	var filtered, admitted, marketWide uint64
	for i, ms := range msgs {
		for _, m := range ms {
			switch loc := uint16(m[1])<<8 | uint16(m[2]); {
			case loc == 0:
				if m[0] == itch.TypeSystemEvent {
					marketWide++
				}
				fallthrough
			case subscribed[loc]:
				admitted++
				ref.Apply(itch.Msg(m))
			default:
				filtered++
			}
		}
		script = append(script, rx.Packet{Data: pkts[i], Line: rx.LineA, RxTime: now}, rx.Packet{Data: pkts[i], Line: rx.LineB, RxTime: now})
	}
	// A last packet of two blocks: 2 bytes, which no message fits (no
	// locate to route it by: bad), and a System Event of maxMsgLen+1
	// bytes, longer than a shard's slot: applied by its fields (by every
	// shard; counted Long once, by the shard of its locate).
	last, _ := moldudp64.Parse(pkts[len(pkts)-1])
	bad := moldudp64.AppendHeader(nil, last.Session, last.Next(), 2)
	bad = append(bad, 0, 2, 'S', 0)
	bad = append(bad, 0, maxMsgLen+1)
	long := make([]byte, maxMsgLen+1)
	long[0], long[11] = itch.TypeSystemEvent, 'Q'
	bad = append(bad, long...)
	ref.Apply(itch.Msg(long))
	admitted++
	marketWide++
	script = append(script, rx.Packet{Data: bad, Line: rx.LineA, RxTime: now}, rx.Packet{Data: bad, Line: rx.LineB, RxTime: now})
	delivered := admitted + filtered + 1

	h, _, name := startScript(t, mode, shards, script, -1, zerolog.Nop(), symbols)
	defer h.Stop()
	// Sharded, a System Event goes to every shard: routed once per
	// shard.
	routed := admitted + uint64(max(len(shards), 1)-1)*marketWide
	waitFor(t, "every message delivered and applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == delivered && st.Routed == routed && st.Applied() == routed
	})
	time.Sleep(60 * time.Millisecond) // one more stats copy
	st := h.Stats()
	if st.Filtered != filtered || st.BadMessages != 1 || st.Routed != routed {
		t.Fatalf("filtered %d, bad %d, routed %d; want %d, 1, %d", st.Filtered, st.BadMessages, st.Routed, filtered, routed)
	}
	var longs uint64
	for _, sh := range st.Shards {
		longs += sh.Book.Long
	}
	if longs != 1 {
		t.Errorf("%d long messages applied, want 1 (the System Event of %d bytes)", longs, maxMsgLen+1)
	}
	if filtered == 0 || marketWide == 0 {
		t.Fatalf("the day has %d filtered and %d market-wide messages: the test misses a case", filtered, marketWide)
	}
	compareShm(t, name, ref, false)
}

// TestRunToCompletionRepairedLatency: in run to completion, the messages
// of a packet that waited for a recovery (the recovered one and the one
// held behind it) are recorded as repaired, apart from the live path's
// latencies, and the live ones are not. It fails if routeInline loses the
// arbiter's repair flag.
func TestRunToCompletionRepairedLatency(t *testing.T) {
	pkts := dayPackets(t, 5_000)
	h, s := oneShardHandler(t, 0, dayBooks)
	h.recv = &scriptRx{}
	withIdleRecovery(t, h)
	msgs := func(b []byte) uint64 {
		p, err := moldudp64.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		return uint64(p.Messages())
	}
	offer := func(i int) {
		h.pickup = time.Now().UnixNano()
		h.arb.Offer(0, pkts[i], h.pickup)
		h.arb.Offer(1, pkts[i], h.pickup)
		h.endBatch()
	}
	offer(0)
	offer(1)
	offer(3) // 2 is lost on both lines: 3 is held
	if s.hist.Count() != msgs(pkts[0])+msgs(pkts[1]) || s.histRep.Count() != 0 {
		t.Fatalf("before the repair: %d live, %d repaired recorded; want %d, 0", s.hist.Count(), s.histRep.Count(), msgs(pkts[0])+msgs(pkts[1]))
	}
	p, _ := moldudp64.Parse(pkts[2])
	h.arb.OfferRecovered(pkts[2], p, time.Now().UnixNano())
	h.endBatch()
	if want := msgs(pkts[2]) + msgs(pkts[3]); s.histRep.Count() != want {
		t.Fatalf("repaired recorded %d, want %d (packets 2 and 3)", s.histRep.Count(), want)
	}
	if s.hist.Count() != msgs(pkts[0])+msgs(pkts[1]) {
		t.Fatalf("live recorded %d, want %d", s.hist.Count(), msgs(pkts[0])+msgs(pkts[1]))
	}
}

// TestRunToCompletionRunsFull: a packet whose latency run is the one past
// maxRuns ends the batch at once, and that batch, which published the
// packet's messages, records their run too: nothing is left for a later
// batch (which might never come) to record with its own, later time.
func TestRunToCompletionRunsFull(t *testing.T) {
	pkts := dayPackets(t, 5_000)
	h, s := oneShardHandler(t, 0, dayBooks)
	h.recv = &scriptRx{}
	withIdleRecovery(t, h)
	// Two packets lock the session; their batch ends as usual.
	for i := range 2 {
		h.pickup = time.Now().UnixNano()
		h.arb.Offer(0, pkts[i], h.pickup)
		h.arb.Offer(1, pkts[i], h.pickup)
	}
	h.endBatch()
	base := s.hist.Count()
	if base == 0 || len(s.runs) != 0 {
		t.Fatalf("the first packets: %d recorded, %d runs left", base, len(s.runs))
	}
	p, err := moldudp64.Parse(pkts[2])
	if err != nil {
		t.Fatal(err)
	}
	if p.Messages() < 2 {
		t.Fatalf("packet 2 has %d messages, want several", p.Messages())
	}
	// The runs of maxRuns one-message packets, each received at its own time.
	for i := range maxRuns {
		s.addRun(1, int64(i+1), int64(i+1), false)
	}
	if len(s.runs) != maxRuns || s.hist.Count() != base {
		t.Fatalf("%d runs queued, %d recorded; want %d, %d", len(s.runs), s.hist.Count(), maxRuns, base)
	}
	h.pickup = time.Now().UnixNano()
	h.arb.Offer(0, pkts[2], h.pickup)
	if len(s.runs) != 0 || s.pending {
		t.Fatalf("after packet 2: %d runs left, pending %v; want its run recorded with the batch it ended", len(s.runs), s.pending)
	}
	if got, want := s.hist.Count(), base+uint64(maxRuns+p.Messages()); got != want {
		t.Fatalf("recorded %d messages, want %d", got, want)
	}
}

// filterDir is a Stock Directory message announcing sym at locate loc.
func filterDir(loc uint16, sym string) []byte {
	d := itch.StockDirectoryFields{Header: itch.Header{Locate: loc}, Stock: itch.NewSymbol(sym), MarketCategory: 'Q',
		FinancialStatus: 'N', RoundLotSize: 100, RoundLotsOnly: 'N', Authenticity: 'P'}
	return d.Append(nil)
}

// filterAdd is a buy order ref of sym at locate loc.
func filterAdd(loc uint16, sym string, ref uint64, price uint32) []byte {
	a := itch.AddOrderFields{Header: itch.Header{Locate: loc}, OrderRef: ref, Side: 'B', Shares: 100,
		Stock: itch.NewSymbol(sym), Price: price}
	return a.Append(nil)
}

// filterPackets packs batches of messages into MoldUDP64 packets of one
// session, one packet a batch, each on both lines.
func filterPackets(t *testing.T, batches ...[][]byte) (script []rx.Packet, msgs uint64) {
	t.Helper()
	b := moldudp64.NewBuilder(moldudp64.NewSession("FILTER"), 1, 0)
	now := time.Now().UnixNano()
	for _, ms := range batches {
		for _, m := range ms {
			if err := b.Add(m); err != nil {
				t.Fatal(err)
			}
			msgs++
		}
		p := append([]byte(nil), b.Flush()...) // Flush's bytes are the builder's
		script = append(script, rx.Packet{Data: p, Line: rx.LineA, RxTime: now}, rx.Packet{Data: p, Line: rx.LineB, RxTime: now})
	}
	return script, msgs
}

// TestFilterLocateReassigned: with a symbol filter, a Stock Directory
// message that gives a subscribed symbol's locate (its book published) to
// an unsubscribed symbol ends the old symbol's book as the unfiltered
// reassignment does (TestLocateReassignedRebinds): counted as
// LocateReassigned, its shm slot retired, so that a reader of AAPL finds
// nothing rather than a book that silently stopped following its
// instrument; the new symbol's messages stay out. The reverse, a locate of
// an unsubscribed symbol given to a subscribed one, admits it from then
// on, with none of the old instrument's orders. Both modes: the filter
// runs on the receive thread, the books on the shard's.
func TestFilterLocateReassigned(t *testing.T) { forEachMode(t, testFilterLocateReassigned) }

func testFilterLocateReassigned(t *testing.T, mode Mode, shards []int) {
	script, delivered := filterPackets(t,
		[][]byte{
			filterDir(5, "AAPL"), filterDir(6, "MSFT"), filterDir(7, "ZZZZ"),
			filterAdd(5, "AAPL", 1, 1000), filterAdd(6, "MSFT", 2, 2000), filterAdd(7, "ZZZZ", 3, 3000),
		},
		// Mid-session, locate 5 goes to an unsubscribed symbol and
		// locate 7 to a subscribed one.
		[][]byte{
			filterDir(5, "YYYY"), filterAdd(5, "YYYY", 4, 4000),
			filterDir(7, "IBM"), filterAdd(7, "IBM", 5, 5000),
		},
	)
	h, _, name := startScript(t, mode, shards, script, -1, zerolog.Nop(), []string{"AAPL", "MSFT", "IBM"})
	defer h.Stop()
	// Applied: AAPL's and MSFT's directory and order, IBM's; filtered:
	// ZZZZ's and YYYY's.
	const routed, filtered = 6, 4
	waitFor(t, "every message delivered and applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == delivered && st.Routed == routed && st.Applied() == routed
	})
	time.Sleep(60 * time.Millisecond) // one more stats copy
	st := h.Stats()
	var reassigned uint64
	for _, sh := range st.Shards {
		reassigned += sh.Book.LocateReassigned
	}
	if st.Filtered != filtered || reassigned != 1 {
		t.Errorf("filtered %d, locates reassigned %d; want %d, 1", st.Filtered, reassigned, filtered)
	}
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, r.Info().MaxSnapshot)
	if v, err := r.ReadSymbol("AAPL", buf); err == nil {
		t.Errorf("AAPL still published at locate %d (%d bid levels) after its locate went to YYYY", v.Locate(), v.BidLevels())
	}
	for _, sym := range []string{"YYYY", "ZZZZ"} {
		if loc, ok := r.Lookup(sym); ok {
			t.Errorf("%s, not subscribed, published at locate %d", sym, loc)
		}
	}
	for _, c := range []struct {
		sym   string
		loc   uint16
		price uint32
	}{{"MSFT", 6, 2000}, {"IBM", 7, 5000}} {
		v, err := r.ReadSymbol(c.sym, buf)
		if err != nil {
			t.Errorf("%s: %v", c.sym, err)
			continue
		}
		l, ok := v.Bid(0)
		if v.Locate() != c.loc || v.BidLevels() != 1 || !ok || l.Price != c.price {
			t.Errorf("%s: locate %d, %d bid levels, best %+v; want %d, 1, %d", c.sym, v.Locate(), v.BidLevels(), l, c.loc, c.price)
		}
	}
}

// TestWithdrawnAfterSessionChange: a session change (BooksReset) keeps the
// old session's books published, flagged, until their locates are bound
// again. A locate that the new session gives to a symbol the filter leaves
// out is never bound again; withdrawn (its book unknown since the reset),
// its old symbol's slot is retired as a Rebind to the new symbol would
// have retired it, so AAPL is not left published from the old session.
func TestWithdrawnAfterSessionChange(t *testing.T) {
	_, r, bs, p := reassignLab(t, 4)
	apply := func(seq uint64, m []byte) {
		loc, changed := bs.Apply(itch.Msg(m))
		p.Applied(loc, changed, seq, int64(seq))
	}
	apply(1, filterDir(5, "AAPL"))
	apply(2, filterAdd(5, "AAPL", 1, 1000))
	p.Flush()
	if _, ok := r.Lookup("AAPL"); !ok {
		t.Fatal("AAPL not published")
	}
	// The session changes: the books are emptied, the old ones stay
	// published (flagged) until rebound.
	p.SetStale(true)
	p.Flush()
	bs.Reset()
	p.BooksReset()
	if bs.Withdraw(5) {
		t.Fatal("locate 5 known after the reset")
	}
	p.Withdrawn(5)
	p.Flush()
	if loc, ok := r.Lookup("AAPL"); ok {
		t.Errorf("AAPL of the old session still published at locate %d after its locate went to a symbol filtered out", loc)
	}
	if p.Rebound != 1 || p.Errors != 0 {
		t.Errorf("rebound %d, errors %d; want 1, 0", p.Rebound, p.Errors)
	}
}

// TestFilterWithdrawAllocatesNothing: with a symbol filter, a subscribed
// locate given to a symbol left out and back, packet after packet, on the
// run-to-completion path (admit, withdraw, apply, publish: the old
// symbol unbound, the new binding made) allocates nothing.
func TestFilterWithdrawAllocatesNothing(t *testing.T) {
	const runs = 100
	b := moldudp64.NewBuilder(moldudp64.NewSession("FILTER"), 1, 0)
	var pkts [][]byte
	for i := range 2 * (runs + 3) {
		sym := "AAPL"
		if i%2 == 1 {
			sym = "YYYY"
		}
		for _, m := range [][]byte{filterDir(5, sym), filterAdd(5, sym, uint64(i+1), 1000)} {
			if err := b.Add(m); err != nil {
				t.Fatal(err)
			}
		}
		pkts = append(pkts, append([]byte(nil), b.Flush()...))
	}
	h, s := oneShardHandler(t, 0, smallBooks)
	h.admission = newAdmission([]string{"AAPL"})
	h.recv = &scriptRx{}
	withIdleRecovery(t, h)
	i := 0
	batch := func() {
		h.pickup = time.Now().UnixNano()
		h.arb.Offer(0, pkts[i], h.pickup)
		h.arb.Offer(1, pkts[i], h.pickup) // the duplicate copy from line B
		h.endBatch()
		i++
	}
	// The first packet waits for the session to be locked: it is
	// delivered with the second, AAPL announced and withdrawn in one
	// batch, never bound.
	for range 4 {
		batch()
	}
	if h.arb.Stats.Delivered != 8 || s.books.Stats().LocateReassigned != 2 || s.pub.Rebound != 1 {
		t.Fatalf("the first four packets: %d messages delivered, %d reassigned, %d rebound; want 8, 2, 1",
			h.arb.Stats.Delivered, s.books.Stats().LocateReassigned, s.pub.Rebound)
	}
	allocs, exact := race.AllocsPerRun(t, runs, func() {
		batch()
		batch()
	})
	if exact && allocs != 0 {
		t.Fatalf("a locate withdrawn and announced again allocates %.1f times", allocs)
	}
	// AllocsPerRun calls once more than runs.
	if st := s.books.Stats(); st.LocateReassigned != runs+3 || s.pub.Rebound != runs+2 || s.pub.Errors != 0 {
		t.Fatalf("reassigned %d, rebound %d, errors %d; want %d, %d, 0", st.LocateReassigned, s.pub.Rebound, s.pub.Errors, runs+3, runs+2)
	}
}

// TestFilterLongStockDirectory: a Stock Directory message longer than its
// type's length is applied by the books as one (book.Stats.Long: the extra
// bytes ignored), so the symbol filter reads it as one too. Before the fix
// the filter took only messages of the exact length: a subscribed symbol
// announced so was filtered out with all its messages, and a subscribed
// locate given so to a symbol left out kept being admitted, the new
// symbol's book published.
func TestFilterLongStockDirectory(t *testing.T) { forEachMode(t, testFilterLongStockDirectory) }

func testFilterLongStockDirectory(t *testing.T, mode Mode, shards []int) {
	long := func(m []byte) []byte { return append(m, 0, 0) }
	script, delivered := filterPackets(t,
		[][]byte{long(filterDir(5, "AAPL")), filterAdd(5, "AAPL", 1, 1000), filterDir(6, "MSFT"), filterAdd(6, "MSFT", 2, 2000)},
		[][]byte{long(filterDir(6, "YYYY")), filterAdd(6, "YYYY", 3, 3000)},
	)
	h, _, name := startScript(t, mode, shards, script, -1, zerolog.Nop(), []string{"AAPL", "MSFT"})
	defer h.Stop()
	const routed = 4 // AAPL's and MSFT's directory and order
	waitFor(t, "every message delivered and applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == delivered && st.Filtered == delivered-routed && st.Applied() == st.Routed
	})
	r, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, r.Info().MaxSnapshot)
	if v, err := r.ReadSymbol("AAPL", buf); err != nil {
		t.Errorf("AAPL, announced by a long Stock Directory message: %v", err)
	} else if v.BidLevels() != 1 {
		t.Errorf("AAPL: %d bid levels; want its order's", v.BidLevels())
	}
	for _, sym := range []string{"MSFT", "YYYY"} {
		if loc, ok := r.Lookup(sym); ok {
			t.Errorf("%s published at locate %d after a long Stock Directory message gave it to YYYY", sym, loc)
		}
	}
}

// TestFilterRebuild: a snapshot rebuild goes through the symbol filter as
// the live feed does: the subscribed symbol's book is loaded, the others'
// messages are filtered. A later snapshot that gives the subscribed
// symbol's locate to a symbol left out (the Stock Directory message that
// did so was in the gap the snapshot repairs) ends its book: its old slot,
// kept flagged through the rebuild, is retired, as a rebind to the new
// symbol would have retired it.
func TestFilterRebuild(t *testing.T) {
	h, sh, _ := recoveryHandler(t, nil)
	h.rec = nil
	h.admission = newAdmission([]string{"AAPL"})
	r, err := shm.Open(h.w.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	snapshot := func(next uint64, msgs ...[]byte) {
		var recs []byte
		for _, m := range msgs {
			recs = append(recs, byte(len(m)>>8), byte(len(m)))
			recs = append(recs, m...)
		}
		h.rebuild(recs, next)
		h.endBatch()
	}
	snapshot(5, filterDir(5, "AAPL"), filterAdd(5, "AAPL", 1, 1000), filterDir(6, "YYYY"), filterAdd(6, "YYYY", 2, 2000))
	buf := make([]byte, r.Info().MaxSnapshot)
	if v, err := r.ReadSymbol("AAPL", buf); err != nil {
		t.Fatalf("AAPL after the first snapshot: %v", err)
	} else if v.BidLevels() != 1 {
		t.Fatalf("AAPL after the first snapshot: %d bid levels, want 1", v.BidLevels())
	}
	if loc, ok := r.Lookup("YYYY"); ok || h.filtered != 2 {
		t.Fatalf("YYYY published at locate %d (%v), %d filtered; want none, 2", loc, ok, h.filtered)
	}
	snapshot(9, filterDir(5, "ZZZZ"), filterAdd(5, "ZZZZ", 3, 3000))
	if loc, ok := r.Lookup("AAPL"); ok {
		t.Errorf("AAPL still published at locate %d after a snapshot gave its locate to ZZZZ", loc)
	}
	if loc, ok := r.Lookup("ZZZZ"); ok || h.filtered != 4 || sh.pub.Rebound != 1 {
		t.Errorf("ZZZZ published at locate %d (%v), %d filtered, %d rebound; want none, 4, 1", loc, ok, h.filtered, sh.pub.Rebound)
	}
}

// TestStartRefusesBadSymbols: the filter compares the 8 bytes of each
// Stock Directory message's stock field with the symbols given, space
// padded. Start refuses a symbol that cannot be one (the feed file's
// symbols are refused at their line already): before, one over 8
// characters was cut to its first 8 and subscribed another instrument,
// and one in lower case or empty subscribed nothing, silently.
func TestStartRefusesBadSymbols(t *testing.T) {
	for _, c := range []struct{ sym, want string }{
		{"ABCDEFGHI", `symbols[1]: "ABCDEFGHI" is not a symbol (1 to 8 characters)`},
		{"msft", `symbols[1]: "msft" is not a symbol (ITCH symbols are upper case: "MSFT")`},
		{"", `symbols[1]: "" is not a symbol (1 to 8 characters)`},
		{"BRK A", `symbols[1]: "BRK A" is not a symbol (printable ASCII without spaces)`},
	} {
		h, err := Start(Config{
			Receive: rx.Config{Lines: []rx.LineConfig{{Name: "A"}}},
			Book:    smallBooks,
			ShmName: shmtest.Name(t, "fh-h163-badsym"),
			Symbols: []string{"AAPL", c.sym},
			Open:    func(rx.Config) (rx.Receiver, error) { return &scriptRx{}, nil },
			Log:     zerolog.Nop(),
		})
		if err == nil {
			h.Stop()
			t.Errorf("symbols [AAPL %q] started", c.sym)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("symbols [AAPL %q]: %v; want it to say %s", c.sym, err, c.want)
		}
	}
}

// longDay is a generated day in which every third message is lengthened
// by 1 to 45 bytes, as an exchange appending fields would send it (some
// past a shard's slot, maxMsgLen).
type longDay struct {
	pkts   [][]byte
	blocks []byte      // every message as [u16 length][message], a GLIMPSE snapshot's records
	ref    *book.Books // the day applied at its types' lengths
	msgs   uint64
	long   uint64 // messages lengthened
	wide   uint64 // of those, System Events: every shard applies them, one counts them Long
	past   uint64 // of those, longer than maxMsgLen
}

func newLongDay(t *testing.T, n int) *longDay {
	t.Helper()
	g, err := itchgen.New(itchgen.Config{Messages: n, Symbols: 50, Seed: 17})
	if err != nil {
		t.Fatal(err)
	}
	d := &longDay{ref: newLongBooks(t)}
	b := moldudp64.NewBuilder(moldudp64.NewSession("LONG"), 1, 0)
	err = g.Stream(func(m itch.Msg) error {
		d.ref.Apply(m)
		msg := []byte(m)
		if d.msgs%3 == 0 {
			msg = append(slices.Clone(msg), make([]byte, 1+d.msgs%45)...)
			for i := len(m); i < len(msg); i++ {
				msg[i] = 0xA5
			}
			d.long++
			if m[0] == itch.TypeSystemEvent {
				d.wide++
			}
			if len(msg) > maxMsgLen {
				d.past++
			}
		}
		d.msgs++
		d.blocks = itch.AppendBlock(d.blocks, msg)
		if err := b.Add(msg); errors.Is(err, moldudp64.ErrFull) {
			d.pkts = append(d.pkts, slices.Clone(b.Flush()))
			return b.Add(msg)
		} else {
			return err
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	d.pkts = append(d.pkts, slices.Clone(b.Flush()))
	if d.past == 0 || d.wide == 0 || d.long == d.wide {
		t.Fatalf("%d messages lengthened, %d System Events, %d past a slot: the test misses a case", d.long, d.wide, d.past)
	}
	return d
}

func newLongBooks(t *testing.T) *book.Books {
	t.Helper()
	bs, err := book.New(book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// sameBooks fails unless got holds want's instruments with the same
// levels, states and trades.
func sameBooks(t *testing.T, what string, got, want *book.Books) {
	t.Helper()
	n := 0
	for b := range want.All() {
		n++
		g := got.Book(b.Locate())
		if g == nil || g.Name() != b.Name() {
			t.Fatalf("%s: locate %d: %v, want %s", what, b.Locate(), g, b.Name())
		}
		for _, side := range []book.Side{book.Bid, book.Ask} {
			if gl, wl := g.AppendDepth(side, nil, 0), b.AppendDepth(side, nil, 0); !slices.Equal(gl, wl) {
				t.Fatalf("%s: %s side %d: %v, want %v", what, b.Name(), side, gl, wl)
			}
		}
		gp, gs, gv := g.Last()
		wp, ws, wv := b.Last()
		gt, gb := g.Trades()
		wt, wb := b.Trades()
		if g.TradingState() != b.TradingState() || g.RegSHO() != b.RegSHO() || g.OperationalHalt() != b.OperationalHalt() ||
			gp != wp || gs != ws || gv != wv || gt != wt || gb != wb {
			t.Fatalf("%s: %s: state %q/%q/%q last %d x %d volume %d trades %d/%d; want %q/%q/%q %d x %d %d %d/%d", what, b.Name(),
				g.TradingState(), g.RegSHO(), g.OperationalHalt(), gp, gs, gv, gt, gb,
				b.TradingState(), b.RegSHO(), b.OperationalHalt(), wp, ws, wv, wt, wb)
		}
	}
	m := 0
	for range got.All() {
		m++
	}
	if n == 0 || m != n {
		t.Fatalf("%s: %d instruments, want %d", what, m, n)
	}
}

// TestLongMessagesSameBooks: a stream in which messages are longer than
// their types' ITCH 5.0 lengths, some longer than a shard's slot, gives the
// reference books (the day at its types' lengths) and counts each long
// message, on every path: live in run to completion and sharded (the same
// snapshots), replayed (Replayer), and loaded from a GLIMPSE snapshot in
// either mode. Before, the admission dropped every message longer than
// maxMsgLen (counted bad): the books lost orders.
func TestLongMessagesSameBooks(t *testing.T) {
	d := newLongDay(t, 20_000)
	var script []rx.Packet
	now := time.Now().UnixNano()
	for _, b := range d.pkts {
		script = append(script, rx.Packet{Data: b, Line: rx.LineA, RxTime: now}, rx.Packet{Data: b, Line: rx.LineB, RxTime: now})
	}
	var snaps []map[string]string
	for _, m := range modes {
		t.Run(m.mode.String(), func(t *testing.T) {
			h, _, name := startScript(t, m.mode, m.shards, script, -1, zerolog.Nop(), nil)
			defer h.Stop()
			waitFor(t, "the day delivered and applied", func() bool {
				st := h.Stats()
				return st.Arbiter.Delivered == d.msgs && st.Applied() == st.Routed
			})
			if err := h.Stop(); err != nil {
				t.Fatal(err)
			}
			st := h.Stats()
			var long uint64
			for _, sh := range st.Shards {
				long += sh.Book.Long
			}
			if long != d.long || st.BadMessages != 0 {
				t.Errorf("long messages counted %d, bad %d; want %d (each once, a System Event too: %d of them), 0", long, st.BadMessages, d.long, d.wide)
			}
			compareShm(t, name, d.ref, false)
			snaps = append(snaps, snapshotFields(t, name))
		})
	}
	if len(snaps) == 2 {
		for sym, a := range snaps[0] {
			if b := snaps[1][sym]; a != b {
				t.Errorf("%s:\n  %v: %s\n  %v: %s", sym, modes[0].mode, a, modes[1].mode, b)
			}
		}
		if len(snaps[0]) != len(snaps[1]) {
			t.Errorf("%d instruments live in %v, %d in %v", len(snaps[0]), modes[0].mode, len(snaps[1]), modes[1].mode)
		}
	}

	t.Run("replay", func(t *testing.T) {
		cfg := Config{Arbiter: ArbiterConfig{Hold: time.Millisecond, Grace: 200 * time.Microsecond}}
		cfg.Receive.Lines = []rx.LineConfig{
			{Group: netip.MustParseAddr("239.1.1.1"), Port: 26400},
			{Group: netip.MustParseAddr("239.1.1.2"), Port: 26400},
		}
		bs := newLongBooks(t)
		r := NewReplayer(cfg, func(msg itch.Msg) { bs.Apply(msg) }, func(uint16) {}, func() {})
		at := now
		for _, b := range d.pkts {
			r.Offer(0, b, at)
			r.Offer(1, b, at+1)
			at += 1000
		}
		r.Finish()
		if r.Delivered != d.msgs || r.BadMessages() != 0 || bs.Stats().Long != d.long {
			t.Errorf("replay: delivered %d, bad %d, long %d; want %d, 0, %d", r.Delivered, r.BadMessages(), bs.Stats().Long, d.msgs, d.long)
		}
		sameBooks(t, "replay", bs, d.ref)
	})

	// The GLIMPSE snapshot path: the day as a snapshot's records, loaded
	// by rebuild in run to completion (ring 0) and through a shard's ring.
	for _, ring := range []int{0, 1 << 15} {
		t.Run("snapshot/"+map[bool]string{true: "run-to-completion", false: "sharded"}[ring == 0], func(t *testing.T) {
			h, s := oneShardHandler(t, ring, book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16})
			h.arb = NewArbiter(ArbiterConfig{}, h.route, h.gap)
			h.rebuild(d.blocks, d.msgs+1)
			if ring == 0 {
				h.endBatch()
			} else {
				for batch := s.ring.Peek(1 << 15); len(batch) > 0; batch = s.ring.Peek(1 << 15) {
					for i := range batch {
						if m := &batch[i]; m.kind != 0 {
							s.marker(m.kind)
						} else {
							loc, changed := s.books.Apply(itch.Msg(m.data[:m.n]))
							s.pub.Applied(loc, changed, m.seq, m.rxTime)
						}
					}
					s.ring.Release(len(batch))
				}
			}
			if st := s.books.Stats(); st.Long != d.long || h.badMsgs != 0 {
				t.Errorf("snapshot: long %d, bad %d; want %d, 0", st.Long, h.badMsgs, d.long)
			}
			sameBooks(t, "snapshot", s.books, d.ref)
		})
	}
}

// TestSlotKeepsLongMessagesLong: a shard's slot holds more than any ITCH
// 5.0 type's fields, so a message cut to maxMsgLen bytes for the hand-off
// is still longer than its type, applied by its fields and counted Long
// as in run to completion.
func TestSlotKeepsLongMessagesLong(t *testing.T) {
	for ty := range 256 {
		if n := itch.Length(byte(ty)); n >= maxMsgLen {
			t.Errorf("ITCH type %q is %d bytes: a slot of %d would not keep a longer one long", byte(ty), n, maxMsgLen)
		}
	}
}

// TestRecordPathOncePerPickup: a batch's latencies, recorded with one
// path record per pickup (recordPath) rather than one per run, fill the
// three histograms as one Record per message would: a run of each packet
// (its own receive time), a repaired run between them (not in the path's),
// a marker, and a second pickup. It fails if a run's path is lost (the
// last pickup's left unrecorded: 'path: count 8 sum 80000 min 10000 max
// 10000, want count 11 sum 95000 min 5000 max 10000') or given another
// pickup's value (one record at the last: 'count 11 sum 55000 min 5000
// max 5000').
func TestRecordPathOncePerPickup(t *testing.T) {
	const now = 1_000_000
	runs := []struct {
		rxTime, pickup int64
		n              int
		repaired       bool
		kind           uint8
	}{
		{900_000, 990_000, 3, false, 0},
		{910_000, 990_000, 2, false, 0},
		{920_000, 990_000, 1, true, 0},
		{930_000, 990_000, 3, false, 0},
		{0, 0, 1, false, markerStale},
		{940_000, 995_000, 3, false, 0},
	}
	var s shard
	var batch []slot
	var hist, path, rep latency.Histogram
	for _, r := range runs {
		for range r.n {
			batch = append(batch, slot{rxTime: r.rxTime, pickup: r.pickup, repaired: r.repaired, kind: r.kind})
			switch {
			case r.kind != 0:
			case r.repaired:
				rep.Record(now - r.rxTime)
			default:
				hist.Record(now - r.rxTime)
				path.Record(now - r.pickup)
			}
		}
	}
	s.record(batch, now)
	for _, c := range []struct {
		name      string
		got, want *latency.Histogram
	}{{"live", &s.hist, &hist}, {"path", &s.histPath, &path}, {"repaired", &s.histRep, &rep}} {
		var got, want latency.Snapshot
		c.got.Snapshot(&got)
		c.want.Snapshot(&want)
		if got != want {
			t.Errorf("%s: count %d sum %d min %d max %d, want count %d sum %d min %d max %d (or other buckets)",
				c.name, got.Count, got.Sum, got.Min, got.Max, want.Count, want.Sum, want.Min, want.Max)
		}
	}
}
