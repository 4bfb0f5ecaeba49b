package shm

import (
	"encoding/binary"
)

// The slot holds a Snapshot FlatBuffer laid out front to back at fixed
// offsets, so that Publish writes only the fields that change. It is a
// valid FlatBuffer for any reader (every field present, offsets forward,
// every scalar aligned to its size, relative to the 64-byte aligned start):
//
//	0    uint32 root offset (= tableAt)
//	4    file identifier "FHB1"
//	8    vtable: uint16 vtable size, table size, 17 field offsets
//	48   table: int32 soffset to the vtable, then the fields below
//	140  symbol: uint32 length, bytes, NUL, zero padding
//	156  bids: uint32 count, then room for depth Levels
//	     asks (asksAt(depth) = 164 + 16*depth): uint32 count, then room
//	     for depth Levels
//
// Both level vectors have a fixed place and room for depth levels
// (layout version 2), so a publish rewrites in place: the table's fields,
// the two counts and, on each side, only the levels from the first rank
// that changed (Snapshot.BidFrom, AskFrom). Room past a vector's count is
// zero: a publish that shortens a side clears the levels it drops, so the
// bytes of a slot depend only on the snapshot, not on its history. The
// slot's length ends after the last ask.
//
// The prefix up to the vectors (symbol, vector offsets) is written once,
// when the instrument is registered.
const (
	vtableAt   = 8
	vtableLen  = 2*2 + 17*2
	tableAt    = 48
	tableLen   = 92
	symbolAt   = tableAt + tableLen // 140
	bidsAt     = 156                // after the longest symbol (8 bytes), at 4 mod 8
	levelSize  = 16
	fieldCount = 17

	// Field offsets inside the table, largest scalars first for alignment.
	fSymbol          = 4
	fSeq             = 8
	fExchangeTime    = 16
	fReceiveTime     = 24
	fPublishTime     = 32
	fLastTradeShares = 40
	fVolume          = 48
	fMessages        = 56
	fBids            = 64
	fAsks            = 68
	fBidLevels       = 72
	fAskLevels       = 76
	fLastTradePrice  = 80
	fLocate          = 84
	fFlags           = 86
	fTradingState    = 88
	fSystemEvent     = 89
)

// fieldOffsets lists the table offset of each field in schema (id) order.
var fieldOffsets = [fieldCount]uint16{
	fLocate, fSymbol, fSeq, fExchangeTime, fReceiveTime, fPublishTime,
	fTradingState, fFlags, fBids, fAsks, fBidLevels, fAskLevels,
	fLastTradePrice, fLastTradeShares, fVolume, fMessages, fSystemEvent,
}

// asksAt is where the ask vector's count goes at depth: after the bid
// vector's room for depth levels and 4 bytes of padding (4 mod 8).
func asksAt(depth int) int { return bidsAt + 4 + depth*levelSize + 4 }

// maxSnapshotSize is the size of a slot's FlatBuffer at depth with both
// sides full.
func maxSnapshotSize(depth int) uint64 {
	return uint64(asksAt(depth) + 4 + depth*levelSize)
}

// writePrefix writes a slot's FlatBuffer for an instrument with no
// snapshot yet: root offset, file identifier, vtable, the table (zero but
// for the locate and the offsets to the symbol and the vectors), the
// symbol, and both vectors empty with their room zeroed. b holds
// maxSnapshotSize(depth) bytes.
func writePrefix(b []byte, locate uint16, sym []byte, depth int) {
	writeHead(b)
	le := binary.LittleEndian
	clear(b[tableAt+4 : tableAt+tableLen])
	le.PutUint32(b[tableAt+fSymbol:], symbolAt-(tableAt+fSymbol))
	le.PutUint16(b[tableAt+fLocate:], locate)
	le.PutUint32(b[tableAt+fBids:], bidsAt-(tableAt+fBids))
	le.PutUint32(b[tableAt+fAsks:], uint32(asksAt(depth)-(tableAt+fAsks)))
	clear(b[symbolAt:maxSnapshotSize(depth)])
	le.PutUint32(b[symbolAt:], uint32(len(sym)))
	copy(b[symbolAt+4:bidsAt-1], sym)
}

// writeHead writes the root offset, file identifier, vtable and the table's
// soffset: the first tableAt+4 bytes, the same in every slot.
func writeHead(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], tableAt)
	copy(b[4:8], FileIdentifier[:])
	le.PutUint16(b[vtableAt:], vtableLen)
	le.PutUint16(b[vtableAt+2:], tableLen)
	for i, off := range fieldOffsets {
		le.PutUint16(b[vtableAt+4+2*i:], off)
	}
	clear(b[vtableAt+vtableLen : tableAt])
	le.PutUint32(b[tableAt:], tableAt-vtableAt) // vtable = table - soffset
}

// inPlace reports whether s can be written into b, which writePrefix
// prepared at depth: each side's first rewritten rank is at most the count
// b holds (ranks below it are kept), and each side fits in depth.
func inPlace(b []byte, s *Snapshot, depth int) bool {
	le := binary.LittleEndian
	return s.BidFrom >= 0 && s.AskFrom >= 0 &&
		s.BidFrom+len(s.Bids) <= depth && s.AskFrom+len(s.Asks) <= depth &&
		(s.BidFrom == 0 || uint64(s.BidFrom) <= uint64(le.Uint32(b[bidsAt:]))) &&
		(s.AskFrom == 0 || uint64(s.AskFrom) <= uint64(le.Uint32(b[asksAt(depth):])))
}

// writeSnapshot writes the changing part of s into b, which writePrefix
// prepared at depth and inPlace accepted s for, and returns the
// FlatBuffer's length.
func writeSnapshot(b []byte, s *Snapshot, depth int, publish int64) int {
	le := binary.LittleEndian
	t := b[tableAt : tableAt+tableLen]
	le.PutUint64(t[fSeq:], s.Seq)
	le.PutUint64(t[fExchangeTime:], s.ExchangeTime)
	le.PutUint64(t[fReceiveTime:], uint64(s.ReceiveTime))
	le.PutUint64(t[fPublishTime:], uint64(publish))
	le.PutUint64(t[fLastTradeShares:], s.LastTradeShares)
	le.PutUint64(t[fVolume:], s.Volume)
	le.PutUint64(t[fMessages:], s.Messages)
	le.PutUint32(t[fBidLevels:], s.BidLevels)
	le.PutUint32(t[fAskLevels:], s.AskLevels)
	le.PutUint32(t[fLastTradePrice:], s.LastTradePrice)
	le.PutUint16(t[fFlags:], uint16(s.Flags))
	t[fTradingState] = byte(s.State)
	t[fSystemEvent] = s.SystemEvent

	putLevels(b, bidsAt, depth, s.BidFrom, s.Bids)
	asks := asksAt(depth)
	return asks + 4 + putLevels(b, asks, depth, s.AskFrom, s.Asks)*levelSize
}

// putLevels rewrites the vector of Levels whose count is at off, with room
// for depth levels: the count, the levels from rank from on, and zeros over
// the levels the vector drops. It returns the new count.
func putLevels(b []byte, off, depth, from int, levels []Level) int {
	le := binary.LittleEndian
	old := min(int(le.Uint32(b[off:])), depth)
	n := from + len(levels)
	le.PutUint32(b[off:], uint32(n))
	v := b[off+4 : off+4+depth*levelSize]
	p := v[from*levelSize : n*levelSize]
	for i := range levels {
		l := &levels[i]
		e := p[i*levelSize : i*levelSize+levelSize]
		le.PutUint32(e[0:], l.Price)
		le.PutUint32(e[4:], l.Orders)
		le.PutUint64(e[8:], l.Shares)
	}
	if old > n {
		clear(v[n*levelSize : old*levelSize])
	}
	return n
}

// prefixTemplate is the vtable every slot FlatBuffer carries.
var prefixTemplate = func() (b [tableAt + 4]byte) {
	writeHead(b[:])
	return b
}()

// validSnapshot reports whether b is a FlatBuffer this layout version
// writes at depth: everything the generated accessors will touch lies
// inside b. Read checks it so that a corrupt or foreign file cannot make a
// reader panic.
func validSnapshot(b []byte, depth int) bool {
	le := binary.LittleEndian
	asks := asksAt(depth)
	if len(b) < asks+4 || [tableAt + 4]byte(b[:tableAt+4]) != prefixTemplate {
		return false
	}
	if le.Uint32(b[tableAt+fSymbol:]) != symbolAt-(tableAt+fSymbol) || le.Uint32(b[symbolAt:]) > 8 {
		return false
	}
	if le.Uint32(b[tableAt+fBids:]) != bidsAt-(tableAt+fBids) || le.Uint32(b[bidsAt:]) > uint32(depth) {
		return false
	}
	if le.Uint32(b[tableAt+fAsks:]) != uint32(asks-(tableAt+fAsks)) {
		return false
	}
	na := le.Uint32(b[asks:])
	return na <= uint32(depth) && asks+4+int(na)*levelSize <= len(b)
}
