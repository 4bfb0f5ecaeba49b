package itchgen

import (
	"fmt"
	"slices"
	"testing"

	books "github.com/marketfeed/feedhandler/book"
)

// TestBooksMatchGeneratorBooks applies generated days to books.Books and
// compares them, every 500 messages and at the end, with the book the
// generator keeps to emit consistent order flow (book.go): an independent
// computation of the same day, of other structures (price ticks, a live
// list) than the books' and their tests' reference model. Every level of
// every symbol (price, shares, orders), every queue in time priority (the
// reference and shares of each order) and the trading and operational
// halt states must agree, and the day must be consistent input: no
// inconsistency counted. Small order tables, so that references reuse
// home slots and take overflow slots.
func TestBooksMatchGeneratorBooks(t *testing.T) {
	for _, c := range []Config{
		{Messages: 150_000, Symbols: 20, Seed: 11},
		{Messages: 150_000, Symbols: 300, Seed: 12},
	} {
		t.Run(fmt.Sprintf("%d symbols", c.Symbols), func(t *testing.T) {
			g, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			bs, err := books.New(books.Config{MaxOrders: 1 << 15, MaxLocates: 400, MaxLevels: 1 << 14, RefTableSize: 1 << 10, Overflow: 1 << 13})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for m, ok := g.Next(); ok; m, ok = g.Next() {
				bs.Apply(m)
				if n++; n%500 == 0 {
					if err := compareGenBooks(g, bs); err != nil {
						t.Fatalf("after message %d (%c): %v", n, m.Type(), err)
					}
				}
			}
			if err := compareGenBooks(g, bs); err != nil {
				t.Fatalf("end of day, %d messages: %v", n, err)
			}
			st := bs.Stats()
			if st.Inconsistencies() != 0 || st.Orders == 0 || st.Overflowed == 0 && c.Symbols == 20 {
				t.Fatalf("books after the day: %+v", st)
			}
		})
	}
}

// compareGenBooks compares every symbol's book in bs with the generator's.
func compareGenBooks(g *Generator, bs *books.Books) error {
	var q []books.OrderInfo
	for i := range g.syms {
		s := &g.syms[i]
		b := bs.Book(s.locate)
		if b == nil {
			return fmt.Errorf("%s (locate %d): no book", s.stock, s.locate)
		}
		var want [2][]books.Level
		orders := 0
		for lvl := range int32(len(s.levels)) {
			l := &s.levels[lvl]
			if l.n == 0 {
				continue
			}
			side := books.Bid
			if g.bk.orders[l.head].side == 'S' {
				side = books.Ask
			}
			lv := books.Level{Price: s.price(lvl), Orders: uint32(l.n)}
			if cap(q) <= int(l.n) {
				q = make([]books.OrderInfo, 0, 2*l.n)
			}
			q = b.Queue(side, lv.Price, q)
			k := 0
			for oi := l.head; oi != none; oi = g.bk.orders[oi].next {
				o := &g.bk.orders[oi]
				lv.Shares += uint64(o.shares)
				if k >= len(q) || q[k].Ref != o.ref || q[k].Shares != o.shares {
					return fmt.Errorf("%s %v %d: queue %v, generator's order %d is ref %d of %d shares", s.stock, side, lv.Price, q, k, o.ref, o.shares)
				}
				k++
			}
			if k != len(q) {
				return fmt.Errorf("%s %v %d: queue of %d orders, generator's %d", s.stock, side, lv.Price, len(q), k)
			}
			orders += k
			want[side] = append(want[side], lv)
		}
		slices.Reverse(want[books.Bid]) // best first: the highest bid
		for side := books.Bid; side <= books.Ask; side++ {
			if got := b.AppendDepth(side, nil, 0); !slices.Equal(got, want[side]) {
				return fmt.Errorf("%s %v levels:\n got %v\nwant %v", s.stock, side, got, want[side])
			}
		}
		if b.Orders() != orders || orders != len(s.live) {
			return fmt.Errorf("%s: %d orders, generator's levels %d, live list %d", s.stock, b.Orders(), orders, len(s.live))
		}
		if halted := b.TradingState() == 'H' || b.TradingState() == 'P'; halted != s.tradingHalt {
			return fmt.Errorf("%s: trading state %q, generator's halted %v", s.stock, b.TradingState(), s.tradingHalt)
		}
		if opHalt := b.OperationalHalt() == 'H'; opHalt != s.opHalt {
			return fmt.Errorf("%s: operational halt %q, generator's %v", s.stock, b.OperationalHalt(), s.opHalt)
		}
	}
	return nil
}
