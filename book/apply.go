package book

import (
	"github.com/marketfeed/feedhandler/feed/itch"
)

// Symbol returns the instrument's symbol as announced (space padded).
func (b *Book) Symbol() itch.Symbol { return itch.Symbol(b.symbol) }

// Apply applies one ITCH message. It returns the locate whose book or state
// changed and changed=true, locate 0 with changed=true for a market-wide
// change (System Event), or changed=false when the message changed nothing
// (other types, or inconsistent input, counted in Stats). Apply never
// panics on any input and allocates nothing in steady state.
func (bs *Books) Apply(m itch.Msg) (locate uint16, changed bool) {
	if len(m) == 0 {
		bs.stats.Messages++
		bs.short(m)
		return 0, false
	}
	// Every known type's length is at least HeaderLen, and an unknown
	// type's (0) is never a message's: the common case is one test, the
	// rest is irregular's. The loads come before the count's store, so a
	// caller that framed m by the same table (replay's loop, where
	// default.pgo inlines Apply) shares them, and its checks drop these.
	// (The block keeps its number of lines: default.pgo finds the calls
	// below by their line in Apply.)
	t := m[0]
	n := itch.Length(t)
	bs.stats.Messages++
	if len(m) != n && !bs.irregular(m) || len(m) < itch.HeaderLen { // never short here: for the compiler
		return 0, false
	}
	locate = m.Locate()
	// Each case reslices m to its type's length (len(m) >= n was checked):
	// one bounds check, and the field reads below need none.
	switch t {
	case itch.TypeAddOrder:
		if b := bs.book(locate); b != nil { // AddOrder, without a call
			a := itch.AddOrder(m[:itch.AddOrderLen])
			changed = bs.add(b, a.OrderRef(), sideOf(a.Side()), a.Shares(), a.Price())
		}
	case itch.TypeAddOrderMPID:
		a := itch.AddOrderMPID(m[:itch.AddOrderMPIDLen])
		changed = bs.AddOrder(locate, a.OrderRef(), sideOf(a.Side()), a.Shares(), a.Price())
	case itch.TypeOrderDelete:
		changed = bs.Delete(locate, itch.OrderDelete(m[:itch.OrderDeleteLen]).OrderRef())
	case itch.TypeOrderReplace:
		u := itch.OrderReplace(m[:itch.OrderReplaceLen])
		changed = bs.Replace(locate, u.OriginalOrderRef(), u.NewOrderRef(), u.Shares(), u.Price())
	case itch.TypeOrderExecuted:
		e := itch.OrderExecuted(m[:itch.OrderExecutedLen])
		changed = bs.Execute(locate, e.OrderRef(), e.ExecutedShares(), e.MatchNumber())
	case itch.TypeOrderCancel:
		x := itch.OrderCancel(m[:itch.OrderCancelLen])
		changed = bs.Cancel(locate, x.OrderRef(), x.CancelledShares())
	case itch.TypeOrderExecutedWithPrice:
		c := itch.OrderExecutedWithPrice(m[:itch.OrderExecutedWithPriceLen])
		p := c.Printable()
		changed = bs.ExecuteWithPrice(locate, c.OrderRef(), c.ExecutedShares(), c.ExecutionPrice(), c.MatchNumber(), p == 'Y')
		if changed && stateValues[p]&printable == 0 {
			// Neither 'Y' nor 'N': the shares left the order all the
			// same, and the execution, applied as non-printable, is
			// not in the last trade and volume (Nasdaq: a print in
			// doubt is left out, not counted twice).
			bs.stats.BadState++
		}
	case itch.TypeTrade:
		p := itch.Trade(m[:itch.TradeLen])
		changed = bs.Trade(locate, p.Price(), uint64(p.Shares()), p.MatchNumber())
	case itch.TypeCrossTrade:
		q := itch.CrossTrade(m[:itch.CrossTradeLen])
		changed = bs.CrossTrade(locate, q.CrossPrice(), q.Shares(), q.MatchNumber())
	case itch.TypeBrokenTrade:
		if changed = bs.BreakTrade(locate, itch.BrokenTrade(m).MatchNumber()); !changed {
			return locate, false // also locate 0: no lastTime to set
		}
	case itch.TypeStockDirectory:
		changed = bs.Announce(locate, itch.StockDirectory(m).Stock())
	case itch.TypeStockTradingAction:
		if b := bs.book(locate); b != nil {
			st := itch.StockTradingAction(m[:itch.StockTradingActionLen]).TradingState()
			if stateValues[st]&tradingState == 0 {
				bs.stats.BadState++
				return locate, false
			}
			b.state = st
			changed = true
		}
	case itch.TypeOperationalHalt:
		if b := bs.book(locate); b != nil {
			h := itch.OperationalHalt(m[:itch.OperationalHaltLen])
			market, action := h.MarketCode(), h.HaltAction()
			if stateValues[market]&haltMarket == 0 || stateValues[action]&haltAction == 0 {
				bs.stats.BadState++
				return locate, false
			}
			if market == 'Q' {
				b.opHalt = action
				changed = true
			}
		}
	case itch.TypeRegSHO:
		if b := bs.book(locate); b != nil {
			a := itch.RegSHO(m[:itch.RegSHOLen]).Action()
			if stateValues[a]&regSHOAction == 0 {
				bs.stats.BadState++
				return locate, false
			}
			b.regSHO = a
			changed = true
		}
	case itch.TypeSystemEvent:
		e := itch.SystemEvent(m[:itch.SystemEventLen]).EventCode()
		if stateValues[e]&systemEvent == 0 {
			bs.stats.BadState++
			return 0, false
		}
		bs.event = e
		bs.eventTime = m.Timestamp()
		return 0, true
	default:
		return locate, false
	}
	if changed { // a case changes only a book it found (bs.book, Announce): bookAt's locate
		bookAt(bs.books, locate).lastTime = m.Timestamp()
	}
	return locate, changed
}

// stateValues marks, per byte, the fields of the state messages that ITCH
// 5.0 defines it for: Stock Trading Action's trading state ('H' halted,
// 'P' paused, 'Q' quotation only, 'T' trading), Reg SHO's action ('0' no
// price test, '1' restriction in effect after an intra-day drop, '2'
// restriction remains in effect), Operational Halt's market code ('Q'
// Nasdaq, 'B' BX, 'X' PSX) and action ('H' halted, 'T' resumed), System
// Event's code ('O' start of messages, 'S' start of system hours, 'Q'
// start of market hours, 'M' end of market hours, 'E' end of system
// hours, 'C' end of messages), and Order Executed With Price's printable
// flag ('Y', 'N'). A message with any other value is bad input
// (Stats.BadState): the instrument (or the market) keeps the state it had
// (an execution of an undefined flag is applied as non-printable), so a
// halted stock is not published as Unknown (nor a restricted one as
// unrestricted, nor an open market as in an event no reader knows) on a
// byte the handler cannot read. Rare messages: a table, not to be fast
// but to say the values once.
var stateValues = func() (t [256]uint8) {
	for _, c := range []byte("HPQT") {
		t[c] |= tradingState
	}
	for _, c := range []byte("012") {
		t[c] |= regSHOAction
	}
	for _, c := range []byte("QBX") {
		t[c] |= haltMarket
	}
	for _, c := range []byte("HT") {
		t[c] |= haltAction
	}
	for _, c := range []byte("OSQMEC") {
		t[c] |= systemEvent
	}
	for _, c := range []byte("YN") {
		t[c] |= printable
	}
	return t
}()

// The fields of stateValues.
const (
	tradingState = 1 << iota
	regSHOAction
	haltMarket
	haltAction
	systemEvent
	printable
)

// SystemEventDefined reports whether code is a System Event code ITCH 5.0
// defines ('O', 'S', 'Q', 'M', 'E', 'C'): Apply counts a System Event of
// any other (Stats.BadState) and keeps the last event. A router that hands
// System Events to several Books (the handler's shards) gives one of
// another code to one of them only, so that it is counted once.
func SystemEventDefined(code byte) bool { return stateValues[code]&systemEvent != 0 }

// sideOf maps a buy/sell indicator to a Side, or to 2 (counted as BadSide
// by add) for any other byte. It is a table, not a switch: buys and sells
// come in no order a branch predictor can learn.
func sideOf(indicator byte) Side { return sideTable[indicator] }

var sideTable = func() (t [256]Side) {
	for i := range t {
		t[i] = 2
	}
	t['B'], t['S'] = Bid, Ask
	return t
}()

// short counts a message shorter than the header: a type this version
// does not know is skipped and counted as unknown whatever its length (as
// the decoder's itch.Counters does), a known one is malformed. Out of
// line: inlined into Apply, the branch made replay about 4% slower.
//
//go:noinline
func (bs *Books) short(m itch.Msg) {
	if len(m) > 0 && itch.Length(m[0]) == 0 {
		bs.stats.UnknownType++
	} else {
		bs.stats.Malformed++
	}
}

// irregular counts a non-empty message whose length is not its type's: a
// short one (as short does), an unknown type, or a long one (Stats.Long),
// which alone it reports to be applied, as its type, the extra bytes
// ignored. Out of line, as short: Apply's common case is one test.
//
//go:noinline
func (bs *Books) irregular(m itch.Msg) bool {
	n := itch.Length(m[0])
	switch {
	case len(m) < itch.HeaderLen:
		bs.short(m)
	case n == 0:
		bs.stats.UnknownType++
	case len(m) < n:
		bs.stats.Malformed++
	default:
		bs.stats.Long++
		return true
	}
	return false
}
