package book

import (
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// encodeOp appends op as an ITCH message (ts as its timestamp).
func encodeOp(dst []byte, o op, ts uint64) []byte {
	h := itch.Header{Locate: o.locate, Timestamp: ts}
	switch o.kind {
	case 'R':
		f := itch.StockDirectoryFields{Header: h, Stock: o.symbol}
		return f.Append(dst)
	case 'A':
		if o.ref%3 == 0 { // exercise 'F' too
			f := itch.AddOrderMPIDFields{Header: h, OrderRef: o.ref, Side: o.side, Shares: o.shares, Stock: itch.NewSymbol("X"), Price: o.price, Attribution: itch.NewMPID("MPID")}
			return f.Append(dst)
		}
		f := itch.AddOrderFields{Header: h, OrderRef: o.ref, Side: o.side, Shares: o.shares, Stock: itch.NewSymbol("X"), Price: o.price}
		return f.Append(dst)
	case 'E':
		f := itch.OrderExecutedFields{Header: h, OrderRef: o.ref, ExecutedShares: o.shares, MatchNumber: o.match}
		return f.Append(dst)
	case 'P':
		f := itch.TradeFields{Header: h, Side: 'B', Shares: uint32(o.volume), Stock: itch.NewSymbol("X"), Price: o.price, MatchNumber: o.match}
		return f.Append(dst)
	case 'Q':
		f := itch.CrossTradeFields{Header: h, Shares: o.volume, Stock: itch.NewSymbol("X"), CrossPrice: o.price, MatchNumber: o.match, CrossType: 'O'}
		return f.Append(dst)
	case 'B':
		f := itch.BrokenTradeFields{Header: h, MatchNumber: o.match}
		return f.Append(dst)
	case 'C':
		p := byte('N')
		if o.printable {
			p = 'Y'
		}
		if o.badPrint {
			p = o.state
		}
		f := itch.OrderExecutedWithPriceFields{Header: h, OrderRef: o.ref, ExecutedShares: o.shares, MatchNumber: o.match, Printable: p, ExecutionPrice: o.price}
		return f.Append(dst)
	case 'X':
		f := itch.OrderCancelFields{Header: h, OrderRef: o.ref, CancelledShares: o.shares}
		return f.Append(dst)
	case 'D':
		f := itch.OrderDeleteFields{Header: h, OrderRef: o.ref}
		return f.Append(dst)
	case 'U':
		f := itch.OrderReplaceFields{Header: h, OriginalOrderRef: o.ref, NewOrderRef: o.newRef, Shares: o.shares, Price: o.price}
		return f.Append(dst)
	}
	panic("encodeOp: kind " + string(o.kind))
}

// opOf decodes the book-relevant part of m for the reference book, through
// the codec's Fields decoders (not the views Apply uses).
func opOf(m itch.Msg) op {
	o := op{kind: m.Type(), locate: m.Locate(), ts: m.Timestamp()}
	switch m.Type() {
	case itch.TypeStockDirectory:
		o.symbol = itch.StockDirectory(m).Fields().Stock
	case itch.TypeAddOrder:
		f := itch.AddOrder(m).Fields()
		o.ref, o.side, o.shares, o.price = f.OrderRef, f.Side, f.Shares, f.Price
	case itch.TypeAddOrderMPID:
		f := itch.AddOrderMPID(m).Fields()
		o.kind = 'A'
		o.ref, o.side, o.shares, o.price = f.OrderRef, f.Side, f.Shares, f.Price
	case itch.TypeOrderExecuted:
		f := itch.OrderExecuted(m).Fields()
		o.ref, o.shares, o.match = f.OrderRef, f.ExecutedShares, f.MatchNumber
	case itch.TypeOrderExecutedWithPrice:
		f := itch.OrderExecutedWithPrice(m).Fields()
		o.ref, o.shares, o.price, o.printable, o.match = f.OrderRef, f.ExecutedShares, f.ExecutionPrice, f.Printable == 'Y', f.MatchNumber
		o.state, o.badPrint = f.Printable, f.Printable != 'Y' && f.Printable != 'N'
	case itch.TypeOrderCancel:
		f := itch.OrderCancel(m).Fields()
		o.ref, o.shares = f.OrderRef, f.CancelledShares
	case itch.TypeOrderDelete:
		o.ref = itch.OrderDelete(m).Fields().OrderRef
	case itch.TypeOrderReplace:
		f := itch.OrderReplace(m).Fields()
		o.ref, o.newRef, o.shares, o.price = f.OriginalOrderRef, f.NewOrderRef, f.Shares, f.Price
	case itch.TypeTrade:
		f := itch.Trade(m).Fields()
		o.volume, o.price, o.match = uint64(f.Shares), f.Price, f.MatchNumber
	case itch.TypeCrossTrade:
		f := itch.CrossTrade(m).Fields()
		o.volume, o.price, o.match = f.Shares, f.CrossPrice, f.MatchNumber
	case itch.TypeBrokenTrade:
		o.match = itch.BrokenTrade(m).Fields().MatchNumber
	case itch.TypeStockTradingAction:
		o.state = itch.StockTradingAction(m).Fields().TradingState
	case itch.TypeOperationalHalt:
		f := itch.OperationalHalt(m).Fields()
		o.state, o.market = f.HaltAction, f.MarketCode
	case itch.TypeRegSHO:
		o.state = itch.RegSHO(m).Fields().Action
	case itch.TypeSystemEvent:
		o.state = itch.SystemEvent(m).Fields().EventCode
	default:
		o.kind = 0 // no effect on books or trades
	}
	return o
}

func applyOpITCH(bs *Books, o op) {
	var buf [64]byte
	m := itch.Msg(encodeOp(buf[:0], o, 1))
	bs.Apply(m)
}

func TestDifferentialRandomITCH(t *testing.T) {
	for seed := range uint64(6) {
		cfg := Config{MaxOrders: 1 << 12, MaxLocates: 6, MaxLevels: 1 << 10, Overflow: 1 << 12}
		if seed%2 == 1 {
			cfg = Config{MaxOrders: 40, MaxLocates: 6, MaxLevels: 24, Overflow: 40}
		}
		runDifferential(t, cfg, randomOps(100+seed, 6, 20000), applyOpITCH)
	}
}

func TestApplyMalformed(t *testing.T) {
	bs, err := New(Config{MaxOrders: 8, MaxLocates: 4, MaxLevels: 8})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("AAPL"))
	add := encodeOp(nil, op{kind: 'A', locate: 1, ref: 5, side: 'B', shares: 10, price: 100}, 1)
	for _, m := range []itch.Msg{nil, {}, {'A'}, add[:len(add)-1], {'A', 0, 1, 0, 0, 0, 0, 0, 0, 0}} {
		if _, changed := bs.Apply(m); changed {
			t.Errorf("Apply(%x) changed the book", m)
		}
	}
	// Unknown types, long and shorter than the header: counted as
	// unknown, not malformed (the decoder's itch.Counters agrees).
	unknown := append([]byte{'Z'}, make([]byte, 40)...)
	bs.Apply(unknown)
	bs.Apply(itch.Msg{'z', 0, 1, 0, 0})
	var c itch.Counters
	c.Accept([]byte{'z', 0, 1, 0, 0})
	if c.Unknown != 1 {
		t.Errorf("decoder counters %+v, want one unknown", c)
	}
	s := bs.Stats()
	if s.Malformed != 5 || s.UnknownType != 2 || s.Orders != 0 || s.Messages != 7 {
		t.Errorf("stats %+v", s)
	}
	if l, changed := bs.Apply(add); !changed || l != 1 || bs.Stats().Orders != 1 {
		t.Errorf("valid add after malformed ones: locate %d changed %v", l, changed)
	}
}

// TestApplyLong: a message longer than its type's length (an Order
// Executed With Price whose type byte was corrupted to Add Order, or a
// future field appended) is applied as its type, and counted (Long, an
// inconsistency) rather than passed silently.
func TestApplyLong(t *testing.T) {
	bs, err := New(Config{MaxOrders: 8, MaxLocates: 4, MaxLevels: 8})
	if err != nil {
		t.Fatal(err)
	}
	bs.Announce(1, itch.NewSymbol("AAPL"))
	add := encodeOp(nil, op{kind: 'A', locate: 1, ref: 5, side: 'B', shares: 10, price: 100}, 1)
	long := append(append([]byte(nil), add...), 0, 0, 0, 0) // 40 bytes, as a 'C'
	if l, changed := bs.Apply(long); !changed || l != 1 || bs.Stats().Orders != 1 {
		t.Fatalf("long add: locate %d changed %v orders %d", l, changed, bs.Stats().Orders)
	}
	if s := bs.Stats(); s.Long != 1 || s.Inconsistencies() != 1 || s.Malformed != 0 {
		t.Fatalf("long add counted as long %d, inconsistencies %d, malformed %d", s.Long, s.Inconsistencies(), s.Malformed)
	}
	bs.Apply(add)
	if s := bs.Stats(); s.Long != 1 || s.DuplicateAdd != 1 {
		t.Fatalf("exact-length add after it: long %d, duplicate %d", s.Long, s.DuplicateAdd)
	}
}
