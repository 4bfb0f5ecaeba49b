package book

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// TestChangedKeepsLevelsAbove: after random batches of adds, deletes,
// cancels, executions and replaces (at the best level, deep in the book,
// emptying levels and not), locates given another symbol, withdrawn and
// announced again, and Reset, the levels better than Changed's ranks are
// the ones written at the last ClearChanged, and TopChanged into vectors
// that hold those (each locate's at a depth that changes now and then,
// marked all changed then as a new publisher's; the ask vector moved when
// the bid vector's length changed) leaves them equal to Top's, whatever
// their entries past Changed held before.
func TestChangedKeepsLevelsAbove(t *testing.T) {
	const locates = 4
	bs, err := New(Config{MaxOrders: 1 << 12, MaxLocates: locates, MaxLevels: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	sym := func(loc uint16, gen int) itch.Symbol { return itch.NewSymbol(fmt.Sprintf("C%d_%d", loc, gen)) }
	gen := make([]int, locates+1)
	for loc := uint16(1); loc <= locates; loc++ {
		bs.Announce(loc, sym(loc, 0))
	}
	type order struct {
		loc uint16
		ref uint64
	}
	var live []order
	ref := uint64(0)
	// held is what each locate's vectors hold: written by TopChanged at
	// its last ClearChanged (nil: never, or the memory lost).
	type held struct {
		bids, asks []Level
		depth      int
	}
	mem := make([]*held, locates+1)
	var partial, skipped, moved int
	for batch := range 4000 {
		for n := 1 + rng.IntN(8); n > 0; n-- {
			loc := uint16(1 + rng.IntN(locates))
			switch k := rng.IntN(100); {
			case k < 45 || len(live) == 0:
				ref++
				side := Side(rng.IntN(2))
				price := uint32(1000 + rng.IntN(40))
				if side == Ask {
					price += 30
				}
				if bs.AddOrder(loc, ref, side, uint32(1+rng.IntN(300)), price) {
					live = append(live, order{loc, ref})
				}
			case k < 92:
				i := rng.IntN(len(live))
				o := live[i]
				drop := true
				switch rng.IntN(4) {
				case 0:
					bs.Delete(o.loc, o.ref)
				case 1:
					info, _ := bs.Order(o.loc, o.ref)
					bs.Cancel(o.loc, o.ref, uint32(1+rng.IntN(int(info.Shares)+1)))
					_, ok := bs.Order(o.loc, o.ref)
					drop = !ok
				case 2:
					info, _ := bs.Order(o.loc, o.ref)
					bs.Execute(o.loc, o.ref, uint32(1+rng.IntN(int(info.Shares)+1)), ref)
					_, ok := bs.Order(o.loc, o.ref)
					drop = !ok
				default:
					ref++
					bs.Replace(o.loc, o.ref, ref, uint32(1+rng.IntN(300)), uint32(1000+rng.IntN(70)))
					live = append(live, order{o.loc, ref})
				}
				if drop {
					live[i] = live[len(live)-1]
					live = live[:len(live)-1]
				}
			case k < 95:
				gen[loc]++
				bs.Announce(loc, sym(loc, gen[loc])) // another symbol: emptied
			case k < 97:
				if bs.Withdraw(loc) {
					bs.Announce(loc, sym(loc, gen[loc]))
				}
			case k < 98:
				bs.Reset()
				for l := uint16(1); l <= locates; l++ {
					bs.Announce(l, sym(l, gen[l]))
				}
			}
			// Orders of emptied books are gone: the test's list too.
			kept := live[:0]
			for _, o := range live {
				if _, ok := bs.Order(o.loc, o.ref); ok {
					kept = append(kept, o)
				}
			}
			live = kept
		}
		for loc := uint16(1); loc <= locates; loc++ {
			b := bs.Book(loc)
			depth := []int{1, 3, 10}[(batch/500+int(loc))%3]
			nb, na := min(b.Levels(Bid), depth), min(b.Levels(Ask), depth)
			wantB, wantA := make([]Level, nb), make([]Level, na)
			b.Top(wantB, wantA)
			h := mem[loc]
			if h == nil || h.depth != depth || rng.IntN(20) == 0 {
				// A publisher whose copy is gone (a new slot), or
				// of another depth (ranks past the old one's were
				// never written).
				b.MarkChanged()
				h = &held{}
			}
			rb, ra := b.Changed()
			// What the memory holds, each vector resized to its new
			// length, what lies past the old length garbage.
			bids, asks := garbage(rng, nb), garbage(rng, na)
			copy(bids, h.bids)
			asksMoved := len(h.bids) != nb
			if !asksMoved {
				copy(asks, h.asks)
			} else {
				moved++
			}
			for r := 0; r < min(rb, nb); r++ {
				if r >= len(h.bids) || bids[r] != wantB[r] {
					t.Fatalf("batch %d, locate %d, depth %d: bid rank %d above Changed's %d: %+v, last written %+v, want %+v", batch, loc, depth, r, rb, bids[r], h.bids, wantB)
				}
			}
			if !asksMoved {
				for r := 0; r < min(ra, na); r++ {
					if r >= len(h.asks) || asks[r] != wantA[r] {
						t.Fatalf("batch %d, locate %d, depth %d: ask rank %d above Changed's %d: %+v, last written %+v, want %+v", batch, loc, depth, r, ra, asks[r], h.asks, wantA)
					}
				}
			}
			if rb > 0 && nb > 0 || ra > 0 && na > 0 {
				partial++
			}
			if rb >= nb && (asksMoved || ra >= na) {
				skipped++
			}
			b.TopChanged(bids, asks, asksMoved)
			for r := range wantB {
				if bids[r] != wantB[r] {
					t.Fatalf("batch %d, locate %d: TopChanged bids %+v, want %+v (from rank %d)", batch, loc, bids, wantB, rb)
				}
			}
			for r := range wantA {
				if asks[r] != wantA[r] {
					t.Fatalf("batch %d, locate %d: TopChanged asks %+v, want %+v (from rank %d, moved %v)", batch, loc, asks, wantA, ra, asksMoved)
				}
			}
			if rb, ra := b.Changed(); rb < b.Levels(Bid) || ra < b.Levels(Ask) {
				t.Fatalf("batch %d, locate %d: Changed %d, %d after TopChanged, want at least the levels %d, %d", batch, loc, rb, ra, b.Levels(Bid), b.Levels(Ask))
			}
			mem[loc] = &held{bids: bids, asks: asks, depth: depth}
		}
	}
	// The stream must reach the cases it is for.
	t.Logf("%d publishes from a rank past the best, %d writing no level, %d with the asks moved", partial, skipped, moved)
	if partial == 0 || skipped == 0 || moved == 0 {
		t.Fatal("the stream misses a case")
	}
}

// garbage returns n levels of random values.
func garbage(rng *rand.Rand, n int) []Level {
	ls := make([]Level, n)
	for i := range ls {
		ls[i] = Level{Price: rng.Uint32(), Orders: rng.Uint32(), Shares: rng.Uint64()}
	}
	return ls
}
