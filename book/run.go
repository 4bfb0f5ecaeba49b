package book

import (
	"encoding/binary"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// ApplyFramed applies the messages of data from offset off, where each is a
// block with a 2-byte big-endian length before it (the framing of a
// BinaryFILE and of a MoldUDP64 packet's message blocks). It applies at most
// limit blocks, each holding a known message type of exactly that type's
// length, and stops at the first other block (a length of 0, a block that
// runs past the end, an unknown type or a length that is not its type's) and
// at the end of data. It returns the offset after the last block applied,
// the prefetch cursor and how many blocks it applied; a caller that wants
// the block it stopped at counted or skipped hands data[next:] to an
// itch.Scanner. The books and counters are those of calling Apply on each
// message in turn.
//
// pf is a second cursor, the offset of a block some way ahead of off
// (PrefetchAhead blocks ahead, as a caller's first call gets by calling
// Prefetch on the blocks it passes over): for each block applied, the block
// at pf is handed to Prefetch and pf moves one block on. It is a hint only:
// a pf that is not on a block boundary costs wasted loads, not wrong books.
func (bs *Books) ApplyFramed(data []byte, off, pf, limit int) (next, nextPF, applied int) {
	if off < 0 || off > len(data) || limit <= 0 {
		return off, pf, 0
	}
	pf = max(pf, off)
	next, nextPF, applied, _, _ = bs.run(unsafe.Pointer(unsafe.SliceData(data)), off, len(data), pf, limit, true)
	return next, nextPF, applied
}

// Apply applies one ITCH message. It returns the locate whose book or state
// changed and changed=true, locate 0 with changed=true for a market-wide
// change (System Event), or changed=false when the message changed nothing
// (other types, or inconsistent input, counted in Stats). Apply never
// panics on any input and allocates nothing in steady state.
func (bs *Books) Apply(m itch.Msg) (locate uint16, changed bool) {
	_, _, _, locate, changed = bs.run(unsafe.Pointer(unsafe.SliceData(m)), 0, len(m), 0, 1, false)
	return locate, changed
}

// run is Apply (framed false: p[off:end] is one message, limit 1) and
// ApplyFramed (framed true) in one loop, so that both take the same path.
// The common cases of the order messages (the order in its home slot; a
// price level that exists, found from the top of the ladder, or a new one;
// a level that does not empty or is the best one) run here without a call,
// the loop's values in registers; anything else (an unknown locate or
// reference, an overflow slot, a capacity limit, a level removed below the
// top, shares over what the order has) goes to the general functions
// (Delete, Replace, AddOrder, ...), which count it. Nothing is changed
// before a message is known to take its common case, so the general
// function starts from the same books.
//
// p[off:end] must lie inside one allocation; every read through p is
// checked against end by hand.
func (bs *Books) run(p unsafe.Pointer, off, end, pf, limit int, framed bool) (next, nextPF, applied int, locate uint16, changed bool) {
	ahead, touched := bs.addAhead, uint64(0)
	for applied < limit {
		var m itch.Msg
		if framed {
			if off+itch.BlockHeaderLen >= end {
				break
			}
			n := int(*(*byte)(unsafe.Add(p, off)))<<8 | int(*(*byte)(unsafe.Add(p, off+1)))
			start := off + itch.BlockHeaderLen // < end
			if n == 0 || n > end-start || n != itch.Length(*(*byte)(unsafe.Add(p, start))) {
				break
			}
			m = itch.Msg(unsafe.Slice((*byte)(unsafe.Add(p, start)), n))
			off = start + n
			if pf+itch.BlockHeaderLen < end { // prefetch the block at pf and step over it
				pn := int(*(*byte)(unsafe.Add(p, pf)))<<8 | int(*(*byte)(unsafe.Add(p, pf+1)))
				if e := pf + itch.BlockHeaderLen + pn; e <= end {
					if q := pf + itch.BlockHeaderLen; pn >= itch.HeaderLen+8 && refAt[*(*byte)(unsafe.Add(p, q))] {
						// Load the order slot now rather than call
						// prefetch: no call, so the loop's values stay in
						// registers. The load's value goes nowhere but
						// touched, so the CPU need not wait for it
						// until it retires.
						touched ^= bs.orders[beUint64(unsafe.Add(p, q+itch.HeaderLen))&bs.homeMask].ref
					}
					pf = e
				}
			}
		} else {
			m = itch.Msg(unsafe.Slice((*byte)(unsafe.Add(p, off)), end-off))
			off = end
		}
		applied++
		locate, changed = 0, false
		if len(m) < itch.HeaderLen {
			bs.stats.Malformed++
			continue
		}
		t := m[0]
		n := itch.Length(t)
		if n == 0 {
			bs.stats.UnknownType++
			continue
		}
		if len(m) < n {
			bs.stats.Malformed++
			continue
		}
		locate = m.Locate()

		// The order to remove (oi, a home slot of b) and the order to add
		// (ref, side, shares, price on b), when the message takes its
		// common case; done after the switch, removal first.
		var (
			b             *Book
			oi            uint64
			remove, add   bool
			ref           uint64
			side          Side
			shares, price uint32
		)
		// Each case reslices m to its type's length (len(m) >= n was
		// checked): one bounds check, and the field reads below need none.
		switch t {
		case itch.TypeAddOrder, itch.TypeAddOrderMPID: // F is A with an attribution after it
			a := itch.AddOrder(m[:itch.AddOrderLen])
			ref, side, shares, price = a.OrderRef(), sideOf(a.Side()), a.Shares(), a.Price()
			if int(locate) < len(bs.books) && bs.books[locate].known {
				b, add = &bs.books[locate], true
			} else {
				changed = bs.AddOrder(locate, ref, side, shares, price) // counts why not
			}
		case itch.TypeOrderDelete:
			r := itch.OrderDelete(m[:itch.OrderDeleteLen]).OrderRef()
			if b, oi = bs.home(locate, r); b != nil {
				remove, changed = true, true
			} else {
				changed = bs.Delete(locate, r)
			}
		case itch.TypeOrderReplace:
			u := itch.OrderReplace(m[:itch.OrderReplaceLen])
			r := u.OriginalOrderRef()
			if b, oi = bs.home(locate, r); b != nil {
				remove, changed = true, true
				add, ref, side, shares, price = true, u.NewOrderRef(), bs.orders[oi].side, u.Shares(), u.Price()
			} else {
				changed = bs.Replace(locate, r, u.NewOrderRef(), u.Shares(), u.Price())
			}
		case itch.TypeOrderExecuted:
			e := itch.OrderExecuted(m[:itch.OrderExecutedLen])
			r, sh := e.OrderRef(), e.ExecutedShares()
			if b, oi = bs.home(locate, r); b != nil && sh != 0 && sh <= bs.orders[oi].shares {
				o := &bs.orders[oi]
				bs.trade(b, o.price, uint64(sh), e.MatchNumber())
				remove = bs.take(o, sh)
				changed = true
			} else {
				changed = bs.Execute(locate, r, sh, e.MatchNumber())
			}
		case itch.TypeOrderCancel:
			x := itch.OrderCancel(m[:itch.OrderCancelLen])
			r, sh := x.OrderRef(), x.CancelledShares()
			if b, oi = bs.home(locate, r); b != nil && sh != 0 && sh <= bs.orders[oi].shares {
				remove = bs.take(&bs.orders[oi], sh)
				changed = true
			} else {
				changed = bs.Cancel(locate, r, sh)
			}
		case itch.TypeOrderExecutedWithPrice:
			c := itch.OrderExecutedWithPrice(m[:itch.OrderExecutedWithPriceLen])
			changed = bs.ExecuteWithPrice(locate, c.OrderRef(), c.ExecutedShares(), c.ExecutionPrice(), c.MatchNumber(), c.Printable() == 'Y')
		case itch.TypeTrade:
			q := itch.Trade(m[:itch.TradeLen])
			changed = bs.Trade(locate, q.Price(), uint64(q.Shares()), q.MatchNumber())
		case itch.TypeCrossTrade:
			q := itch.CrossTrade(m[:itch.CrossTradeLen])
			changed = bs.Trade(locate, q.CrossPrice(), q.Shares(), q.MatchNumber())
		case itch.TypeBrokenTrade:
			changed = bs.BreakTrade(locate, itch.BrokenTrade(m).MatchNumber()) // false also for locate 0: no lastTime to set
		case itch.TypeStockDirectory:
			changed = bs.Announce(locate, itch.StockDirectory(m).Stock())
		case itch.TypeStockTradingAction:
			if b := bs.book(locate); b != nil {
				b.state = itch.StockTradingAction(m).TradingState()
				changed = true
			}
		case itch.TypeOperationalHalt:
			if b := bs.book(locate); b != nil {
				if h := itch.OperationalHalt(m); h.MarketCode() == 'Q' {
					b.opHalt = h.HaltAction()
					changed = true
				}
			}
		case itch.TypeRegSHO:
			if b := bs.book(locate); b != nil {
				b.regSHO = itch.RegSHO(m).Action()
				changed = true
			}
		case itch.TypeSystemEvent:
			bs.event = itch.SystemEvent(m).EventCode()
			bs.eventTime = m.Timestamp()
			locate, changed = 0, true
			continue // market-wide: no book's lastTime
		}

		if remove { // bs.remove of a home slot, by hand
			orders := bs.orders
			o := &orders[oi]
			li := o.level
			l := &bs.levels[li]
			prev, next := o.prev, o.next
			if prev != none {
				orders[prev].next = next
			} else {
				l.head = next
			}
			if next != none {
				orders[next].prev = prev
			} else {
				l.tail = prev
			}
			l.orders--
			l.shares -= uint64(o.shares)
			o.shares = 0
			b.orders--
			bs.stats.Orders--
			if l.orders == 0 {
				sd := o.side & 1
				if lad := b.sides[sd]; len(lad) > 0 && lad[len(lad)-1] == (rung{key: l.key, lvl: li}) {
					b.sides[sd] = lad[:len(lad)-1] // the best level: no call
					l.head = bs.levelFree
					bs.levelFree = li
					bs.stats.Levels--
				} else {
					b.removeRung(bs, sd, l.key, li)
				}
			}
		}
		if add { // bs.add, by hand, for its common case (a valid side and size, the home slot free, no order in an overflow slot, capacity left, the level within 8 rungs of the top or a new one); anything else goes to add
			ok := true
			oi := int32(ref & bs.homeMask)
			o := &bs.orders[oi]
			lad := b.sides[side&1]
			key := sideKey(side, price)
			i := len(lad)
			for ; i > 0 && lad[i-1].key > key && len(lad)-i < 8; i-- {
			}
			if side > Ask || shares == 0 || o.shares != 0 || bs.stats.Overflowed != 0 || bs.stats.Orders >= bs.maxOrders ||
				(i > 0 && lad[i-1].key > key) {
				ok = bs.add(b, ref, side, shares, price)
			} else {
				if i == 0 || lad[i-1].key != key {
					if bs.stats.Levels >= bs.maxLevels {
						ok = bs.add(b, ref, side, shares, price) // counts it
						goto added
					}
					lad = b.insertRung(bs, side, i, key)
				} else {
					i--
				}
				li := lad[i].lvl
				l := &bs.levels[li]
				o.ref = ref
				o.price = price
				o.shares = shares
				o.prev = l.tail
				o.next = none
				o.locate = b.locate
				o.side = side
				o.level = li
				if l.tail != none {
					bs.orders[l.tail].next = oi
				} else {
					l.head = oi
				}
				l.tail = oi
				l.orders++
				l.shares += uint64(shares)
				b.orders++
				bs.stats.Orders++
				// References grow through the day: start loading the
				// home slots of the references addPrefetch ahead, eight
				// at a time (one call per eight references).
				if a := ref + addPrefetch; a >= ahead || ahead-a > 2*addPrefetch {
					prefetchSpan(uintptr(unsafe.Pointer(&bs.orders[a&bs.homeMask])))
					ahead = a + 8
				}
			}
		added:
			if t != itch.TypeOrderReplace {
				changed = ok // a replace changed the book by its removal
			}
		}
		if changed {
			bs.books[locate].lastTime = m.Timestamp()
		}
	}
	bs.stats.Messages += uint64(applied)
	bs.addAhead, bs.touched = ahead, touched
	return off, pf, applied, locate, changed
}

// home returns the book of locate and the home slot of ref when ref is a
// live order of that book in its home slot: the common case of a message
// naming an order, which run then applies itself. Otherwise it returns nil
// and counts nothing.
func (bs *Books) home(locate uint16, ref uint64) (*Book, uint64) {
	h := ref & bs.homeMask
	if int(locate) >= len(bs.books) {
		return nil, h
	}
	b := &bs.books[locate]
	o := &bs.orders[h]
	if !b.known || o.ref != ref || o.shares == 0 || o.locate != locate {
		return nil, h
	}
	return b, h
}

// take takes 0 < shares <= o.shares off live order o and reports whether
// that leaves nothing, when the caller removes it.
func (bs *Books) take(o *order, shares uint32) bool {
	if shares == o.shares {
		return true
	}
	o.shares -= shares
	bs.levels[o.level].shares -= uint64(shares)
	return false
}

// beUint64 reads a big-endian uint64 at p.
func beUint64(p unsafe.Pointer) uint64 {
	return binary.BigEndian.Uint64(unsafe.Slice((*byte)(p), 8))
}
