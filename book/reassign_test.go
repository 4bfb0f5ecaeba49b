package book

import (
	"errors"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// TestAnnounceOtherSymbol: a Stock Directory message for a known locate
// under another symbol is counted (LocateReassigned, an inconsistency)
// and the book starts empty under the new symbol: before the fix the old
// instrument's orders, levels, last sale, volume and states showed under
// the new one, uncounted. The same symbol again (a snapshot and the feed
// both announce it) changes nothing.
func TestAnnounceOtherSymbol(t *testing.T) {
	// A 4-slot home table with room for 60 more: orders collide into
	// overflow slots, which emptying must free too.
	bs, err := New(Config{MaxOrders: 64, RefTableSize: 4, MaxLocates: 8, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(e itch.Encoder) { bs.Apply(itch.Msg(e.Append(nil))) }
	h := func(loc uint16) itch.Header { return itch.Header{Locate: loc, Timestamp: 34200_000_000_000} }
	aapl, msft, ibm := itch.NewSymbol("AAPL"), itch.NewSymbol("MSFT"), itch.NewSymbol("IBM")
	apply(&itch.StockDirectoryFields{Header: h(1), Stock: aapl})
	apply(&itch.StockDirectoryFields{Header: h(2), Stock: ibm})
	ref := uint64(0)
	for i := range 12 {
		ref++
		side := byte('B')
		if i%2 == 1 {
			side = 'S'
		}
		apply(&itch.AddOrderFields{Header: h(1), OrderRef: ref, Side: side, Shares: 100, Stock: aapl, Price: 1000000 + uint32(i/4)*100 + uint32(i%2)*5000})
	}
	ref++
	apply(&itch.AddOrderFields{Header: h(2), OrderRef: ref, Side: 'B', Shares: 7, Stock: ibm, Price: 500000})
	apply(&itch.TradeFields{Header: h(1), Side: 'B', Shares: 50, Stock: aapl, Price: 1000100, MatchNumber: 7})
	apply(&itch.StockTradingActionFields{Header: h(1), Stock: aapl, TradingState: 'H'})
	apply(&itch.RegSHOFields{Header: h(1), Stock: aapl, Action: '1'})
	if bs.Stats().Overflowed == 0 {
		t.Fatal("no order in an overflow slot: the test does not cover them")
	}

	apply(&itch.StockDirectoryFields{Header: h(1), Stock: aapl}) // the same symbol again
	if b := bs.Book(1); b.Orders() != 12 || bs.Stats().LocateReassigned != 0 {
		t.Fatalf("AAPL announced again: %d orders (want 12), reassigned %d", b.Orders(), bs.Stats().LocateReassigned)
	}

	before := bs.Stats().Inconsistencies()
	apply(&itch.StockDirectoryFields{Header: h(1), Stock: msft})
	b := bs.Book(1)
	if b.Name() != "MSFT" {
		t.Fatalf("symbol %q, want MSFT", b.Name())
	}
	if b.Orders() != 0 || b.Levels(Bid) != 0 || b.Levels(Ask) != 0 {
		t.Errorf("MSFT holds AAPL's %d orders, %d bid and %d ask levels", b.Orders(), b.Levels(Bid), b.Levels(Ask))
	}
	if p, s, v := b.Last(); p != 0 || s != 0 || v != 0 {
		t.Errorf("MSFT shows AAPL's last sale %d@%d, volume %d", s, p, v)
	}
	if b.TradingState() != 0 || b.RegSHO() != 0 {
		t.Errorf("MSFT shows AAPL's trading state %q, Reg SHO %q", b.TradingState(), b.RegSHO())
	}
	st := bs.Stats()
	if st.LocateReassigned != 1 || st.Inconsistencies() != before+1 {
		t.Errorf("reassigned %d, inconsistencies %d -> %d: want 1, counted", st.LocateReassigned, before, st.Inconsistencies())
	}
	// IBM's order may sit in an overflow slot: it came after AAPL's.
	if st.Orders != 1 || st.Levels != 1 || st.Overflowed > 1 || bs.Book(2).Orders() != 1 {
		t.Errorf("orders %d, levels %d, overflowed %d, IBM's %d: want only IBM's one left", st.Orders, st.Levels, st.Overflowed, bs.Book(2).Orders())
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
	// A Broken Trade of AAPL's trade (match 7) is not MSFT's: before
	// the fix it took 50 shares off MSFT's volume of 0 (a wrap).
	unmatched := bs.Stats().BrokenUnmatched
	apply(&itch.BrokenTradeFields{Header: h(1), MatchNumber: 7})
	if _, _, v := b.Last(); v != 0 || bs.Stats().BrokenUnmatched != unmatched+1 {
		t.Errorf("AAPL's trade broken on MSFT: volume %d, unmatched %d -> %d", v, unmatched, bs.Stats().BrokenUnmatched)
	}
	// MSFT's own trades break as before.
	apply(&itch.TradeFields{Header: h(1), Side: 'B', Shares: 30, Stock: msft, Price: 2000000, MatchNumber: 8})
	apply(&itch.TradeFields{Header: h(1), Side: 'B', Shares: 20, Stock: msft, Price: 2000100, MatchNumber: 9})
	apply(&itch.BrokenTradeFields{Header: h(1), MatchNumber: 9})
	if p, s, v := b.Last(); p != 2000000 || s != 30 || v != 30 {
		t.Errorf("MSFT after its trade 9 broken: last %d@%d, volume %d; want 30@2000000, 30", s, p, v)
	}

	// The freed references and slots take new orders.
	for r := uint64(1); r <= 12; r++ {
		apply(&itch.AddOrderFields{Header: h(1), OrderRef: r, Side: 'S', Shares: 10, Stock: msft, Price: 2000000})
	}
	if b.Orders() != 12 || b.Levels(Ask) != 1 || bs.Stats().DuplicateAdd != 0 {
		t.Fatalf("MSFT after 12 adds: %d orders, %d ask levels, %d duplicate adds", b.Orders(), b.Levels(Ask), bs.Stats().DuplicateAdd)
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
}

// TestWithdraw: a locate withdrawn (its Stock Directory message gave it a
// symbol a filter leaves out) is a re-assignment, counted, its book
// emptied as Announce empties it; and unknown after, so nothing of the new
// instrument is applied to the old one's book, and a locate never known
// is not counted. Announced again, it starts empty.
func TestWithdraw(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, RefTableSize: 4, MaxLocates: 8, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(e itch.Encoder) (uint16, bool) { return bs.Apply(itch.Msg(e.Append(nil))) }
	h := func(loc uint16) itch.Header { return itch.Header{Locate: loc, Timestamp: 34200_000_000_000} }
	aapl, ibm := itch.NewSymbol("AAPL"), itch.NewSymbol("IBM")
	apply(&itch.StockDirectoryFields{Header: h(1), Stock: aapl})
	apply(&itch.StockDirectoryFields{Header: h(2), Stock: ibm})
	for ref := uint64(1); ref <= 8; ref++ {
		apply(&itch.AddOrderFields{Header: h(1), OrderRef: ref, Side: 'B', Shares: 100, Stock: aapl, Price: 1000000 + uint32(ref)*100})
	}
	apply(&itch.AddOrderFields{Header: h(2), OrderRef: 9, Side: 'S', Shares: 7, Stock: ibm, Price: 500000})
	apply(&itch.TradeFields{Header: h(1), Side: 'B', Shares: 50, Stock: aapl, Price: 1000100, MatchNumber: 7})

	if bs.Withdraw(3) || bs.Withdraw(9) || bs.Stats().LocateReassigned != 0 {
		t.Fatalf("a locate never known withdrawn: reassigned %d", bs.Stats().LocateReassigned)
	}
	if !bs.Withdraw(1) {
		t.Fatal("AAPL's locate not withdrawn")
	}
	st := bs.Stats()
	if bs.Book(1) != nil || st.LocateReassigned != 1 || st.Orders != 1 || bs.Book(2).Orders() != 1 {
		t.Fatalf("after the withdrawal: book %v, reassigned %d, orders %d (IBM's %d); want none, 1, IBM's 1", bs.Book(1), st.LocateReassigned, st.Orders, bs.Book(2).Orders())
	}
	for b := range bs.All() {
		if b.Locate() == 1 {
			t.Errorf("withdrawn locate 1 still listed as %s", b.Name())
		}
	}
	if bs.Withdraw(1) || bs.Stats().LocateReassigned != 1 {
		t.Errorf("withdrawn twice: reassigned %d, want 1", bs.Stats().LocateReassigned)
	}
	if _, changed := apply(&itch.AddOrderFields{Header: h(1), OrderRef: 20, Side: 'B', Shares: 5, Stock: aapl, Price: 1000000}); changed {
		t.Error("an order applied at the withdrawn locate")
	}
	apply(&itch.StockDirectoryFields{Header: h(1), Stock: aapl})
	b := bs.Book(1)
	if b == nil || b.Orders() != 0 || bs.Stats().LocateReassigned != 1 {
		t.Fatalf("announced again: %v, want an empty book, reassigned %d", b, bs.Stats().LocateReassigned)
	}
	// The old instrument's trade is not the new one's to break.
	apply(&itch.BrokenTradeFields{Header: h(1), MatchNumber: 7})
	if _, _, v := b.Last(); v != 0 {
		t.Errorf("volume %d after breaking the withdrawn instrument's trade", v)
	}
	if err := checkInvariants(bs); err != nil {
		t.Fatal(err)
	}
}

// TestZeroShareTrade: a Trade (P) of 0 shares is bad input, counted in
// ZeroShares as every other zero-share message is (before the fix it was
// dropped uncounted). A Cross Trade (Q) of 0 shares is not: Nasdaq sends
// one for a cross that did not execute. Neither changes the book.
func TestZeroShareTrade(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	h := itch.Header{Locate: 1, Timestamp: 34200_000_000_000}
	apply := func(e itch.Encoder) (uint16, bool) { return bs.Apply(itch.Msg(e.Append(nil))) }
	apply(&itch.StockDirectoryFields{Header: h, Stock: itch.NewSymbol("AAPL")})
	if _, changed := apply(&itch.TradeFields{Header: h, Side: 'B', Shares: 0, Stock: itch.NewSymbol("AAPL"), Price: 1000000, MatchNumber: 9}); changed {
		t.Error("a P of 0 shares changed the book")
	}
	if st := bs.Stats(); st.ZeroShares != 1 || st.Inconsistencies() != 1 {
		t.Errorf("P of 0 shares: zero shares %d, inconsistencies %d, want 1, 1", st.ZeroShares, st.Inconsistencies())
	}
	if _, changed := apply(&itch.CrossTradeFields{Header: h, Shares: 0, Stock: itch.NewSymbol("AAPL"), CrossPrice: 1000000, MatchNumber: 10, CrossType: 'O'}); changed {
		t.Error("a Q of 0 shares changed the book")
	}
	if st := bs.Stats(); st.ZeroShares != 1 {
		t.Errorf("Q of 0 shares counted: zero shares %d, want 1", st.ZeroShares)
	}
	if p, s, v := bs.Book(1).Last(); p != 0 || s != 0 || v != 0 {
		t.Errorf("last sale %d@%d, volume %d after zero-share trades", s, p, v)
	}
}

// TestAnnounceLocateZero: a Stock Directory message for locate 0, which
// names no instrument, is malformed input. Before, it was counted as
// LocateCapacity and set Err to "locate above configured maximum", which
// sends an operator to raise a limit that is not the cause.
func TestAnnounceLocateZero(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 64})
	if err != nil {
		t.Fatal(err)
	}
	aapl := itch.NewSymbol("AAPL")
	bs.Apply(itch.Msg((&itch.StockDirectoryFields{Header: itch.Header{Locate: 0}, Stock: aapl}).Append(nil)))
	st := bs.Stats()
	if st.Malformed != 1 || st.LocateCapacity != 0 || bs.Err() != nil {
		t.Errorf("R for locate 0: malformed %d, locate capacity %d, err %v; want 1, 0, nil", st.Malformed, st.LocateCapacity, bs.Err())
	}
	for b := range bs.All() {
		t.Errorf("locate 0 announced an instrument: %v", b.Symbol())
	}
	// A locate above the maximum is still the configuration's limit.
	bs.Apply(itch.Msg((&itch.StockDirectoryFields{Header: itch.Header{Locate: 9}, Stock: aapl}).Append(nil)))
	if st := bs.Stats(); st.LocateCapacity != 1 || !errors.Is(bs.Err(), ErrLocateCapacity) {
		t.Errorf("R for locate 9 of 8: locate capacity %d, err %v", st.LocateCapacity, bs.Err())
	}
}
