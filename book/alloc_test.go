package book

import (
	"testing"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/race"
)

func msgOf(e itch.Encoder) itch.Msg { return itch.Msg(e.Append(nil)) }

// TestApplyAllocs proves every Apply path allocates nothing in steady state.
func TestApplyAllocs(t *testing.T) {
	bs, err := New(Config{MaxOrders: 1024, MaxLocates: 8, MaxLevels: 1024})
	if err != nil {
		t.Fatal(err)
	}
	msgs := func(es ...itch.Encoder) []itch.Msg {
		var ms []itch.Msg
		for _, e := range es {
			ms = append(ms, msgOf(e))
		}
		return ms
	}
	for _, e := range base {
		bs.Apply(msgOf(e))
	}
	bs.Apply(msgOf(add(1000, 'B', 1<<31, 900000))) // a big order to execute and cancel from
	cases := []struct {
		name string
		msgs []itch.Msg
	}{
		{"A+D new level", msgs(add(50, 'S', 10, 1200000), &itch.OrderDeleteFields{Header: hdr(1), OrderRef: 50})},
		{"A+D existing level", msgs(add(51, 'B', 10, 1000000), &itch.OrderDeleteFields{Header: hdr(1), OrderRef: 51})},
		{"F+D", msgs(&itch.AddOrderMPIDFields{Header: hdr(1), OrderRef: 52, Side: 'S', Shares: 5, Price: 1010000}, &itch.OrderDeleteFields{Header: hdr(1), OrderRef: 52})},
		{"E partial", msgs(&itch.OrderExecutedFields{Header: hdr(1), OrderRef: 1000, ExecutedShares: 1})},
		{"A+E full", msgs(add(53, 'B', 10, 1000000), &itch.OrderExecutedFields{Header: hdr(1), OrderRef: 53, ExecutedShares: 10})},
		{"C", msgs(&itch.OrderExecutedWithPriceFields{Header: hdr(1), OrderRef: 1000, ExecutedShares: 1, Printable: 'Y', ExecutionPrice: 1})},
		{"X", msgs(&itch.OrderCancelFields{Header: hdr(1), OrderRef: 1000, CancelledShares: 1})},
		{"U+U", msgs(&itch.OrderReplaceFields{Header: hdr(1), OriginalOrderRef: 3, NewOrderRef: 60, Shares: 50, Price: 980000},
			&itch.OrderReplaceFields{Header: hdr(1), OriginalOrderRef: 60, NewOrderRef: 3, Shares: 50, Price: 990000})},
		{"P", msgs(&itch.TradeFields{Header: hdr(1), Side: 'B', Shares: 1, Price: 1})},
		{"Q", msgs(&itch.CrossTradeFields{Header: hdr(1), Shares: 1, CrossPrice: 1})},
		{"B", msgs(&itch.BrokenTradeFields{Header: hdr(1), MatchNumber: 1})},
		{"B locate 0", msgs(&itch.BrokenTradeFields{Header: hdr(0), MatchNumber: 1})},
		{"R", msgs(&itch.StockDirectoryFields{Header: hdr(1), Stock: itch.NewSymbol("AAPL")})},
		{"H", msgs(&itch.StockTradingActionFields{Header: hdr(1), TradingState: 'T'})},
		{"h", msgs(&itch.OperationalHaltFields{Header: hdr(1), MarketCode: 'Q', HaltAction: 'T'})},
		{"Y", msgs(&itch.RegSHOFields{Header: hdr(1), Action: '0'})},
		{"S", msgs(&itch.SystemEventFields{EventCode: 'Q'})},
		{"I (no effect)", msgs(&itch.NOIIFields{Header: hdr(1)})},
		{"inconsistent", msgs(add(1, 'B', 1, 1), &itch.OrderDeleteFields{Header: hdr(1), OrderRef: 999},
			&itch.OrderDeleteFields{Header: hdr(7), OrderRef: 1}, &itch.OrderDeleteFields{Header: hdr(9), OrderRef: 1})},
		{"malformed", []itch.Msg{{'A', 0, 1}, {'Z', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}},
	}
	for _, c := range cases {
		for _, m := range c.msgs { // warm up ladders
			bs.Apply(m)
		}
		if n, exact := race.AllocsPerRun(t, 200, func() {
			for _, m := range c.msgs {
				bs.Apply(m)
			}
		}); exact && n != 0 {
			t.Errorf("%s: %v allocs per run", c.name, n)
		}
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
	if bs.Stats().Inconsistencies() == 0 {
		t.Fatal("the inconsistent case was not counted")
	}
	var dst [4]Level
	b := bs.Book(1)
	if n, exact := race.AllocsPerRun(t, 100, func() { b.Depth(Bid, dst[:0]); b.BBO(); bs.Stats() }); exact && n != 0 {
		t.Errorf("Depth/BBO/Stats: %v allocs per run", n)
	}
}

func TestBookLayout(t *testing.T) {
	if s := unsafe.Sizeof(Book{}); s != 128 {
		t.Errorf("Book is %d bytes, want 128 (two cache lines)", s)
	}
	if s := unsafe.Sizeof(order{}); s != 32 {
		t.Errorf("order is %d bytes, want 32", s)
	}
	if o := unsafe.Offsetof(Book{}.lastTime); o+8 > 64 {
		t.Errorf("Book.lastTime at offset %d, outside the first cache line", o)
	}
}
