package book

import (
	"errors"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/race"
)

// TestLevelLayout: a price level is 32 bytes, two per cache line, and a
// ladder rung 8.
func TestLevelLayout(t *testing.T) {
	if s := unsafe.Sizeof(priceLevel{}); s != 32 {
		t.Errorf("priceLevel is %d bytes, want 32", s)
	}
	if s := unsafe.Sizeof(rung{}); s != 8 {
		t.Errorf("rung is %d bytes, want 8", s)
	}
}

// TestEmptyLevelDeletes: deletes, executions, cancels and replaces that
// empty a level at the top, the bottom and the middle of a ladder take just
// that level out, keep the others (and their queues) whole, and give the
// level back: a day of levels opening and emptying over and over never
// holds more levels than are live at once, and the pool's free list is
// reused.
func TestEmptyLevelDeletes(t *testing.T) {
	bs, err := New(Config{MaxOrders: 1 << 10, MaxLocates: 4, MaxLevels: 16})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("AAPL"))
	ref := uint64(0)
	addAt := func(side Side, price uint32) uint64 {
		t.Helper()
		ref++
		if !bs.AddOrder(1, ref, side, 100, price) {
			t.Fatalf("add %d at %d: %v %+v", ref, price, bs.Err(), bs.Stats())
		}
		return ref
	}
	check := func(when string) {
		t.Helper()
		if err := checkInvariants(bs); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	// Bids at 10..16 (two orders at 13), asks at 20..26.
	bids := map[uint32]uint64{}
	for p := uint32(10); p <= 16; p++ {
		bids[p] = addAt(Bid, p)
	}
	second13 := addAt(Bid, 13)
	for p := uint32(20); p <= 26; p++ {
		addAt(Ask, p)
	}
	check("built")
	if bs.levelUsed != 14 {
		t.Fatalf("%d levels handed out, want 14", bs.levelUsed)
	}
	b := bs.Book(1)
	bs.Delete(1, bids[16]) // the top
	bs.Delete(1, bids[10]) // the bottom
	bs.Cancel(1, bids[12], 100)
	bs.Execute(1, bids[14], 100, 1)
	bs.Delete(1, bids[13]) // 13 keeps second13
	check("after deletes")
	var dst [8]Level
	got := b.Depth(Bid, dst[:0])
	want := []Level{{Price: 15, Shares: 100, Orders: 1}, {Price: 13, Shares: 100, Orders: 1}, {Price: 11, Shares: 100, Orders: 1}}
	if len(got) != len(want) {
		t.Fatalf("bids %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("bids %+v, want %+v", got, want)
		}
	}
	if ahead, _, ok := bs.QueueAhead(1, second13); !ok || ahead != 0 {
		t.Errorf("order %d: %d ahead, ok %v", second13, ahead, ok)
	}
	// A replace that empties its level and opens another one.
	bs.Replace(1, bids[11], 1<<20, 100, 9)
	check("after replace")
	if lv, _ := b.Best(Bid); lv.Price != 15 || b.Levels(Bid) != 3 {
		t.Errorf("best bid %+v of %d levels", lv, b.Levels(Bid))
	}
	// Churn: open and empty levels far more often than MaxLevels. Without
	// reuse the pool would run out.
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5000 {
		r := addAt(Ask, 27+uint32(rng.IntN(4)))
		bs.Delete(1, r)
	}
	check("after churn")
	if s := bs.Stats(); s.LevelCapacity != 0 || s.Levels != uint64(b.Levels(Bid)+b.Levels(Ask)) {
		t.Errorf("stats %+v", s)
	}
	// Every level the churn opened came from the free list: none was
	// handed out beyond the 14 of the start, and those not live are free.
	free := 0
	for li := bs.levelFree; li != none && free <= len(bs.levels); li = bs.levels[li].head {
		free++
	}
	if live := b.Levels(Bid) + b.Levels(Ask); bs.levelUsed != 14 || free != 14-live {
		t.Errorf("%d levels handed out, %d free, %d live; want 14 handed out, all not live free", bs.levelUsed, free, live)
	}
	// Level churn allocates nothing.
	if n, exact := race.AllocsPerRun(t, 100, func() {
		r := addAt(Ask, 40)
		bs.Delete(1, r)
	}); exact && n != 0 {
		t.Errorf("open and empty a level: %v allocs per run", n)
	}
}

// TestLevelCapacity: with every level of the pool live, an add that needs a
// new level is dropped and counted (ErrLevelCapacity), an add to a live
// level still rests, and once a level empties the next new one fits.
func TestLevelCapacity(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 4, MaxLevels: 4})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("AAPL"))
	for i := range uint64(4) {
		if !bs.AddOrder(1, i+1, Bid, 1, 100+uint32(i)) {
			t.Fatalf("add %d: %v", i+1, bs.Err())
		}
	}
	// Dropped: no fifth level. It changes the book all the same, once:
	// the book is flagged incomplete (TestIncompleteBook).
	if !bs.AddOrder(1, 5, Ask, 1, 200) || bs.Book(1).Levels(Ask) != 0 || !bs.Book(1).Incomplete() {
		t.Errorf("a fifth level: asks %d, incomplete %v; want it dropped and the book flagged", bs.Book(1).Levels(Ask), bs.Book(1).Incomplete())
	}
	if !bs.AddOrder(1, 6, Bid, 1, 101) {
		t.Error("an add to a live level was dropped")
	}
	if s := bs.Stats(); s.LevelCapacity != 1 || !errors.Is(bs.Err(), ErrLevelCapacity) {
		t.Errorf("stats %+v, err %v", s, bs.Err())
	}
	bs.Delete(1, 1)
	if !bs.AddOrder(1, 7, Ask, 1, 200) {
		t.Errorf("a new level after one emptied was dropped: %v", bs.Err())
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
}

// TestLevelCapacityOverflowSlot: an add whose home slot is taken, dropped
// for want of a level, gives its overflow slot back (add claims it, and
// writes the order, before it looks for the level): the overflow table and
// its free list are as they were, the dropped order is unknown, and the
// one overflow slot takes the next such add that fits.
func TestLevelCapacityOverflowSlot(t *testing.T) {
	bs, err := New(Config{MaxOrders: 8, MaxLocates: 4, MaxLevels: 2, RefTableSize: 4, Overflow: 1})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("AAPL"))
	// Two levels, every home slot held (refs 1..4 fill the 4 home slots).
	for ref := uint64(1); ref <= 4; ref++ {
		if !bs.AddOrder(1, ref, Bid, 1, 100+uint32(ref%2)) {
			t.Fatalf("add %d: %v", ref, bs.Err())
		}
	}
	// Ref 5's home (5 mod 4 = 1) is ref 1's: an overflow add, at a third price.
	bs.AddOrder(1, 5, Ask, 1, 200)
	if s := bs.Stats(); s.LevelCapacity != 1 || s.Overflowed != 0 || s.Orders != 4 {
		t.Errorf("after the dropped add: LevelCapacity %d Overflowed %d Orders %d, want 1 0 4", s.LevelCapacity, s.Overflowed, s.Orders)
	}
	if bs.Delete(1, 5) {
		t.Error("the dropped order 5 was found and deleted")
	}
	// The overflow slot is free again: ref 9 (home 1, taken) rests at a live level.
	if !bs.AddOrder(1, 9, Bid, 1, 101) || bs.Stats().Overflowed != 1 || bs.Stats().OrderCapacity != 0 {
		t.Errorf("an overflow add after the drop: stats %+v, err %v", bs.Stats(), bs.Err())
	}
	if !bs.Delete(1, 9) || !bs.Delete(1, 1) {
		t.Error("orders 9 and 1 not deleted")
	}
	// The same from a free home slot: ref 8's (0) once ref 4 is gone (both
	// levels still live: refs 2 and 3). The slot is free again after the
	// drop, so ref 12 (home 0) goes home.
	bs.Delete(1, 4)
	bs.AddOrder(1, 8, Ask, 1, 300)
	if bs.Delete(1, 8) {
		t.Error("the dropped order 8 was found and deleted")
	}
	if !bs.AddOrder(1, 12, Bid, 1, 100) || bs.Stats().Overflowed != 0 || bs.Stats().LevelCapacity != 2 {
		t.Errorf("an add to the freed home slot: stats %+v, err %v", bs.Stats(), bs.Err())
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
}

// TestLadderMismatchFreesLevel: when an emptied level's price is missing
// from its ladder (a broken invariant, forced here), removeRung counts it
// and frees the level anyway, so Stats.Levels drops and the pool does not
// leak into a spurious LevelCapacity.
func TestLadderMismatchFreesLevel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(bs *Books, b *Book)
	}{
		// The level's key no longer matches its rung's: the rung (the
		// only one referring to the level) must still go.
		{"level key", func(bs *Books, b *Book) { bs.levels[b.sides[Bid].at(0).lvl].key++ }},
		// The rung is gone from the ladder: only the level is left to free.
		{"rung gone", func(bs *Books, b *Book) { b.setLadder(Bid, b.sides[Bid].rungs()[:0]) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs, b := oneBid(t)
			tc.corrupt(bs, b)
			bs.Delete(1, 1)
			s := bs.Stats()
			if s.LadderMismatch != 1 || s.Inconsistencies() != 1 || s.Levels != 0 || s.Orders != 0 {
				t.Fatalf("stats %+v", s)
			}
			if b.Levels(Bid) != 0 || bs.levelFree != 0 {
				t.Fatalf("%d bid rungs left, free list at %d; want none, level 0 free", b.Levels(Bid), bs.levelFree)
			}
			if err := checkInvariants(bs); err != nil {
				t.Fatal(err)
			}
			// The freed level is usable: a full pool of new levels fits.
			for i := range uint64(2) {
				if !bs.AddOrder(1, 10+i, Ask, 1, 600+uint32(i)) {
					t.Fatalf("add at a new level after the mismatch: %v %+v", bs.Err(), bs.Stats())
				}
			}
			if err := checkInvariants(bs); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// oneBid returns books of room for two levels and AAPL's book (locate 1),
// which holds one order: reference 1, a bid of 100 at 500.
func oneBid(t *testing.T) (*Books, *Book) {
	t.Helper()
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 4, MaxLevels: 2})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("AAPL"))
	b := bs.Book(1)
	if !bs.AddOrder(1, 1, Bid, 100, 500) {
		t.Fatal(bs.Err())
	}
	return bs, b
}

// TestUnlinkSpareSlot: removing an order that is first or last in its
// level writes its missing neighbour's link to the spare slot before
// orders[0], not to orders[0]: the order living in home slot 0 keeps its
// links, whichever orders around it come and go.
func TestUnlinkSpareSlot(t *testing.T) {
	const table = 16
	bs, err := New(Config{MaxOrders: 8, RefTableSize: table, MaxLocates: 2, MaxLevels: 8})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("AAPL"))
	add := func(ref uint64, price uint32) {
		t.Helper()
		if !bs.AddOrder(1, ref, Bid, 100, price) {
			t.Fatalf("add %d: %v %+v", ref, bs.Err(), bs.Stats())
		}
	}
	queue := func(price uint32) []uint64 {
		var refs []uint64
		for _, o := range bs.Book(1).Queue(Bid, price, make([]OrderInfo, 0, 8)) {
			refs = append(refs, o.Ref)
		}
		return refs
	}
	add(table, 10)   // home slot 0
	add(table+1, 10) // behind it
	add(table+2, 11) // alone in its level: both links none
	add(table+3, 10) // last at 10
	for _, ref := range []uint64{table + 2, table + 3, table + 1} {
		if !bs.Delete(1, ref) {
			t.Fatalf("delete %d: %+v", ref, bs.Stats())
		}
		if err := checkInvariants(bs); err != nil {
			t.Fatalf("after delete %d: %v", ref, err)
		}
	}
	if got := queue(10); len(got) != 1 || got[0] != table {
		t.Fatalf("queue at 10 = %v, want [%d]", got, table)
	}
	if o := bs.orders[0]; o.ref != table || o.prev != none || o.next != none {
		t.Fatalf("order in slot 0 = %+v, want ref %d alone in its level", o, table)
	}
	add(table+4, 10)
	if got := queue(10); len(got) != 2 || got[0] != table || got[1] != table+4 {
		t.Fatalf("queue at 10 = %v, want [%d %d]", got, table, table+4)
	}
}

// TestIncompleteBook: an add dropped for want of capacity (orders or
// levels) flags its book incomplete, and reports the book changed the
// first time (its snapshot goes out flagged), not after; another book is
// not flagged; Stats.Incomplete counts the flagged books; Reset and a
// locate given another symbol clear the flag. Before, the drop was counted
// (OrderCapacity, LevelCapacity) and the book published as if whole.
func TestIncompleteBook(t *testing.T) {
	bs, err := New(Config{MaxOrders: 4, MaxLocates: 4, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("AAPL"))
	bs.Announce(2, itch.NewSymbol("MSFT"))
	for i := range uint64(4) {
		bs.AddOrder(2, 10+i, Bid, 1, 100)
	}
	if bs.Book(1).Incomplete() || bs.Book(2).Incomplete() || bs.Stats().Incomplete != 0 {
		t.Fatal("flagged before any drop")
	}
	if !bs.AddOrder(1, 1, Ask, 5, 200) || !bs.Book(1).Incomplete() {
		t.Fatalf("the first dropped add: changed false or the book not flagged (OrderCapacity %d)", bs.Stats().OrderCapacity)
	}
	if bs.AddOrder(1, 2, Ask, 5, 201) {
		t.Error("the second dropped add reports a change: the book was flagged already")
	}
	if bs.Book(2).Incomplete() || bs.Stats().Incomplete != 1 || bs.Stats().OrderCapacity != 2 {
		t.Errorf("MSFT flagged %v, stats %+v; want AAPL alone flagged, two drops", bs.Book(2).Incomplete(), bs.Stats())
	}
	bs.Announce(1, itch.NewSymbol("IBM")) // the locate given another symbol: a new book
	if bs.Book(1).Incomplete() || bs.Stats().Incomplete != 0 {
		t.Errorf("after the locate was given another symbol: flagged %v, Incomplete %d", bs.Book(1).Incomplete(), bs.Stats().Incomplete)
	}
	bs.AddOrder(1, 3, Ask, 5, 200)
	bs.Reset()
	bs.Announce(1, itch.NewSymbol("IBM"))
	if bs.Book(1).Incomplete() || bs.Stats().Incomplete != 0 {
		t.Errorf("after Reset: flagged %v, Incomplete %d", bs.Book(1).Incomplete(), bs.Stats().Incomplete)
	}
}

// TestTopPricesFromLevelKey: in a broken book whose level's key is not
// its rung's (Stats.LadderMismatch, forced here), Top gives the level's
// price and Best and Depth the rung's, as their docs say (Top's and
// Stats.LadderMismatch's); a change to either makes those docs wrong.
func TestTopPricesFromLevelKey(t *testing.T) {
	bs, b := oneBid(t)
	bs.levels[b.sides[Bid].at(0).lvl].key++
	var top, none [1]Level
	b.Top(top[:], none[:0])
	best, _ := b.Best(Bid)
	depth := b.Depth(Bid, make([]Level, 0, 1))
	if top[0].Price != 501 || best.Price != 500 || len(depth) != 1 || depth[0].Price != 500 {
		t.Fatalf("Top %+v, Best %+v, Depth %+v; want Top at the level's 501, Best and Depth at the rung's 500", top[0], best, depth)
	}
}
