package itch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

//go:generate go run gen_messages.go

// Message type bytes of ITCH 5.0.
const (
	TypeSystemEvent               byte = 'S'
	TypeStockDirectory            byte = 'R'
	TypeStockTradingAction        byte = 'H'
	TypeRegSHO                    byte = 'Y'
	TypeMarketParticipantPosition byte = 'L'
	TypeMWCBDeclineLevel          byte = 'V'
	TypeMWCBStatus                byte = 'W'
	TypeIPOQuotingPeriod          byte = 'K'
	TypeLULDAuctionCollar         byte = 'J'
	TypeOperationalHalt           byte = 'h'
	TypeAddOrder                  byte = 'A'
	TypeAddOrderMPID              byte = 'F'
	TypeOrderExecuted             byte = 'E'
	TypeOrderExecutedWithPrice    byte = 'C'
	TypeOrderCancel               byte = 'X'
	TypeOrderDelete               byte = 'D'
	TypeOrderReplace              byte = 'U'
	TypeTrade                     byte = 'P'
	TypeCrossTrade                byte = 'Q'
	TypeBrokenTrade               byte = 'B'
	TypeNOII                      byte = 'I'
	TypeRPII                      byte = 'N'
	TypeDLCR                      byte = 'O'
)

// HeaderLen is the length of the common header: type, locate, tracking and
// the 6-byte timestamp.
const HeaderLen = 11

// MaxTimestamp is the largest timestamp the 6-byte field holds.
const MaxTimestamp = 1<<48 - 1

// Types lists the 23 message types of ITCH 5.0 in the order of the
// specification.
var Types = [...]byte{
	TypeSystemEvent, TypeStockDirectory, TypeStockTradingAction, TypeRegSHO,
	TypeMarketParticipantPosition, TypeMWCBDeclineLevel, TypeMWCBStatus,
	TypeIPOQuotingPeriod, TypeLULDAuctionCollar, TypeOperationalHalt,
	TypeAddOrder, TypeAddOrderMPID, TypeOrderExecuted, TypeOrderExecutedWithPrice,
	TypeOrderCancel, TypeOrderDelete, TypeOrderReplace, TypeTrade, TypeCrossTrade,
	TypeBrokenTrade, TypeNOII, TypeRPII, TypeDLCR,
}

// Length returns the total length of a message of type t, type byte
// included, or 0 when t is not an ITCH 5.0 message type.
func Length(t byte) int { return int(lengths[t]) }

// Known reports whether t is an ITCH 5.0 message type.
func Known(t byte) bool { return lengths[t] != 0 }

// Name returns the Go name of the view of type t ("AddOrder"), or "" for an
// unknown type.
func Name(t byte) string { return names[t] }

// Symbol is a stock symbol: 8 ASCII bytes, left-justified, space padded.
type Symbol [8]byte

// NewSymbol returns s as a Symbol, space padded; bytes beyond 8 are dropped.
func NewSymbol(s string) Symbol {
	y := Symbol{' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '}
	copy(y[:], s)
	return y
}

// CheckSymbol returns why s, a symbol as written in a subscribe list (no
// padding), cannot name an instrument, or nil: a stock field holds 1 to 8
// printable ASCII bytes without spaces (NewSymbol would drop the rest and
// name another instrument), and ITCH symbols are upper case.
func CheckSymbol(s string) error {
	switch {
	case s == "" || len(s) > len(Symbol{}):
		return fmt.Errorf("%q is not a symbol (1 to 8 characters)", s)
	case strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
		return fmt.Errorf("%q is not a symbol (printable ASCII without spaces)", s)
	case strings.ToUpper(s) != s:
		return fmt.Errorf("%q is not a symbol (ITCH symbols are upper case: %q)", s, strings.ToUpper(s))
	}
	return nil
}

// Trim returns the symbol without its trailing spaces. The slice aliases s
// when s is addressable; it does not allocate.
func (s *Symbol) Trim() []byte { return bytes.TrimRight(s[:], " ") }

// String returns the symbol without trailing spaces.
func (s Symbol) String() string { return string(bytes.TrimRight(s[:], " ")) }

// MPID is a market participant identifier: 4 ASCII bytes, space padded.
type MPID [4]byte

// NewMPID returns s as an MPID, space padded; bytes beyond 4 are dropped.
func NewMPID(s string) MPID {
	p := MPID{' ', ' ', ' ', ' '}
	copy(p[:], s)
	return p
}

// String returns the MPID without trailing spaces.
func (p MPID) String() string { return string(bytes.TrimRight(p[:], " ")) }

// Header holds the common header fields of every message (the type byte is
// implied by the XxxFields struct that embeds it).
type Header struct {
	Locate    uint16 // stock locate; 0 when the message is not symbol-specific
	Tracking  uint16 // Nasdaq internal tracking number
	Timestamp uint64 // ns since midnight; only the low 48 bits are encoded
}

// Msg is one ITCH message, type byte first, as it sits in the caller's
// buffer. Its accessors read the common header in place; they require
// len(m) >= HeaderLen, which Check and Scanner guarantee for every message
// they return. Convert a Msg to its typed view (AddOrder(m), ...) after
// checking its Type.
type Msg []byte

// Type returns the message type byte.
func (m Msg) Type() byte { return m[0] }

// Locate returns the stock locate.
func (m Msg) Locate() uint16 { return binary.BigEndian.Uint16(m[1:]) }

// Tracking returns the tracking number.
func (m Msg) Tracking() uint16 { return binary.BigEndian.Uint16(m[3:]) }

// Timestamp returns nanoseconds since midnight (48 bits). It reads the
// tracking number and the timestamp as one big-endian uint64 and masks the
// tracking number off: one load and a byte swap instead of six loads.
// The index of m's last header byte is checked against len(m) first (the
// slice expression checks capacity only): a short Msg panics instead of
// reading the bytes past it.
func (m Msg) Timestamp() uint64 {
	_ = m[HeaderLen-1]
	return binary.BigEndian.Uint64(m[3:HeaderLen]) & (1<<48 - 1)
}

// Header returns the common header fields.
func (m Msg) Header() Header {
	return Header{Locate: m.Locate(), Tracking: m.Tracking(), Timestamp: m.Timestamp()}
}

// Encoder is implemented by every XxxFields struct (through its pointer).
type Encoder interface {
	// Type returns the message type byte.
	Type() byte
	// Append appends the encoded message, without length prefix, to dst.
	Append(dst []byte) []byte
	// AppendBlock appends the message framed as a block (u16 length first).
	AppendBlock(dst []byte) []byte
}

func uint48(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 |
		uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// extend grows dst by n bytes and returns the grown slice and the new bytes.
func extend(dst []byte, n int) ([]byte, []byte) {
	l := len(dst)
	if cap(dst)-l < n {
		dst = append(dst, make([]byte, n)...)
	} else {
		dst = dst[:l+n]
	}
	return dst, dst[l : l+n : l+n]
}

func putHeader(b []byte, t byte, h *Header) {
	_ = b[HeaderLen-1]
	b[0] = t
	binary.BigEndian.PutUint16(b[1:], h.Locate)
	binary.BigEndian.PutUint16(b[3:], h.Tracking)
	ts := h.Timestamp
	b[5] = byte(ts >> 40)
	b[6] = byte(ts >> 32)
	b[7] = byte(ts >> 24)
	b[8] = byte(ts >> 16)
	b[9] = byte(ts >> 8)
	b[10] = byte(ts)
}
