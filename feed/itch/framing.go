package itch

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// BlockHeaderLen is the size of the big-endian u16 length in front of every
// message in BinaryFILE and MoldUDP64.
const BlockHeaderLen = 2

// MaxBlockLen is the largest message a block can frame.
const MaxBlockLen = 0xFFFF

var (
	// ErrShortMessage is wrapped by *LengthError: a message of a known type
	// is shorter than the type's length. Framing is intact.
	ErrShortMessage = errors.New("short message")
	// ErrTruncated is wrapped by *FrameError: a block's length prefix or
	// body runs past the end of the buffer. Framing is lost from there on.
	ErrTruncated = errors.New("truncated block")
	// ErrUnknownType is returned by Check for a message whose type is not an
	// ITCH 5.0 type. Scanners skip such messages and count them instead.
	ErrUnknownType = errors.New("unknown message type")
)

// LengthError reports a message shorter than its type's length. A zero-length
// block is reported with Type 0 and Want 1.
type LengthError struct {
	Type   byte  // message type
	Offset int64 // offset of the block (its length prefix) in the stream; 0 from Check
	Have   int   // bytes the block holds
	Want   int   // Length(Type)
}

func (e *LengthError) Error() string {
	name := Name(e.Type)
	if name == "" {
		name = "empty"
	}
	return fmt.Sprintf("decode itch message %q (%s) at offset %d: have %d bytes, want %d: %v",
		e.Type, name, e.Offset, e.Have, e.Want, ErrShortMessage)
}

// Unwrap returns ErrShortMessage.
func (e *LengthError) Unwrap() error { return ErrShortMessage }

// FrameError reports a block that runs past the end of the buffer.
type FrameError struct {
	Offset int64 // offset of the block (its length prefix) in the stream
	Length int   // the block's length prefix; -1 when the prefix itself is cut
	Remain int   // bytes left in the buffer from Offset
}

func (e *FrameError) Error() string {
	if e.Length < 0 {
		return fmt.Sprintf("frame itch block at offset %d: %d byte(s) left, length prefix needs 2: %v",
			e.Offset, e.Remain, ErrTruncated)
	}
	return fmt.Sprintf("frame itch block at offset %d: length %d overruns the %d byte(s) left after the prefix: %v",
		e.Offset, e.Length, e.Remain-BlockHeaderLen, ErrTruncated)
}

// Unwrap returns ErrTruncated.
func (e *FrameError) Unwrap() error { return ErrTruncated }

// Counters count what a Scanner or Counters.Accept saw. Embed it where the
// figures are reported; the zero value is ready.
type Counters struct {
	Messages    uint64 // messages of known types passed on
	Long        uint64 // of those, messages longer than their type's length (extra bytes ignored)
	Unknown     uint64 // messages of unknown types, skipped
	LastUnknown byte   // type byte of the last unknown message
	Short       uint64 // messages shorter than their type's length (and empty blocks)
	Truncated   uint64 // blocks overrunning their buffer
}

// Add adds o's counts to c (LastUnknown is taken from o when o saw any).
func (c *Counters) Add(o *Counters) {
	c.Messages += o.Messages
	c.Long += o.Long
	c.Unknown += o.Unknown
	if o.Unknown != 0 {
		c.LastUnknown = o.LastUnknown
	}
	c.Short += o.Short
	c.Truncated += o.Truncated
}

// Errors returns the number of messages or blocks that could not be used
// (short plus truncated); unknown types are not errors.
func (c *Counters) Errors() uint64 { return c.Short + c.Truncated }

// Accept validates one unframed message, counts it, and reports whether it
// is a message of a known type at least as long as its type's length. It is
// the per-message check for transports that frame messages themselves
// (MoldUDP64 iteration): a rejected message still consumed its sequence
// number.
func (c *Counters) Accept(msg []byte) (Msg, bool) {
	if len(msg) == 0 {
		c.Short++
		return nil, false
	}
	want := int(lengths[msg[0]])
	switch {
	case want == 0:
		c.Unknown++
		c.LastUnknown = msg[0]
		return nil, false
	case len(msg) < want:
		c.Short++
		return nil, false
	case len(msg) > want:
		c.Long++
	}
	c.Messages++
	return Msg(msg), true
}

// Check validates one unframed message: nil for a known type of sufficient
// length, an error wrapping ErrUnknownType for an unknown type, and a
// *LengthError (Offset 0) for a short or empty message. Longer messages are
// accepted; the views read their published prefix.
func Check(msg []byte) error {
	if len(msg) == 0 {
		return &LengthError{Have: 0, Want: 1}
	}
	want := int(lengths[msg[0]])
	if want == 0 {
		return fmt.Errorf("check itch message type %q: %w", msg[0], ErrUnknownType)
	}
	if len(msg) < want {
		return &LengthError{Type: msg[0], Have: len(msg), Want: want}
	}
	return nil
}

// AppendBlock appends msg framed as a block: its u16 big-endian length, then
// the bytes. It panics if msg is longer than MaxBlockLen.
func AppendBlock(dst []byte, msg []byte) []byte {
	if len(msg) > MaxBlockLen {
		panic(fmt.Sprintf("itch: append block: message of %d bytes exceeds %d", len(msg), MaxBlockLen))
	}
	dst = append(dst, byte(len(msg)>>8), byte(len(msg)))
	return append(dst, msg...)
}

// Scanner iterates the messages of a buffer of blocks ([u16 length][message]
// repeated) in place, without allocating. The zero value scans an empty
// buffer; Reset points it at data.
//
//	var s itch.Scanner
//	s.Reset(buf)
//	for m, ok := s.Next(); ok; m, ok = s.Next() {
//		switch m.Type() { case itch.TypeAddOrder: a := itch.AddOrder(m); ... }
//	}
//	if err := s.Err(); err != nil { ... }
//
// Next returns only messages of known types at least as long as their type's
// length, so the typed views can be used without further checks. Unknown
// types are skipped by their block length and counted. A short message stops
// the scan with a *LengthError (framing is intact: Resume continues after
// it); a block overrunning the buffer stops it with a *FrameError (framing is
// lost; the scan is over). The embedded Counters accumulate across Resets.
type Scanner struct {
	Counters

	buf  []byte
	off  int   // next block
	base int64 // stream offset of buf[0]
	last int   // offset of the block last returned or rejected
	err  error
}

// Reset starts scanning b; offsets in errors count from 0.
func (s *Scanner) Reset(b []byte) { s.ResetAt(b, 0) }

// ResetAt starts scanning b, whose first byte is at offset base of the
// stream (a file offset, for error messages).
func (s *Scanner) ResetAt(b []byte, base int64) {
	s.buf, s.off, s.base, s.last, s.err = b, 0, base, 0, nil
}

// Next returns the next message of a known type, or false at the end of the
// buffer or on error (see Err).
func (s *Scanner) Next() (Msg, bool) {
	// Fast path: a complete block holding a known type of exactly its
	// length. Everything else (end, errors, unknown, long) goes through next.
	b, off := s.buf, s.off
	if off+BlockHeaderLen < len(b) && s.err == nil {
		n := int(b[off])<<8 | int(b[off+1])
		end := off + BlockHeaderLen + n
		if end <= len(b) && n != 0 && n == int(lengths[b[off+BlockHeaderLen]]) {
			s.off, s.last = end, off
			s.Messages++
			return Msg(b[off+BlockHeaderLen : end : end]), true
		}
	}
	return s.next()
}

func (s *Scanner) next() (Msg, bool) {
	for s.err == nil {
		rem := len(s.buf) - s.off
		if rem == 0 {
			return nil, false
		}
		start := s.off
		s.last = start
		if rem < BlockHeaderLen {
			s.Truncated++
			s.err = &FrameError{Offset: s.base + int64(start), Length: -1, Remain: rem}
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(s.buf[start:]))
		if rem-BlockHeaderLen < n {
			s.Truncated++
			s.err = &FrameError{Offset: s.base + int64(start), Length: n, Remain: rem}
			return nil, false
		}
		end := start + BlockHeaderLen + n
		msg := s.buf[start+BlockHeaderLen : end : end]
		s.off = end
		if n == 0 {
			s.Short++
			s.err = &LengthError{Offset: s.base + int64(start), Have: 0, Want: 1}
			return nil, false
		}
		t := msg[0]
		want := int(lengths[t])
		switch {
		case want == 0:
			s.Unknown++
			s.LastUnknown = t
			continue
		case n < want:
			s.Short++
			s.err = &LengthError{Type: t, Offset: s.base + int64(start), Have: n, Want: want}
			return nil, false
		case n > want:
			s.Long++
		}
		s.Messages++
		return Msg(msg), true
	}
	return nil, false
}

// Err returns the error that stopped the scan, or nil at a clean end.
func (s *Scanner) Err() error { return s.err }

// Offset returns the stream offset of the block last returned by Next (or
// the one that caused Err).
func (s *Scanner) Offset() int64 { return s.base + int64(s.last) }

// Rest returns the unscanned bytes: after a *FrameError, the truncated block
// (a streaming reader keeps it and prepends it to its next read).
func (s *Scanner) Rest() []byte { return s.buf[s.off:] }

// Resume clears a *LengthError so that Next continues with the block after
// the short message, and reports whether it did. A *FrameError is final.
func (s *Scanner) Resume() bool {
	var le *LengthError
	if errors.As(s.err, &le) {
		s.err = nil
		return true
	}
	return false
}

// Validate scans a whole buffer of blocks and returns its counts and the
// first error: a *LengthError for the first short message (the scan goes on
// past it and counts the rest) or a *FrameError for a block overrunning the
// buffer (the scan stops there). It allocates nothing for a valid buffer.
func Validate(b []byte) (Counters, error) {
	var s Scanner
	s.Reset(b)
	var first error
	for {
		if _, ok := s.Next(); ok {
			continue
		}
		if s.err == nil {
			break
		}
		if first == nil {
			first = s.err
		}
		if !s.Resume() {
			break
		}
	}
	return s.Counters, first
}
