package shm

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/cpu"
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
//	140  symbol: uint32 length, bytes, NUL
//	     bids: uint32 count at an offset = 4 mod 8, then count Levels
//	     asks: likewise, right after the bids
//
// The prefix up to and including the symbol is written once, when the
// instrument is registered; the table fields and the level vectors on every
// publish.
const (
	vtableAt   = 8
	vtableLen  = 2*2 + 17*2
	tableAt    = 48
	tableLen   = 92
	symbolAt   = tableAt + tableLen // 140
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

// bidsAt is where the bid vector's count goes after a symbol of n bytes.
func bidsAt(symLen int) int {
	end := uint(symbolAt + 4 + symLen + 1) // unsigned: % is a mask
	return int(end + (12-end%8)%8)         // first offset >= end with offset%8 == 4
}

// vectorsAt is where the bid and the ask vectors' counts go after a
// symbol of symLen bytes and nb bids: the bids right after the symbol, the
// asks after the bids and 4 bytes of padding.
func vectorsAt(symLen, nb int) (bids, asks int) {
	bids = bidsAt(symLen)
	return bids, asksAt(bids, nb)
}

// asksAt is where the ask vector's count goes after a bid vector of nb
// levels whose count is at bids: after the levels and 4 bytes of padding.
func asksAt(bids, nb int) int { return bids + 4 + nb*levelSize + 4 }

// maxSnapshotSize bounds the encoded size of any snapshot at depth.
func maxSnapshotSize(depth int) uint64 {
	return uint64(bidsAt(8) + 4 + depth*levelSize + 4 + 4 + depth*levelSize)
}

// writePrefix writes the constant part of a slot's FlatBuffer: root offset,
// file identifier, vtable, the table's soffset, locate, the symbol and the
// offset to it.
func writePrefix(b []byte, locate uint16, sym []byte) {
	copy(b, prefixTemplate[:]) // writeHead's bytes, computed once
	le := binary.LittleEndian
	le.PutUint32(b[tableAt+fSymbol:], symbolAt-(tableAt+fSymbol))
	le.PutUint16(b[tableAt+fLocate:], locate)
	clear(b[tableAt+fSystemEvent+1 : symbolAt])
	le.PutUint32(b[symbolAt:], uint32(len(sym)))
	n := copy(b[symbolAt+4:], sym)
	clear(b[symbolAt+4+n : bidsAt(len(sym))])
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

// writeSnapshot writes the changing part of s into b, whose prefix
// writePrefix wrote with a symbol whose bid vector goes at bids (bidsAt of
// its length), and returns the FlatBuffer's length. b must hold
// maxSnapshotSize of the larger side.
func writeSnapshot(b []byte, s *Snapshot, bids int, publish int64) int {
	bidAt, askAt, n := writeTable(b, s, bids, len(s.Bids), len(s.Asks), publish)
	putLevels(b[bidAt:], s.Bids)
	putLevels(b[askAt:], s.Asks)
	return n
}

// writeTable writes the table fields of s (all but the levels) into b,
// whose prefix writePrefix wrote with a symbol whose bid vector goes at
// bids (bidsAt of its length), and the counts of a bid vector of nb levels
// and an ask vector of na levels. It returns where the first bid and the
// first ask level go (both 8-byte aligned in the slot) and the
// FlatBuffer's length.
func writeTable(b []byte, s *Snapshot, bids, nb, na int, publish int64) (bidAt, askAt, n int) {
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

	asks := asksAt(bids, nb)
	le.PutUint32(t[fBids:], uint32(bids-(tableAt+fBids)))
	le.PutUint32(b[bids:], uint32(nb))
	clear(b[asks-4 : asks]) // padding: the ask count sits at 4 mod 8
	le.PutUint32(t[fAsks:], uint32(asks-(tableAt+fAsks)))
	le.PutUint32(b[asks:], uint32(na))
	return bids + 4, asks + 4, asks + 4 + na*levelSize
}

// putLevels writes levels, best first, at the start of b.
func putLevels(b []byte, levels []Level) {
	if levelsInPlace {
		copy(levelView(b, len(levels)), levels)
		return
	}
	le := binary.LittleEndian
	p := b[:len(levels)*levelSize]
	for i := range levels {
		l := &levels[i]
		e := p[i*levelSize : i*levelSize+levelSize]
		le.PutUint32(e[0:], l.Price)
		le.PutUint32(e[4:], l.Orders)
		le.PutUint64(e[8:], l.Shares)
	}
}

// levelView returns the first n encoded levels at the start of b as
// Levels, sharing b's memory. Only where levelsInPlace: a Level's memory
// is then exactly an encoded level (Price, Orders, Shares, little endian;
// checked below), and b starts 8-byte aligned (a level vector in a slot
// does).
func levelView(b []byte, n int) []Level {
	b = b[:n*levelSize]
	return unsafe.Slice((*Level)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// levelsInPlace says that a Level is laid out in memory as a slot's
// encoded level, so that the slot's level vectors are []Level views. A
// variable, not a constant, so that tests also run the encoding path of
// big-endian machines.
var levelsInPlace = !cpu.IsBigEndian

// A Level is 16 bytes: Price at 0, Orders at 4, Shares at 8, as an encoded
// level (bookfb.Level). These fail to build otherwise.
var (
	_ [levelSize - unsafe.Sizeof(Level{})]byte
	_ [unsafe.Sizeof(Level{}) - levelSize]byte
	_ [unsafe.Offsetof(Level{}.Orders) - 4]byte
	_ [4 - unsafe.Offsetof(Level{}.Orders)]byte
	_ [unsafe.Offsetof(Level{}.Shares) - 8]byte
	_ [8 - unsafe.Offsetof(Level{}.Shares)]byte
)

// prefixTemplate is the vtable every slot FlatBuffer carries.
var prefixTemplate = func() (b [tableAt + 4]byte) {
	writeHead(b[:])
	return b
}()

// validSnapshot reports whether b is a FlatBuffer this layout version
// writes, with at most depth levels per side: everything the generated
// accessors will touch lies inside b. Read checks it so that a corrupt or
// foreign file cannot make a reader panic.
func validSnapshot(b []byte, depth int) bool {
	le := binary.LittleEndian
	if len(b) < symbolAt+4 || [tableAt + 4]byte(b[:tableAt+4]) != prefixTemplate {
		return false
	}
	if le.Uint32(b[tableAt+fSymbol:]) != symbolAt-(tableAt+fSymbol) {
		return false
	}
	symLen := int(le.Uint32(b[symbolAt:]))
	if symLen > 8 {
		return false
	}
	bids := bidsAt(symLen)
	if le.Uint32(b[tableAt+fBids:]) != uint32(bids-(tableAt+fBids)) || bids+4 > len(b) {
		return false
	}
	nb := int(le.Uint32(b[bids:]))
	if nb > depth {
		return false
	}
	_, asks := vectorsAt(symLen, nb)
	if le.Uint32(b[tableAt+fAsks:]) != uint32(asks-(tableAt+fAsks)) || asks+4 > len(b) {
		return false
	}
	na := int(le.Uint32(b[asks:]))
	return na <= depth && asks+4+na*levelSize <= len(b)
}
