package handler

import (
	"unsafe"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// Publisher turns the books of one single-writer book.Books into snapshots
// in shared memory. The writer of the books tells it what each message
// changed (Applied) and, at batch boundaries, calls Flush, which publishes
// every changed book once, in its latest state: a burst of updates to one
// instrument is conflated into one snapshot, never a stale one.
//
// The pipeline's shards and `feedhandler replay --shm` both use it. It
// allocates nothing after NewPublisher.
type Publisher struct {
	w     *shm.Writer
	books *book.Books
	depth int

	dirty    []uint16   // locates changed since the last Flush
	locs     []locState // by locate
	dirtyAll bool       // a market-wide change: republish every book
	stale    bool       // books may be missing messages (an unrecovered gap)

	snap     shm.Snapshot
	bookBids []book.Level // handed to Publish as shm levels (shmLevels), not a copy
	bookAsks []book.Level

	Published, Errors uint64
	Books             int // instruments registered with the shm writer
}

// locState is what the Publisher keeps per locate, in one 32-byte entry:
// a message and a publish touch one cache line of it, not one per field.
type locState struct {
	seq        uint64 // sequence number of the last message applied
	rx         int64  // its receive time
	msgs       uint64 // messages applied
	dirty      bool   // in Publisher.dirty
	registered bool   // announced to the shm writer
}

// NewPublisher returns a Publisher of books into w, depth levels per side.
func NewPublisher(w *shm.Writer, books *book.Books, depth int) *Publisher {
	const n = 1 << 16
	return &Publisher{
		w: w, books: books, depth: depth,
		locs:     make([]locState, n),
		dirty:    make([]uint16, 0, n), // every locate: a market-wide republish never grows it
		bookBids: make([]book.Level, 0, depth),
		bookAsks: make([]book.Level, 0, depth),
	}
}

// Applied records what book.Books.Apply returned for a message with
// sequence number seq received at rxTime.
func (p *Publisher) Applied(loc uint16, changed bool, seq uint64, rxTime int64) {
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
	if changed && !st.dirty {
		st.dirty = true
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
	if p.dirtyAll {
		p.dirtyAll = false
		for b := range p.books.All() {
			if loc := b.Locate(); !p.locs[loc].dirty {
				p.locs[loc].dirty = true
				p.dirty = append(p.dirty, loc)
			}
		}
	}
	if len(p.dirty) == 0 {
		return
	}
	// One clock read per batch, not per book: every snapshot of the batch
	// carries the batch's publish time.
	p.snap.PublishTime = clock.Now()
	for _, loc := range p.dirty {
		p.locs[loc].dirty = false
		if b := p.books.Book(loc); b != nil {
			p.publish(b)
		}
	}
	p.dirty = p.dirty[:0]
}

func (p *Publisher) publish(b *book.Book) {
	loc := b.Locate()
	st := &p.locs[loc]
	if !st.registered {
		if err := p.w.Register(loc, b.Name()); err != nil {
			p.Errors++
			return
		}
		st.registered = true
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
	p.bookBids = b.AppendDepth(book.Bid, p.bookBids[:0], p.depth)
	p.bookAsks = b.AppendDepth(book.Ask, p.bookAsks[:0], p.depth)
	bids, asks := shmLevels(p.bookBids), shmLevels(p.bookAsks)
	if len(bids) > 0 && len(asks) > 0 && bids[0].Price >= asks[0].Price {
		sn.Flags |= bookfb.FlagsCrossed
	}
	sn.Bids, sn.Asks = bids, asks
	sn.BidLevels = uint32(b.Levels(book.Bid))
	sn.AskLevels = uint32(b.Levels(book.Ask))
	sn.LastTradePrice, sn.LastTradeShares, sn.Volume = b.Last()
	sn.Messages = st.msgs
	if err := p.w.Publish(sn); err != nil {
		p.Errors++
		return
	}
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
