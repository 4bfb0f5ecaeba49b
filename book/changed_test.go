package book

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// TestChangedFrom drives random adds, executes, cancels, deletes and
// replaces (prices on a narrow grid, so levels fill, empty and shift),
// takes the marks after every message and merges them per book, as a
// publisher does, and checks that the levels ranked above ChangedFrom are
// the ones the book had at its last "publish", for several depths, also
// across a Reset (a GLIMPSE rebuild) with no mark of its own.
func TestChangedFrom(t *testing.T) {
	const maxDepth = 20
	bs, err := New(Config{MaxOrders: 4096, MaxLocates: 4, MaxLevels: 1024})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 11))
	var kept [2][4][]Level // by side and locate: the top levels at the last publish
	var marks [4]Changed   // by locate: merged since the last publish
	for i := range marks {
		marks[i] = Changed{ChangedAll, ChangedAll}
	}
	announce := func() {
		for loc := uint16(1); loc <= 3; loc++ {
			bs.Announce(loc, itch.NewSymbol("S"))
		}
	}
	announce()
	var live []uint64
	ref := uint64(1)
	shifted := 0
	for i := 0; i < 200_000; i++ {
		loc := uint16(1 + rng.IntN(3))
		switch op := rng.IntN(100); {
		case op < 40 || len(live) == 0:
			side := Side(rng.IntN(2))
			price := uint32(1000 + rng.IntN(30))
			if side == Ask {
				price += 20 // overlapping ranges: crossed books are fine here
			}
			if bs.AddOrder(loc, ref, side, uint32(1+rng.IntN(300)), price) {
				live = append(live, ref)
			}
			ref++
		default:
			k := rng.IntN(len(live))
			r := live[k]
			o, l, ok := bs.Order(r)
			if !ok {
				live = slices.Delete(live, k, k+1)
				continue
			}
			loc = l
			switch {
			case op < 55:
				bs.Execute(l, r, uint32(1+rng.IntN(int(o.Shares))), uint64(i))
			case op < 70:
				bs.Cancel(l, r, uint32(1+rng.IntN(int(o.Shares))))
			case op < 90:
				bs.Delete(l, r)
			default:
				bs.Replace(l, r, ref, uint32(1+rng.IntN(300)), uint32(1000+rng.IntN(50)))
				live = append(live, ref)
				ref++
			}
		}
		marks[loc].Merge(bs.TakeChanged())
		if c := bs.TakeChanged(); c != (Changed{}) {
			t.Fatalf("TakeChanged did not clear: %v", c)
		}
		b := bs.Book(loc)
		for side := Bid; side <= Ask; side++ {
			now := b.AppendDepth(side, nil, maxDepth)
			for _, n := range []int{1, 5, 10, 20} {
				r := b.ChangedFrom(side, marks[loc], n)
				if r > min(n, len(now)) {
					t.Fatalf("msg %d locate %d %v depth %d: ChangedFrom %d beyond %d levels", i, loc, side, n, r, len(now))
				}
				old := kept[side][loc]
				if r > len(old) || !slices.Equal(now[:r], old[:r]) {
					t.Fatalf("msg %d locate %d %v depth %d: ChangedFrom %d, but the top levels were %v and are %v", i, loc, side, n, r, old, now)
				}
				if n == 20 && r < min(len(old), len(now)) && r > 0 {
					shifted++
				}
			}
		}
		if rng.IntN(4) == 0 { // publish: the book's levels are what readers hold
			marks[loc] = Changed{}
			for side := Bid; side <= Ask; side++ {
				kept[side][loc] = b.AppendDepth(side, kept[side][loc][:0], maxDepth)
				if r := b.ChangedFrom(side, marks[loc], maxDepth); r != len(kept[side][loc]) {
					t.Fatalf("nothing changed: ChangedFrom %d, %d levels", r, len(kept[side][loc]))
				}
			}
		}
		if i%50_000 == 49_999 { // a GLIMPSE rebuild starts from empty books
			bs.AddOrder(1, ref, Bid, 1, 1) // a mark that Reset drops
			ref++
			bs.Reset()
			announce()
			live = live[:0]
			if c := bs.TakeChanged(); c != (Changed{}) {
				t.Fatalf("Reset left marks %v", c)
			}
		}
	}
	if shifted < 1000 {
		t.Fatalf("only %d checks with a partial rewrite: the stream does not exercise ChangedFrom", shifted)
	}
	t.Logf("%d checks kept some but not all levels", shifted)
}

// TestChangedExtremeKeys: the best possible keys (bid price ^0, ask price
// 0) saturate to ChangedAll, which still means rank 0.
func TestChangedExtremeKeys(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 4, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("X"))
	bs.AddOrder(1, 1, Bid, 10, 100)
	bs.AddOrder(1, 2, Bid, 10, ^uint32(0))
	bs.AddOrder(1, 3, Ask, 10, 0)
	bs.AddOrder(1, 4, Ask, 10, 50)
	bs.TakeChanged()
	bs.Cancel(1, 2, 1)
	bs.Cancel(1, 3, 1)
	c := bs.TakeChanged()
	if c != (Changed{ChangedAll, ChangedAll}) {
		t.Fatalf("marks %v, want both ChangedAll", c)
	}
	for side := Bid; side <= Ask; side++ {
		if r := bs.Book(1).ChangedFrom(side, c, 10); r != 0 {
			t.Errorf("%v: ChangedFrom %d, want 0", side, r)
		}
	}
}
