package book

import (
	"errors"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
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
	if ahead, _, ok := bs.QueueAhead(second13); !ok || ahead != 0 {
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
	if bs.levelUsed > 16 {
		t.Errorf("%d levels handed out for at most 16 live", bs.levelUsed)
	}
	// Level churn allocates nothing.
	if n := testing.AllocsPerRun(100, func() {
		r := addAt(Ask, 40)
		bs.Delete(1, r)
	}); n != 0 {
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
	if bs.AddOrder(1, 5, Ask, 1, 200) {
		t.Error("a fifth level was accepted")
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
