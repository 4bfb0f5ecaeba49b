package book

import (
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// TestTopMatchesDepth: Top writes what Depth writes for each side, for
// vectors shorter than, as long as and longer than the ladders (a longer
// vector keeps its tail), and Crossed says what the best levels say, over
// random books: one-sided, empty, crossed and apart, with levels added and
// emptied.
func TestTopMatchesDepth(t *testing.T) {
	bs, err := New(Config{MaxOrders: 1 << 12, MaxLocates: 4, MaxLevels: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("TOP"))
	b := bs.Book(1)
	rng := rand.New(rand.NewPCG(1, 2))
	var live []uint64
	ref := uint64(0)
	sawCrossed, sawApart, sawEmpty := false, false, false
	for step := range 20000 {
		if len(live) > 0 && (rng.IntN(2) == 0 || len(live) > 300) {
			i := rng.IntN(len(live))
			if !bs.Delete(1, live[i]) {
				t.Fatalf("step %d: delete %d: %v", step, live[i], bs.Err())
			}
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
		} else {
			ref++
			side := Side(rng.IntN(2))
			price := uint32(1000 + rng.IntN(60))
			if side == Ask && step%3000 > 1500 {
				price += 40 // apart for a while
			}
			if !bs.AddOrder(1, ref, side, uint32(1+rng.IntN(500)), price) {
				t.Fatalf("step %d: add %d: %v", step, ref, bs.Err())
			}
			live = append(live, ref)
		}
		bid, bidOK := b.Best(Bid)
		ask, askOK := b.Best(Ask)
		want := bidOK && askOK && bid.Price >= ask.Price
		if got := b.Crossed(); got != want {
			t.Fatalf("step %d: Crossed %v, best levels %+v %v, %+v %v", step, got, bid, bidOK, ask, askOK)
		}
		sawCrossed = sawCrossed || want
		sawApart = sawApart || (bidOK && askOK && !want)
		sawEmpty = sawEmpty || !bidOK || !askOK
		if step%7 != 0 {
			continue
		}
		for _, n := range []int{0, 1, 5, 10, 20, 80} {
			nb, na := min(n, b.Levels(Bid)), rng.IntN(n+1)
			bids, asks := make([]Level, nb), make([]Level, na)
			for i := range asks {
				asks[i] = Level{Price: 7, Orders: 7, Shares: 7}
			}
			b.Top(bids, asks)
			// AppendDepth walks the ladder on its own (Depth shares Top's walk).
			wantBids := b.AppendDepth(Bid, nil, max(nb, 1))[:min(nb, b.Levels(Bid))]
			wantAsks := b.AppendDepth(Ask, nil, max(na, 1))[:min(na, b.Levels(Ask))]
			for i := range bids {
				if bids[i] != wantBids[i] {
					t.Fatalf("step %d, %d bids: level %d is %+v, Depth %+v", step, nb, i, bids[i], wantBids[i])
				}
			}
			for i := range asks {
				want := Level{Price: 7, Orders: 7, Shares: 7}
				if i < len(wantAsks) {
					want = wantAsks[i]
				}
				if asks[i] != want {
					t.Fatalf("step %d, %d asks: level %d is %+v, want %+v", step, na, i, asks[i], want)
				}
			}
		}
	}
	if !sawCrossed || !sawApart || !sawEmpty {
		t.Errorf("books seen: crossed %v, apart %v, a side empty %v; want all", sawCrossed, sawApart, sawEmpty)
	}
}

// TestTopWholeAllocation: Top on ladders and vectors that are each a
// whole allocation of their own (the best rung the last element, the worst
// read the first, the last level written the vector's last), so a walk that
// stepped a pointer before a ladder or past a vector fails under checkptr
// (go test -race, -gcflags=all=-d=checkptr). A level's price is its key
// (insertRung keeps it its rung's), its orders and shares its own.
func TestTopWholeAllocation(t *testing.T) {
	levels := make([]priceLevel, 6)
	for i := range levels {
		levels[i] = priceLevel{shares: uint64(10 * (i + 1)), orders: uint32(i + 1), key: uint32(100 + i)}
	}
	for n := range 4 {
		var b Book
		b.bs = &Books{levels: levels}
		for side := range Side(2) {
			lad := make([]rung, n)
			for i := range lad {
				li := int32(i + 3*int(side))
				lad[i] = rung{key: levels[li].key, lvl: li}
			}
			b.setLadder(side, lad)
		}
		bids, asks := make([]Level, n), make([]Level, n)
		b.Top(bids, asks)
		for side, got := range [][]Level{bids, asks} {
			flip := sideFlip(Side(side))
			for k := range got {
				li := n - 1 - k + 3*side
				want := Level{Price: uint32(100+li) ^ flip, Orders: uint32(li + 1), Shares: uint64(10 * (li + 1))}
				if got[k] != want {
					t.Fatalf("%d rungs, side %d: level %d is %+v, want %+v", n, side, k, got[k], want)
				}
			}
		}
	}
}
