package handler

import (
	"fmt"
	"testing"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/race"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestLocateSwapAcrossShards: locates 7 and 8 are in different shards
// (loc % 2), each with its own Books and Publisher on one Writer, as in the
// pipeline. They swap symbols in one session (same epoch). Both symbols must
// end published at their new locates. Before the fix the shard that flushed
// first was refused (the other shard's locate still held its symbol) and
// never asked again: that symbol was found nowhere for the session.
func TestLocateSwapAcrossShards(t *testing.T) {
	for _, first := range []int{0, 1} {
		t.Run(fmt.Sprintf("shard%d first", first), func(t *testing.T) {
			r, bs, ps := twoShardPublishers(t)
			seq := uint64(0)
			apply := func(loc uint16, e itch.Encoder) {
				seq++
				s := loc % 2
				l, changed := bs[s].Apply(itch.Msg(e.Append(nil)))
				ps[s].Applied(l, changed, seq, int64(seq))
			}
			h := func(loc uint16) itch.Header { return itch.Header{Locate: loc, Timestamp: 34200_000_000_000} }
			aapl, msft := itch.NewSymbol("AAPL"), itch.NewSymbol("MSFT")
			apply(7, &itch.StockDirectoryFields{Header: h(7), Stock: aapl})
			apply(8, &itch.StockDirectoryFields{Header: h(8), Stock: msft})
			ps[0].Flush()
			ps[1].Flush()
			apply(7, &itch.StockDirectoryFields{Header: h(7), Stock: msft})
			apply(8, &itch.StockDirectoryFields{Header: h(8), Stock: aapl})
			ps[first].Flush()
			ps[1-first].Flush()
			// later traffic on both locates
			apply(7, &itch.AddOrderFields{Header: h(7), OrderRef: 1, Side: 'B', Shares: 100, Stock: msft, Price: 1000000})
			apply(8, &itch.AddOrderFields{Header: h(8), OrderRef: 2, Side: 'B', Shares: 100, Stock: aapl, Price: 2000000})
			ps[0].Flush()
			ps[1].Flush()
			for _, c := range []struct {
				sym string
				loc uint16
			}{{"AAPL", 8}, {"MSFT", 7}} {
				loc, ok := r.Lookup(c.sym)
				if !ok || loc != c.loc {
					t.Errorf("%s at locate %d (found %v), want %d; dup refusals %d/%d", c.sym, loc, ok, c.loc, ps[0].DuplicateBinds, ps[1].DuplicateBinds)
				}
			}
		})
	}
}

// TestReassignAllocatesNothing: flushes that re-assign a locate, while a
// duplicate refusal stands (AAPL at locates 9 and 10), allocate nothing and
// do not count the standing duplicate again. Before the fix every
// reassigning flush asked locate 10 again: refused, with an error built (6
// allocations), and counted. Now the books find locate 10 a duplicate
// (book.Book.Duplicate) and the writer is never asked.
func TestReassignAllocatesNothing(t *testing.T) {
	_, _, bs, p := reassignLab(t, 4096)
	h := func(loc uint16) itch.Header { return itch.Header{Locate: loc, Timestamp: 34200_000_000_000} }
	syms := []itch.Symbol{itch.NewSymbol("GOOG"), itch.NewSymbol("MSFT")}
	msgs := make([][]byte, 2)
	for i := range msgs {
		msgs[i] = (&itch.StockDirectoryFields{Header: h(7), Stock: syms[i]}).Append(nil)
	}
	for _, l := range []uint16{9, 10} {
		dup := (&itch.StockDirectoryFields{Header: h(l), Stock: itch.NewSymbol("AAPL")}).Append(nil)
		loc, ch := bs.Apply(itch.Msg(dup))
		p.Applied(loc, ch, 1, 1)
	}
	p.Flush()
	t.Logf("dup before: %d", bs.Stats().DuplicateSymbol)
	i := 0
	a, exact := race.AllocsPerRun(t, 100, func() {
		i++
		loc, ch := bs.Apply(itch.Msg(msgs[i%2]))
		p.Applied(loc, ch, uint64(i), int64(i))
		p.Flush()
	})
	if exact && a != 0 {
		t.Errorf("%v allocs per reassigning flush", a)
	}
	if d := bs.Stats().DuplicateSymbol; d != 1 || p.DuplicateBinds != 0 {
		t.Errorf("duplicate symbols %d, want the one of locate 10; writer refusals %d, want none (locate 10 is not asked)", d, p.DuplicateBinds)
	}
	t.Logf("published %d dup %d rebound %d errors %d", p.Published, bs.Stats().DuplicateSymbol, p.Rebound, p.Errors)
}

// TestDuplicateRefusalRacesRetirement: the binding in a refused
// duplicate's way is retired by another shard's publisher just after the
// writer refused it, before the refused publisher noted the refusal
// (dupRefusedHook stands there). Locates 2 (shard 0) and 3 (shard 1)
// swap AAA and BBB: shard 0's BBB is refused, BBB being still at 3, and
// shard 1 moves 3 to AAA at that moment. Shard 0 must ask again: its next
// flush binds BBB at 2. Before the fix it read the writer's retirement
// count after the refusal, that retirement included, so it never did.
func TestDuplicateRefusalRacesRetirement(t *testing.T) {
	r, bs, ps := twoShardPublishers(t)
	seq := uint64(0)
	dir := func(loc uint16, sym string) {
		seq++
		s := loc % 2
		e := itch.StockDirectoryFields{Header: itch.Header{Locate: loc, Timestamp: 34200_000_000_000}, Stock: itch.NewSymbol(sym)}
		l, changed := bs[s].Apply(itch.Msg(e.Append(nil)))
		ps[s].Applied(l, changed, seq, int64(seq))
	}
	dir(2, "AAA")
	dir(3, "BBB")
	ps[0].Flush()
	ps[1].Flush()
	raced := false
	dupRefusedHook = func() {
		if raced {
			return
		}
		raced = true
		dir(3, "AAA")
		ps[1].Flush() // unbinds 3 (BBB retired), binds AAA there
	}
	t.Cleanup(func() { dupRefusedHook = nil })
	dir(2, "BBB")
	ps[0].Flush() // BBB refused: still at 3 when asked
	if !raced {
		t.Fatal("shard 0's BBB was not refused as a duplicate")
	}
	ps[0].Flush() // nothing changed since: asks again, the retirement seen
	for _, c := range []struct {
		sym string
		loc uint16
	}{{"AAA", 3}, {"BBB", 2}} {
		if loc, ok := r.Lookup(c.sym); !ok || loc != c.loc {
			t.Errorf("%s at locate %d (found %v), want %d; duplicate refusals %d/%d", c.sym, loc, ok, c.loc, ps[0].DuplicateBinds, ps[1].DuplicateBinds)
		}
	}
}

// twoShardPublishers gives two shards' books and publishers (locate % 2)
// on one shm file of 8 slots, depth 2, and a reader of it.
func twoShardPublishers(t *testing.T) (*shm.Reader, [2]*book.Books, [2]*Publisher) {
	t.Helper()
	w, r := shmFeed(t, shm.Config{Instruments: 8, Depth: 2})
	var bs [2]*book.Books
	var ps [2]*Publisher
	for i := range bs {
		b, err := book.New(book.Config{MaxOrders: 64, MaxLocates: 16, MaxLevels: 64})
		if err != nil {
			t.Fatal(err)
		}
		bs[i], ps[i] = b, NewPublisher(w, b, 2)
		ps[i].BooksReset()
	}
	return r, bs, ps
}
