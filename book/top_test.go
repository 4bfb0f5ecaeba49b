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

// TestTopLevelsWholeAllocation: topLevels on a ladder and a vector that
// are each a whole allocation of their own (the best rung the last element,
// the worst read the first, the last level written the vector's last), so
// a walk that stepped a pointer before the ladder or past the vector fails
// under checkptr (go test -race, -gcflags=all=-d=checkptr).
func TestTopLevelsWholeAllocation(t *testing.T) {
	levels := []priceLevel{{shares: 10, orders: 1}, {shares: 20, orders: 2}, {shares: 30, orders: 3}}
	for n := range 4 {
		lad := make([]rung, n)
		for i := range lad {
			lad[i] = rung{key: uint32(100 + i), lvl: int32(i)}
		}
		for _, flip := range []uint32{0, ^uint32(0)} {
			dst := make([]Level, n)
			topLevels(levels, lad, dst, flip)
			for k := range dst {
				want := Level{Price: uint32(100+n-1-k) ^ flip, Orders: uint32(n - k), Shares: uint64(10 * (n - k))}
				if dst[k] != want {
					t.Fatalf("%d rungs, flip %#x: level %d is %+v, want %+v", n, flip, k, dst[k], want)
				}
			}
		}
	}
}
