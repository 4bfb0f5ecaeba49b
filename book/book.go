package book

import (
	"math/bits"
	"unsafe"

	"golang.org/x/sys/cpu"

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
	top    [2]rung
	locate uint16
	known  bool
	state  byte // trading state from 'H': 'H','P','Q','T'; 0 before any
	// changed is, per side, the rank (0: the best level) of the best
	// level that may have changed since the last ClearChanged: the
	// levels above it are as they were then (Changed). 0, the zero
	// value, is every level (a new or emptied book); unchanged, none.
	changed  [2]uint16
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

// Orders returns the number of resting orders in the book: the sum of
// its levels' orders (a walk of the ladders, not kept up by the apply
// path, where the count cost two stores an order).
func (b *Book) Orders() int {
	n := 0
	for _, lad := range b.sides {
		for _, r := range lad.rungs() {
			n += int(b.bs.levels[r.lvl].orders)
		}
	}
	return n
}

// unchanged is Book.changed's value for a side none of whose levels
// changed since ClearChanged.
const unchanged = 1<<16 - 1

// Changed returns, per side, the rank (0: the best level) of the best
// level that may have changed since the last ClearChanged: a level added
// or removed there, or its shares or orders changed. The levels better
// than it are the same levels (price, shares, orders) at the same ranks
// as then, so a publisher that wrote the book's top levels at
// ClearChanged and still holds them rewrites only the ranks from here
// (the handler's Publisher, into a book's shm slot: Book.TopChanged). A
// side with no change gives 65535, past any published depth. The rank
// may be lower than the change's (never higher): a change of shares or
// orders of a level that stays, below the best level, is given as rank 1
// (its exact rank would take a search). A book never cleared, or emptied
// (Books.Reset, a locate given another symbol) since, gives 0 for both
// sides.
//
// Apply keeps it at a compare and a store a level change: it is the
// publisher's, which clears it, one per Books.
func (b *Book) Changed() (bid, ask int) { return int(b.changed[Bid]), int(b.changed[Ask]) }

// ClearChanged marks every level unchanged: a publisher has just written
// the book's top levels (Changed).
func (b *Book) ClearChanged() { b.changed = [2]uint16{unchanged, unchanged} }

// MarkChanged marks every level of both sides changed, as in a new book:
// a publisher whose copy of the levels is gone (a new shm slot) calls it,
// so that Changed tells it to write them all.
func (b *Book) MarkChanged() { b.changed = [2]uint16{} }

// changedAt notes a change of side's level at rank r (0: the best), or
// of a level below it (Changed).
func (b *Book) changedAt(side Side, r uint32) {
	b.changed[side&1] = uint16(min(uint32(b.changed[side&1]), r))
}

// Depth writes the best levels of side into dst, best first (highest bid,
// lowest ask), and returns them. The capacity of dst is the depth limit:
// Depth never grows dst, so it never allocates.
func (b *Book) Depth(side Side, dst []Level) []Level {
	lad := b.sides[side&1].rungs()
	dst = dst[:min(len(lad), cap(dst))]
	for k := range dst {
		dst[k] = b.level(side, lad[len(lad)-1-k])
	}
	return dst
}

// Top writes the best levels of both sides at once, best first: len(bids)
// bids into bids and len(asks) asks into asks, at most the side's levels
// (a shorter side leaves the rest of its slice as it was). It is Depth of
// both sides in one call, for a publisher that sized the two vectors from
// Levels and the depth limit: the handler's Publisher, whose vectors are
// the levels of a book's shm slot.
//
// It is the publish's loop, written for the fewest instructions a level
// (12 on amd64, against 18 and 19 of a slice walk): the ladder is read
// from its array without a slice (rungs' length checks), and a level from
// the pool unchecked (as level: a rung's level is live); a level's key is
// its rung's (insertRung), so the rung gives only the level's index, and
// the level's orders and key, one 8-byte load, become the Level's price
// and orders, one 8-byte store, by a rotate (on either byte order) and the
// price's flip (levelFlip). The two sides are one loop's two turns, the
// flip a register. It walks by offsets
// from the ladder's and the vector's starts, below min(n, len) levels: no
// pointer outside the two arrays is ever formed (checkptr; the GC must not
// see one). In a broken book whose level's key is not its rung's
// (Stats.LadderMismatch, never seen), Top publishes the level's price
// where Best, Depth and AppendDepth give the rung's.
func (b *Book) Top(bids, asks []Level) { b.topFrom(bids, asks, [2]uint16{}, false) }

// TopChanged is Top for memory that holds the book's top levels as they
// were at the last ClearChanged (the handler's Publisher: a book's shm
// slot, written in place): it writes only the ranks from Changed's on,
// into bids[bidRank:] and asks[askRank:], the asks from rank 0 when
// asksMoved (the memory's ask vector is not where it was then: the
// handler's follows its bid vector, which changed length), then
// ClearChanged. The slices' first entries are left as they were.
//
// It is Top's loop (topFrom, which both inline to a call of), each side
// from its rank: the walk starts that many rungs below the ladder's end
// and Levels into the vector, and runs only while the rank is below
// min(n, len), so no pointer outside the two arrays is formed here either.
func (b *Book) TopChanged(bids, asks []Level, asksMoved bool) {
	from := b.changed
	b.changed = [2]uint16{unchanged, unchanged}
	b.topFrom(bids, asks, from, asksMoved)
}

// topFrom is Top and TopChanged: it writes each side's levels from rank
// ranks[side] on (the asks from 0 when asksMoved) into bids and asks at
// the same ranks, below min(levels, len) on each side.
func (b *Book) topFrom(bids, asks []Level, ranks [2]uint16, asksMoved bool) {
	levels := unsafe.Pointer(unsafe.SliceData(b.bs.levels))
	askFrom := uintptr(ranks[Ask])
	if asksMoved {
		askFrom = 0
	}
	dst, flip, from := bids, levelFlip(sideFlip(Bid)), uintptr(ranks[Bid])
	// The side's ladder by a pointer, the ask's after the bid's: the loop
	// keeps neither b nor a side's index in a register.
	side := &b.sides[Bid]
	for {
		lad := *side
		p, q := unsafe.Pointer(lad.p), unsafe.Pointer(unsafe.SliceData(dst))
		// at is the offset of the next rung, to of its Level.
		at, end := (uintptr(lad.n)-from)*unsafe.Sizeof(rung{}), uintptr(min(uint(lad.n), uint(len(dst))))*unsafe.Sizeof(Level{})
		for to := from * unsafe.Sizeof(Level{}); to < end; to += unsafe.Sizeof(Level{}) {
			at -= unsafe.Sizeof(rung{})
			// A live level's index is not negative: read as unsigned (a
			// sign-extending load takes no index register on amd64).
			li := *(*uint32)(unsafe.Add(p, at+unsafe.Offsetof(rung{}.lvl)))
			l := (*priceLevel)(unsafe.Add(levels, uintptr(li)*unsafe.Sizeof(priceLevel{})))
			*(*uint64)(unsafe.Add(q, to)) = bits.RotateLeft64(*(*uint64)(unsafe.Pointer(&l.orders)), 32) ^ flip
			*(*uint64)(unsafe.Add(q, to+8)) = l.shares
		}
		if flip != levelFlip(sideFlip(Bid)) {
			return // the asks done
		}
		dst, flip, from = asks, levelFlip(sideFlip(Ask)), askFrom
		side = (*ladder)(unsafe.Add(unsafe.Pointer(side), unsafe.Sizeof(ladder{}))) // &b.sides[Ask]
	}
}

// sideFlip is what a side's ladder keys are xored with to give prices
// (sideKey): nothing for bids, all bits for asks.
func sideFlip(side Side) uint32 { return -uint32(side & 1) }

// levelFlip is flip where a Level's price lies in the 8 bytes of its
// price and orders read as a uint64: the low half on a little-endian
// machine, the high half on a big-endian one.
func levelFlip(flip uint32) uint64 {
	if cpu.IsBigEndian {
		return uint64(flip) << 32
	}
	return uint64(flip)
}

// Top's 8-byte loads and stores: a level's orders and key, and a Level's
// price and orders, are adjacent and 8-byte aligned, and a Level is 16
// bytes (these fail to build otherwise: a negative constant overflows).
var (
	_ [unsafe.Offsetof(priceLevel{}.key) - unsafe.Offsetof(priceLevel{}.orders) - 4]byte
	_ [4 - (unsafe.Offsetof(priceLevel{}.key) - unsafe.Offsetof(priceLevel{}.orders))]byte
	_ [-(unsafe.Offsetof(priceLevel{}.orders) % 8)]byte
	_ [unsafe.Offsetof(Level{}.Orders) - 4]byte
	_ [4 - unsafe.Offsetof(Level{}.Orders)]byte
	_ [-unsafe.Offsetof(Level{}.Price)]byte
	_ [unsafe.Sizeof(Level{}) - 16]byte
	_ [16 - unsafe.Sizeof(Level{})]byte
)

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
