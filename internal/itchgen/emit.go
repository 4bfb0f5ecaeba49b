package itchgen

import "github.com/marketfeed/feedhandler/feed/itch"

var mpids = [...]itch.MPID{
	{'N', 'S', 'D', 'Q'}, {'G', 'S', 'C', 'O'}, {'M', 'S', 'C', 'O'}, {'U', 'B', 'S', 'S'},
	{'J', 'P', 'M', 'S'}, {'C', 'D', 'R', 'G'}, {'V', 'I', 'R', 'T'}, {'S', 'U', 'S', 'Q'},
}

func (g *Generator) hdr(locate uint16) itch.Header {
	return itch.Header{Locate: locate, Tracking: uint16(g.lastTS>>7) & 7, Timestamp: g.lastTS}
}

// pickSymbol draws a symbol by activity, avoiding halted ones.
func (g *Generator) pickSymbol() int32 {
	var i int32
	for try := 0; try < 8; try++ {
		i = g.symTable[g.rnd.next()>>(64-symTableBits)]
		if !g.syms[i].halted {
			break
		}
	}
	return i
}

// pickOrder draws a live order of an active, trading symbol: mostly a
// recently added one (short-lived orders), sometimes any (long resting).
func (g *Generator) pickOrder() (int32, int32, bool) {
	for try := 0; try < 8; try++ {
		si := g.pickSymbol()
		s := &g.syms[si]
		n := len(s.live)
		if n == 0 || s.halted {
			continue
		}
		r := g.rnd.next()
		var k int
		if r&3 != 0 {
			k = n - 1 - int((r>>8)%uint64(min(n, 16)))
		} else {
			k = int((r >> 8) % uint64(n))
		}
		return si, s.live[k], true
	}
	return 0, 0, false
}

func (g *Generator) shares() uint32 {
	r := g.rnd.next()
	switch p := r % 100; {
	case p < 50:
		return 100
	case p < 62:
		return 200
	case p < 70:
		return 300
	case p < 75:
		return 500
	case p < 80:
		return 1000
	case p < 92:
		return 1 + uint32(r>>32)%99
	default:
		return 100 * (1 + uint32(r>>32)%50)
	}
}

// offset is a distance from the touch in levels: mostly 0-3, sometimes deep.
func (g *Generator) offset() int32 {
	r := g.rnd.next()
	if r&15 == 0 {
		return int32(r>>8) % 120
	}
	return int32(bits64tz(r>>4) % 8)
}

func bits64tz(x uint64) uint64 {
	n := uint64(0)
	for x&1 == 1 && n < 16 {
		x >>= 1
		n++
	}
	return n
}

// restLevel returns a level for a new order on side that does not cross the
// book, near the fair price; ok is false when the side has no room.
func restLevel(s *symbol, side byte, off int32) (int32, bool) {
	if side == 'B' {
		lvl := min(s.fair-off, s.bestAsk-1)
		return max(lvl, 0), s.bestAsk > 0
	}
	lvl := max(s.fair+1+off, s.bestBid+1)
	return min(lvl, window-1), s.bestBid < window-1
}

func (g *Generator) moveFair(s *symbol) {
	r := g.rnd.next()
	if r&15 != 0 {
		return
	}
	if r&16 != 0 {
		s.fair++
	} else {
		s.fair--
	}
	// Stay in the middle of the window.
	s.fair = max(window/4, min(s.fair, 3*window/4))
}

func (g *Generator) flow() {
	r := g.rnd.next()
	if ts := g.lastTS; (ts >= noiiOpen[0] && ts < noiiOpen[1]) || (ts >= noiiClose[0] && ts < noiiClose[1]) {
		if r&(1<<32-1) < g.noii {
			g.imbalance(g.pickSymbol())
			return
		}
	}
	switch g.mix[r>>(64-12)] {
	case 'A':
		g.addOrder(false)
	case 'F':
		g.addOrder(true)
	case 'D':
		si, oi, ok := g.pickOrder()
		if !ok {
			g.addOrder(false)
			return
		}
		g.deleteOrder(si, oi)
	case 'X':
		si, oi, ok := g.pickOrder()
		if !ok {
			g.addOrder(false)
			return
		}
		o := &g.bk.orders[oi]
		if o.shares < 2 {
			g.deleteOrder(si, oi)
			return
		}
		k := 1 + uint32(g.rnd.intn(int(o.shares-1)))
		o.shares -= k
		f := itch.OrderCancelFields{Header: g.hdr(g.syms[si].locate), OrderRef: o.ref, CancelledShares: k}
		g.msg = f.Append(g.msg[:0])
	case 'U':
		si, oi, ok := g.pickOrder()
		if !ok {
			g.addOrder(false)
			return
		}
		g.replaceOrder(si, oi)
	case 'E':
		g.execute(false)
	case 'C':
		g.execute(true)
	case 'P':
		g.trade()
	}
}

func (g *Generator) addOrder(mpid bool) {
	si := g.pickSymbol()
	s := &g.syms[si]
	g.moveFair(s)
	r := g.rnd.next()
	side := byte('B')
	if r&1 == 1 {
		side = 'S'
	}
	lvl, ok := restLevel(s, side, g.offset())
	if !ok {
		side ^= 'B' ^ 'S'
		lvl, _ = restLevel(s, side, g.offset())
	}
	ref := g.nextRef
	g.nextRef += 1 + (r>>8)&3
	sh := g.shares()
	g.bk.add(s, si, ref, side, lvl, sh)
	if mpid {
		f := itch.AddOrderMPIDFields{Header: g.hdr(s.locate), OrderRef: ref, Side: side, Shares: sh, Stock: s.stock, Price: s.price(lvl), Attribution: mpids[(r>>16)%uint64(len(mpids))]}
		g.msg = f.Append(g.msg[:0])
		return
	}
	f := itch.AddOrderFields{Header: g.hdr(s.locate), OrderRef: ref, Side: side, Shares: sh, Stock: s.stock, Price: s.price(lvl)}
	g.msg = f.Append(g.msg[:0])
}

func (g *Generator) deleteOrder(si, oi int32) {
	s := &g.syms[si]
	f := itch.OrderDeleteFields{Header: g.hdr(s.locate), OrderRef: g.bk.orders[oi].ref}
	g.msg = f.Append(g.msg[:0])
	g.bk.remove(s, oi)
}

func (g *Generator) replaceOrder(si, oi int32) {
	s := &g.syms[si]
	old := g.bk.orders[oi]
	g.bk.remove(s, oi)
	g.moveFair(s)
	r := g.rnd.next()
	lvl := old.level + int32(r%5) - 2
	side := old.side
	if side == 'B' {
		lvl = max(0, min(lvl, s.bestAsk-1))
	} else {
		lvl = min(window-1, max(lvl, s.bestBid+1))
	}
	if lvl < 0 || lvl >= window || (side == 'B' && lvl >= s.bestAsk) || (side == 'S' && lvl <= s.bestBid) {
		lvl = old.level // the old level never crossed
	}
	sh := old.shares
	if (r>>8)&1 == 0 {
		sh = g.shares()
	}
	ref := g.nextRef
	g.nextRef += 1 + (r>>16)&3
	g.bk.add(s, si, ref, side, lvl, sh)
	f := itch.OrderReplaceFields{Header: g.hdr(s.locate), OriginalOrderRef: old.ref, NewOrderRef: ref, Shares: sh, Price: s.price(lvl)}
	g.msg = f.Append(g.msg[:0])
}

// execute fills (part of) the order at the front of the queue at the best
// price of one side: the side the fair price has moved through, else either.
func (g *Generator) execute(withPrice bool) {
	var si int32
	var s *symbol
	found := false
	for try := 0; try < 8 && !found; try++ {
		si = g.pickSymbol()
		s = &g.syms[si]
		found = !s.halted && (s.bestBid >= 0 || s.bestAsk < window)
	}
	if !found {
		g.addOrder(false)
		return
	}
	r := g.rnd.next()
	hitAsk := s.bestAsk < window && (s.bestBid < 0 || s.bestAsk <= s.fair || (s.bestBid <= s.fair && r&1 == 1))
	lvl := s.bestBid
	if hitAsk {
		lvl = s.bestAsk
	}
	oi := s.levels[lvl].head
	o := &g.bk.orders[oi]
	k := o.shares
	if (r>>1)&1 == 1 && o.shares >= 2 {
		k = 1 + uint32((r>>8)%uint64(o.shares-1))
	}
	match := g.nextMatch
	g.nextMatch++
	s.lastMatch = match
	if withPrice {
		pr := byte('Y')
		if (r>>4)&3 == 0 {
			pr = 'N'
		}
		f := itch.OrderExecutedWithPriceFields{Header: g.hdr(s.locate), OrderRef: o.ref, ExecutedShares: k, MatchNumber: match, Printable: pr, ExecutionPrice: s.price(lvl)}
		g.msg = f.Append(g.msg[:0])
	} else {
		f := itch.OrderExecutedFields{Header: g.hdr(s.locate), OrderRef: o.ref, ExecutedShares: k, MatchNumber: match}
		g.msg = f.Append(g.msg[:0])
	}
	if k == o.shares {
		g.bk.remove(s, oi)
	} else {
		o.shares -= k
	}
}

// midLevel is a level between the best bid and offer, inclusive (near the
// fair price when a side is empty).
func midLevel(s *symbol) int32 {
	switch {
	case s.bestBid >= 0 && s.bestAsk < window:
		return (s.bestBid + s.bestAsk + 1) / 2
	case s.bestBid >= 0:
		return max(s.fair, s.bestBid)
	case s.bestAsk < window:
		return min(s.fair, s.bestAsk)
	}
	return s.fair
}

// trade prints a non-displayed (hidden) execution inside the spread.
func (g *Generator) trade() {
	si := g.pickSymbol()
	s := &g.syms[si]
	if s.halted {
		// pickSymbol found only halted symbols: no trade prints in a
		// halt.
		g.addOrder(false)
		return
	}
	r := g.rnd.next()
	side := byte('B')
	if r&1 == 1 {
		side = 'S'
	}
	match := g.nextMatch
	g.nextMatch++
	s.lastMatch = match
	f := itch.TradeFields{Header: g.hdr(s.locate), OrderRef: 0, Side: side, Shares: g.shares(), Stock: s.stock, Price: s.price(midLevel(s)), MatchNumber: match}
	g.msg = f.Append(g.msg[:0])
}

func (g *Generator) imbalance(si int32) {
	s := &g.syms[si]
	r := g.rnd.next()
	ref := s.price(midLevel(s))
	cross := byte('O')
	if g.lastTS >= 12*Hour {
		cross = 'C'
	}
	dirs := [...]byte{'B', 'S', 'N', 'O'}
	f := itch.NOIIFields{
		Header: g.hdr(s.locate), PairedShares: 100 * (r % 5000), ImbalanceShares: 100 * ((r >> 16) % 500),
		ImbalanceDirection: dirs[(r>>32)&3], Stock: s.stock, FarPrice: ref + 100*uint32((r>>40)%10), NearPrice: ref,
		CurrentRefPrice: ref, CrossType: cross, PriceVariation: 'L',
	}
	g.msg = f.Append(g.msg[:0])
}

func (g *Generator) scheduled(e *event) {
	var s *symbol
	var loc uint16
	if e.sym >= 0 {
		s = &g.syms[e.sym]
		loc = s.locate
	}
	h := itch.Header{Locate: loc, Timestamp: e.ts}
	r := g.rnd.next()
	switch e.typ {
	case 'S':
		f := itch.SystemEventFields{Header: h, EventCode: e.code}
		g.msg = f.Append(g.msg[:0])
	case 'R':
		cats := [...]byte{'Q', 'G', 'S', 'N', 'P', 'A'}
		f := itch.StockDirectoryFields{
			Header: h, Stock: s.stock, MarketCategory: cats[r%uint64(len(cats))], FinancialStatus: 'N',
			RoundLotSize: 100, RoundLotsOnly: 'N', IssueClassification: 'C', IssueSubType: [2]byte{'Z', ' '},
			Authenticity: 'P', ShortSaleThreshold: 'N', IPOFlag: 'N', LULDRefPriceTier: '1' + byte((r>>8)&1),
			ETPFlag: 'N', ETPLeverageFactor: 0, InverseIndicator: 'N',
		}
		if e.sym == g.ipo {
			f.IPOFlag = 'Y'
		}
		g.msg = f.Append(g.msg[:0])
	case 'H':
		f := itch.StockTradingActionFields{Header: h, Stock: s.stock, TradingState: e.code, Reason: [4]byte{' ', ' ', ' ', ' '}}
		if e.code != 'T' {
			f.Reason = [4]byte{'L', 'U', 'D', 'P'}
		}
		s.tradingHalt = e.code != 'T'
		s.halted = s.tradingHalt || s.opHalt
		g.msg = f.Append(g.msg[:0])
	case 'Y':
		f := itch.RegSHOFields{Header: h, Stock: s.stock, Action: e.code}
		g.msg = f.Append(g.msg[:0])
	case 'L':
		modes := [...]byte{'N', 'P', 'S', 'R', 'L'}
		f := itch.MarketParticipantPositionFields{Header: h, MPID: mpids[r%uint64(len(mpids))], Stock: s.stock,
			PrimaryMarketMaker: "NY"[(r>>8)&1], MarketMakerMode: modes[(r>>16)%5], MarketParticipantState: 'A'}
		g.msg = f.Append(g.msg[:0])
	case 'V':
		f := itch.MWCBDeclineLevelFields{Header: h, Level1: 5_123_45000000, Level2: 4_815_48000000, Level3: 4_268_18000000}
		g.msg = f.Append(g.msg[:0])
	case 'W':
		f := itch.MWCBStatusFields{Header: h, BreachedLevel: e.code}
		g.msg = f.Append(g.msg[:0])
	case 'K':
		f := itch.IPOQuotingPeriodFields{Header: h, Stock: s.stock, ReleaseTime: uint32((12 * Hour) / 1e9), ReleaseQualifier: e.code, IPOPrice: s.price(s.fair)}
		g.msg = f.Append(g.msg[:0])
	case 'J':
		ref := s.price(midLevel(s))
		f := itch.LULDAuctionCollarFields{Header: h, Stock: s.stock, CollarRefPrice: ref, UpperCollarPrice: ref + ref/20, LowerCollarPrice: ref - ref/20, CollarExtension: 0}
		g.msg = f.Append(g.msg[:0])
	case 'h':
		f := itch.OperationalHaltFields{Header: h, Stock: s.stock, MarketCode: 'Q', HaltAction: e.code}
		s.opHalt = e.code == 'H'
		s.halted = s.tradingHalt || s.opHalt
		g.msg = f.Append(g.msg[:0])
	case 'Q':
		match := g.nextMatch
		g.nextMatch++
		s.lastMatch = match
		f := itch.CrossTradeFields{Header: h, Shares: 100 * (1 + r%20000), Stock: s.stock, CrossPrice: s.price(midLevel(s)), MatchNumber: match, CrossType: e.code}
		g.msg = f.Append(g.msg[:0])
	case 'B':
		// The symbol's latest trade, under its locate, as the spec has a
		// broken trade carry (once: a trade is broken at most once). A
		// symbol without a trade not broken yet passes the break to the
		// next one that has one (before, it broke a match number of the
		// day, another instrument's: with most seeds and sizes some
		// breaks named no trade of their locate); only a day without
		// any such trade yet breaks a match number of the day.
		for i := 0; s.lastMatch == 0 && i < len(g.syms); i++ {
			if o := &g.syms[(int(e.sym)+1+i)%len(g.syms)]; o.lastMatch != 0 {
				s = o
				h.Locate = o.locate
			}
		}
		match := s.lastMatch
		if match == 0 {
			match = 1 + r%g.nextMatch
		}
		s.lastMatch = 0
		f := itch.BrokenTradeFields{Header: h, MatchNumber: match}
		g.msg = f.Append(g.msg[:0])
	case 'N':
		flags := [...]byte{'B', 'S', 'A', 'N'}
		f := itch.RPIIFields{Header: h, Stock: s.stock, InterestFlag: flags[r&3]}
		g.msg = f.Append(g.msg[:0])
	case 'O':
		ref := s.price(s.fair)
		f := itch.DLCRFields{Header: h, Stock: s.stock, OpenEligibility: 'Y', MinAllowedPrice: ref - ref/5, MaxAllowedPrice: ref + ref/5,
			NearExecPrice: ref, NearExecTime: e.ts + 60e9, LowerPriceRangeCollar: ref - ref/10, UpperPriceRangeCollar: ref + ref/10}
		g.msg = f.Append(g.msg[:0])
	default:
		panic("generate itch day: unknown scheduled type " + string(e.typ))
	}
}
