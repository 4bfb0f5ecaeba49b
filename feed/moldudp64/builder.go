package moldudp64

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

var (
	// ErrFull is returned by Builder.Add when the packet being built has no
	// room for the message: Flush, then Add it again.
	ErrFull = errors.New("add to moldudp64 packet: packet full")
	// ErrTooLarge is returned by Builder.Add for a message that does not fit
	// even an empty packet.
	ErrTooLarge = errors.New("add to moldudp64 packet: message larger than the packet payload limit")
	// ErrSeqExhausted is returned by Builder.Add when the next sequence
	// number would pass 2^64-1.
	ErrSeqExhausted = errors.New("add to moldudp64 packet: sequence numbers exhausted")
)

// Builder packs messages into downstream packets of at most a given number of
// bytes (header included: the UDP payload) and numbers them. Use NewBuilder
// or Reset; the zero value is not ready. In steady state it allocates
// nothing: the packet returned by Flush, Heartbeat or EndOfSession lives in
// the Builder's buffers and stays valid until the next call that returns a
// packet of the same kind (Flush for data packets; Heartbeat and EndOfSession
// share a second buffer), so a pending data packet survives a heartbeat.
//
//	b := moldudp64.NewBuilder(moldudp64.NewSession("20261124A"), 1, 0)
//	for _, msg := range msgs {
//		if err := b.Add(msg); errors.Is(err, moldudp64.ErrFull) {
//			send(b.Flush())
//			b.Add(msg)
//		}
//	}
//	send(b.Flush())
type Builder struct {
	session Session
	next    uint64 // sequence number of the first message of the packet being built
	max     int    // largest packet, header included
	count   int    // messages in the packet being built
	buf     []byte // header + blocks of the packet being built
	ctl     []byte // heartbeat / end of session
}

// NewBuilder returns a Builder for session whose first message gets sequence
// number next (MoldUDP64 sessions start at 1). maxPacket is the largest
// packet in bytes, header included; 0 means MaxPayload.
func NewBuilder(session Session, next uint64, maxPacket int) *Builder {
	b := new(Builder)
	b.Reset(session, next, maxPacket)
	return b
}

// Reset drops any pending messages and restarts b as NewBuilder would,
// keeping its buffers. It panics if maxPacket cannot hold one header and an
// empty block or exceeds 65535, or if next is 0.
func (b *Builder) Reset(session Session, next uint64, maxPacket int) {
	if maxPacket == 0 {
		maxPacket = MaxPayload
	}
	if maxPacket < HeaderLen+2 || maxPacket > math.MaxUint16 {
		panic(fmt.Sprintf("moldudp64: new builder: packet size %d outside [%d, %d]", maxPacket, HeaderLen+2, math.MaxUint16))
	}
	if next == 0 {
		panic("moldudp64: new builder: sequence numbers start at 1")
	}
	b.session, b.next, b.max, b.count = session, next, maxPacket, 0
	if cap(b.buf) < maxPacket {
		b.buf = make([]byte, 0, maxPacket)
	}
	if cap(b.ctl) < HeaderLen {
		b.ctl = make([]byte, 0, HeaderLen)
	}
	b.buf = AppendHeader(b.buf[:0], session, next, 0)
}

// Session returns the session name.
func (b *Builder) Session() Session { return b.session }

// Seq returns the sequence number the next added message will get.
func (b *Builder) Seq() uint64 { return b.next + uint64(b.count) }

// Pending returns the number of messages in the packet being built.
func (b *Builder) Pending() int { return b.count }

// Len returns the size of the packet being built, header included.
func (b *Builder) Len() int { return len(b.buf) }

// Fits reports whether a message of n bytes fits the packet being built.
func (b *Builder) Fits(n int) bool {
	return len(b.buf)+2+n <= b.max && b.count < MaxCount
}

// Add appends msg as the next message of the packet being built. See ErrFull,
// ErrTooLarge and ErrSeqExhausted; on error nothing is added.
func (b *Builder) Add(msg []byte) error {
	if HeaderLen+2+len(msg) > b.max {
		return ErrTooLarge
	}
	if !b.Fits(len(msg)) {
		return ErrFull
	}
	if b.Seq() == math.MaxUint64 {
		// Seq+Count of the packet must stay representable.
		return ErrSeqExhausted
	}
	b.buf = binary.BigEndian.AppendUint16(b.buf, uint16(len(msg)))
	b.buf = append(b.buf, msg...)
	b.count++
	return nil
}

// Flush finishes the packet being built and returns it, or nil when it holds
// no message. The returned bytes are valid until the next Add or Flush.
func (b *Builder) Flush() []byte {
	if b.count == 0 {
		return nil
	}
	binary.BigEndian.PutUint64(b.buf[10:], b.next)
	binary.BigEndian.PutUint16(b.buf[18:], uint16(b.count))
	pkt := b.buf
	b.next += uint64(b.count)
	b.count = 0
	// The next Add reuses the buffer from the header on.
	b.buf = b.buf[:HeaderLen]
	return pkt
}

// Heartbeat returns a heartbeat packet carrying the sequence number of the
// next message not yet flushed. It does not disturb the packet being built.
// The bytes are valid until the next Heartbeat or EndOfSession.
func (b *Builder) Heartbeat() []byte {
	b.ctl = AppendHeader(b.ctl[:0], b.session, b.next, 0)
	return b.ctl
}

// EndOfSession returns an end-of-session packet (count 0xFFFF) carrying the
// next sequence number, like Heartbeat.
func (b *Builder) EndOfSession() []byte {
	b.ctl = AppendHeader(b.ctl[:0], b.session, b.next, EndOfSessionCount)
	return b.ctl
}
