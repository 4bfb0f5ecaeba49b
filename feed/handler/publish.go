package handler

import (
	"errors"
	"math"
	"unsafe"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/internal/mem"
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
// allocates nothing after NewPublisher. It is its Books' only Publisher:
// the books keep, for it, which levels changed since it last published
// each book (book.Book.Changed), and it writes only those into the book's
// slot (publish).
type Publisher struct {
	w     *shm.Writer
	books *book.Books
	depth int

	dirty []uint16           // locates changed since the last Flush
	locs  *[1 << 16]locState // by locate: a uint16 indexes it without a bounds check
	stale bool               // books may be missing messages (an unrecovered gap)

	// listed is every locate whose book has changed since the last
	// BooksReset, in the order first changed: the books a market-wide
	// change (the system event, the stale flag, a rebuild) republishes.
	// A sweep is under way while sweepLeft, the entries it has yet to
	// pass, is above 0; sweepAt is the next index of listed it marks
	// dirty (it wraps).
	// Flush finishes it, FlushSome marks at most SweepChunk more books a
	// call, after the batch's own, so that thousands of books are not
	// republished in one batch while the live feed waits.
	listed []uint16
	// prefetchFrom is how many books may be listed before Applied
	// prefetches slots (slotsCached).
	prefetchFrom int
	sweepAt      int
	sweepLeft    int

	// SweepChunk bounds the books a sweep adds to each FlushSome
	// (NewPublisher: DefaultSweepChunk).
	SweepChunk int

	snap shm.Snapshot
	tx   shm.Pending // a publish through Begin (publishBegin): the slot's level vectors

	// epoch counts BooksReset calls: the epoch of this Publisher's
	// bindings (shm.Writer.Rebind). Every shard sees the same rebuilds in
	// the same order, so shards agree on the epoch of a session.
	epoch uint64
	// reassigned is the books' LocateReassigned at the last flush: when
	// it moves, a locate of the batch was announced again under another
	// symbol, and its slot is the old symbol's.
	reassigned uint64
	// withdrawn: a locate of the batch was withdrawn (Withdrawn): its
	// slot is its old symbol's.
	withdrawn bool
	// dups counts the locates refused as duplicates (refusedDuplicate,
	// refusedHeld), and retirements and promoted are the writer's
	// Retirements and the books' SymbolsPromoted when they were last
	// asked again: when either moved, the binding or the claim in their
	// way may be gone (retired by any shard's publisher; the holder left
	// the symbol).
	dups        int
	retirements uint64
	promoted    uint64

	Published uint64
	// Errors counts the books not published for want of a slot
	// (shm.ErrFull) or with a symbol the writer refuses, each once until
	// BooksReset or its locate gets another symbol (its later snapshots
	// are skipped uncounted), and the snapshots the writer failed
	// otherwise (closed).
	Errors  uint64
	Rebound uint64 // locates whose slot was retired because their symbol changed (BooksReset, or a Stock Directory re-assigning the locate): moved to a fresh slot, or to none when the file has no slot left (then also counted in Errors) or the new symbol is filtered out (Withdrawn)
	// StaleBinds counts snapshots not published because the writer
	// refused their locate's binding as older than the one it would
	// replace (shm.ErrStaleBinding): this shard lags a session change
	// that another shard has seen, and its book is the old session's.
	StaleBinds uint64
	// DuplicateBinds counts snapshots not published because the writer
	// found their symbol bound to another locate in the same epoch
	// (shm.ErrDuplicateSymbol): another Publisher's binding that its
	// books have not left yet (a shard lagging a Stock Directory that
	// freed the symbol). A symbol at two locates in one session (bad
	// input) is the books' decision, not the writer's: the later locate
	// (book.Book.Duplicate, counted in book.Stats.DuplicateSymbol) is
	// never bound, so the writer never sees it.
	DuplicateBinds uint64
	Books          int // instruments registered with the shm writer
}

// locState is what the Publisher keeps per locate, in one 32-byte entry:
// a message and a publish touch one cache line of it, not one per field.
type locState struct {
	seq    uint64   // sequence number of the last message that changed the book
	rx     int64    // its receive time
	msgs   uint64   // messages that changed the book
	slot   shm.Slot // the locate's slot; the zero Slot until bound (again: BooksReset)
	dirty  bool     // in Publisher.dirty
	known  bool     // registered once (counted in Books)
	listed bool     // in Publisher.listed
	// refused is why the writer refused to bind the locate in this
	// epoch (refusedStale, refusedDuplicate, refusedFull, refusedBad), or why it was
	// not asked (refusedHeld), or 0. A refusal stands
	// until BooksReset (the writer's bindings never go back to an older
	// epoch), so its snapshots are counted and skipped without asking
	// the writer again.
	refused byte
}

// Why the writer refused a locate's binding (locState.refused).
const (
	refusedStale     = 1 + iota // shm.ErrStaleBinding
	refusedDuplicate            // shm.ErrDuplicateSymbol
	refusedFull                 // shm.ErrFull: no slot left until a restart (counted in Errors once)
	refusedHeld                 // book.Book.Duplicate: another locate holds the symbol (not asked)
	refusedBad                  // a symbol the writer takes for none (all spaces) (counted in Errors once)
)

// NewPublisher returns a Publisher of books into w, depth levels per side.
func NewPublisher(w *shm.Writer, books *book.Books, depth int) *Publisher {
	const n = 1 << 16
	p := &Publisher{
		w: w, books: books, depth: depth,
		locs:         new([n]locState),
		dirty:        make([]uint16, 0, n), // every locate: a market-wide republish never grows it
		listed:       make([]uint16, 0, n),
		SweepChunk:   DefaultSweepChunk,
		prefetchFrom: slotsCached / max(w.Info().SlotSize, 1),
	}
	// 2 MiB written at each locate's first message, and the lists:
	// touched now, not page by page on the hot thread (mem.Touch).
	mem.Touch(mem.Bytes(p.locs[:]))
	mem.Touch(mem.Bytes(p.dirty[:n]))
	mem.Touch(mem.Bytes(p.listed[:n]))
	return p
}

// slotsCached is how many bytes of the writer's slots a Publisher takes to
// stay in the core's caches from one publish of a book to its next, beside
// the books: when the books it has published (listed) have more slot
// bytes than that, Applied starts loading a book's slot when the book
// first changes in a batch. With a few hundred books their slots stay in
// cache and the prefetch is a cost (PipelinePaced, 50 instruments: publish
// 375 ns a packet without, 397 with); with thousands the publish waits for
// each slot in turn (5,000 instruments: 677 ns without, 579 with).
const slotsCached = 256 << 10

// DefaultSweepChunk is the books a market-wide republish adds to each
// batch's publish: about 10 µs of publishing on the lab's VM.
const DefaultSweepChunk = 64

// Applied records what book.Books.Apply returned for a message with
// sequence number seq received at rxTime.
func (p *Publisher) Applied(loc uint16, changed bool, seq uint64, rxTime int64) {
	if loc == 0 {
		if changed {
			p.startSweep()
		}
		return
	}
	if !changed {
		// Not a change of the book (a NOII, an order it does not
		// hold): the snapshot's sequence number, receive time and
		// count stay those of the message that set its exchange time
		// (Book.Timestamp), the last that changed it.
		return
	}
	st := &p.locs[loc]
	st.seq = seq
	st.rx = rxTime
	st.msgs++
	if !st.dirty {
		st.dirty = true
		p.dirty = append(p.dirty, loc)
		if len(p.listed) > p.prefetchFrom {
			// Slots of more books than stay in cache: start loading
			// this one's now, for the publish at the batch's end.
			p.w.PrefetchSlot(st.slot)
		}
		if !st.listed {
			st.listed = true
			p.listed = append(p.listed, loc)
		}
	}
}

// Withdrawn tells the Publisher that locate loc names no book any more: a
// Stock Directory message gave it a symbol that the symbol filter leaves
// out (book.Books.Withdraw ended its book, or it was unknown since a
// BooksReset). Its binding, the old symbol's, of this epoch or an earlier
// one, is retired at the next flush (unbindReassigned): no reader of the
// old symbol reads a book that no longer follows its instrument, as when
// the locate is given to a subscribed symbol and bound to it.
//
// The locate is listed too: Applied lists only a locate it makes dirty, so
// a Stock Directory message giving it a subscribed symbol in the same
// batch would leave its new book out of every market-wide republish (a
// listed locate without a book is skipped).
func (p *Publisher) Withdrawn(loc uint16) {
	p.withdrawn = true
	st := &p.locs[loc]
	if !st.dirty {
		st.dirty = true
		p.dirty = append(p.dirty, loc)
	}
	if !st.listed {
		st.listed = true
		p.listed = append(p.listed, loc)
	}
}

// startSweep starts republishing every listed book: a whole lap of
// listed from where the sweep is. A change during a sweep starts a new lap
// there (each book must follow the latest change), not from the first
// book: changes more frequent than a lap would otherwise never reach the
// books at the end.
func (p *Publisher) startSweep() {
	p.sweepLeft = len(p.listed)
}

// Sweeping reports whether a market-wide republish is under way: books
// that FlushSome has yet to republish.
func (p *Publisher) Sweeping() bool { return p.sweepLeft > 0 }

// SetStale flags (or clears) every book as possibly missing messages: a
// sweep republishes them all with the flag (Flush, FlushSome).
func (p *Publisher) SetStale(stale bool) {
	if stale != p.stale {
		p.stale = stale
		p.startSweep()
	}
}

// BooksReset tells the Publisher that the books were emptied and are
// rebuilt, possibly for a new session whose locates name other symbols
// (ITCH reassigns them every day): each locate's slot is bound again, by
// symbol, at its next publish (shm.Writer.Rebind), so a book is never
// written into a slot registered for another symbol. What each locate
// counted for its old book (messages applied, the last one's sequence
// number and receive time) starts again: a snapshot describes its own
// book, as the slot's version starts again from 1 after a rebind.
//
// It starts a new epoch: the bindings made from now on replace those of
// earlier epochs, and those of later epochs (another shard's, ahead of
// this one) refuse them (shm.Writer.Rebind, StaleBinds).
//
// The list a sweep republishes starts again too (each rebuilt book is
// listed again at its first change), and a sweep under way ends: the
// rebuilt books are published as they change.
func (p *Publisher) BooksReset() {
	p.epoch++
	for i := range p.locs {
		st := &p.locs[i]
		st.slot = shm.Slot{}
		st.refused = 0
		st.seq, st.rx, st.msgs = 0, 0, 0
		st.listed = false
	}
	p.listed = p.listed[:0]
	p.sweepAt, p.sweepLeft = 0, 0
	p.dups = 0
}

// MarkAllDirty starts a sweep: every book is republished.
func (p *Publisher) MarkAllDirty() { p.startSweep() }

// Flush publishes every book changed since the last Flush, and every book
// a sweep has yet to republish.
func (p *Publisher) Flush() { p.flush(math.MaxInt) }

// FlushSome publishes every book changed since the last Flush, and at most
// SweepChunk more that a sweep has yet to republish (all of them when
// SweepChunk is 0 or less). The pipeline calls it after each batch, and
// while idle until Sweeping is false.
func (p *Publisher) FlushSome() {
	if p.SweepChunk <= 0 {
		p.Flush()
		return
	}
	p.flush(p.SweepChunk)
}

// flush marks at most chunk more books of a sweep dirty, then publishes
// the dirty books. A book that changed in the batch is published once,
// and does not count in chunk.
func (p *Publisher) flush(chunk int) {
	for ; p.sweepLeft > 0 && chunk > 0; p.sweepLeft-- {
		if p.sweepAt >= len(p.listed) {
			p.sweepAt = 0
		}
		loc := p.listed[p.sweepAt]
		p.sweepAt++
		if !p.locs[loc].dirty {
			p.locs[loc].dirty = true
			p.dirty = append(p.dirty, loc)
			chunk--
		}
	}
	if len(p.dirty) == 0 && p.dups == 0 {
		return
	}
	if len(p.dirty) > 0 {
		// A re-assignment (Announce) or a withdrawal (Withdrawn) made its
		// locate dirty.
		if r := p.books.LocatesReassigned(); r != p.reassigned || p.withdrawn {
			p.reassigned, p.withdrawn = r, false
			p.unbindReassigned()
		}
	}
	// Also with nothing dirty: the binding in a refused duplicate's way
	// may have been retired by another shard's publisher, while this
	// shard got no message since (a swap across shards, then quiet).
	if p.dups > 0 {
		if n, m := p.w.Retirements(), p.books.SymbolsPromoted(); n != p.retirements || m != p.promoted {
			p.retirements, p.promoted = n, m
			p.askDuplicatesAgain()
		}
	}
	if len(p.dirty) == 0 {
		return
	}
	// What every snapshot of the batch shares is read once per batch, not
	// per book: one clock read (the batch's publish time), the system
	// event, the stale flag.
	p.snap.PublishTime = clock.Now()
	if generalPathHook != nil && generalPathHook() {
		p.snap.PublishTime = 0 // BeginDirect declines: Begin reads the clock
	}
	p.snap.SystemEvent, _ = p.books.SystemEvent()
	var flags bookfb.Flags
	if p.stale {
		flags = bookfb.FlagsPossiblyStale
	}
	for _, loc := range p.dirty {
		st := &p.locs[loc]
		st.dirty = false
		if b := p.books.Book(loc); b != nil {
			p.publish(b, loc, st, flags)
		}
	}
	p.dirty = p.dirty[:0]
}

// publish writes book b (locate loc, state st) into its slot; flags are
// the batch's.
//
// The book's fields go straight into the slot's table (shm.BeginDirect)
// and its top levels straight into the slot's level vectors (Book.Top):
// nothing is copied twice. The publish in progress is BeginDirect's
// results, locals the compiler keeps in registers or spills whole: no
// pointer of it is stored through another (a write-barrier check), and no
// struct of it is copied (16-byte moves of 8-byte stores, which the CPU
// cannot forward: shm.Writer.BeginDirect).
func (p *Publisher) publish(b *book.Book, loc uint16, st *locState, flags bookfb.Flags) {
	if st.slot == (shm.Slot{}) && !p.bind(b, loc, st) {
		return
	}
	flags |= bookFlags(b)
	nBids, nAsks := b.Levels(book.Bid), b.Levels(book.Ask)
	nb, na := min(nBids, p.depth), min(nAsks, p.depth)
	t, bids, asks, n, asksMoved := p.w.BeginDirect(st.slot, loc, nb, na, p.snap.PublishTime)
	if t == nil {
		p.publishBegin(b, loc, st, flags, nb, na)
		return
	}
	// The slot holds the book's levels as they were at its last publish,
	// this Publisher's (a slot bound since has every level marked
	// changed: bind): only the ranks from the best changed one on are
	// written (Book.TopChanged). The asks follow the bids: they stay where
	// they were only if the bid vector's length did (BeginDirect's
	// moved).
	t.Seq = st.seq
	t.ExchangeTime = b.Timestamp()
	t.ReceiveTime = st.rx
	t.LastTradePrice, t.LastTradeShares, t.Volume = b.Last()
	t.Messages = st.msgs
	t.BidLevels, t.AskLevels = uint32(nBids), uint32(nAsks)
	t.Flags = flags
	t.State = shm.TradingState(b.TradingState())
	t.SystemEvent = p.snap.SystemEvent
	b.TopChanged(bookLevels(bids), bookLevels(asks), asksMoved)
	p.w.CommitDirect(t, n)
	p.Published++
}

// publishBegin is publish's general path, when shm.Writer.BeginDirect
// declined: Begin, with the levels written into the Publisher's Pending
// (Begin's level buffer, on a big-endian machine, is kept in it).
func (p *Publisher) publishBegin(b *book.Book, loc uint16, st *locState, flags bookfb.Flags, nb, na int) {
	tx := &p.tx
	if !p.begin(b, loc, st, flags, nb, na, tx) {
		return
	}
	b.Top(bookLevels(tx.Bids), bookLevels(tx.Asks))
	p.w.Commit(tx)
	b.ClearChanged() // every level written
	p.Published++
}

// unbindReassigned follows a Stock Directory message that gave a known
// locate another symbol (book.Books.Announce emptied its book and made the
// locate dirty), or one the symbol filter leaves out (Withdrawn): no
// reader of the old symbol may read the new one's book, nor one that
// stopped following it.
// Rare (a session change met unseen), so it is thorough rather than quick:
//   - every dirty locate whose binding names another symbol than its book
//     (any symbol, when it has no book: withdrawn) is unbound first, all of
//     them before any binds again, so that two locates that swapped
//     symbols in the batch each find their new symbol free (a Rebind does
//     not retire what it replaces when it is refused);
//   - every dirty locate binds again at its publish (Rebind keeps the slot
//     of an unchanged symbol);
//   - locates refused as duplicates earlier in the epoch are asked again
//     and republished: the symbol that stood in their way may be retired
//     now (a swap across batches).
func (p *Publisher) unbindReassigned() {
	for _, loc := range p.dirty {
		st := &p.locs[loc]
		var name string // no book: withdrawn, no symbol is the locate's
		if b := p.books.Book(loc); b != nil {
			name = b.Name()
		}
		switch retired, err := p.w.Unbind(loc, name, p.epoch); {
		case err != nil:
			p.Errors++
		case retired:
			p.Rebound++
		}
		if st.refused == refusedDuplicate || st.refused == refusedHeld {
			p.dups--
		}
		st.slot, st.refused = shm.Slot{}, 0
	}
}

// askDuplicatesAgain clears the refusals of the locates refused as
// duplicates whose symbol is free now, and republishes them: the writer
// retired a binding since they were refused (a locate re-assigned, here or
// on another shard's publisher), or the books gave a duplicate its symbol
// (the holder left it). A duplicate still standing (another locate holds
// its symbol, or the writer has it bound elsewhere) keeps its refusal: it
// is not asked again, so it builds no error and is not counted again.
// Rare: only while a duplicate refusal stands and bindings are retired or
// symbols promoted.
func (p *Publisher) askDuplicatesAgain() {
	p.dups = 0
	for i := range p.locs {
		st := &p.locs[i]
		if st.refused != refusedDuplicate && st.refused != refusedHeld {
			continue
		}
		if b := p.books.Book(uint16(i)); b != nil && (b.Duplicate() || p.w.SymbolBound(b.Name())) {
			p.dups++
			continue
		}
		st.refused = 0
		if !st.dirty {
			st.dirty = true
			p.dirty = append(p.dirty, uint16(i))
		}
	}
}

// Promoted reports whether a locate refused as a duplicate holds its
// symbol in the books now (the holder left it: not Book.Duplicate) while
// the writer keeps the symbol bound to another locate: a binding another
// shard's publisher has yet to retire (shard.settleRebuild). Rare: it
// looks at the locates only while a refusal stands.
func (p *Publisher) Promoted() bool {
	if p.dups == 0 {
		return false
	}
	for i := range p.locs {
		if r := p.locs[i].refused; r != refusedDuplicate && r != refusedHeld {
			continue
		}
		if b := p.books.Book(uint16(i)); b != nil && !b.Duplicate() {
			return true
		}
	}
	return false
}

// bookFlags returns the snapshot flags that book b's own state sets. It
// is inlined into publish (go build -gcflags=-m says so).
func bookFlags(b *book.Book) bookfb.Flags {
	var f bookfb.Flags
	// Reg SHO '1': the restriction takes effect (an intra-day drop);
	// '2': it remains in effect (from the day before); '0': none. One
	// unsigned compare for the two ('1' and '2' are 0 and 1 above '1';
	// below it wraps), which keeps bookFlags within the inliner's budget.
	if r := b.RegSHO(); r-'1' <= '2'-'1' {
		f |= bookfb.FlagsShortSaleRestricted
	}
	if b.OperationalHalt() == 'H' {
		f |= bookfb.FlagsOperationalHalt
	}
	// Crossed from the best levels: the slot's depth is at least 1
	// (shm.Create refuses 0), so the levels published start with these
	// two.
	if b.Crossed() {
		f |= bookfb.FlagsCrossed
	}
	// An order dropped for want of capacity (book.max_orders,
	// max_levels): the book may lack its shares while it lives.
	if b.Incomplete() {
		f |= bookfb.FlagsPossiblyStale
	}
	return f
}

// begin is publish's general path, when shm.Writer.BeginDirect declined:
// the snapshot's fields through a Snapshot and shm.Writer.Begin, which
// handles every case or says why not. It returns false, having counted
// the snapshot as not published, when the publish cannot start.
func (p *Publisher) begin(b *book.Book, loc uint16, st *locState, flags bookfb.Flags, nb, na int, tx *shm.Pending) bool {
	sn := &p.snap
	sn.Locate = loc
	sn.Seq = st.seq
	sn.ExchangeTime = b.Timestamp()
	sn.ReceiveTime = st.rx
	sn.State = shm.TradingState(b.TradingState())
	sn.Flags = flags
	sn.BidLevels, sn.AskLevels = uint32(b.Levels(book.Bid)), uint32(b.Levels(book.Ask))
	sn.LastTradePrice, sn.LastTradeShares, sn.Volume = b.Last()
	sn.Messages = st.msgs
	err := p.w.Begin(st.slot, sn, nb, na, tx)
	if err == nil {
		return true
	}
	// The slot was retired since it was bound: another shard bound the
	// symbol to its locate (it saw a session change first), or this
	// locate again. Bind again, once: the book is this shard's latest,
	// and a slot kept would take publishes no reader finds. (Begin wrote
	// nothing.) If the other binding is of a later epoch (this shard lags
	// the session change), the writer refuses (StaleBinds): the two
	// shards never take the symbol back and forth.
	if !errors.Is(err, shm.ErrUnknownLocate) {
		// Not the binding (too deep, closed): keep the slot.
		p.Errors++
		return false
	}
	st.slot = shm.Slot{}
	if !p.bind(b, loc, st) {
		return false
	}
	if p.w.Begin(st.slot, sn, nb, na, tx) != nil {
		p.Errors++
		return false
	}
	return true
}

// bind binds locate loc to book b's symbol at the Publisher's epoch
// (shm.Writer.Rebind) and keeps the slot in st. It returns false, having
// counted the snapshot as not published, if the writer refused: a binding
// of a later epoch (StaleBinds) or the symbol at another locate in this
// epoch (DuplicateBinds), no slot left (ErrFull) or a bad symbol (Errors,
// once), all four remembered in st until BooksReset, or anything else
// (closed: Errors). A Rebind that retired the locate's old binding and
// then found no slot counts in Rebound too.
//
// A book whose symbol another locate holds (book.Book.Duplicate: a Stock
// Directory message gave it to that locate first, which the books counted)
// is not bound and the writer is not asked: whichever Publisher binds
// first, the symbol's slot is the first locate's, in every mode. It is
// asked again when the books give it the symbol (askDuplicatesAgain).
func (p *Publisher) bind(b *book.Book, loc uint16, st *locState) bool {
	if st.refused == 0 && b.Duplicate() {
		st.refused = refusedHeld
		p.noteDuplicate(p.w.Retirements())
		return false
	}
	if st.refused == 0 {
		// Read before asking: a refusal is asked again once a binding
		// is retired after it, and another shard's publisher may
		// retire the one in its way as soon as the writer answered.
		seen := p.w.Retirements()
		// Rebind keeps nothing of the symbol, so Book.Name's string
		// stays on this goroutine's stack (TestOpeningAllocatesNothing).
		sl, retired, err := p.w.Rebind(loc, b.Name(), p.epoch)
		switch {
		case err == nil:
			// A slot new to the book, or one another binding may
			// have written since: its next publish writes every
			// level (publish).
			b.MarkChanged()
			return p.bound(st, sl, retired)
		case errors.Is(err, shm.ErrStaleBinding):
			st.refused = refusedStale
		case errors.Is(err, shm.ErrDuplicateSymbol):
			if dupRefusedHook != nil {
				dupRefusedHook()
			}
			st.refused = refusedDuplicate
			p.noteDuplicate(seen)
		case errors.Is(err, shm.ErrFull):
			// No slot left, perhaps after the locate's old binding
			// was retired: the locate left its old symbol all the
			// same (no reader finds that symbol's book at it), so the
			// retirement counts. Retired slots are not reused until
			// a restart, so the locate gets none in this epoch: not
			// asked again (each Rebind takes the writer's lock and
			// builds its error).
			if retired {
				p.Rebound++
			}
			st.refused = refusedFull
			p.Errors++
			return false
		case errors.Is(err, shm.ErrClosed):
			p.Errors++
			return false
		default:
			// A bad symbol (all spaces): refused until the locate
			// gets another (unbindReassigned) or BooksReset.
			st.refused = refusedBad
			p.Errors++
			return false
		}
	}
	switch st.refused {
	case refusedStale:
		p.StaleBinds++
	case refusedDuplicate:
		p.DuplicateBinds++
	}
	// refusedHeld: counted once, by the books, at its Stock Directory
	// message. refusedFull, refusedBad: counted once, in Errors, when
	// refused: a count of books, not of the snapshots a busy book or each
	// sweep (MarkAllDirty) brings.
	return false
}

// noteDuplicate counts a locate refused as a duplicate (refusedDuplicate,
// refusedHeld), the writer's Retirements read as seen before it was
// asked: it is asked again once a binding is retired after that, or the
// books promote a symbol. The refusals standing already were checked at
// earlier counts, which stay.
func (p *Publisher) noteDuplicate(seen uint64) {
	if p.dups == 0 {
		p.retirements, p.promoted = seen, p.books.SymbolsPromoted()
	}
	p.dups++
}

// generalPathHook, set by tests only, runs once a flush: when it returns
// true, the flush's books are published through the general path
// (publishBegin), as when shm.Writer.BeginDirect declines.
var generalPathHook func() bool

// dupRefusedHook, set by tests only, runs when the writer has refused a
// binding as a duplicate, before the Publisher notes the refusal: where
// another shard's publisher may retire the binding in its way.
var dupRefusedHook func()

// bound keeps the slot sl that bind got in st and counts it.
func (p *Publisher) bound(st *locState, sl shm.Slot, retired bool) bool {
	st.slot = sl
	if retired {
		p.Rebound++
	}
	if !st.known {
		st.known = true
		p.Books++
	}
	return true
}

// shm.Level(l) converts a book.Level: the two struct types are identical
// (same field names, types and order), so they have the same memory layout
// and a slice of one is a slice of the other. The conversion below is what
// the compiler checks; it fails to build if either type changes.
var _ = shm.Level(book.Level{})

// bookLevels returns the shm levels ls as book levels, sharing their
// memory: Book.Top writes them in place (in the slot). The slice header is
// read as the other type's (the element types are identical, above): no
// length or pointer to check, as unsafe.Slice does (about 16 instructions
// a publish).
func bookLevels(ls []shm.Level) []book.Level {
	return *(*[]book.Level)(unsafe.Pointer(&ls))
}
