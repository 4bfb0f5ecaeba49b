package book

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// render prints a book's levels, queues and trade state compactly:
// "B 101.0000 300/2 [7:100 9:200] | A ... | last P@S vol V".
func render(b *Book) string {
	var sb strings.Builder
	for side := Bid; side <= Ask; side++ {
		if side == Ask {
			sb.WriteString(" | ")
		}
		sb.WriteString("BA"[side : side+1])
		for _, lv := range b.AppendDepth(side, nil, 0) {
			fmt.Fprintf(&sb, " %d %d/%d [", lv.Price, lv.Shares, lv.Orders)
			for i, o := range b.Queue(side, lv.Price, make([]OrderInfo, 0, 16)) {
				if i > 0 {
					sb.WriteByte(' ')
				}
				fmt.Fprintf(&sb, "%d:%d", o.Ref, o.Shares)
			}
			sb.WriteByte(']')
		}
	}
	p, s, v := b.Last()
	fmt.Fprintf(&sb, " | last %d@%d vol %d", s, p, v)
	return sb.String()
}

func hdr(locate uint16) itch.Header { return itch.Header{Locate: locate, Timestamp: 34200_000_000_000} }

func add(ref uint64, side byte, shares, price uint32) itch.Encoder {
	return &itch.AddOrderFields{Header: hdr(1), OrderRef: ref, Side: side, Shares: shares, Stock: itch.NewSymbol("AAPL"), Price: price}
}

// base: two bid levels (100: refs 1,2; 99: ref 3) and one ask level (101: ref 4).
var base = []itch.Encoder{
	&itch.StockDirectoryFields{Header: hdr(1), Stock: itch.NewSymbol("AAPL")},
	add(1, 'B', 100, 1000000),
	add(2, 'B', 200, 1000000),
	add(3, 'B', 50, 990000),
	add(4, 'S', 70, 1010000),
}

const baseBook = "B 1000000 300/2 [1:100 2:200] 990000 50/1 [3:50] | A 1010000 70/1 [4:70] | last 0@0 vol 0"

func TestScenarios(t *testing.T) {
	cases := []struct {
		name string
		msgs []itch.Encoder
		want string
	}{
		{"base", nil, baseBook},
		{"A new level", []itch.Encoder{add(5, 'S', 10, 1005000)},
			"B 1000000 300/2 [1:100 2:200] 990000 50/1 [3:50] | A 1005000 10/1 [5:10] 1010000 70/1 [4:70] | last 0@0 vol 0"},
		{"F joins tail", []itch.Encoder{&itch.AddOrderMPIDFields{Header: hdr(1), OrderRef: 5, Side: 'B', Shares: 5, Price: 1000000, Attribution: itch.NewMPID("GSCO")}},
			"B 1000000 305/3 [1:100 2:200 5:5] 990000 50/1 [3:50] | A 1010000 70/1 [4:70] | last 0@0 vol 0"},
		{"E partial", []itch.Encoder{&itch.OrderExecutedFields{Header: hdr(1), OrderRef: 1, ExecutedShares: 40}},
			"B 1000000 260/2 [1:60 2:200] 990000 50/1 [3:50] | A 1010000 70/1 [4:70] | last 40@1000000 vol 40"},
		{"E full empties level", []itch.Encoder{&itch.OrderExecutedFields{Header: hdr(1), OrderRef: 4, ExecutedShares: 70}},
			"B 1000000 300/2 [1:100 2:200] 990000 50/1 [3:50] | A | last 70@1010000 vol 70"},
		{"C printable", []itch.Encoder{&itch.OrderExecutedWithPriceFields{Header: hdr(1), OrderRef: 2, ExecutedShares: 200, Printable: 'Y', ExecutionPrice: 999900}},
			"B 1000000 100/1 [1:100] 990000 50/1 [3:50] | A 1010000 70/1 [4:70] | last 200@999900 vol 200"},
		{"C non-printable", []itch.Encoder{&itch.OrderExecutedWithPriceFields{Header: hdr(1), OrderRef: 2, ExecutedShares: 20, Printable: 'N', ExecutionPrice: 999900}},
			"B 1000000 280/2 [1:100 2:180] 990000 50/1 [3:50] | A 1010000 70/1 [4:70] | last 0@0 vol 0"},
		{"X partial keeps position", []itch.Encoder{&itch.OrderCancelFields{Header: hdr(1), OrderRef: 1, CancelledShares: 99}},
			"B 1000000 201/2 [1:1 2:200] 990000 50/1 [3:50] | A 1010000 70/1 [4:70] | last 0@0 vol 0"},
		{"D head", []itch.Encoder{&itch.OrderDeleteFields{Header: hdr(1), OrderRef: 1}},
			"B 1000000 200/1 [2:200] 990000 50/1 [3:50] | A 1010000 70/1 [4:70] | last 0@0 vol 0"},
		{"U same price loses position", []itch.Encoder{&itch.OrderReplaceFields{Header: hdr(1), OriginalOrderRef: 1, NewOrderRef: 9, Shares: 150, Price: 1000000}},
			"B 1000000 350/2 [2:200 9:150] 990000 50/1 [3:50] | A 1010000 70/1 [4:70] | last 0@0 vol 0"},
		{"U new price keeps side", []itch.Encoder{&itch.OrderReplaceFields{Header: hdr(1), OriginalOrderRef: 4, NewOrderRef: 9, Shares: 30, Price: 1020000}},
			"B 1000000 300/2 [1:100 2:200] 990000 50/1 [3:50] | A 1020000 30/1 [9:30] | last 0@0 vol 0"},
		{"P trade", []itch.Encoder{&itch.TradeFields{Header: hdr(1), Side: 'B', Shares: 300, Price: 1005000, MatchNumber: 7}},
			baseBook[:len(baseBook)-len("last 0@0 vol 0")] + "last 300@1005000 vol 300"},
		{"Q cross", []itch.Encoder{&itch.CrossTradeFields{Header: hdr(1), Shares: 12345, CrossPrice: 1000500, CrossType: 'O'}},
			baseBook[:len(baseBook)-len("last 0@0 vol 0")] + "last 12345@1000500 vol 12345"},
		{"B broken", []itch.Encoder{&itch.BrokenTradeFields{Header: hdr(1), MatchNumber: 7}}, baseBook},
		{"H halt", []itch.Encoder{&itch.StockTradingActionFields{Header: hdr(1), Stock: itch.NewSymbol("AAPL"), TradingState: 'H'}}, baseBook},
		{"h halt", []itch.Encoder{&itch.OperationalHaltFields{Header: hdr(1), Stock: itch.NewSymbol("AAPL"), MarketCode: 'Q', HaltAction: 'H'}}, baseBook},
		{"Y", []itch.Encoder{&itch.RegSHOFields{Header: hdr(1), Stock: itch.NewSymbol("AAPL"), Action: '1'}}, baseBook},
		{"S", []itch.Encoder{&itch.SystemEventFields{Header: hdr(0), EventCode: 'Q'}}, baseBook},
		{"inconsistent", []itch.Encoder{
			add(1, 'S', 5, 1), // duplicate
			&itch.OrderExecutedFields{Header: hdr(1), OrderRef: 77, ExecutedShares: 1},
			&itch.OrderCancelFields{Header: hdr(1), OrderRef: 3, CancelledShares: 51}, // over-cancel removes 3
			&itch.OrderDeleteFields{Header: hdr(2), OrderRef: 1},                      // unknown locate
			&itch.OrderReplaceFields{Header: hdr(1), OriginalOrderRef: 78, NewOrderRef: 79, Shares: 1, Price: 1},
		}, "B 1000000 300/2 [1:100 2:200] | A 1010000 70/1 [4:70] | last 0@0 vol 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bs, err := New(Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 64})
			if err != nil {
				t.Fatal(err)
			}
			var buf []byte
			for _, e := range append(append([]itch.Encoder{}, base...), c.msgs...) {
				buf = e.Append(buf[:0])
				bs.Apply(itch.Msg(buf))
			}
			b := bs.Book(1)
			if got := render(b); got != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
			if err := checkInvariants(bs); err != nil {
				t.Error(err)
			}
			if b.Name() != "AAPL" || b.Symbol().String() != "AAPL" {
				t.Errorf("symbol %q", b.Name())
			}
			switch c.name {
			case "B broken":
				if tr, br := b.Trades(); tr != 0 || br != 1 {
					t.Errorf("trades %d broken %d", tr, br)
				}
			case "H halt":
				if b.TradingState() != 'H' {
					t.Errorf("trading state %q", b.TradingState())
				}
			case "h halt":
				if b.OperationalHalt() != 'H' {
					t.Errorf("operational halt %q", b.OperationalHalt())
				}
			case "Y":
				if b.RegSHO() != '1' {
					t.Errorf("reg SHO %q", b.RegSHO())
				}
			case "S":
				if code, ts := bs.SystemEvent(); code != 'Q' || ts != 34200_000_000_000 {
					t.Errorf("system event %q at %d", code, ts)
				}
			case "inconsistent":
				s := bs.Stats()
				if s.DuplicateAdd != 1 || s.UnknownRefExecute != 1 || s.OverCancel != 1 || s.UnknownLocate != 1 || s.UnknownRefReplace != 1 || s.Inconsistencies() != 5 {
					t.Errorf("stats %+v", s)
				}
			}
			if b.Timestamp() != 34200_000_000_000 {
				t.Errorf("timestamp %d", b.Timestamp())
			}
		})
	}
}

func TestQueueAhead(t *testing.T) {
	bs, _ := New(Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 64})
	var buf []byte
	for _, e := range base {
		buf = e.Append(buf[:0])
		bs.Apply(itch.Msg(buf))
	}
	if n, sh, ok := bs.QueueAhead(1, 2); !ok || n != 1 || sh != 100 {
		t.Errorf("QueueAhead(2) = %d, %d, %v", n, sh, ok)
	}
	if n, sh, ok := bs.QueueAhead(1, 1); !ok || n != 0 || sh != 0 {
		t.Errorf("QueueAhead(1) = %d, %d, %v", n, sh, ok)
	}
	if _, _, ok := bs.QueueAhead(1, 99); ok {
		t.Error("QueueAhead(99) found an unknown ref")
	}
	if o, ok := bs.Order(1, 3); !ok || o != (OrderInfo{Ref: 3, Side: Bid, Price: 990000, Shares: 50}) {
		t.Errorf("Order(1, 3) = %+v %v", o, ok)
	}
	if _, ok := bs.Order(2, 3); ok {
		t.Error("Order(2, 3) found locate 1's order")
	}
}

func TestCapacityError(t *testing.T) {
	bs, _ := New(Config{MaxOrders: 2, MaxLocates: 8, MaxLevels: 64})
	bs.Announce(1, itch.NewSymbol("AAPL"))
	for ref := uint64(1); ref <= 3; ref++ {
		bs.AddOrder(1, ref, Bid, 1, 100)
	}
	if s := bs.Stats(); s.OrderCapacity != 1 || s.Orders != 2 {
		t.Errorf("stats %+v", s)
	}
	if err := bs.Err(); !errors.Is(err, ErrOrderCapacity) {
		t.Errorf("Err() = %v", err)
	}
	if _, err := New(Config{MaxOrders: 0, MaxLocates: 1, MaxLevels: 1}); !errors.Is(err, ErrConfig) {
		t.Errorf("New with 0 orders: %v", err)
	}
	if _, err := New(Config{MaxOrders: 1, MaxLocates: 1, MaxLevels: 1, TradeMemory: -1}); !errors.Is(err, ErrConfig) {
		t.Errorf("New with -1 trades remembered: %v", err)
	}
}

// TestManyBooks: two Books in one process (two pipeline shards) are
// independent.
func TestManyBooks(t *testing.T) {
	var shards [2]*Books
	for i := range shards {
		bs, err := New(Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 64})
		if err != nil {
			t.Fatal(err)
		}
		shards[i] = bs
		bs.Announce(uint16(i+1), itch.NewSymbol(fmt.Sprint("S", i)))
		bs.AddOrder(uint16(i+1), 1, Bid, uint32(10*(i+1)), 100)
	}
	for i, bs := range shards {
		if bs.Book(uint16(2-i)) != nil {
			t.Errorf("shard %d knows the other shard's locate", i)
		}
		if bid, ok := bs.Book(uint16(i + 1)).Best(Bid); !ok || bid.Shares != uint64(10*(i+1)) {
			t.Errorf("shard %d: best bid %+v", i, bid)
		}
	}
}
