package book

import (
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// TestBrokenTrades walks a Broken Trade through each case: not the last
// trade, the last trade (the one before it comes back), the last trade
// with the one before broken too, a non-printable execution, an unknown,
// repeated or other instrument's match, and a trade no longer remembered.
func TestBrokenTrades(t *testing.T) {
	bs, err := New(Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 64, TradeMemory: 16})
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	apply := func(es ...itch.Encoder) {
		for _, e := range es {
			buf = e.Append(buf[:0])
			bs.Apply(itch.Msg(buf))
		}
	}
	apply(base...)
	apply(&itch.StockDirectoryFields{Header: hdr(2), Stock: itch.NewSymbol("MSFT")})
	brk := func(locate uint16, match uint64) itch.Encoder {
		return &itch.BrokenTradeFields{Header: hdr(locate), MatchNumber: match}
	}
	b := bs.Book(1)
	check := func(step string, price uint32, size, volume, unmatched uint64) {
		t.Helper()
		if p, s, v := b.Last(); p != price || s != size || v != volume {
			t.Errorf("%s: last %d@%d volume %d, want %d@%d volume %d", step, s, p, v, size, price, volume)
		}
		if got := bs.Stats().BrokenUnmatched; got != unmatched {
			t.Errorf("%s: BrokenUnmatched %d, want %d", step, got, unmatched)
		}
		if err := checkInvariants(bs); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	apply(&itch.OrderExecutedFields{Header: hdr(1), OrderRef: 1, ExecutedShares: 10, MatchNumber: 101}, // 10@1000000
		&itch.TradeFields{Header: hdr(1), Side: 'B', Shares: 20, Price: 1005000, MatchNumber: 102},
		&itch.OrderExecutedWithPriceFields{Header: hdr(1), OrderRef: 2, ExecutedShares: 30, MatchNumber: 103, Printable: 'Y', ExecutionPrice: 999900},
		&itch.OrderExecutedWithPriceFields{Header: hdr(1), OrderRef: 2, ExecutedShares: 5, MatchNumber: 104, Printable: 'N', ExecutionPrice: 999800},
		&itch.CrossTradeFields{Header: hdr(2), Shares: 1000, CrossPrice: 500000, MatchNumber: 105, CrossType: 'O'})
	check("trades", 999900, 30, 60, 0)

	apply(brk(1, 102)) // not the last: volume only
	check("break a middle trade", 999900, 30, 40, 0)
	apply(brk(1, 103)) // the last: 102 is broken, 101 comes back
	check("break the last", 1000000, 10, 10, 0)
	apply(brk(1, 104)) // non-printable: known, changes nothing
	check("break a non-printable execution", 1000000, 10, 10, 0)
	apply(brk(1, 103), brk(1, 999), brk(1, 105), brk(1, 0)) // again, never given, MSFT's, none
	check("unmatched", 1000000, 10, 10, 4)
	if tr, br := b.Trades(); tr != 3 || br != 7 {
		t.Errorf("trades %d broken %d, want 3 7", tr, br)
	}
	if _, _, v := bs.Book(2).Last(); v != 1000 {
		t.Errorf("MSFT volume %d after breaks of AAPL trades", v)
	}

	// 16 later trades on MSFT take every slot: AAPL's 101 is forgotten, so
	// breaking AAPL's next trade leaves no last trade.
	for m := range uint64(16) {
		apply(&itch.TradeFields{Header: hdr(2), Side: 'S', Shares: 1, Price: 500000, MatchNumber: 200 + m})
	}
	apply(&itch.TradeFields{Header: hdr(1), Side: 'B', Shares: 7, Price: 1001000, MatchNumber: 300})
	check("after", 1001000, 7, 17, 4)
	apply(brk(1, 300))
	check("break with the one before forgotten", 0, 0, 10, 4)
	apply(brk(1, 101))
	check("break a forgotten trade", 0, 0, 10, 5)

	// Locate 0 names no instrument.
	apply(brk(0, 105))
	if bs.BrokenWithoutLocate() != 1 || bs.Stats().BrokenUnmatched != 5 {
		t.Errorf("locate 0: without locate %d, unmatched %d", bs.BrokenWithoutLocate(), bs.Stats().BrokenUnmatched)
	}

	// Reset forgets the day's trades (the counter runs on: 5 + 1).
	bs.Reset()
	apply(base...)
	apply(brk(1, 300))
	check("after Reset", 0, 0, 0, 6)
}

// TestBrokenTradeWalkBound: breaking the last trade steps back over at
// most maxBrokenWalk broken trades.
func TestBrokenTradeWalkBound(t *testing.T) {
	for _, n := range []int{maxBrokenWalk - 1, maxBrokenWalk} {
		bs, err := New(Config{MaxOrders: 64, MaxLocates: 2, MaxLevels: 64, TradeMemory: 1024})
		if err != nil {
			t.Fatal(err)
		}
		bs.Announce(1, itch.NewSymbol("AAPL"))
		bs.Trade(1, 5, 1, 1) // the one to come back, n trades back
		for m := range uint64(n) {
			bs.Trade(1, 6, 1, 2+m)
		}
		bs.Trade(1, 7, 1, 1000)
		for m := range uint64(n) { // none of them is the last trade
			bs.BreakTrade(1, 2+m)
		}
		// 1000's chain back is 2+n-1 ... 2, all broken, then 1
		bs.BreakTrade(1, 1000)
		p, _, v := bs.Book(1).Last()
		want := uint32(5)
		if n >= maxBrokenWalk {
			want = 0
		}
		if p != want || v != 1 {
			t.Errorf("%d broken before: last price %d volume %d, want %d volume 1", n, p, v, want)
		}
	}
}

// TestCrossExecutionsShareMatch: the non-printable executions (C) of a
// cross may carry the cross's (Q) match number. Whichever comes first, a
// Broken Trade of that match takes the cross's shares off the volume.
// Before, a C after the Q replaced its record with a non-printable one,
// and the break left the volume as it was.
func TestCrossExecutionsShareMatch(t *testing.T) {
	for _, crossFirst := range []bool{true, false} {
		bs, err := New(Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 64})
		if err != nil {
			t.Fatal(err)
		}
		bs.Announce(1, itch.NewSymbol("AAPL"))
		bs.AddOrder(1, 1, Bid, 300, 1000)
		cross := func() { bs.CrossTrade(1, 1000, 300, 100) }
		execute := func() { bs.ExecuteWithPrice(1, 1, 300, 1000, 100, false) }
		if crossFirst {
			cross()
			execute()
		} else {
			execute()
			cross()
		}
		if _, _, v := bs.Book(1).Last(); v != 300 {
			t.Fatalf("cross first %v: volume %d, want the cross's 300", crossFirst, v)
		}
		bs.BreakTrade(1, 100)
		if p, s, v := bs.Book(1).Last(); v != 0 || p != 0 || s != 0 || bs.Stats().BrokenUnmatched != 0 {
			t.Errorf("cross first %v, broken: last %d@%d, volume %d, unmatched %d; want none, 0, 0", crossFirst, s, p, v, bs.Stats().BrokenUnmatched)
		}
	}
}

// TestBrokenDuplicateMatch: two printed trades of one instrument (in a
// row, or apart) with the same match number (ITCH 5.0 makes match numbers unique in a
// day: bad input, or a trade applied twice), then a Broken Trade of it.
// The trade memory keeps one record per match number, the later print's:
// the break takes its shares off the volume, and the earlier print, still
// standing but no longer remembered, leaves the last trade unknown (0@0),
// as a forgotten one does. It is counted in Stats.DuplicateMatch, an
// inconsistency; before, nothing counted it (the walk back stepped 64
// times over the record's own match number). The same break, through
// Apply and through the numeric call, on a trade that is not the last,
// with a trade of another match before the duplicate pair, and with one
// between them (the later print is the last trade; the one between comes
// back).
func TestBrokenDuplicateMatch(t *testing.T) {
	for _, tc := range []struct {
		name              string
		trades            [][3]uint64 // price, shares, match
		brk               uint64
		price             uint32
		size, volume, dup uint64
	}{
		{"last", [][3]uint64{{1000, 100, 7}, {2000, 200, 7}}, 7, 0, 0, 100, 1},
		{"after another", [][3]uint64{{500, 5, 6}, {1000, 100, 7}, {2000, 200, 7}}, 7, 0, 0, 105, 1},
		{"not the last", [][3]uint64{{1000, 100, 7}, {2000, 200, 7}, {3000, 300, 8}}, 7, 3000, 300, 400, 1},
		{"apart", [][3]uint64{{1000, 100, 7}, {3000, 300, 8}, {2000, 200, 7}}, 7, 3000, 300, 400, 1},
		{"unique", [][3]uint64{{500, 5, 6}, {1000, 100, 7}}, 7, 500, 5, 5, 0},
	} {
		bs, err := New(Config{MaxOrders: 64, MaxLocates: 8, MaxLevels: 64, TradeMemory: 16})
		if err != nil {
			t.Fatal(err)
		}
		var buf []byte
		buf = (&itch.StockDirectoryFields{Header: hdr(1), Stock: itch.NewSymbol("AAPL")}).Append(buf[:0])
		bs.Apply(itch.Msg(buf))
		for _, tr := range tc.trades {
			buf = (&itch.TradeFields{Header: hdr(1), Side: 'B', Price: uint32(tr[0]), Shares: uint32(tr[1]), MatchNumber: tr[2]}).Append(buf[:0])
			bs.Apply(itch.Msg(buf))
		}
		buf = (&itch.BrokenTradeFields{Header: hdr(1), MatchNumber: tc.brk}).Append(buf[:0])
		bs.Apply(itch.Msg(buf))
		st := bs.Stats()
		p, s, v := bs.Book(1).Last()
		if p != tc.price || s != tc.size || v != tc.volume || st.DuplicateMatch != tc.dup || st.Inconsistencies() != tc.dup || st.BrokenUnmatched != 0 {
			t.Errorf("%s: trades %v, then B %d: last %d@%d volume %d, DuplicateMatch %d, inconsistencies %d, unmatched %d; want %d@%d volume %d, DuplicateMatch %d (counted as an inconsistency), unmatched 0",
				tc.name, tc.trades, tc.brk, s, p, v, st.DuplicateMatch, st.Inconsistencies(), st.BrokenUnmatched, tc.size, tc.price, tc.volume, tc.dup)
		}
		if err := checkInvariants(bs); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		// Broken again: already broken, unmatched; counted once.
		bs.BreakTrade(1, tc.brk)
		if st := bs.Stats(); st.DuplicateMatch != tc.dup || st.BrokenUnmatched != 1 {
			t.Errorf("%s: broken again: DuplicateMatch %d, unmatched %d; want %d, 1", tc.name, st.DuplicateMatch, st.BrokenUnmatched, tc.dup)
		}
	}
}
