package book

import (
	"fmt"
	"slices"
	"strings"
)

// The reference book: deliberately simple (maps and sorted slices), written
// from the rules in doc.go and independent of the fast structures.

type refOrder struct {
	ref    uint64
	locate uint16
	side   Side
	price  uint32
	shares uint32
}

type refBook struct {
	locate uint16
	symbol [8]byte
	sides  [2]map[uint32][]uint64 // price -> refs, oldest first

	last                   *refTrade // nil: none
	volume, trades, broken uint64
	minMatch               uint64 // trades under it are a re-assigned locate's old instrument's

	state, regSHO, opHalt byte   // from 'H', 'Y', 'h' (market 'Q'); 0 before any
	lastTime              uint64 // timestamp of the last message that changed the instrument
	incomplete            bool   // an add dropped for want of capacity
}

// dropped flags b after an add dropped for want of capacity: a change the
// first time (the flag is published), none after.
func (r *refBooks) dropped(b *refBook) bool {
	if b.incomplete {
		return false
	}
	b.incomplete = true
	r.stats.Incomplete++
	return true
}

// refTrade is one execution or trade; prev is the instrument's last trade
// when it was made.
type refTrade struct {
	match   uint64
	locate  uint16
	price   uint32
	shares  uint64
	printed bool
	broken  bool
	prev    *refTrade
}

// refKey names an order: its locate and reference.
type refKey struct {
	locate uint16
	ref    uint64
}

type refBooks struct {
	cfg    Config
	orders map[refKey]*refOrder // an order is its instrument's: keyed by locate and reference
	books  map[uint16]*refBook
	levels int
	stats  Stats

	trades    map[uint64]*refTrade // by match number
	maxMatch  uint64               // the highest match number recorded
	slotOwner map[uint64]uint64    // Config.TradeMemory's contract: slot m mod TradeMemory holds the last match recorded there
	slotMask  uint64

	event, eventTime uint64 // the last System Event ('S') code and timestamp
	brokenNoLocate   uint64 // Broken Trades with locate 0

	// claims: the symbol each locate was given last and when (the
	// count of symbols given): a locate is a duplicate when another
	// locate was given its symbol before it (refDuplicate).
	claims  map[uint16]refClaim
	claimed uint64

	// Config.RefTableSize and Overflow's contract: the order with
	// reference r takes home slot r mod RefTableSize unless an older live
	// order holds it, and then one of the Overflow slots.
	homeMask   uint64
	homeHolder map[uint64]refKey // home slot -> the live order in it
	overflowed int               // live orders in overflow slots
	overflow   int               // Config.Overflow
}

func newRefBooks(cfg Config) *refBooks {
	n, err := cfg.normalize()
	if err != nil {
		panic(err)
	}
	return &refBooks{cfg: cfg, orders: map[refKey]*refOrder{}, books: map[uint16]*refBook{},
		trades: map[uint64]*refTrade{}, slotOwner: map[uint64]uint64{}, slotMask: uint64(n.TradeMemory - 1), claims: map[uint16]refClaim{},
		homeMask: uint64(n.RefTableSize - 1), homeHolder: map[uint64]refKey{}, overflow: n.Overflow}
}

// record remembers t under its match number (match 0 names no trade).
func (r *refBooks) record(t *refTrade) {
	if t.match != 0 {
		r.maxMatch = max(r.maxMatch, t.match)
		r.trades[t.match] = t
		r.slotOwner[t.match&r.slotMask] = t.match
	}
}

// remembered reports whether t can still be found by its match number.
func (r *refBooks) remembered(t *refTrade) bool {
	return t.match != 0 && r.trades[t.match] == t && r.slotOwner[t.match&r.slotMask] == t.match
}

func (r *refBooks) trade(b *refBook, locate uint16, price uint32, shares, match uint64) {
	t := &refTrade{match: match, locate: locate, price: price, shares: shares, printed: true, prev: b.last}
	r.record(t)
	b.last = t
	b.volume += shares
	b.trades++
}

// breakTrade follows doc.go: the volume loses the trade's shares; a broken
// last trade gives way to the last one before it that stands, stepping
// back over at most maxBrokenWalk trades, none once one is forgotten.
func (r *refBooks) breakTrade(b *refBook, locate uint16, match uint64) {
	b.broken++
	t := r.trades[match]
	if t == nil || match < b.minMatch || !r.remembered(t) || t.locate != locate || t.broken {
		r.stats.BrokenUnmatched++
		return
	}
	t.broken = true
	if !t.printed {
		return
	}
	// An earlier print of the same match in the chain of previous trades
	// (followed while remembered, at most maxBrokenWalk steps back):
	// counted, the earlier print not remembered.
	for p, k := t.prev, 0; p != nil && k <= maxBrokenWalk; p, k = p.prev, k+1 {
		if p.match == match {
			r.stats.DuplicateMatch++
			break
		}
		if !r.remembered(p) {
			break
		}
	}
	b.volume -= t.shares
	if b.last != t {
		return
	}
	b.last = nil
	for p, k := t.prev, 0; p != nil && k < maxBrokenWalk; p, k = p.prev, k+1 {
		if !r.remembered(p) {
			break
		}
		if !p.broken {
			b.last = p
			break
		}
	}
}

// op is one book event in numeric form, shared by the fast and the reference
// book drivers.
type op struct {
	kind      byte // 'R','A','E','C','X','D','U', 'P','Q' (trades), 'B' (broken trade); 0: none of these
	locate    uint16
	ref       uint64
	newRef    uint64
	side      byte
	shares    uint32
	price     uint32
	printable bool
	symbol    [8]byte
	match     uint64 // E, C, P, Q, B
	volume    uint64 // shares of P and Q

	// For the wire differential (wire_test.go): the message's timestamp,
	// 'A' sent as 'F' (with attribution), and the state byte of 'H'
	// (trading state), 'h' (halt action), 'Y' (Reg SHO action) and 'S'
	// (event code), with the market code of 'h'.
	ts     uint64
	attrib bool
	state  byte
	market byte
	// badPrint: a 'C' whose printable flag is neither 'Y' nor 'N'
	// (printable false); the byte is in state.
	badPrint bool
	// extra bytes after the message's end (Long: applied as its type),
	// or, negative, bytes missing from it (Malformed: ignored).
	extra int
}

func (r *refBooks) book(locate uint16) *refBook {
	if int(locate) > r.cfg.MaxLocates {
		r.stats.LocateCapacity++
		return nil
	}
	b := r.books[locate]
	if b == nil {
		r.stats.UnknownLocate++
	}
	return b
}

// apply applies o and reports whether it changed the instrument it names
// (its book, trades, states or symbol), or for 'S' the market's state:
// what Books.Apply must report, so that a publisher marks the book dirty.
// The instrument's timestamp is the last such message's.
func (r *refBooks) apply(o op) bool {
	if o.extra < 0 {
		r.stats.Malformed++
		return false
	}
	if o.extra > 0 {
		r.stats.Long++
	}
	changed := r.applyOp(o)
	if changed && o.kind != 'S' {
		r.books[o.locate].lastTime = o.ts
	}
	return changed
}

func (r *refBooks) applyOp(o op) bool {
	switch o.kind {
	case 'P', 'Q':
		b := r.book(o.locate)
		if b != nil && o.volume != 0 {
			r.trade(b, o.locate, o.price, o.volume, o.match)
			return true
		}
		if b != nil && o.volume == 0 && o.kind == 'P' {
			r.stats.ZeroShares++ // a Q of 0 shares is a cross that did not execute
		}
	case 'B':
		if o.locate == 0 { // BrokenWithoutLocate
			r.brokenNoLocate++
			return false
		}
		if b := r.book(o.locate); b != nil {
			r.breakTrade(b, o.locate, o.match)
			return true // its broken count, at least
		}
	case 'H', 'h', 'Y':
		b := r.book(o.locate)
		// The values ITCH 5.0 defines; any other is counted, the state
		// kept.
		valid := map[byte]string{'H': "HPQT", 'Y': "012", 'h': "HT"}[o.kind]
		switch {
		case b == nil:
		case !strings.ContainsRune(valid, rune(o.state)) || o.kind == 'h' && !strings.ContainsRune("QBX", rune(o.market)):
			r.stats.BadState++
		case o.kind == 'H':
			b.state = o.state
			return true
		case o.kind == 'Y':
			b.regSHO = o.state
			return true
		case o.market == 'Q': // Nasdaq's own halts; 'B' (BX) and 'X' (PSX) are other markets'
			b.opHalt = o.state
			return true
		}
	case 'S':
		if !strings.ContainsRune("OSQMEC", rune(o.state)) { // the codes ITCH 5.0 defines; any other is counted, the event kept
			r.stats.BadState++
			return false
		}
		r.event, r.eventTime = uint64(o.state), o.ts
		return true
	case 'R':
		if o.locate == 0 { // names no instrument: Malformed, which compareStats leaves out
			r.stats.Malformed++
			return false
		}
		if int(o.locate) > r.cfg.MaxLocates {
			r.stats.LocateCapacity++
			return false
		}
		b := r.books[o.locate]
		if b != nil && b.symbol != o.symbol {
			// Another instrument at a known locate: counted, and the
			// book starts empty, its old trades forgotten.
			r.stats.LocateReassigned++
			if b.incomplete {
				r.stats.Incomplete--
			}
			for side := range b.sides {
				for _, q := range b.sides[side] {
					for _, ref := range slices.Clone(q) {
						r.remove(b, r.orders[refKey{o.locate, ref}])
					}
				}
			}
			b = nil
		}
		if b == nil {
			b = &refBook{locate: o.locate, sides: [2]map[uint32][]uint64{{}, {}}}
			if r.books[o.locate] != nil {
				b.minMatch = r.maxMatch + 1
			}
			r.books[o.locate] = b
		}
		b.symbol = o.symbol
		if c := r.claims[o.locate]; c.sym != o.symbol {
			r.claimed++
			r.claims[o.locate] = refClaim{sym: o.symbol, at: r.claimed}
		}
		if r.duplicate(o.locate) {
			r.stats.DuplicateSymbol++
		}
		return true
	case 'A':
		b := r.book(o.locate)
		if b == nil {
			return false
		}
		var side Side
		switch o.side {
		case 'B':
			side = Bid
		case 'S':
			side = Ask
		default:
			r.stats.BadSide++
			return false
		}
		return r.add(b, o.locate, o.ref, side, o.shares, o.price)
	case 'E', 'C', 'X', 'D', 'U':
		b := r.book(o.locate)
		if b == nil {
			return false
		}
		ord := r.orders[refKey{o.locate, o.ref}]
		if ord == nil {
			switch o.kind {
			case 'E', 'C':
				r.stats.UnknownRefExecute++
			case 'X':
				r.stats.UnknownRefCancel++
			case 'D':
				r.stats.UnknownRefDelete++
			case 'U':
				r.stats.UnknownRefReplace++
			}
			return false
		}
		switch o.kind {
		case 'D':
			r.remove(b, ord)
		case 'U':
			if o.newRef == o.ref && o.shares != 0 {
				// The new reference is the original's, which is live:
				// counted, the order replaced all the same.
				r.stats.DuplicateAdd++
			}
			r.remove(b, ord)
			r.add(b, o.locate, o.newRef, ord.side, o.shares, o.price)
		default:
			if o.shares == 0 {
				r.stats.ZeroShares++
				return false
			}
			switch {
			case o.kind == 'E':
				r.trade(b, o.locate, ord.price, uint64(o.shares), o.match)
			case o.kind == 'C' && o.printable:
				r.trade(b, o.locate, o.price, uint64(o.shares), o.match)
			case o.kind == 'C':
				if o.badPrint { // applied as non-printable, counted
					r.stats.BadState++
				}
				// A printed trade of the same match on the instrument (a
				// cross) stays the one a Broken Trade names.
				if t := r.trades[o.match]; t == nil || !r.remembered(t) || t.locate != o.locate || !t.printed {
					r.record(&refTrade{match: o.match, locate: o.locate, price: o.price})
				}
			}
			if o.shares >= ord.shares {
				if o.shares > ord.shares {
					if o.kind == 'X' {
						r.stats.OverCancel++
					} else {
						r.stats.OverExecution++
					}
				}
				r.remove(b, ord)
				return true
			}
			ord.shares -= o.shares
		}
		return true
	}
	return false
}

func (r *refBooks) add(b *refBook, locate uint16, ref uint64, side Side, shares, price uint32) bool {
	if shares == 0 {
		r.stats.ZeroShares++
		return false
	}
	if r.orders[refKey{locate, ref}] != nil {
		r.stats.DuplicateAdd++
		return false
	}
	_, homeTaken := r.homeHolder[ref&r.homeMask]
	if len(r.orders) == r.cfg.MaxOrders || (homeTaken && r.overflowed == r.overflow) {
		r.stats.OrderCapacity++
		return r.dropped(b)
	}
	q, exists := b.sides[side][price]
	if !exists {
		if r.levels == r.cfg.MaxLevels {
			r.stats.LevelCapacity++
			return r.dropped(b)
		}
		r.levels++
	}
	b.sides[side][price] = append(q, ref)
	r.orders[refKey{locate, ref}] = &refOrder{ref: ref, locate: locate, side: side, price: price, shares: shares}
	if homeTaken {
		r.overflowed++
	} else {
		r.homeHolder[ref&r.homeMask] = refKey{locate, ref}
	}
	return true
}

func (r *refBooks) remove(b *refBook, o *refOrder) {
	q := b.sides[o.side][o.price]
	i := slices.Index(q, o.ref)
	q = slices.Delete(q, i, i+1)
	if len(q) == 0 {
		delete(b.sides[o.side], o.price)
		r.levels--
	} else {
		b.sides[o.side][o.price] = q
	}
	delete(r.orders, refKey{o.locate, o.ref})
	if h, ok := r.homeHolder[o.ref&r.homeMask]; ok && h == (refKey{o.locate, o.ref}) {
		delete(r.homeHolder, o.ref&r.homeMask)
	} else {
		r.overflowed--
	}
}

// levels returns the side's levels best first.
func (r *refBooks) depth(b *refBook, side Side) []Level {
	prices := make([]uint32, 0, len(b.sides[side]))
	for p := range b.sides[side] {
		prices = append(prices, p)
	}
	slices.Sort(prices)
	if side == Bid {
		slices.Reverse(prices)
	}
	var out []Level
	for _, p := range prices {
		lv := Level{Price: p}
		for _, ref := range b.sides[side][p] {
			lv.Shares += uint64(r.orders[refKey{b.locate, ref}].shares)
			lv.Orders++
		}
		out = append(out, lv)
	}
	return out
}

// compareBook checks levels, queues and BBO of one locate.
func compareBook(bs *Books, r *refBooks, locate uint16) error {
	rb := r.books[locate]
	fb := bs.Book(locate)
	if (rb == nil) != (fb == nil) {
		return fmt.Errorf("locate %d: known fast=%v ref=%v", locate, fb != nil, rb != nil)
	}
	if rb == nil {
		return nil
	}
	if [8]byte(fb.Symbol()) != rb.symbol {
		return fmt.Errorf("locate %d: symbol %q want %q", locate, fb.Symbol(), rb.symbol)
	}
	n := 0
	for side := Bid; side <= Ask; side++ {
		want := r.depth(rb, side)
		got := fb.AppendDepth(side, nil, 0)
		if !slices.Equal(got, want) {
			return fmt.Errorf("locate %d %v levels:\n got %v\nwant %v", locate, side, got, want)
		}
		best, ok := fb.Best(side)
		if ok != (len(want) > 0) || (ok && best != want[0]) {
			return fmt.Errorf("locate %d %v best %v,%v want %v", locate, side, best, ok, want)
		}
		for _, lv := range want {
			q := fb.Queue(side, lv.Price, make([]OrderInfo, 0, lv.Orders+1))
			refs := rb.sides[side][lv.Price]
			if len(q) != len(refs) {
				return fmt.Errorf("locate %d %v price %d: queue len %d want %d", locate, side, lv.Price, len(q), len(refs))
			}
			for i, ref := range refs {
				o := r.orders[refKey{locate, ref}]
				if q[i] != (OrderInfo{Ref: ref, Side: side, Price: o.price, Shares: o.shares}) {
					return fmt.Errorf("locate %d %v price %d: queue[%d] %+v want %+v", locate, side, lv.Price, i, q[i], *o)
				}
			}
			n += len(refs)
		}
	}
	if fb.Orders() != n {
		return fmt.Errorf("locate %d: Orders() %d want %d", locate, fb.Orders(), n)
	}
	var wp uint32
	var ws uint64
	if rb.last != nil {
		wp, ws = rb.last.price, rb.last.shares
	}
	if p, s, v := fb.Last(); p != wp || s != ws || v != rb.volume {
		return fmt.Errorf("locate %d: last %d@%d volume %d, want %d@%d volume %d", locate, s, p, v, ws, wp, rb.volume)
	}
	if tr, br := fb.Trades(); tr != rb.trades || br != rb.broken {
		return fmt.Errorf("locate %d: trades %d broken %d, want %d %d", locate, tr, br, rb.trades, rb.broken)
	}
	if fb.Incomplete() != rb.incomplete {
		return fmt.Errorf("locate %d: incomplete %v, want %v", locate, fb.Incomplete(), rb.incomplete)
	}
	return nil
}

// compareStats checks every inconsistency counter and the live totals.
func compareStats(bs *Books, r *refBooks) error {
	got := bs.Stats()
	want := r.stats
	got.Messages, want.Messages = 0, 0
	got.UnknownType, got.Malformed = 0, 0
	want.Malformed = 0 // carried over by tests that start the model from the real counters
	want.Orders = uint64(len(r.orders))
	want.Levels = uint64(r.levels)
	want.Overflowed = uint64(r.overflowed)
	if got != want {
		return fmt.Errorf("stats:\n got %+v\nwant %+v", got, want)
	}
	return nil
}

// refClaim is the symbol a Stock Directory message gave a locate, and
// when (refBooks.claimed).
type refClaim struct {
	sym [8]byte
	at  uint64
}

// duplicate reports whether a locate still given locate's symbol was
// given it earlier: the symbol is that one's (Book.Duplicate).
func (r *refBooks) duplicate(locate uint16) bool {
	c, ok := r.claims[locate]
	if !ok {
		return false
	}
	for l, o := range r.claims {
		if l != locate && o.sym == c.sym && o.at < c.at {
			return true
		}
	}
	return false
}
