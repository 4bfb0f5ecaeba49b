package moldudp64

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
)

const (
	// HeaderLen is the length of the downstream packet header: session (10),
	// sequence number (8), message count (2).
	HeaderLen = 20
	// RequestLen is the length of a request packet.
	RequestLen = 20
	// EndOfSessionCount is the message count of an end-of-session packet.
	EndOfSessionCount = 0xFFFF
	// MaxCount is the largest message count of a packet carrying messages.
	MaxCount = EndOfSessionCount - 1
	// MaxPayload is the typical largest UDP payload (header included) a
	// sender puts in one packet; Builder's default.
	MaxPayload = 1400
	// SessionLen is the length of the session name.
	SessionLen = 10
)

// Errors returned by Parse and ParseRequest. They are preallocated sentinels
// (Parse allocates nothing, even on error); compare with errors.Is and count
// them with ParseErrors.
var (
	ErrShortHeader = errors.New("parse moldudp64 packet: shorter than the 20-byte header")
	ErrOverrun     = errors.New("parse moldudp64 packet: message blocks overrun the datagram")
	ErrTrailing    = errors.New("parse moldudp64 packet: bytes after the last message block")
	ErrSeqZero     = errors.New("parse moldudp64 packet: sequence number 0")
	ErrSeqOverflow = errors.New("parse moldudp64 packet: sequence number plus count overflows uint64")
	ErrBadRequest  = errors.New("parse moldudp64 request: not 20 bytes")
)

// Session is the 10-byte session name: ASCII, left-justified, space padded.
type Session [SessionLen]byte

// NewSession returns s as a Session, space padded; bytes beyond 10 are dropped.
func NewSession(s string) Session {
	var v Session
	for i := range v {
		v[i] = ' '
	}
	copy(v[:], s)
	return v
}

// String returns the session name without trailing spaces.
func (s Session) String() string { return string(bytes.TrimRight(s[:], " ")) }

// Packet is a parsed downstream packet. Blocks aliases the datagram.
type Packet struct {
	Session Session
	Seq     uint64 // sequence number of the first message; for heartbeats and end of session, the next expected
	Count   uint16 // messages in Blocks; 0 heartbeat; EndOfSessionCount end of session
	Blocks  []byte // Count blocks of [u16 length][message], exactly
}

// Parse validates b as one downstream packet and returns it. The whole
// packet is checked before anything is returned, so a caller never applies
// half a packet:
//
//   - shorter than HeaderLen: ErrShortHeader;
//   - sequence number 0: ErrSeqZero (MoldUDP64 sequences start at 1);
//   - Seq+Count (the next expected sequence number) beyond 2^64-1:
//     ErrSeqOverflow;
//   - the Count blocks run past the end of b: ErrOverrun;
//   - bytes left after the Count blocks (or after the header of a heartbeat
//     or end-of-session packet): ErrTrailing. Receivers pass the UDP payload
//     exactly (not Ethernet padding), so extra bytes mean a count that does
//     not match the payload: the packet is rejected rather than guessed at.
//
// Parse does not look inside messages (package itch validates those).
func Parse(b []byte) (Packet, error) {
	var p Packet
	err := ParseInto(&p, b)
	return p, err
}

// ParseInto is Parse into the caller's *p, written only when b is valid
// (on an error *p is left as it was): a hot caller parsing into a local of
// its own saves the copies of a returned Packet (its Session array keeps it
// in memory: a result is copied out, then into the caller's variable).
func ParseInto(p *Packet, b []byte) error {
	// Every copy of every datagram comes here, the other line's too: the
	// header is read into registers and the Packet written once, at the
	// end, straight into *p; off and end unsigned (off cannot wrap: at
	// most 65,534 blocks of 65,537 bytes), and the walk has no bounds
	// check (see lo).
	if len(b) < HeaderLen {
		return ErrShortHeader
	}
	seq := binary.BigEndian.Uint64(b[10:])
	count := binary.BigEndian.Uint16(b[18:])
	if seq == 0 {
		return ErrSeqZero
	}
	off, end := uint(HeaderLen), uint(len(b))
	if count == 0 || count == EndOfSessionCount {
		if off != end {
			return ErrTrailing
		}
		p.Session, p.Seq, p.Count, p.Blocks = Session(b[:SessionLen]), seq, count, nil
		return nil
	}
	if seq > math.MaxUint64-uint64(count) {
		return ErrSeqOverflow
	}
	// Walk the length prefixes. A block that overruns leaves off past the
	// end, which the next prefix check or the final check catches. A
	// prefix's second byte is read from lo, b less its first byte: the one
	// test off < len(lo) puts both bytes in bounds for the compiler, where
	// off+1 < len(b) left a bounds check on b[off+1] (off+1 might wrap),
	// 3 of 13 instructions a block. The loop ends on the count, not on
	// the offset: a walk while a prefix fits, comparing the blocks it
	// counted with count after, runs 8 instructions a block, not 10, but
	// took a third longer an offer (BenchmarkArbiterTwoLines, pinned,
	// medians of 7: 67.6 ns a packet against 49.9): its exit waits for
	// the chain of prefix loads, where the count's is known at once.
	lo := b[1:]
	for range count {
		if off >= uint(len(lo)) {
			return ErrOverrun
		}
		off += 2 + (uint(lo[off]) | uint(b[off])<<8)
	}
	if off > end {
		return ErrOverrun
	}
	if off != end {
		return ErrTrailing
	}
	// Field by field: a composite literal is built on the stack and copied.
	p.Session, p.Seq, p.Count, p.Blocks = Session(b[:SessionLen]), seq, count, b[HeaderLen:end:end]
	return nil
}

// Heartbeat reports whether p is a heartbeat (count 0).
func (p *Packet) Heartbeat() bool { return p.Count == 0 }

// EndOfSession reports whether p announces the end of the session.
func (p *Packet) EndOfSession() bool { return p.Count == EndOfSessionCount }

// Messages returns the number of messages p carries (0 for heartbeats and
// end of session).
func (p *Packet) Messages() int {
	if p.Count == EndOfSessionCount {
		return 0
	}
	return int(p.Count)
}

// Next returns the sequence number expected after p: Seq+Messages().
func (p *Packet) Next() uint64 { return p.Seq + uint64(p.Messages()) }

// Range returns the sequence numbers of p's messages (Count 0 for heartbeats
// and end of session).
func (p *Packet) Range() Range { return Range{First: p.Seq, Count: uint64(p.Messages())} }

// Iter returns an iterator over p's messages.
func (p *Packet) Iter() Iter { return Iter{blocks: p.Blocks, seq: p.Seq} }

// Iter walks the messages of a parsed packet in place without allocating:
//
//	it := p.Iter()
//	for msg, ok := it.Next(); ok; msg, ok = it.Next() { ... it.Seq() ... }
//
// It relies on Parse's validation; an Iter built over unvalidated bytes stops
// at the first block that does not fit.
type Iter struct {
	blocks []byte
	seq    uint64 // sequence number of the next message
}

// Next returns the next message (without its length prefix), or false after
// the last one.
func (it *Iter) Next() ([]byte, bool) {
	if len(it.blocks) < 2 {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(it.blocks))
	if len(it.blocks)-2 < n {
		it.blocks = nil
		return nil, false
	}
	msg := it.blocks[2 : 2+n : 2+n]
	it.blocks = it.blocks[2+n:]
	it.seq++
	return msg, true
}

// Seq returns the sequence number of the message last returned by Next.
func (it *Iter) Seq() uint64 { return it.seq - 1 }

// Skip drops the next k messages (the already-seen head of a partially
// overlapping packet) and reports how many it dropped.
func (it *Iter) Skip(k int) int {
	i := 0
	for ; i < k; i++ {
		if _, ok := it.Next(); !ok {
			break
		}
	}
	return i
}

// AppendHeader appends a downstream packet header to dst.
func AppendHeader(dst []byte, s Session, seq uint64, count uint16) []byte {
	dst = append(dst, s[:]...)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return binary.BigEndian.AppendUint16(dst, count)
}

// Append appends p (header and Blocks) to dst.
func (p *Packet) Append(dst []byte) []byte {
	return append(AppendHeader(dst, p.Session, p.Seq, p.Count), p.Blocks...)
}

// Request is a retransmission request: Count messages from Seq.
type Request struct {
	Session Session
	Seq     uint64 // first sequence number requested
	Count   uint16 // messages requested
}

// Append appends the 20-byte request packet to dst.
func (r Request) Append(dst []byte) []byte { return AppendHeader(dst, r.Session, r.Seq, r.Count) }

// ParseRequest decodes a request packet, which must be exactly RequestLen
// bytes; otherwise it returns ErrBadRequest.
func ParseRequest(b []byte) (Request, error) {
	if len(b) != RequestLen {
		return Request{}, ErrBadRequest
	}
	return Request{
		Session: Session(b[:SessionLen]),
		Seq:     binary.BigEndian.Uint64(b[10:]),
		Count:   binary.BigEndian.Uint16(b[18:]),
	}, nil
}

// ParseErrors counts Parse failures by kind; embed it in receive statistics.
type ParseErrors struct {
	ShortHeader uint64
	Overrun     uint64
	Trailing    uint64
	SeqZero     uint64
	SeqOverflow uint64
	Other       uint64
}

// Count adds err to its counter (nil is ignored).
func (c *ParseErrors) Count(err error) {
	switch {
	case err == nil:
	case errors.Is(err, ErrShortHeader):
		c.ShortHeader++
	case errors.Is(err, ErrOverrun):
		c.Overrun++
	case errors.Is(err, ErrTrailing):
		c.Trailing++
	case errors.Is(err, ErrSeqZero):
		c.SeqZero++
	case errors.Is(err, ErrSeqOverflow):
		c.SeqOverflow++
	default:
		c.Other++
	}
}

// Total returns the number of packets rejected.
func (c *ParseErrors) Total() uint64 {
	return c.ShortHeader + c.Overrun + c.Trailing + c.SeqZero + c.SeqOverflow + c.Other
}
