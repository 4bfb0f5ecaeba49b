package book

import (
	"testing"
	"time"
)

// TestResetAsNew: after Reset the books behave as new ones. A first day of
// random operations, then Reset, then a second day whose references, match
// numbers and locates are the first day's again (stale orders and trades
// would be found, stale books known): every book, order queue, trade and
// counter matches a reference model that saw only the second day, step by
// step. Both ways Reset frees the orders are exercised: one by one (a few
// live orders) and by clearing the whole table (many, or some in overflow
// slots).
func TestResetAsNew(t *testing.T) {
	walked, cleared := 0, 0
	for seed := range uint64(12) {
		cfg := Config{MaxOrders: 1 << 12, MaxLocates: 6, MaxLevels: 1 << 10, Overflow: 1 << 12}
		if seed%3 == 2 { // tiny capacities: overflow slots in use at the Reset
			cfg = Config{MaxOrders: 40, MaxLocates: 6, MaxLevels: 24, Overflow: 40}
		}
		bs, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range randomOps(seed, 6, []int{60, 20000}[seed%2]) {
			applyOpNumeric(bs, o)
		}
		if bs.stats.Orders == 0 || !bs.tradesUsed {
			t.Fatalf("seed %d: the first day left %d orders, trades remembered %v", seed, bs.stats.Orders, bs.tradesUsed)
		}
		if bs.stats.Overflowed == 0 && bs.stats.Orders <= uint64(len(bs.orders)/freeLiveDivisor) {
			walked++
		} else {
			cleared++
		}
		bs.Reset()
		if err := checkInvariants(bs); err != nil {
			t.Fatalf("seed %d: after Reset: %v", seed, err)
		}
		r := newRefBooks(cfg)
		r.stats = bs.Stats() // the counters run on across Reset
		for i, o := range randomOps(seed, 6, 5000) {
			applyOpNumeric(bs, o)
			r.apply(o)
			if err := compareBook(bs, r, o.locate); err != nil {
				t.Fatalf("seed %d: second day op %d %+v: %v", seed, i, o, err)
			}
			if err := compareStats(bs, r); err != nil {
				t.Fatalf("seed %d: second day op %d %+v: %v", seed, i, o, err)
			}
		}
		for l := 0; l <= cfg.MaxLocates; l++ {
			if err := compareBook(bs, r, uint16(l)); err != nil {
				t.Fatalf("seed %d: end: %v", seed, err)
			}
		}
		if err := checkInvariants(bs); err != nil {
			t.Fatalf("seed %d: end: %v", seed, err)
		}
	}
	if walked == 0 || cleared == 0 {
		t.Fatalf("Reset walked the live orders %d times and cleared the table %d times: want both", walked, cleared)
	}
}

// TestResetCost: a Reset of books that have seen only a stock directory (a
// late join's rebuild) or a few orders touches what they hold, not the
// default capacity's tables (about 340 MiB). Measured as memory traffic
// would be flaky; the test checks what Reset leaves alone instead: a slot
// far from any order, a trade slot and a book never announced keep a
// marker that a whole clear would erase.
func TestResetCost(t *testing.T) {
	bs, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	marker := func() {
		bs.orders[len(bs.orders)/2].price = 7 // a free slot: shares 0
		bs.trades[len(bs.trades)/2].price = 7
		bs.books[len(bs.books)-1].lastPrice = 7
	}
	kept := func() bool {
		return bs.orders[len(bs.orders)/2].price == 7 && bs.trades[len(bs.trades)/2].price == 7 && bs.books[len(bs.books)-1].lastPrice == 7
	}
	bs.Announce(1, [8]byte{'A', ' ', ' ', ' ', ' ', ' ', ' ', ' '})
	bs.AddOrder(1, 10, Bid, 100, 1000)
	bs.AddOrder(1, 11, Ask, 100, 1100)
	marker()
	t0 := time.Now()
	bs.Reset()
	took := time.Since(t0)
	if !kept() {
		t.Fatal("Reset of two orders cleared the whole order table, trade memory or book array")
	}
	if bs.Book(1) != nil || bs.lookup(1, 10) != none || bs.lookup(1, 11) != none || bs.stats.Orders != 0 {
		t.Fatalf("after Reset: book %v, lookups %d %d, orders %d", bs.Book(1), bs.lookup(1, 10), bs.lookup(1, 11), bs.stats.Orders)
	}
	t.Logf("Reset of 2 orders on the default capacity: %v", took)
	// With a trade remembered the trade memory is cleared; the rest not.
	bs.Announce(1, [8]byte{'A', ' ', ' ', ' ', ' ', ' ', ' ', ' '})
	bs.Trade(1, 1000, 5, 1)
	marker()
	bs.Reset()
	if bs.trades[len(bs.trades)/2].price != 0 || bs.orders[len(bs.orders)/2].price != 7 {
		t.Fatal("after a trade: want the trade memory cleared and the order table not")
	}
	// A non-printable execution is remembered too (a Broken Trade may
	// name it).
	bs.Announce(1, [8]byte{'A', ' ', ' ', ' ', ' ', ' ', ' ', ' '})
	bs.AddOrder(1, 10, Bid, 100, 1000)
	bs.ExecuteWithPrice(1, 10, 50, 1000, 2, false)
	marker()
	bs.Reset()
	if bs.trades[len(bs.trades)/2].price != 0 {
		t.Fatal("after a non-printable execution: want the trade memory cleared")
	}
}

// TestResetOverflowSlot: a few live orders, one of them in an overflow slot
// (its home slot held by an older order), on a table large enough for
// Reset to walk them: the overflow table and its free list must come back
// whole, as after New.
func TestResetOverflowSlot(t *testing.T) {
	bs, err := New(Config{MaxOrders: 1 << 12, MaxLocates: 2, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	home := bs.homeMask + 1
	bs.Announce(1, [8]byte{'A', ' ', ' ', ' ', ' ', ' ', ' ', ' '})
	bs.AddOrder(1, 5, Bid, 100, 1000)
	bs.AddOrder(1, 5+home, Bid, 100, 1000) // home slot 5 is taken: an overflow slot
	if bs.stats.Orders != 2 || bs.stats.Overflowed != 1 || bs.stats.Orders > uint64(len(bs.orders)/freeLiveDivisor) {
		t.Fatalf("setup: %d orders, %d in overflow slots (walk limit %d)", bs.stats.Orders, bs.stats.Overflowed, len(bs.orders)/freeLiveDivisor)
	}
	bs.Reset()
	if err := checkInvariants(bs); err != nil {
		t.Fatalf("after Reset: %v", err)
	}
	bs.Announce(1, [8]byte{'A', ' ', ' ', ' ', ' ', ' ', ' ', ' '})
	if !bs.AddOrder(1, 5+home, Ask, 10, 1100) || bs.lookup(1, 5+home) != int32(5) || bs.stats.DuplicateAdd != 0 {
		t.Fatalf("after Reset: add of %d: slot %d, duplicate adds %d", 5+home, bs.lookup(1, 5+home), bs.stats.DuplicateAdd)
	}
}
