package shm

import (
	"sync/atomic"
	"unsafe"

	"github.com/marketfeed/feedhandler/proto/bookfb"
)

// Table is a snapshot's table in a slot, as BeginDirect hands it out: the
// slot's own memory seen as a Go struct (little-endian machines only), so
// that a caller that has the fields at hand (a book) stores each one
// once, straight into the slot, instead of into a Snapshot that Begin then
// copies. The exported fields are Snapshot's fields of the same names; the
// others (offsets, locate, publish time) are BeginDirect's. Write the
// fields one by one, never the whole struct (*t = Table{...}): its other
// fields, and the symbol's length that its padding covers, are the slot's
// layout, written once at registration.
type Table struct {
	_               int32  // soffset to the vtable (written once, at registration)
	_               uint32 // offset to the symbol (written once)
	Seq             uint64
	ExchangeTime    uint64
	ReceiveTime     int64
	publishTime     int64
	LastTradeShares uint64
	Volume          uint64
	Messages        uint64
	bids, asks      uint32 // offsets to the level vectors
	BidLevels       uint32
	AskLevels       uint32
	LastTradePrice  uint32
	_               uint16 // locate (written once)
	Flags           bookfb.Flags
	State           bookfb.TradingState
	SystemEvent     byte
}

// A Table's fields are at the encoded table's offsets (encode.go), and the
// struct fits inside the table and the symbol's length that follows it
// (Go pads it to 96 bytes; the table is 92, the symbol's length 4). These
// fail to build otherwise.
var (
	_ [unsafe.Offsetof(Table{}.Seq) - fSeq]byte
	_ [fSeq - unsafe.Offsetof(Table{}.Seq)]byte
	_ [unsafe.Offsetof(Table{}.ExchangeTime) - fExchangeTime]byte
	_ [fExchangeTime - unsafe.Offsetof(Table{}.ExchangeTime)]byte
	_ [unsafe.Offsetof(Table{}.ReceiveTime) - fReceiveTime]byte
	_ [fReceiveTime - unsafe.Offsetof(Table{}.ReceiveTime)]byte
	_ [unsafe.Offsetof(Table{}.publishTime) - fPublishTime]byte
	_ [fPublishTime - unsafe.Offsetof(Table{}.publishTime)]byte
	_ [unsafe.Offsetof(Table{}.LastTradeShares) - fLastTradeShares]byte
	_ [fLastTradeShares - unsafe.Offsetof(Table{}.LastTradeShares)]byte
	_ [unsafe.Offsetof(Table{}.Volume) - fVolume]byte
	_ [fVolume - unsafe.Offsetof(Table{}.Volume)]byte
	_ [unsafe.Offsetof(Table{}.Messages) - fMessages]byte
	_ [fMessages - unsafe.Offsetof(Table{}.Messages)]byte
	_ [unsafe.Offsetof(Table{}.bids) - fBids]byte
	_ [fBids - unsafe.Offsetof(Table{}.bids)]byte
	_ [unsafe.Offsetof(Table{}.asks) - fAsks]byte
	_ [fAsks - unsafe.Offsetof(Table{}.asks)]byte
	_ [unsafe.Offsetof(Table{}.BidLevels) - fBidLevels]byte
	_ [fBidLevels - unsafe.Offsetof(Table{}.BidLevels)]byte
	_ [unsafe.Offsetof(Table{}.AskLevels) - fAskLevels]byte
	_ [fAskLevels - unsafe.Offsetof(Table{}.AskLevels)]byte
	_ [unsafe.Offsetof(Table{}.LastTradePrice) - fLastTradePrice]byte
	_ [fLastTradePrice - unsafe.Offsetof(Table{}.LastTradePrice)]byte
	_ [unsafe.Offsetof(Table{}.Flags) - fFlags]byte
	_ [fFlags - unsafe.Offsetof(Table{}.Flags)]byte
	_ [unsafe.Offsetof(Table{}.State) - fTradingState]byte
	_ [fTradingState - unsafe.Offsetof(Table{}.State)]byte
	_ [unsafe.Offsetof(Table{}.SystemEvent) - fSystemEvent]byte
	_ [fSystemEvent - unsafe.Offsetof(Table{}.SystemEvent)]byte
	_ [tableLen + 4 - unsafe.Sizeof(Table{})]byte
)

// BeginDirect starts a publish of locate into its slot sl (from Slot or
// Rebind; the zero Slot is refused) with nb bid and na ask levels and the
// publish time publish (not 0), as Begin does, but leaves the snapshot's
// fields to the caller: it writes the publish time, the level vectors'
// offsets and counts, and returns the slot's table t, whose every exported
// field the caller then writes (a field left unwritten keeps the slot's
// previous snapshot's value), the slot's level vectors bids and asks,
// best first, whose every level the caller writes, and the snapshot's
// length n, before CommitDirect(t, n); nothing after. Between the two the
// slot is being written (readers retry). moved reports whether the ask
// vector is not where the slot's previous snapshot had it (the bid
// vector's length changed, or the slot held none): a caller that writes
// only the levels that changed since (the handler's Publisher) writes
// every ask then.
//
// The publish in progress is these results and nothing else, each small
// enough for the compiler to keep in registers (nine words, as many as
// Go's register ABI returns): a struct holding them lives in memory, and
// Go copies a returned struct into it with 16-byte moves of the 8-byte
// stores just made, which the CPU cannot forward (BenchmarkApplyPublish:
// about 10% more time a publish, for fewer instructions). What
// CommitDirect needs besides (the seqlock word, its count, the locate)
// it reads from the slot.
//
// It returns a nil t, having written nothing, for anything but that common
// case: a big-endian machine (the table is not a Go struct there), a slot
// that is not this writer's for locate (retired, or never bound), more
// levels than the depth, a publish time of 0, a closed writer, or a
// publish of the slot already in progress. The caller then uses Begin,
// which does the same publish from a Snapshot or says why it cannot.
func (w *Writer) BeginDirect(sl Slot, locate uint16, nb, na int, publish int64) (t *Table, bids, asks []Level, n uint32, moved bool) {
	slot := sl.index()
	depth := min(uint(w.l.depth), maxDepth) // Create refuses more: the bound lets the vectors be sliced unchecked
	if !levelsInPlace || slot >= w.l.capacity || uint(nb) > depth || uint(na) > depth || publish == 0 || w.closed.Load() {
		return nil, nil, nil, 0, false
	}
	// The slot lies inside the mapping (slot < capacity; the layout was
	// checked at Create): no slice bounds to check on the way in.
	s := unsafe.Add(unsafe.Pointer(unsafe.SliceData(w.m.mem)), w.l.slotOff(slot).off)
	if atomic.LoadUint32((*uint32)(unsafe.Add(s, slotLocateAt))) != uint32(locate) {
		return nil, nil, nil, 0, false // another locate's, or retired
	}
	seq := (*uint64)(unsafe.Add(s, slotSeqAt))
	s0 := atomic.LoadUint64(seq)
	if s0&1 != 0 {
		return nil, nil, nil, 0, false // Begin panics: a second publisher
	}
	storeBegin64(seq, s0+1)
	data := unsafe.Add(s, slotHeader)
	t = (*Table)(unsafe.Add(data, tableAt))
	t.publishTime = publish
	// The vectors, as writeTable lays them out: the bids where the Slot
	// says (its symbol's length sets it), the asks after them.
	bidAt := sl.bidAt()
	askAt := asksAt(bidAt, nb)
	t.bids = uint32(bidAt) - (tableAt + fBids)
	moved = t.asks != uint32(askAt)-(tableAt+fAsks) // the previous snapshot's offset, before it is overwritten
	t.asks = uint32(askAt) - (tableAt + fAsks)
	bv := unsafe.Add(data, bidAt)
	av := unsafe.Add(data, askAt)
	*(*uint32)(bv) = uint32(nb)
	// The padding and the ask count in one store: askAt-4 is 8-byte
	// aligned (askAt is 4 mod 8), and the count its upper half (a
	// little-endian machine: levelsInPlace).
	*(*uint64)(unsafe.Add(av, -4)) = uint64(na) << 32
	// Sliced from an array pointer, the pre-unsafe.Slice idiom for
	// memory outside Go's heap (here the mapping): only the first nb and
	// na levels are sliced, inside the slot (nb, na <= depth <= maxDepth,
	// checked above). unsafe.Slice's length checks cost about 18
	// instructions a publish more (callgrind, BenchmarkApplyPublish: 556
	// against 574).
	bids = (*[maxDepth]Level)(unsafe.Add(bv, 4))[:nb:nb]
	asks = (*[maxDepth]Level)(unsafe.Add(av, 4))[:na:na]
	return t, bids, asks, uint32(askAt) + 4 + uint32(na)*levelSize, moved
}

// CommitDirect ends the publish that BeginDirect started, given the table
// t and the length n it returned, as Commit ends Begin's: the snapshot
// becomes readable, and (locate, version) goes to the change journal. It
// is inlined into its caller, which calls end itself: one call less a
// publish.
func (w *Writer) CommitDirect(t *Table, n uint32) {
	w.end(t.seqWord(), n)
}

// seqWord is the seqlock word of the slot that t is in.
func (t *Table) seqWord() *uint64 {
	return (*uint64)(unsafe.Add(unsafe.Pointer(t), slotSeqAt-slotHeader-tableAt))
}

// set stores every field of s that the table holds (all but the locate,
// the levels and the publish time, which BeginDirect writes).
func (t *Table) set(s *Snapshot) {
	t.Seq = s.Seq
	t.ExchangeTime = s.ExchangeTime
	t.ReceiveTime = s.ReceiveTime
	t.LastTradeShares = s.LastTradeShares
	t.Volume = s.Volume
	t.Messages = s.Messages
	t.BidLevels, t.AskLevels = s.BidLevels, s.AskLevels
	t.LastTradePrice = s.LastTradePrice
	t.Flags = s.Flags
	t.State = s.State
	t.SystemEvent = s.SystemEvent
}

// prefetchSlotBytes is how much of a slot PrefetchSlot loads: its header
// and the first bytes of its snapshot, the table and the first levels.
const prefetchSlotBytes = 4 * cacheLine

// PrefetchSlot starts loading the first lines of slot sl, which a publish
// of it will write (BeginDirect, Commit), so that a publisher that knows
// which books it will publish can have their slots in cache by then. It
// is a hint: it changes nothing. A zero Slot (not bound yet) and a closed
// writer are ignored, as BeginDirect declines them.
func (w *Writer) PrefetchSlot(sl Slot) {
	slot := sl.index()
	if slot >= w.l.capacity || w.closed.Load() {
		return
	}
	prefetchLines(unsafe.Add(unsafe.Pointer(unsafe.SliceData(w.m.mem)), w.l.slotOff(slot).off), int(min(w.l.slotSize, prefetchSlotBytes)))
}
