package book

import (
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// TestLadderGrowthAllocs: a ladder growing inside the block New allocated
// allocates nothing. Each run grows the ladder of a book not touched before
// through four sizes.
func TestLadderGrowthAllocs(t *testing.T) {
	const runs, levels = 100, 8 * minLadder
	bs, err := New(Config{MaxOrders: 1 << 16, MaxLocates: runs + 2, MaxLevels: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	locate, ref := uint16(0), uint64(0)
	n := testing.AllocsPerRun(runs, func() {
		locate++
		bs.Announce(locate, itch.Symbol{'L'})
		for p := range uint32(levels) {
			ref++
			bs.AddOrder(locate, ref, Bid, 1, 1000+p)
		}
	})
	if n != 0 {
		t.Errorf("%v allocs per ladder grown to %d levels", n, levels)
	}
	if b := bs.Book(1); b.Levels(Bid) != levels || cap(b.sides[Bid]) != levels {
		t.Errorf("ladder of %d levels, capacity %d", b.Levels(Bid), cap(b.sides[Bid]))
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
}

// TestLadderBlock: arrays given back when ladders grow are reused by the
// next ladder growing to their size, and ladders keep growing on the heap
// once the block is used up, with the books intact throughout.
func TestLadderBlock(t *testing.T) {
	bs, err := New(Config{MaxOrders: 1 << 12, MaxLocates: 4, MaxLevels: 16 * minLadder}) // a block of 32 * minLadder
	if err != nil {
		t.Fatal(err)
	}
	l := &bs.ladders
	bs.Announce(1, itch.Symbol{'A'})
	bs.Announce(2, itch.Symbol{'B'})
	ref := uint64(0)
	grow := func(locate uint16, side Side, levels int) {
		t.Helper()
		addLevels(t, bs, &ref, locate, side, levels)
	}
	// A side's first array is its book's own (TestLadderFirstArrayInBook);
	// the block's arrays start at 2*minLadder rungs.
	grow(1, Bid, 4*minLadder) // arrays of 8 and 16 rungs: the 8 is free
	if l.used != 6*minLadder || l.free[1] == 0 {
		t.Fatalf("after one ladder of 16: used %d, free 8s %d", l.used, l.free[1])
	}
	grow(2, Ask, 2*minLadder) // takes the free 8, nothing new from the block
	if l.used != 6*minLadder || l.free[1] != 0 {
		t.Errorf("second ladder of 8: used %d, free 8s %d", l.used, l.free[1])
	}
	// 8+16+32 more fit in the block's 32*minLadder, 64 does not: the ask
	// ladder ends on the heap
	grow(1, Ask, 10*minLadder)
	if b := bs.Book(1); b.Levels(Ask) != 10*minLadder || inBlock(l, b.sides[Ask]) {
		t.Errorf("ask ladder of %d levels, in the block %v", b.Levels(Ask), inBlock(l, b.sides[Ask]))
	}
	if !inBlock(l, bs.Book(1).sides[Bid]) || !inBlock(l, bs.Book(2).sides[Ask]) {
		t.Error("the first ladders left the block")
	}
}

// TestLadderFirstArrayInBook: a side's first minLadder levels are in the
// book's own array (Book.inl, the line the lookahead prefetches with the
// book), not in the ladder block, and stay there through a Reset and a
// locate given another symbol; a side that outgrew it keeps its grown
// array.
func TestLadderFirstArrayInBook(t *testing.T) {
	bs, err := New(Config{MaxOrders: 1 << 12, MaxLocates: 4, MaxLevels: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ref := uint64(0)
	fill := func(locate uint16, levels int) {
		t.Helper()
		bs.Announce(locate, itch.Symbol{'A', byte('0' + locate)})
		addLevels(t, bs, &ref, locate, Bid, levels)
		addLevels(t, bs, &ref, locate, Ask, levels)
	}
	own := func(when string, locate uint16, want bool) {
		t.Helper()
		b := &bs.books[locate]
		for side := range b.sides {
			if got := cap(b.sides[side]) > 0 && &b.sides[side][:1][0] == &b.inl[side][0]; got != want {
				t.Errorf("%s: locate %d side %d in the book's own array %v, want %v (capacity %d)", when, locate, side, got, want, cap(b.sides[side]))
			}
		}
	}
	fill(1, minLadder)
	own("after minLadder levels", 1, true)
	if bs.ladders.used != 0 {
		t.Errorf("after minLadder levels a side: %d rungs of the ladder block used, want 0", bs.ladders.used)
	}
	fill(2, minLadder+1)
	own("after minLadder+1 levels", 2, false)
	bs.Announce(1, itch.Symbol{'B'}) // another symbol: the book emptied
	own("after the locate's re-assignment", 1, true)
	bs.Reset()
	own("after Reset", 1, true)
	own("after Reset", 3, true)
	own("after Reset, the grown book", 2, false)
	fill(1, minLadder)
	own("after Reset and minLadder levels", 1, true)
}

// addLevels adds an order of references *ref+1, ... on each of levels
// prices of side of locate's book and checks the books' invariants.
func addLevels(t *testing.T, bs *Books, ref *uint64, locate uint16, side Side, levels int) {
	t.Helper()
	for p := range uint32(levels) {
		*ref++
		if !bs.AddOrder(locate, *ref, side, 1, 5000+p) {
			t.Fatalf("add %d: %v", *ref, bs.Err())
		}
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
}

func inBlock(l *ladders, s []rung) bool {
	for i := range l.mem {
		if &l.mem[i] == &s[:1][0] {
			return true
		}
	}
	return false
}
