package book

import (
	"encoding/binary"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// rawMsgsOfBytes turns fuzz input into ITCH messages as they may come off
// the wire: each takes a type byte (one of ITCH 5.0's, or any byte), a
// length (the type's, shorter, longer, or shorter than a header) and its
// bytes from the input. Half of them are tamed (locate 0..4, references,
// shares and prices from a handful, side B or S) so that orders meet;
// the others keep every byte as given.
func rawMsgsOfBytes(data []byte) [][]byte {
	var msgs [][]byte
	for len(data) >= 2 {
		b0, b1 := data[0], data[1]
		data = data[2:]
		t := b0
		if b0 < 230 {
			t = itch.Types[int(b0)%len(itch.Types)]
		}
		n := itch.Length(t)
		switch b1 & 7 {
		case 5:
			n = max(n-1-int(b1>>3&7), 0)
		case 6:
			n += 1 + int(b1>>3&3)
		case 7:
			n = int(b1>>3) % 12
		}
		if n == 0 && b1&7 < 5 {
			n = 1 + int(b1>>3)%40
		}
		m := make([]byte, n)
		k := copy(m, data)
		data = data[k:]
		if n > 0 {
			m[0] = t
		}
		if b1&0x40 == 0 && n > 0 {
			tame(m, b1)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// tame narrows a message's locate, references, shares, prices and side
// to a few values (only fields the message is long enough to hold).
func tame(m []byte, b byte) {
	put16 := func(off int, v uint16) {
		if len(m) >= off+2 {
			binary.BigEndian.PutUint16(m[off:], v)
		}
	}
	put32 := func(off int, v uint32) {
		if len(m) >= off+4 {
			binary.BigEndian.PutUint32(m[off:], v)
		}
	}
	put64 := func(off int, v uint64) {
		if len(m) >= off+8 {
			binary.BigEndian.PutUint64(m[off:], v)
		}
	}
	small := func(off int) byte {
		if len(m) > off {
			return m[off]
		}
		return b
	}
	put16(1, uint16(small(1)%5))
	switch m[0] {
	case 'A', 'F', 'P':
		put64(11, uint64(small(11)%12))
		if len(m) > 19 {
			m[19] = "BS"[m[19]&1]
		}
		put32(20, uint32(small(20)%8))
		put32(32, 100+uint32(small(32)%4))
		put64(36, uint64(small(36)%6))
	case 'E', 'C':
		put64(11, uint64(small(11)%12))
		put32(19, uint32(small(19)%8))
		put64(23, uint64(small(23)%6))
		put32(32, 100+uint32(small(32)%4))
	case 'X', 'D':
		put64(11, uint64(small(11)%12))
		put32(19, uint32(small(19)%8))
	case 'U':
		put64(11, uint64(small(11)%12))
		put64(19, uint64(small(19)%12))
		put32(27, uint32(small(27)%8))
		put32(31, 100+uint32(small(31)%4))
	case 'Q':
		put64(11, uint64(small(11)%8))
		put32(27, 100+uint32(small(27)%4))
		put64(31, uint64(small(31)%6))
	case 'B':
		put64(11, uint64(small(11)%6))
	case 'R':
		if len(m) >= 19 {
			copy(m[11:19], []byte{'S', '0' + small(11)%3, ' ', ' ', ' ', ' ', ' ', ' '})
		}
	}
}

// skipCount is the sum of the counters that say a message was skipped,
// in part or whole: each message adds at most one to it. Long and
// LocateReassigned count messages that were applied all the same.
func skipCount(s Stats) uint64 {
	return s.Inconsistencies() - s.Long - s.LocateReassigned + s.UnknownType + s.BrokenUnmatched
}

// FuzzApplyRaw applies arbitrary messages, of every type and length, to
// books of small capacities: Apply never panics, counts every message once
// in Messages and in at most one skip counter (the notes of a message
// applied all the same, Long, LocateReassigned and a C's BadState, apart),
// and the books keep their invariants.
func FuzzApplyRaw(f *testing.F) {
	f.Add([]byte("\x01\x00R....\x0a\x00\x01\x00A\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00"))
	f.Add([]byte("\x0b\x05\x0a\x06\x0f\x07\x10\x00\x13\x00\xff\x00\xe8\x47"))
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, err := New(Config{MaxOrders: 8, MaxLocates: 3, MaxLevels: 6, RefTableSize: 8, Overflow: 4, TradeMemory: 4})
		if err != nil {
			t.Fatal(err)
		}
		for l := uint16(1); l <= 3; l++ {
			d := itch.StockDirectoryFields{Header: itch.Header{Locate: l}, Stock: itch.Symbol{'S', byte('0' + l%3), ' ', ' ', ' ', ' ', ' ', ' '}}
			bs.Apply(d.Append(nil))
		}
		for i, m := range rawMsgsOfBytes(data) {
			before := bs.Stats()
			bs.Apply(m)
			after := bs.Stats()
			if after.Messages != before.Messages+1 {
				t.Fatalf("message %d %q: Messages %d -> %d", i, m, before.Messages, after.Messages)
			}
			d := skipCount(after) - skipCount(before)
			if len(m) > 0 && m[0] == itch.TypeOrderExecutedWithPrice {
				// A C with a printable flag neither 'Y' nor 'N' is
				// applied, as non-printable, and counted in BadState:
				// a note, as Long is, beside any skip counter of its
				// execution (an over-execution, say).
				d -= after.BadState - before.BadState
			}
			if d > 1 {
				t.Fatalf("message %d %x: counted in %d skip counters\nbefore %+v\nafter  %+v", i, m, d, before, after)
			}
			if err := checkInvariants(bs); err != nil {
				t.Fatalf("message %d %x: %v", i, m, err)
			}
		}
	})
}
