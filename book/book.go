package book

import (
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// Book is the order book of one instrument. It is owned by its Books and
// follows the same single-writer rule.
//
// The fields every order message touches come first so they share one
// cache line; the struct is 128 bytes so books never straddle lines.
type Book struct {
	sides [2]ladder
	// top is each side's best rung, a copy of the last rung of its
	// ladder while the side has levels: an add at the best price, and a
	// removal that empties the side's only level, find it on this line
	// and leave the ladder's line alone.
	top      [2]rung
	locate   uint16
	known    bool
	state    byte // trading state from 'H': 'H','P','Q','T'; 0 before any
	orders   uint32
	lastTime uint64

	bs     *Books
	symbol itch.Symbol
	regSHO byte // Reg SHO action from 'Y': '0','1','2'; 0 before any
	opHalt byte // operational halt action from 'h': 'H' or 'T'; 0 before any
	// incomplete: an add was dropped for want of capacity since the book
	// was last emptied (Incomplete). In the padding before lastPrice: the
	// struct stays two cache lines (prefetch_amd64.go).
	incomplete bool
	lastPrice  uint32
	lastSize   uint64
	volume     uint64
	trades     uint32 // a day's trades of one instrument fit with room to spare
	broken     uint32
	lastMatch  uint64 // match number of the last trade (0: none or unknown)
	// minMatch: trades under this match number are another instrument's,
	// recorded before the locate was re-assigned (Books.Announce); a
	// Broken Trade of one is unmatched. 0 until then.
	minMatch uint64
}

// Incomplete reports that an order of the book was dropped for want of
// capacity (Config.MaxOrders, MaxLevels: counted in Stats.OrderCapacity,
// LevelCapacity) since the book was last emptied (Books.Reset, a locate
// given another symbol): its levels may lack that order's shares, for as
// long as the order lives, which the books cannot tell.
func (b *Book) Incomplete() bool { return b.incomplete }

// Locate returns the stock locate of the book.
func (b *Book) Locate() uint16 { return b.locate }

// Name returns the symbol without its space padding.
func (b *Book) Name() string {
	n := len(b.symbol)
	for n > 0 && (b.symbol[n-1] == ' ' || b.symbol[n-1] == 0) {
		n--
	}
	return string(b.symbol[:n])
}

// BBO returns the best bid and best ask level; ok is false for an empty side.
func (b *Book) BBO() (bid Level, bidOK bool, ask Level, askOK bool) {
	bid, bidOK = b.Best(Bid)
	ask, askOK = b.Best(Ask)
	return
}

// Best returns the best level of side in O(1).
func (b *Book) Best(side Side) (Level, bool) {
	if b.sides[side&1].n == 0 {
		return Level{}, false
	}
	return b.level(side, b.top[side&1]), true
}

// Crossed reports whether both sides have levels and the best bid is at or
// above the best ask. It compares the sides' best keys (Book.top), so it
// reads neither a ladder nor a level.
func (b *Book) Crossed() bool {
	return b.sides[Bid].n > 0 && b.sides[Ask].n > 0 && b.top[Bid].key >= ^b.top[Ask].key
}

// Levels returns the number of price levels on side.
func (b *Book) Levels(side Side) int { return int(b.sides[side&1].n) }

// Orders returns the number of resting orders in the book.
func (b *Book) Orders() int { return int(b.orders) }

// Depth writes the best levels of side into dst, best first (highest bid,
// lowest ask), and returns them. The capacity of dst is the depth limit:
// Depth never grows dst, so it never allocates.
func (b *Book) Depth(side Side, dst []Level) []Level {
	lad := b.sides[side&1].rungs()
	dst = dst[:min(len(lad), cap(dst))]
	topLevels(b.bs.levels, lad, dst, sideFlip(side))
	return dst
}

// Top writes the best levels of both sides at once, best first: len(bids)
// bids into bids and len(asks) asks into asks, at most the side's levels
// (a shorter side leaves the rest of its slice as it was). It is Depth of
// both sides in one call, for a publisher that sized the two vectors from
// Levels and the depth limit; its loop keeps the level array in registers,
// which Depth's inlined loop reloads for every level.
func (b *Book) Top(bids, asks []Level) {
	levels := b.bs.levels
	topLevels(levels, b.sides[Bid].rungs(), bids, sideFlip(Bid))
	topLevels(levels, b.sides[Ask].rungs(), asks, sideFlip(Ask))
}

// sideFlip is what a side's ladder keys are xored with to give prices
// (sideKey): nothing for bids, all bits for asks.
func sideFlip(side Side) uint32 { return -uint32(side & 1) }

// topLevels writes the best levels of ladder lad into dst, best first,
// each key xor flip as the price (sideKey).
func topLevels(levels []priceLevel, lad []rung, dst []Level, flip uint32) {
	// Walk the ladder down from its best rung, by offset from the start of
	// lad and dst (indexing lad by len(lad)-1-k costs a bounds check and
	// two loads a level): k < min(len(lad), len(dst)), so every rung read
	// and level written is inside its slice, and no pointer outside them
	// is ever formed (checkptr; the GC must not see one).
	p, q := unsafe.Pointer(unsafe.SliceData(lad)), unsafe.Pointer(unsafe.SliceData(dst))
	at, to := len(lad)-1, 0
	for range min(len(lad), len(dst)) {
		r := (*rung)(unsafe.Add(p, at*int(unsafe.Sizeof(rung{}))))
		l := &levels[r.lvl]
		*(*Level)(unsafe.Add(q, to)) = Level{Price: r.key ^ flip, Orders: l.orders, Shares: l.shares}
		at--
		to += int(unsafe.Sizeof(Level{}))
	}
}

// AppendDepth appends up to n best levels of side (all when n <= 0) to dst.
func (b *Book) AppendDepth(side Side, dst []Level, n int) []Level {
	lad := b.sides[side&1].rungs()
	if n <= 0 || n > len(lad) {
		n = len(lad)
	}
	for k := 0; k < n; k++ {
		dst = append(dst, b.level(side, lad[len(lad)-1-k]))
	}
	return dst
}

// OrderInfo describes one resting order.
type OrderInfo struct {
	Ref    uint64
	Side   Side
	Price  uint32
	Shares uint32
}

// Queue writes the orders resting at price on side into dst in time
// priority (first to execute first) and returns them; like Depth it never
// grows dst.
func (b *Book) Queue(side Side, price uint32, dst []OrderInfo) []OrderInfo {
	dst = dst[:0]
	side &= 1
	lad := b.sides[side].rungs()
	i, found := search(b.sides[side], sideKey(side, price))
	if !found {
		return dst
	}
	orders := b.bs.orders
	for oi := b.bs.levels[lad[i].lvl].head; oi != none && len(dst) < cap(dst); oi = orders[oi].next {
		o := &orders[oi]
		dst = append(dst, OrderInfo{Ref: o.ref, Side: o.side, Price: o.price, Shares: o.shares})
	}
	return dst
}

func (b *Book) level(side Side, r rung) Level {
	l := &b.bs.levels[r.lvl]
	return Level{Price: sideKey(side, r.key), Shares: l.shares, Orders: l.orders}
}

// Last returns the price and size of the last printable trade (E, printable
// C, P, Q) that was not broken, and the cumulative printed volume less the
// broken trades. When the last trade is broken and the one before it is no
// longer remembered (Config.TradeMemory, or an earlier print of the same
// match number: Stats.DuplicateMatch), the last trade is 0@0. Reset
// (a rebuild) starts all three again.
func (b *Book) Last() (price uint32, size uint64, volume uint64) {
	return b.lastPrice, b.lastSize, b.volume
}

// Trades returns how many printable trades and broken trades ('B') the
// instrument has seen. A broken trade stays counted in trades; its shares
// come off the volume (see Last).
func (b *Book) Trades() (trades, broken uint64) { return uint64(b.trades), uint64(b.broken) }

// TradingState returns the last Stock Trading Action state ('H' halted,
// 'P' paused, 'Q' quotation only, 'T' trading; 0 before any).
func (b *Book) TradingState() byte { return b.state }

// RegSHO returns the last Reg SHO action ('0','1','2'; 0 before any).
func (b *Book) RegSHO() byte { return b.regSHO }

// OperationalHalt returns the last operational halt action ('H' halted,
// 'T' resumed; 0 before any).
func (b *Book) OperationalHalt() byte { return b.opHalt }

// Timestamp returns the exchange timestamp (ns since midnight) of the last
// message applied to the instrument.
func (b *Book) Timestamp() uint64 { return b.lastTime }

// Order returns the resting order ref of locate (references are each
// instrument's: AddOrder).
func (bs *Books) Order(locate uint16, ref uint64) (o OrderInfo, ok bool) {
	oi := bs.lookup(locate, ref)
	if oi == none {
		return OrderInfo{}, false
	}
	r := &bs.orders[oi]
	return OrderInfo{Ref: r.ref, Side: r.side, Price: r.price, Shares: r.shares}, true
}

// QueueAhead returns how many orders and shares rest ahead of order ref of
// locate at its price level (its queue position); ok is false for an
// unknown ref.
func (bs *Books) QueueAhead(locate uint16, ref uint64) (orders int, shares uint64, ok bool) {
	oi := bs.lookup(locate, ref)
	if oi == none {
		return 0, 0, false
	}
	for p := bs.orders[oi].prev; p != none; p = bs.orders[p].prev {
		orders++
		shares += uint64(bs.orders[p].shares)
	}
	return orders, shares, true
}
