package book

import (
	"fmt"
	"iter"
	"math/bits"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// Side of the book.
type Side uint8

const (
	Bid Side = 0 // buy orders, 'B'
	Ask Side = 1 // sell orders, 'S'
)

// SideOf maps an ITCH buy/sell indicator to a Side; ok is false for any
// other byte.
func SideOf(indicator byte) (s Side, ok bool) {
	switch indicator {
	case 'B':
		return Bid, true
	case 'S':
		return Ask, true
	}
	return 0, false
}

func (s Side) String() string {
	if s == Bid {
		return "bid"
	}
	return "ask"
}

// Level is one aggregated price level (16 bytes, no padding).
type Level struct {
	Price  uint32 // ITCH price, 4 implied decimals
	Orders uint32 // number of resting orders at Price
	Shares uint64 // total shares resting at Price
}

const none = -1

// order is one resting order; 32 bytes, two per cache line, no pointers.
// A slot is live when shares > 0.
type order struct {
	ref    uint64
	price  uint32
	shares uint32
	prev   int32 // FIFO neighbours in the level, none at the ends
	next   int32 // also the free list link of overflow slots
	locate uint16
	side   Side
	_      uint8
	level  int32 // its price level: index in Books.levels
}

// rung is one entry of a side's ladder: the levels of a side sorted by key,
// best last. key is the price for bids and ^price for asks, so a larger key
// is always a better price. The ladder holds only the key and where the
// level is, so a search reads 8 bytes a level and a level that empties
// moves 8 bytes per level above it.
type rung struct {
	key uint32
	lvl int32 // index in Books.levels; links the free arrays of the ladder block
}

// priceLevel is one live price level; 32 bytes, two per cache line. It
// stays where it is while it lives, so an order reaches its level in one
// load, whatever levels are added or removed around it. Its orders form an
// intrusive FIFO head..tail.
type priceLevel struct {
	shares uint64
	orders uint32
	key    uint32 // as in its rung
	head   int32  // oldest order; the free list link of a free level
	tail   int32  // newest order
	_      uint64
}

func sideKey(s Side, price uint32) uint32 {
	return price ^ -uint32(s&1) // ^price for asks, without a branch
}

// Books holds the order books of many instruments, indexed by stock locate.
// One goroutine writes (Apply and the order methods); readers must run on the
// same goroutine or be synchronized by the caller.
type Books struct {
	// orders[:home] are home slots: the order with reference r lives at
	// r&homeMask when that slot was free when it was added (Nasdaq references
	// are dense and increasing, so this is nearly always). The others live
	// in orders[home:], found through the ovf hash table.
	orders    []order
	homeMask  uint64
	ovf       []uint64 // overflow table: 0 empty, else (order index+1)<<32 | low 32 bits of ref
	ovfMask   uint64
	ovfFree   int32
	maxOrders uint64
	maxLevels uint64
	// addLimit is maxOrders while no order is in an overflow slot, else
	// 0: add's one compare of the live orders with it sends an add to
	// addRare both when the table is full and when a duplicate must be
	// looked for in the overflow table (ovfCount keeps it).
	addLimit  uint64
	books     []Book // index = locate
	levels    []priceLevel
	levelUsed int32      // levels[:levelUsed] have been handed out
	levelFree int32      // first free level below levelUsed, linked through head; none when none
	trades    []tradeRec // the last trades by match number, for broken trades
	tradeMask uint64
	ladders   ladders // the rung arrays of every book's ladders
	// bookHigh bounds the books that may differ from their state after
	// Reset: books[bookHigh:] were not announced since (Reset touches
	// only books[:bookHigh]).
	bookHigh int
	// tradesUsed: a trade was remembered since the last Reset (Reset
	// clears the trade memory only then).
	tradesUsed bool
	// maxMatch is the highest match number remembered since the last
	// Reset: a re-assigned locate's book forgets trades up to it.
	maxMatch  uint64
	claims    claims // which locate holds each symbol (Book.Duplicate)
	stats     Stats
	err       error
	broken    uint64 // broken trades without a locate
	event     byte   // last system event code
	eventTime uint64
}

// New allocates every order slot and book that cfg asks for.
func New(cfg Config) (*Books, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	home := cfg.RefTableSize
	ovfSlots := 1 << bits.Len(uint(2*cfg.Overflow-1))
	bs := &Books{
		orders:    make([]order, 1+home+cfg.Overflow)[1:], // a spare slot before orders[0] (slot)
		homeMask:  uint64(home - 1),
		ovf:       make([]uint64, ovfSlots),
		ovfMask:   uint64(ovfSlots - 1),
		ovfFree:   int32(home),
		maxOrders: uint64(cfg.MaxOrders),
		maxLevels: uint64(cfg.MaxLevels),
		books:     make([]Book, cfg.MaxLocates+1),
		trades:    make([]tradeRec, cfg.TradeMemory),
		tradeMask: uint64(cfg.TradeMemory - 1),
		ladders:   ladders{mem: make([]rung, ladderRungs(cfg.MaxLevels))},
		levels:    make([]priceLevel, cfg.MaxLevels),
		claims:    newClaims(cfg.MaxLocates + 1),
	}
	prepare(bs.orders)
	prepare(bs.ovf)
	prepare(bs.trades)
	prepare(bs.ladders.mem)
	prepare(bs.levels)
	bs.bookHigh = len(bs.books)
	bs.resetOrders()
	bs.Reset()
	return bs, nil
}

// Reset empties every book and forgets every locate, as at the start of a
// day, keeping the storage. The counters of Stats (and BrokenWithoutLocate)
// are kept: they count everything given to Apply since New.
//
// It runs on the writer's thread (a snapshot's rebuild, a session change),
// so its cost is what the books hold, not what they could hold: books
// never announced since the last Reset are not touched, the trade memory is
// cleared only if a trade was remembered, and a few live orders (none in
// an overflow slot) are freed one by one instead of clearing the whole
// order table (hundreds of MiB by default, 7 to 10 ms here). A late join's
// rebuild, on books that have seen nothing yet, costs microseconds.
func (bs *Books) Reset() {
	if !bs.freeLive() {
		bs.resetOrders()
	}
	if bs.tradesUsed {
		clear(bs.trades)
		bs.tradesUsed = false
	}
	bs.maxMatch = 0
	bs.claims.reset()
	bs.levelUsed, bs.levelFree = 0, none
	for i := range bs.books[:bs.bookHigh] {
		bs.forget(uint16(i), 0)
	}
	bs.bookHigh = 0
	// The counters run on (they are exported as monotonic counters, and a
	// rebuild must not erase the bad input seen before it); only the
	// gauges describe the emptied books.
	bs.stats.Orders, bs.stats.Levels = 0, 0
	bs.ovfCount(0)
	bs.err = nil
	bs.event, bs.eventTime = 0, 0
}

// resetOrders empties the whole order table: every slot free, the
// overflow table empty and its slots in one free list.
func (bs *Books) resetOrders() {
	home := int(bs.homeMask + 1)
	clear(bs.orders)
	clear(bs.ovf)
	for i := home; i < len(bs.orders); i++ {
		bs.orders[i].next = int32(i + 1)
	}
	bs.orders[len(bs.orders)-1].next = none
	bs.ovfFree = int32(home)
}

// freeLiveDivisor: Reset frees the live orders one by one when there are at
// most one per freeLiveDivisor slots of the order table. Each is about a
// cache miss (100 ns at worst) against the table's clearing at tens of GB/s
// (32 bytes a slot), so at 1/256 the walk costs at most about as much.
const freeLiveDivisor = 256

// freeLive frees every live order by walking the books' levels, when
// that is cheaper than clearing the table (see freeLiveDivisor) and no
// order is in an overflow slot (the overflow table is then empty and its
// free list whole). A slot is free when its shares are 0. It reports
// whether it did; a walk that does not meet exactly the orders the books
// count (a broken invariant; one that meets more stops there) reports
// false, and Reset clears the whole table.
func (bs *Books) freeLive() bool {
	if bs.stats.Overflowed != 0 || bs.stats.Orders > uint64(len(bs.orders)/freeLiveDivisor) {
		return false
	}
	left := bs.stats.Orders
	for i := range bs.books[:bs.bookHigh] {
		for _, lad := range bs.books[i].sides {
			for _, r := range lad.rungs() {
				for oi := bs.levels[r.lvl].head; oi != none; oi = bs.orders[oi].next {
					if left == 0 {
						return false
					}
					bs.orders[oi].shares = 0
					left--
				}
			}
		}
	}
	return left == 0
}

// Stats returns a copy of the counters.
func (bs *Books) Stats() Stats { return bs.stats }

// LocatesReassigned returns Stats().LocateReassigned without copying the
// counters (a publisher checks it every batch).
func (bs *Books) LocatesReassigned() uint64 { return bs.stats.LocateReassigned }

// Err returns the first capacity error met (wrapping ErrOrderCapacity,
// ErrLevelCapacity or ErrLocateCapacity), or nil. Later ones are only counted.
func (bs *Books) Err() error { return bs.err }

// SystemEvent returns the last System Event code ('O','S','Q','M','E','C'),
// 0 before any, and its timestamp.
func (bs *Books) SystemEvent() (code byte, timestamp uint64) { return bs.event, bs.eventTime }

// BrokenWithoutLocate returns how many Broken Trade messages came with
// locate 0 (seen from generators and some feeds): they cannot be attributed
// to an instrument and are not counted as inconsistencies.
func (bs *Books) BrokenWithoutLocate() uint64 { return bs.broken }

// Book returns the book of locate, or nil when the locate was never
// announced by a Stock Directory message.
func (bs *Books) Book(locate uint16) *Book {
	if int(locate) >= len(bs.books) || !bs.books[locate].known {
		return nil
	}
	return &bs.books[locate]
}

// All iterates the announced instruments in locate order.
func (bs *Books) All() iter.Seq[*Book] {
	return func(yield func(*Book) bool) {
		for i := range bs.books {
			if bs.books[i].known && !yield(&bs.books[i]) {
				return
			}
		}
	}
}

// Announce makes locate known with symbol (the Stock Directory message).
// It returns false if locate is 0 or above Config.MaxLocates. Locate 0
// names no instrument (market-wide messages carry it), so a directory
// entry for it is bad input, counted as Malformed; a locate above the
// maximum is the configuration's limit, counted as LocateCapacity.
//
// A locate already known under the same symbol stays as it is (a snapshot
// and the feed both announce it). A symbol that another locate holds in
// the session (given it by an earlier Stock Directory message, and not
// given another since) is bad input too: counted (DuplicateSymbol), and
// the book is kept but is not the symbol's (Book.Duplicate). Under another symbol it is bad input:
// a locate names one instrument for the whole session, so the session
// changed unseen or a snapshot is of another one. It is counted
// (LocateReassigned) and the book starts empty under the new symbol: the
// old instrument's orders, last sale and states are not the new one's.
func (bs *Books) Announce(locate uint16, symbol itch.Symbol) bool {
	if locate == 0 {
		bs.stats.Malformed++
		return false
	}
	if int(locate) >= len(bs.books) {
		bs.capacity(&bs.stats.LocateCapacity, ErrLocateCapacity, uint64(locate))
		return false
	}
	b := &bs.books[locate]
	if b.known && b.symbol != symbol {
		bs.stats.LocateReassigned++
		bs.empty(b)
	}
	b.known = true
	b.symbol = symbol
	bs.bookHigh = max(bs.bookHigh, int(locate)+1)
	if bs.claims.give(locate, symbol) {
		bs.stats.DuplicateSymbol++
	}
	return true
}

// Withdraw ends locate's instrument when a Stock Directory message gave the
// locate a symbol the books are not to keep: a symbol filter in front of
// them (the handler's symbols) left the message out. For a known locate it
// is Announce's re-assignment, counted as LocateReassigned and the book
// emptied, its trades forgotten, and the locate is unknown again (Book
// returns nil) until it is announced. It reports whether the locate was
// known.
func (bs *Books) Withdraw(locate uint16) bool {
	if int(locate) >= len(bs.books) || !bs.books[locate].known {
		return false
	}
	bs.stats.LocateReassigned++
	bs.empty(&bs.books[locate]) // forgets the locate: unknown
	bs.claims.give(locate, itch.Symbol{})
	return true
}

// empty removes every order of b and forgets its trades and states, as
// Reset does for all books. Each removal takes the best level's oldest
// order, so the ladder shrinks from its end. The trades remembered for
// the locate so far are the old instrument's: a Broken Trade of one must
// not take shares off the new one's volume, so every match number up to
// the highest seen is forgotten for it (minMatch), without a walk of the
// trade memory.
func (bs *Books) empty(b *Book) {
	for side := range b.sides {
		for b.sides[side].n > 0 {
			bs.remove(b, bs.levels[b.top[side].lvl].head)
		}
	}
	bs.forget(b.locate, bs.maxMatch+1)
}

// forget makes the book of locate new but for its storage (its ladders'
// capacity): unknown, with no orders, trades or states, forgetting match
// numbers under minMatch (0: none). Its orders must be gone from the order
// table already.
func (bs *Books) forget(locate uint16, minMatch uint64) {
	b := &bs.books[locate]
	if b.incomplete {
		bs.stats.Incomplete--
	}
	l0, l1 := b.sides[0], b.sides[1]
	l0.n, l1.n = 0, 0
	*b = Book{bs: bs, locate: locate, sides: [2]ladder{l0, l1}, minMatch: minMatch}
}

func (bs *Books) capacity(counter *uint64, sentinel error, what uint64) {
	*counter++
	if bs.err == nil {
		bs.err = fmt.Errorf("apply book message (%d): %w", what, sentinel)
	}
}

// dropped marks b incomplete after an add dropped for want of capacity.
// It reports whether that changed the book as published: the first drop
// flags it (Book.Incomplete), so its snapshot goes out with the flag at
// once rather than at the book's next change.
func (bs *Books) dropped(b *Book) bool {
	if b.incomplete {
		return false
	}
	b.incomplete = true
	bs.stats.Incomplete++
	return true
}

// book returns the announced book of locate or counts why there is none.
func (bs *Books) book(locate uint16) *Book {
	if int(locate) >= len(bs.books) {
		bs.stats.LocateCapacity++
		return nil
	}
	b := &bs.books[locate]
	if !b.known {
		bs.stats.UnknownLocate++
		return nil
	}
	return b
}

// lookup returns the index of live order ref of locate, or none. An
// order is its instrument's: the same reference under two locates is two
// orders (Books.AddOrder).
func (bs *Books) lookup(locate uint16, ref uint64) int32 {
	h := ref & bs.homeMask
	if o := &bs.orders[h]; o.ref == ref && o.shares != 0 && o.locate == locate {
		return int32(h)
	}
	return bs.lookupOverflow(locate, ref)
}

// lookupOverflow is lookup for an order not in its home slot (find does
// the home slot check itself and calls only this).
func (bs *Books) lookupOverflow(locate uint16, ref uint64) int32 {
	if bs.stats.Overflowed == 0 {
		return none
	}
	_, oi := bs.ovfProbe(locate, ref)
	return oi
}

// ovfProbe looks order ref of locate up in the overflow table. It returns
// the order index, or none and the empty slot where it would be inserted.
func (bs *Books) ovfProbe(locate uint16, ref uint64) (slot uint64, idx int32) {
	mask := bs.ovfMask
	tab := bs.ovf
	lo := uint32(ref)
	for i := ref & mask; ; i = (i + 1) & mask {
		s := tab[i]
		if s == 0 {
			return i, none
		}
		if uint32(s) == lo {
			idx := int32(s>>32) - 1
			if o := &bs.orders[idx]; o.ref == ref && o.locate == locate {
				return i, idx
			}
		}
	}
}

// ovfDelete removes the overflow table entry at slot i, shifting later
// entries of its probe run back so lookups never need tombstones.
func (bs *Books) ovfDelete(i uint64) {
	mask := bs.ovfMask
	tab := bs.ovf
	for {
		j := i
		for {
			j = (j + 1) & mask
			s := tab[j]
			if s == 0 {
				tab[i] = 0
				return
			}
			home := uint64(uint32(s)) & mask // mask < 1<<32: low bits of ref suffice
			// The entry at j may move to i unless its home lies cyclically in (i, j].
			if (i <= j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
				tab[i] = s
				i = j
				break
			}
		}
	}
}

// AddOrder adds a resting order (A, F). It reports whether the book changed.
//
// Order references are each instrument's: an add of a reference live
// under another locate adds a second order, and an execute, cancel,
// delete or replace finds only its own locate's (an order of another
// locate is an unknown reference). ITCH 5.0 makes references unique in
// the day across instruments, so either is bad input; the handler's
// shards, which each hold some locates' books and never look into
// another's, see it so, and Books sees it as they do: an instrument's
// book is made of its own messages alone, whatever shares its Books.
func (bs *Books) AddOrder(locate uint16, ref uint64, side Side, shares, price uint32) bool {
	b := bs.book(locate)
	if b == nil {
		return false
	}
	return bs.add(b, ref, side, shares, price)
}

func (bs *Books) add(b *Book, ref uint64, side Side, shares, price uint32) bool {
	if side > Ask {
		bs.stats.BadSide++
		return false
	}
	if shares == 0 {
		bs.stats.ZeroShares++
		return false
	}
	oi := int32(ref & bs.homeMask)
	o := slot(bs.orders, oi) // homeMask < len(bs.orders)
	if o.shares != 0 || bs.stats.Orders >= bs.addLimit {
		// Seldom (one test for the cases): out of line, with every
		// value the rest of add needs handed back (bs and b returned,
		// the order's fields read from its slot, which addRare wrote),
		// so that none stays live across the call. When the checks and
		// their calls were here, the values live across those calls
		// (the arguments, the slot and its index, whether it was taken,
		// the overflow table's slot) were stored to the frame on entry
		// to every add: a spill goes where it dominates every reload,
		// and insertRung's grow, the other call add makes, reloads
		// them too. Now only the grow reloads, and the spills go with
		// it. (This comment is as long as it is so that the lines below
		// keep their places in add: default.pgo names the search and
		// insertRung calls by their lines within the function.)
		var done, changed bool
		if bs, b, oi, o, done, changed = bs.addRare(b, oi, o, ref, side, shares, price); done {
			return changed
		}
		ref, price, shares, side = o.ref, o.price, o.shares, o.side
	}
	// The order's own fields now (field by field: see below), so that fewer values stay live.
	o.ref, o.price, o.shares, o.locate, o.side = ref, price, shares, b.locate, side
	// An add at the best price (Book.top) reads no rung; a new best goes at the ladder's end
	// unsearched. (default.pgo finds search and insertRung by these lines: it inlines them.)
	key, li := sideKey(side, price), b.top[side].lvl
	if top, n := b.top[side], b.sides[side].n; n == 0 || top.key != key {
		i, found := int(n), false
		if n > 0 && top.key > key {
			i, found = search(b.sides[side], key)
		}
		if !found {
			if bs.stats.Levels >= bs.maxLevels {
				// the order written above is dropped, its slot freed
				return bs.levelDropped(b, oi)
			}
			b.insertRung(bs, side, i, key)
		}
		li = b.sides[side].at(uint32(i)).lvl
		b.changedAt(side, b.sides[side].n-1-uint32(i)) // the level's rank (a new best's 0)
	} else {
		b.changed[side] = 0 // the best level's
	}
	l := level(bs.levels, li) // the top rung's or the ladder's
	// Field by field, not a composite literal: the literal was built on the stack with narrow
	// stores and copied by 16-byte loads they cannot forward to (a stall on every add).
	tail, head := l.tail, l.head
	o.prev = tail
	o.next = none
	o.level = li
	// As remove unlinks: without a branch on whether the level was empty
	// (a new level, half the adds on a day of 5,000 instruments), the link
	// through none written to the spare slot before orders[0] (slot).
	slot(bs.orders, tail).next = oi
	if tail == none {
		head = oi
	}
	l.head, l.tail = head, oi
	l.orders++
	l.shares += uint64(shares)
	bs.stats.Orders++
	// References grow through the day: start loading the home slot of a reference a few adds
	// ahead, addPrefetch slots past this one, so that add finds it in cache (a hint, never a
	// fault: past the last home slot it loads an overflow slot, or nothing of the table's).
	prefetch(uintptr(unsafe.Pointer(o)) + addPrefetch*unsafe.Sizeof(order{}))
	return true
}

// ovfClaim takes a free overflow slot for ref, whose home slot is taken,
// and enters it in the overflow table at ovfSlot (ovfProbe's).
func (bs *Books) ovfClaim(ovfSlot, ref uint64) (int32, *order) {
	oi := bs.ovfFree
	o := &bs.orders[oi]
	bs.ovfFree = o.next
	bs.ovf[ovfSlot] = uint64(oi+1)<<32 | uint64(uint32(ref))
	bs.ovfCount(bs.stats.Overflowed + 1)
	return oi, o
}

// ovfCount sets the count of orders in overflow slots (Stats.Overflowed)
// to n, and add's limit with it (addLimit).
func (bs *Books) ovfCount(n uint64) {
	bs.stats.Overflowed = n
	bs.addLimit = bs.maxOrders
	if n != 0 {
		bs.addLimit = 0
	}
}

// addRare is add's seldom case: a home slot taken (a duplicate, or an
// order for the overflow table), orders already in the overflow table (a
// duplicate must be looked for there), or the order table full. It counts
// and drops the add (done, and whether that changed the book as
// published), or returns the slot the order goes to with the order's own
// fields written (an overflow slot is claimed: levelDropped gives it back
// if no level can be had). bs and b come back unchanged, so that add
// holds no value across the call.
//
//go:noinline
func (bs *Books) addRare(b *Book, oi int32, o *order, ref uint64, side Side, shares, price uint32) (*Books, *Book, int32, *order, bool, bool) {
	homeTaken, ovfSlot := o.shares != 0, uint64(0)
	if homeTaken && o.ref == ref && o.locate == b.locate {
		bs.stats.DuplicateAdd++
		return bs, b, oi, o, true, false
	}
	if idx := int32(none); homeTaken || bs.stats.Overflowed != 0 {
		if ovfSlot, idx = bs.ovfProbe(b.locate, ref); idx != none {
			bs.stats.DuplicateAdd++
			return bs, b, oi, o, true, false
		}
	}
	if bs.stats.Orders >= bs.maxOrders || (homeTaken && bs.ovfFree == none) {
		bs.capacity(&bs.stats.OrderCapacity, ErrOrderCapacity, ref)
		return bs, b, oi, o, true, bs.dropped(b)
	}
	if homeTaken { // an overflow slot, given back if no level can be had
		oi, o = bs.ovfClaim(ovfSlot, ref)
	}
	o.ref, o.price, o.shares, o.locate, o.side = ref, price, shares, b.locate, side
	return bs, b, oi, o, false, false
}

// levelDropped drops the add of order oi, written but not linked, for
// want of a level (LevelCapacity): the slot is free again, and an overflow
// slot (an index above homeMask) goes back to the table and the free list
// as it came (ovfClaim's undone: the same table, found again by the order's
// reference and locate, deletion shifting back what the entry's insertion
// did not move).
//
//go:noinline
func (bs *Books) levelDropped(b *Book, oi int32) bool {
	o := slot(bs.orders, oi)
	if uint64(oi) > bs.homeMask {
		ovfSlot, _ := bs.ovfProbe(o.locate, o.ref)
		bs.ovfDelete(ovfSlot)
		bs.ovfFree = oi // o.next is still the free list's next
		bs.ovfCount(bs.stats.Overflowed - 1)
	}
	o.shares = 0
	bs.capacity(&bs.stats.LevelCapacity, ErrLevelCapacity, o.ref)
	return bs.dropped(b)
}

// addPrefetch is how many references ahead add prefetches a home slot:
// about a dozen adds ahead at Nasdaq's (and the generator's) reference
// spacing, enough to hide a miss to memory; 8 to 128 measure the same.
const addPrefetch = 32

// search finds key in a ladder: its index and true, or the index where it
// would be inserted and false. Most activity is near the top (the end), so
// it walks down up to searchWalk rungs before bisecting the ones below. The
// walk tests one bound a rung (it stops at the first key not above key, and
// only then tells found from not), not a step count and two keys.
func search(l ladder, key uint32) (int, bool) {
	i := l.n
	lo := i - min(i, searchWalk)
	for i > lo {
		if k := l.at(i - 1).key; k <= key {
			if k == key {
				return int(i - 1), true
			}
			return int(i), false
		}
		i--
	}
	// every rung walked is above key: key is below rung lo
	hi := lo
	lo = 0
	for lo < hi {
		m := (lo + hi) >> 1
		if l.at(m).key < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return int(lo), lo < i && l.at(lo).key == key
}

// searchWalk is how many rungs search walks down from the top before it
// bisects.
const searchWalk = 9

// insertRung inserts a new empty level with key at index i of side's
// ladder of b. The caller has checked Config.MaxLevels, so a level is
// free. It takes bs rather than read b.bs: that is on the book's second
// cache line, which a book's order messages otherwise leave alone (a miss
// on every new level with thousands of books).
func (b *Book) insertRung(bs *Books, side Side, i int, key uint32) {
	li := bs.levelFree
	if li != none {
		bs.levelFree = level(bs.levels, li).head
	} else {
		li = bs.levelUsed
		bs.levelUsed++
	}
	l := level(bs.levels, li)
	l.shares, l.orders, l.key, l.head, l.tail = 0, 0, key, none, none
	lad := b.sides[side]
	if lad.n == lad.c { // full (or none yet): the array's address changes
		b.setLadder(side, bs.ladders.grow(lad.rungs()))
		lad = b.sides[side]
	}
	// n < lad.c and i <= n: rungs i..n-1 move up one, unchecked
	n := lad.n
	for j := n; j > uint32(i); j-- { // usually none or a few rungs: cheaper than a copy call
		lad.set(j, lad.at(j-1))
	}
	lad.set(uint32(i), rung{key: key, lvl: li})
	b.sides[side].n = n + 1 // not setLadder: the same array, no pointer written
	b.top[side] = lad.at(n)
	bs.stats.Levels++
}

// popBest takes the best rung off side's ladder of b, which holds n > 0
// rungs. The ladder is read only when levels are left, for the next best.
func (b *Book) popBest(side Side, n uint32) {
	n--
	b.sides[side].n = n
	b.changed[side] = 0
	if n > 0 {
		b.top[side] = b.sides[side].at(n - 1)
	}
}

// removeRung takes the empty level li with key out of side's ladder and
// frees it. Levels empty mostly near the top (the end), so it searches from
// there. A key missing from the ladder, or a rung with key that is not
// li's, is a broken invariant (never seen): it is counted
// (Stats.LadderMismatch), the rung that refers to li, if any, is taken out,
// and li is freed all the same, so that the level pool does not leak.
func (b *Book) removeRung(bs *Books, side Side, key uint32, li int32) {
	lad := b.sides[side]
	i, found := search(lad, key)
	if !found || lad.at(uint32(i)).lvl != li { // found: i < n
		bs.stats.LadderMismatch++
		i, found = rungOf(lad.rungs(), li)
	}
	if found { // rungs i+1..n-1 move down one, unchecked; the array stays
		n := lad.n - 1
		b.changedAt(side, n-uint32(i))   // the level's rank
		for j := uint32(i); j < n; j++ { // usually none or a few rungs: cheaper than a copy call
			lad.set(j, lad.at(j+1))
		}
		b.sides[side].n = n
		if n > 0 {
			b.top[side] = lad.at(n - 1)
		}
	}
	bs.freeLevel(li)
}

// levelChanged notes a change of the shares or orders of level li of
// side, which stays: rank 0 if it is the best level, else 1 (its rank is
// not known without a search: Changed may be lower than the change's).
// It takes shares off *levelShares (reduce's; remove's has taken them).
func (b *Book) levelChanged(side Side, li int32, levelShares *uint64, shares uint32) {
	*levelShares -= uint64(shares)
	r := uint32(1)
	if li == b.top[side&1].lvl {
		r = 0
	}
	b.changedAt(side, r)
}

// freeLevel puts level li on the free list.
func (bs *Books) freeLevel(li int32) {
	level(bs.levels, li).head = bs.levelFree
	bs.levelFree = li
	bs.stats.Levels--
}

// rungOf finds the rung of level li by a scan (removeRung's repair of a
// broken invariant, not the normal path).
func rungOf(lad []rung, li int32) (int, bool) {
	for i := range lad {
		if lad[i].lvl == li {
			return i, true
		}
	}
	return 0, false
}

// slot returns &orders[i] without a bounds check, for i from none (-1)
// to len(orders)-1: Books.orders is allocated with a spare slot before
// its first, which takes the writes through none. i is a FIFO link of a
// live order (none or a live slot), a live order's index (find's), or a
// home slot (a reference masked by homeMask, which is below len(orders)).
func slot(orders []order, i int32) *order {
	return (*order)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(orders)), int(i)*int(unsafe.Sizeof(order{}))))
}

// bookAt returns &books[locate] without a bounds check, for a locate that
// Books.book or Announce has found below len(books): Apply's every case
// that reports a change has (see Apply's lastTime).
func bookAt(books []Book, locate uint16) *Book {
	return (*Book)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(books)), int(locate)*int(unsafe.Sizeof(Book{}))))
}

// level returns &levels[li] without a bounds check, for li a level in use
// (a rung's, a live order's) or one insertRung takes: the head of the free
// list, or levelUsed, below maxLevels (the pool's length) while fewer than
// maxLevels levels live (add's LevelCapacity test).
func level(levels []priceLevel, li int32) *priceLevel {
	return (*priceLevel)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(levels)), int(li)*int(unsafe.Sizeof(priceLevel{}))))
}

// remove unlinks live order oi of book b and frees its slot.
func (bs *Books) remove(b *Book, oi int32) {
	orders := bs.orders
	o := slot(orders, oi) // a live order's index, from find
	li := o.level
	l := level(bs.levels, li)
	prev, next := o.prev, o.next
	// Unlink without a branch on whether the order is first or last in
	// its level (a coin toss to a branch predictor): a link through none
	// is written to the spare slot before orders[0] (slot), and the
	// level's ends are chosen by conditional moves.
	slot(orders, prev).next = next
	slot(orders, next).prev = prev
	head, tail := l.head, l.tail
	if prev == none {
		head = next
	}
	if next == none {
		tail = prev
	}
	l.head, l.tail = head, tail
	l.orders--
	l.shares -= uint64(o.shares)
	o.shares = 0
	if uint64(oi) > bs.homeMask {
		slot, _ := bs.ovfProbe(o.locate, o.ref)
		bs.ovfDelete(slot)
		o.next = bs.ovfFree
		bs.ovfFree = oi
		bs.ovfCount(bs.stats.Overflowed - 1)
	}
	bs.stats.Orders--
	side := o.side & 1
	if l.orders == 0 {
		if n := b.sides[side].n; n > 0 && b.top[side] == (rung{key: l.key, lvl: li}) {
			// the best level, the one that empties most often: no call
			b.popBest(side, n)
			bs.freeLevel(li)
		} else {
			b.removeRung(bs, side, l.key, li)
		}
	} else {
		b.levelChanged(side, li, &l.shares, 0)
	}
}

// find looks up order ref of locate for a message on locate, counting
// unknown refs (also another locate's: AddOrder) in *unknown.
func (bs *Books) find(locate uint16, ref uint64, unknown *uint64) (b *Book, oi int32) {
	b = bs.book(locate)
	if b == nil {
		return nil, none
	}
	// lookup, by hand: it does not inline (the home slot unchecked: homeMask < len(orders))
	if h := slot(bs.orders, int32(ref&bs.homeMask)); h.ref == ref && h.shares != 0 && h.locate == locate {
		oi = int32(ref & bs.homeMask)
	} else if oi = bs.lookupOverflow(locate, ref); oi == none {
		*unknown++
		return nil, none
	}
	return b, oi
}

// reduce takes shares off order oi, removing it when nothing is left or when
// shares exceeds what it has (counted in *over).
func (bs *Books) reduce(b *Book, oi int32, shares uint32, over *uint64) {
	o := slot(bs.orders, oi) // from find
	switch {
	case shares < o.shares:
		o.shares -= shares
		b.levelChanged(o.side, o.level, &level(bs.levels, o.level).shares, shares) // one line: default.pgo finds remove below by its line
	case shares == o.shares:
		bs.remove(b, oi)
	default:
		*over++
		bs.remove(b, oi)
	}
}

// Execute executes shares of order ref at its price (E) under match number
// match. The trade counts in the last trade and volume.
func (bs *Books) Execute(locate uint16, ref uint64, shares uint32, match uint64) bool {
	b, oi := bs.find(locate, ref, &bs.stats.UnknownRefExecute)
	if b == nil {
		return false
	}
	if shares == 0 {
		bs.stats.ZeroShares++
		return false
	}
	bs.trade(b, slot(bs.orders, oi).price, uint64(shares), match)
	bs.reduce(b, oi, shares, &bs.stats.OverExecution)
	return true
}

// ExecuteWithPrice executes shares of order ref at price (C) under match
// number match; a non-printable execution does not count in the last trade
// and volume.
func (bs *Books) ExecuteWithPrice(locate uint16, ref uint64, shares, price uint32, match uint64, printable bool) bool {
	b, oi := bs.find(locate, ref, &bs.stats.UnknownRefExecute)
	if b == nil {
		return false
	}
	if shares == 0 {
		bs.stats.ZeroShares++
		return false
	}
	if printable {
		bs.trade(b, price, uint64(shares), match)
	} else {
		bs.execution(b, price, match)
	}
	bs.reduce(b, oi, shares, &bs.stats.OverExecution)
	return true
}

// Cancel removes shares from order ref (X).
func (bs *Books) Cancel(locate uint16, ref uint64, shares uint32) bool {
	b, oi := bs.find(locate, ref, &bs.stats.UnknownRefCancel)
	if b == nil {
		return false
	}
	if shares == 0 {
		bs.stats.ZeroShares++
		return false
	}
	bs.reduce(b, oi, shares, &bs.stats.OverCancel)
	return true
}

// Delete removes order ref (D).
func (bs *Books) Delete(locate uint16, ref uint64) bool {
	b, oi := bs.find(locate, ref, &bs.stats.UnknownRefDelete)
	if b == nil {
		return false
	}
	bs.remove(b, oi)
	return true
}

// Replace removes order oldRef and adds newRef with the same side on the
// same instrument at the tail of its price level (U). If newRef is live or
// shares is 0 the original is still removed and the new order is dropped
// (counted). A newRef equal to oldRef (ITCH gives the new order a new
// reference: bad input) names the live original: it is counted
// (DuplicateAdd) and the order replaced all the same, the book's best
// reading of the message.
func (bs *Books) Replace(locate uint16, oldRef, newRef uint64, shares, price uint32) bool {
	b, oi := bs.find(locate, oldRef, &bs.stats.UnknownRefReplace)
	if b == nil {
		return false
	}
	side := slot(bs.orders, oi).side
	bs.remove(b, oi)
	if newRef == oldRef && shares != 0 {
		bs.stats.DuplicateAdd++
	}
	bs.add(b, newRef, side, shares, price)
	return true
}
