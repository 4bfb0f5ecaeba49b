package book

// tradeRec remembers one execution or trade by its match number, so that a
// Broken Trade can take it back. 32 bytes, no pointers.
type tradeRec struct {
	match   uint64
	shares  uint64 // printed shares; 0 for a non-printable execution
	prev    uint64 // match of the instrument's last trade before this one (0: none)
	price   uint32
	locate  uint16
	printed bool // counted in the last trade and volume
	broken  bool
}

// maxBrokenWalk bounds how many broken trades a Broken Trade of the last
// trade steps back over to find the last trade still standing.
const maxBrokenWalk = 64

// trade records a printable trade of b (E, printable C, P, Q): the last
// trade, the volume and, under its match number, what a Broken Trade needs
// to reverse them. Match number 0 names no trade and is not remembered.
func (bs *Books) trade(b *Book, price uint32, size, match uint64) {
	if match != 0 {
		bs.tradesUsed = true
		bs.maxMatch = max(bs.maxMatch, match)
		t := &bs.trades[match&bs.tradeMask]
		t.match = match
		t.shares = size
		t.prev = b.lastMatch
		t.price = price
		t.locate = b.locate
		t.printed = true
		t.broken = false
	}
	b.lastMatch = match
	b.lastPrice = price
	b.lastSize = size
	b.volume += size
	b.trades++
}

// execution records a non-printable execution (C with printable 'N'): it
// is not in the last trade or the volume, but a Broken Trade naming it is
// known, not unmatched. It does not replace a printed trade of the same
// match number on the instrument: the executions of a cross may carry the
// cross's match number, and a Broken Trade of it must still take the
// cross's shares off the volume, whichever came first.
func (bs *Books) execution(b *Book, price uint32, match uint64) {
	if match == 0 {
		return
	}
	bs.tradesUsed = true
	bs.maxMatch = max(bs.maxMatch, match)
	t := &bs.trades[match&bs.tradeMask]
	if t.match == match && t.locate == b.locate && t.printed {
		return
	}
	*t = tradeRec{match: match, price: price, locate: b.locate}
}

// breakTrade applies a Broken Trade of match on b: the trade's shares come
// off the volume and, if it was the last trade, the last trade before it
// that still stands becomes the last trade again (none when that one is no
// longer remembered). A match not remembered (too old, never seen, of
// another instrument, or broken already) is counted in BrokenUnmatched and
// changes only the broken count. A match two prints of the instrument
// carried is counted in DuplicateMatch (duplicated): the memory holds the
// later print, which this takes off; the earlier one is not remembered.
func (bs *Books) breakTrade(b *Book, match uint64) {
	b.broken++
	t := &bs.trades[match&bs.tradeMask]
	if match == 0 || match < b.minMatch || t.match != match || t.locate != b.locate || t.broken {
		bs.stats.BrokenUnmatched++
		return
	}
	t.broken = true
	if !t.printed {
		return
	}
	if bs.duplicated(b, t, match) {
		// An earlier trade of the instrument had the same match number:
		// two prints of one match (unique in a day), the earlier one
		// overwritten in the memory. This B takes the later one off;
		// the earlier one stands, unknown.
		bs.stats.DuplicateMatch++
	}
	b.volume -= t.shares
	if b.lastMatch != match {
		return
	}
	for m, k := t.prev, 0; m != 0 && k < maxBrokenWalk; k++ {
		p := &bs.trades[m&bs.tradeMask]
		if p.match != m || p.locate != b.locate {
			break // forgotten
		}
		if !p.broken {
			b.lastMatch, b.lastPrice, b.lastSize = m, p.price, p.shares
			return
		}
		if p.prev == m {
			break // the earlier print of a duplicated match number: not remembered
		}
		m = p.prev
	}
	b.lastMatch, b.lastPrice, b.lastSize = 0, 0, 0
}

// duplicated reports whether a trade of b before t, the remembered print of
// match, carried match too: a number in the chain of t's previous trades,
// followed back while they are remembered, at most maxBrokenWalk steps.
// On the Broken Trade's path only: a trade's own path does not look.
func (bs *Books) duplicated(b *Book, t *tradeRec, match uint64) bool {
	for m, k := t.prev, 0; m != 0 && k <= maxBrokenWalk; k++ {
		if m == match {
			return true
		}
		p := &bs.trades[m&bs.tradeMask]
		if p.match != m || p.locate != b.locate {
			return false // forgotten
		}
		m = p.prev
	}
	return false
}

// BreakTrade applies a Broken Trade (B) of match on locate. It reports
// whether the book changed (its broken count always does). Locate 0 (seen
// from generators and some feeds) names no instrument: the trade is counted
// in BrokenWithoutLocate only.
func (bs *Books) BreakTrade(locate uint16, match uint64) bool {
	if locate == 0 {
		bs.broken++
		return false
	}
	b := bs.book(locate)
	if b == nil {
		return false
	}
	bs.breakTrade(b, match)
	return true
}

// Trade applies a trade that rests on no order (P) of shares at price
// under match. It reports whether the book changed. A trade of 0 shares is
// bad input, counted in ZeroShares.
func (bs *Books) Trade(locate uint16, price uint32, shares, match uint64) bool {
	if shares == 0 {
		if bs.book(locate) != nil {
			bs.stats.ZeroShares++
		}
		return false
	}
	return bs.CrossTrade(locate, price, shares, match)
}

// CrossTrade applies a cross (Q) of shares at its cross price under
// match. It reports whether the book changed. A cross of 0 shares (one
// that did not execute, which Nasdaq sends) changes nothing and is not
// counted.
func (bs *Books) CrossTrade(locate uint16, price uint32, shares, match uint64) bool {
	b := bs.book(locate)
	if b == nil || shares == 0 {
		return false
	}
	bs.trade(b, price, shares, match)
	return true
}
