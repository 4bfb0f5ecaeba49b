package book

import (
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/race"
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
	n, exact := race.AllocsPerRun(t, runs, func() {
		locate++
		bs.Announce(locate, itch.Symbol{'L'})
		for p := range uint32(levels) {
			ref++
			bs.AddOrder(locate, ref, Bid, 1, 1000+p)
		}
	})
	if exact && n != 0 {
		t.Errorf("%v allocs per ladder grown to %d levels", n, levels)
	}
	if b := bs.Book(1); b.Levels(Bid) != levels || cap(b.sides[Bid].rungs()) != levels {
		t.Errorf("ladder of %d levels, capacity %d", b.Levels(Bid), cap(b.sides[Bid].rungs()))
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
		for p := range uint32(levels) {
			ref++
			if !bs.AddOrder(locate, ref, side, 1, 5000+p) {
				t.Fatalf("add %d: %v", ref, bs.Err())
			}
		}
		if err := checkInvariants(bs); err != nil {
			t.Fatal(err)
		}
	}
	grow(1, Bid, 2*minLadder) // arrays of 16 and 32: the 16 is free
	if l.used != 3*minLadder || l.free[0] == 0 {
		t.Fatalf("after one ladder of 32: used %d, free 16s %d", l.used, l.free[0])
	}
	grow(2, Ask, minLadder) // takes the free 16, nothing new from the block
	if l.used != 3*minLadder || l.free[0] != 0 {
		t.Errorf("second ladder of 16: used %d, free 16s %d", l.used, l.free[0])
	}
	// 16+32+64+128 more fit, 256 does not: the ask ladder ends on the heap
	grow(1, Ask, 12*minLadder)
	if b := bs.Book(1); b.Levels(Ask) != 12*minLadder || inBlock(l, b.sides[Ask].rungs()) {
		t.Errorf("ask ladder of %d levels, in the block %v", b.Levels(Ask), inBlock(l, b.sides[Ask].rungs()))
	}
	if !inBlock(l, bs.Book(1).sides[Bid].rungs()) || !inBlock(l, bs.Book(2).sides[Ask].rungs()) {
		t.Error("the first ladders left the block")
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

// TestSearch checks search against a plain lower bound on ladders of 0 to 40
// rungs, for every key in a ladder, every gap between them and beyond both
// ends: the walk from the top (searchWalk rungs) and the bisection below it
// must agree with it on the index and on whether the key is there.
func TestSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 40; n++ {
		rungs := make([]rung, n)
		k := uint32(10)
		for i := range rungs {
			k += 2 + uint32(rng.IntN(3)) // strictly increasing, with gaps
			rungs[i] = rung{key: k, lvl: int32(i)}
		}
		lad := ladder{n: uint32(n), c: uint32(n)}
		if n > 0 {
			lad.p = &rungs[0]
		}
		for key := uint32(0); key <= k+3; key++ {
			want := sort.Search(n, func(i int) bool { return rungs[i].key >= key })
			wantFound := want < n && rungs[want].key == key
			if i, found := search(lad, key); i != want || found != wantFound {
				t.Fatalf("%d rungs, key %d: search gave %d, %v; want %d, %v", n, key, i, found, want, wantFound)
			}
		}
	}
}
