package handler

import (
	"time"
	"unsafe"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// Publisher turns the books of one single-writer book.Books into snapshots
// in shared memory. The writer of the books tells it what each message
// changed (Applied) and, at batch boundaries, calls Flush, which publishes
// every changed book once, in its latest state: a burst of updates to one
// instrument is conflated into one snapshot, never a stale one.
//
// A publish rewrites the slot in place: besides the snapshot's fields, only
// the levels from the first rank that changed on each side since the book's
// last publish: after each message it takes the book's marks of the
// levels changed (book.Books.TakeChanged) and merges them per locate; at
// the publish, book.Book.ChangedFrom turns them into ranks
// (shm.Snapshot.BidFrom, AskFrom). The first publish of a book, a
// market-wide republish (MarkAllDirty, SetStale) and the publish after a
// failed one rewrite every level. After a Books.Reset every level of a
// book is new, hence marked, and rewritten.
//
// The pipeline's shards and `feedhandler replay --shm` both use it. It
// allocates nothing after NewPublisher.
type Publisher struct {
	w     *shm.Writer
	books *book.Books
	depth int

	dirty      []uint16   // locates changed since the last Flush
	locs       []locState // by locate
	flags      []uint8    // by locate: flagDirty, flagRegistered, flagInPlace
	dirtyAll   bool       // a market-wide change: republish every book
	stale      bool       // books may be missing messages (an unrecovered gap)
	rewriteAll bool       // every publish rewrites every level (the reference of the in-place tests)
	written    uint64     // levels written, both sides (BenchmarkApplyPublish's levels/book)

	snap     shm.Snapshot
	bookBids []book.Level // the levels to write; Publish reads them as shm levels (shmLevels)
	bookAsks []book.Level

	Published, Errors uint64
	Books             int // instruments registered with the shm writer
}

// locState is what the Publisher keeps per locate, in one 32-byte entry:
// a message and a publish touch one cache line of it.
type locState struct {
	seq     uint64       // sequence number of the last message applied
	rx      int64        // its receive time
	msgs    uint64       // messages applied
	changed book.Changed // levels changed since the last publish
}

const (
	flagDirty      = 1 << iota // in Publisher.dirty
	flagRegistered             // announced to the shm writer
	flagInPlace                // the slot holds the book as of its last publish, but for changed
)

// NewPublisher returns a Publisher of books into w, depth levels per side.
func NewPublisher(w *shm.Writer, books *book.Books, depth int) *Publisher {
	const n = 1 << 16
	return &Publisher{
		w: w, books: books, depth: depth,
		locs:     make([]locState, n),
		flags:    make([]uint8, n),
		dirty:    make([]uint16, 0, n),
		bookBids: make([]book.Level, 0, depth),
		bookAsks: make([]book.Level, 0, depth),
	}
}

// Applied records what book.Books.Apply returned for a message with
// sequence number seq received at rxTime. Call it after every Apply (or
// order method) on the Publisher's Books, before the next: it takes the
// marks of the levels the message changed (Books.TakeChanged).
func (p *Publisher) Applied(loc uint16, changed bool, seq uint64, rxTime int64) {
	marks := p.books.TakeChanged()
	if loc == 0 {
		if changed {
			p.dirtyAll = true
		}
		return
	}
	st := &p.locs[loc]
	st.seq = seq
	st.rx = rxTime
	st.msgs++
	st.changed.Merge(marks)
	if changed && p.flags[loc]&flagDirty == 0 {
		p.flags[loc] |= flagDirty
		p.dirty = append(p.dirty, loc)
	}
}

// SetStale flags (or clears) every book as possibly missing messages; the
// next Flush republishes them all with the flag.
func (p *Publisher) SetStale(stale bool) {
	if stale != p.stale {
		p.stale = stale
		p.dirtyAll = true
	}
}

// MarkAllDirty makes the next Flush republish every book.
func (p *Publisher) MarkAllDirty() { p.dirtyAll = true }

// Flush publishes every book changed since the last Flush.
func (p *Publisher) Flush() {
	all := p.dirtyAll
	if all {
		p.dirtyAll = false
		for b := range p.books.All() {
			if loc := b.Locate(); p.flags[loc]&flagDirty == 0 {
				p.flags[loc] |= flagDirty
				p.dirty = append(p.dirty, loc)
			}
		}
	}
	if len(p.dirty) == 0 {
		return
	}
	// One clock read per batch, not per book: every snapshot of the batch
	// carries the batch's publish time (a clock read costs as much as
	// building a small snapshot).
	p.snap.PublishTime = time.Now().UnixNano()
	for _, loc := range p.dirty {
		p.flags[loc] &^= flagDirty
		if b := p.books.Book(loc); b != nil {
			p.publish(b, all)
		}
	}
	p.dirty = p.dirty[:0]
}

// publish writes b's snapshot; full rewrites every level, else the slot
// is rewritten in place from the first rank that changed.
func (p *Publisher) publish(b *book.Book, full bool) {
	loc := b.Locate()
	st := &p.locs[loc]
	if p.flags[loc]&flagRegistered == 0 {
		if err := p.w.Register(loc, b.Name()); err != nil {
			p.Errors++
			return
		}
		p.flags[loc] |= flagRegistered
		p.Books++
	}
	sn := &p.snap
	sn.Locate = loc
	sn.Seq = st.seq
	sn.ExchangeTime = b.Timestamp()
	sn.ReceiveTime = st.rx
	sn.State = shm.TradingState(b.TradingState())
	sn.Flags = 0
	if p.stale {
		sn.Flags |= bookfb.FlagsPossiblyStale
	}
	if b.RegSHO() == '1' {
		sn.Flags |= bookfb.FlagsShortSaleRestricted
	}
	if b.OperationalHalt() == 'H' {
		sn.Flags |= bookfb.FlagsOperationalHalt
	}
	sn.SystemEvent, _ = p.books.SystemEvent()
	bidFrom, askFrom := 0, 0
	if !full && !p.rewriteAll && p.flags[loc]&flagInPlace != 0 {
		bidFrom, askFrom = b.ChangedFrom(book.Bid, st.changed, p.depth), b.ChangedFrom(book.Ask, st.changed, p.depth)
	}
	p.bookBids = b.AppendRanks(book.Bid, p.bookBids[:0], bidFrom, p.depth)
	p.bookAsks = b.AppendRanks(book.Ask, p.bookAsks[:0], askFrom, p.depth)
	if bid, ok := b.Best(book.Bid); ok {
		if ask, ok := b.Best(book.Ask); ok && bid.Price >= ask.Price {
			sn.Flags |= bookfb.FlagsCrossed
		}
	}
	sn.Bids, sn.Asks = shmLevels(p.bookBids), shmLevels(p.bookAsks)
	sn.BidFrom, sn.AskFrom = bidFrom, askFrom
	sn.BidLevels = uint32(b.Levels(book.Bid))
	sn.AskLevels = uint32(b.Levels(book.Ask))
	sn.LastTradePrice, sn.LastTradeShares, sn.Volume = b.Last()
	sn.Messages = st.msgs
	if err := p.w.Publish(sn); err != nil {
		p.Errors++
		p.flags[loc] &^= flagInPlace // the next publish rewrites every level
		return
	}
	st.changed = book.Changed{}
	p.flags[loc] |= flagInPlace
	p.written += uint64(len(p.bookBids) + len(p.bookAsks))
	p.Published++
}

// shm.Level(l) converts a book.Level: the two struct types are identical
// (same field names, types and order), so they have the same memory layout
// and a slice of one is a slice of the other. The conversion below is what
// the compiler checks; it fails to build if either type changes.
var _ = shm.Level(book.Level{})

// shmLevels returns the book levels ls as shm levels, sharing their
// memory: Publish reads them without a per-level copy.
func shmLevels(ls []book.Level) []shm.Level {
	return unsafe.Slice((*shm.Level)(unsafe.Pointer(unsafe.SliceData(ls))), len(ls))
}
