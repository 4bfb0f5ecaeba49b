package itchgen

// The generator keeps its own small book per symbol so that every order
// event it emits is consistent: deletes, cancels, replaces and executions
// refer to live orders, executions take the order at the front of the queue
// at the best price, and new orders never cross the opposite side. It is
// built from flat arrays (orders in slots reused through a free list, price
// levels as a window of ticks per symbol) so that it costs a few
// nanoseconds per event.

import "github.com/marketfeed/feedhandler/feed/itch"

// window is the number of one-cent price levels a symbol's book spans.
const window = 1024

const none = -1

type order struct {
	ref        uint64
	shares     uint32
	sym        int32
	prev, next int32 // FIFO links within the level
	pos        int32 // index in the symbol's live list
	level      int32
	side       byte
}

type level struct{ head, tail, n int32 }

type symbol struct {
	stock   itch.Symbol
	locate  uint16
	base    uint32 // price of level 0, Price(4)
	fair    int32  // level of the moving fair price
	bestBid int32  // none when no bids
	bestAsk int32  // window when no asks
	halted  bool   // no executions or trades: tradingHalt or opHalt
	weight  float64
	levels  []level // lazily allocated, window entries
	live    []int32 // slots of the symbol's live orders
	// tradingHalt: a Stock Trading Action halted or paused it; opHalt: an
	// Operational Halt halted it on Nasdaq (market code 'Q').
	tradingHalt, opHalt bool
	// lastMatch: the match number of its latest trade not yet broken (0:
	// none), which a Broken Trade message breaks.
	lastMatch uint64
}

func (s *symbol) price(lvl int32) uint32 { return s.base + uint32(lvl)*100 }

type book struct {
	orders []order
	free   []int32
}

func (b *book) alloc() int32 {
	if n := len(b.free); n > 0 {
		i := b.free[n-1]
		b.free = b.free[:n-1]
		return i
	}
	b.orders = append(b.orders, order{})
	return int32(len(b.orders) - 1)
}

// add rests a new order at the tail of its level.
func (b *book) add(s *symbol, sym int32, ref uint64, side byte, lvl int32, shares uint32) int32 {
	if s.levels == nil {
		s.levels = make([]level, window)
		for i := range s.levels {
			s.levels[i] = level{head: none, tail: none}
		}
	}
	i := b.alloc()
	o := &b.orders[i]
	*o = order{ref: ref, shares: shares, sym: sym, prev: none, next: none, pos: int32(len(s.live)), level: lvl, side: side}
	l := &s.levels[lvl]
	if l.tail == none {
		l.head = i
	} else {
		b.orders[l.tail].next = i
		o.prev = l.tail
	}
	l.tail = i
	l.n++
	s.live = append(s.live, i)
	if side == 'B' {
		if lvl > s.bestBid {
			s.bestBid = lvl
		}
	} else if lvl < s.bestAsk {
		s.bestAsk = lvl
	}
	return i
}

// remove takes an order out of the book and frees its slot.
func (b *book) remove(s *symbol, i int32) {
	o := &b.orders[i]
	l := &s.levels[o.level]
	if o.prev == none {
		l.head = o.next
	} else {
		b.orders[o.prev].next = o.next
	}
	if o.next == none {
		l.tail = o.prev
	} else {
		b.orders[o.next].prev = o.prev
	}
	l.n--
	if l.n == 0 {
		if o.side == 'B' && o.level == s.bestBid {
			lv := o.level - 1
			for lv >= 0 && s.levels[lv].n == 0 {
				lv--
			}
			s.bestBid = lv
		} else if o.side == 'S' && o.level == s.bestAsk {
			lv := o.level + 1
			for lv < window && s.levels[lv].n == 0 {
				lv++
			}
			s.bestAsk = lv
		}
	}
	last := s.live[len(s.live)-1]
	s.live[o.pos] = last
	b.orders[last].pos = o.pos
	s.live = s.live[:len(s.live)-1]
	b.free = append(b.free, i)
}
