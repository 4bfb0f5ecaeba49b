package soupbintcp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
)

// Packet types.
const (
	TypeDebug           byte = '+'
	TypeLoginAccepted   byte = 'A'
	TypeLoginRejected   byte = 'J'
	TypeSequencedData   byte = 'S'
	TypeUnsequencedData byte = 'U'
	TypeServerHeartbeat byte = 'H'
	TypeEndOfSession    byte = 'Z'
	TypeLoginRequest    byte = 'L'
	TypeClientHeartbeat byte = 'R'
	TypeLogoutRequest   byte = 'O'
)

// Login Rejected reason codes.
const (
	RejectNotAuthorized      byte = 'A'
	RejectSessionUnavailable byte = 'S'
)

// Field widths and fixed payload lengths (type byte excluded).
const (
	UsernameLen = 6
	PasswordLen = 10
	SessionLen  = 10
	SeqLen      = 20

	LoginRequestLen  = UsernameLen + PasswordLen + SessionLen + SeqLen // 46
	LoginAcceptedLen = SessionLen + SeqLen                             // 30
	LoginRejectedLen = 1
)

// HeaderLen is the length prefix plus the type byte.
const HeaderLen = 3

// MaxPayload is the largest payload a packet can carry: the length field
// is 16 bits and counts the type byte.
const MaxPayload = 0xFFFF - 1

// Errors. Every framing or packet error wraps ErrMalformed.
var (
	ErrMalformed   = errors.New("soupbintcp: malformed packet")
	ErrEmpty       = fmt.Errorf("%w: zero packet length", ErrMalformed)
	ErrOversized   = fmt.Errorf("%w: packet longer than the limit", ErrMalformed)
	ErrTruncated   = fmt.Errorf("%w: stream ends inside a packet", ErrMalformed)
	ErrUnknownType = fmt.Errorf("%w: unknown packet type", ErrMalformed)
	ErrBadLength   = fmt.Errorf("%w: wrong length for the packet type", ErrMalformed)
	ErrBadField    = fmt.Errorf("%w: invalid field", ErrMalformed)
)

// Direction says which side sent a stream, and so which packet types are
// valid in it.
type Direction uint8

const (
	FromServer Direction = iota // '+', 'A', 'J', 'S', 'U', 'H', 'Z'
	FromClient                  // '+', 'L', 'U', 'R', 'O'
)

// Valid reports whether typ may be sent in direction d.
func (d Direction) Valid(typ byte) bool {
	switch typ {
	case TypeDebug, TypeUnsequencedData:
		return true
	case TypeLoginAccepted, TypeLoginRejected, TypeSequencedData, TypeServerHeartbeat, TypeEndOfSession:
		return d == FromServer
	case TypeLoginRequest, TypeClientHeartbeat, TypeLogoutRequest:
		return d == FromClient
	}
	return false
}

// fixedLen returns the payload length of fixed-size packet types, or -1.
func fixedLen(typ byte) int {
	switch typ {
	case TypeLoginAccepted:
		return LoginAcceptedLen
	case TypeLoginRejected:
		return LoginRejectedLen
	case TypeLoginRequest:
		return LoginRequestLen
	case TypeServerHeartbeat, TypeEndOfSession, TypeClientHeartbeat, TypeLogoutRequest:
		return 0
	}
	return -1
}

// Stats count packets and errors. The fields are atomic so another
// goroutine may read them while a connection runs; one Stats may be shared
// by many connections.
type Stats struct {
	Packets     atomic.Uint64 // packets read, any type
	Bytes       atomic.Uint64 // bytes read, framing included
	Sequenced   atomic.Uint64 // 'S' packets read
	Unsequenced atomic.Uint64 // 'U' packets read
	Heartbeats  atomic.Uint64 // heartbeats read ('H' or 'R')
	Debug       atomic.Uint64 // '+' packets read

	Sent           atomic.Uint64 // packets written
	SentBytes      atomic.Uint64
	SentHeartbeats atomic.Uint64

	// Malformed input, by kind.
	Empty       atomic.Uint64
	Oversized   atomic.Uint64
	Truncated   atomic.Uint64
	UnknownType atomic.Uint64
	BadLength   atomic.Uint64
	BadField    atomic.Uint64
}

// Malformed returns the total of the malformed-input counters.
func (s *Stats) Malformed() uint64 {
	return s.Empty.Load() + s.Oversized.Load() + s.Truncated.Load() + s.UnknownType.Load() + s.BadLength.Load() + s.BadField.Load()
}

// Count adds err to its counter when it is one of this package's
// malformed-input errors.
func (s *Stats) Count(err error) {
	switch {
	case errors.Is(err, ErrEmpty):
		s.Empty.Add(1)
	case errors.Is(err, ErrOversized):
		s.Oversized.Add(1)
	case errors.Is(err, ErrTruncated):
		s.Truncated.Add(1)
	case errors.Is(err, ErrUnknownType):
		s.UnknownType.Add(1)
	case errors.Is(err, ErrBadLength):
		s.BadLength.Add(1)
	case errors.Is(err, ErrBadField):
		s.BadField.Add(1)
	}
}

// StatsSnapshot is a plain copy of Stats.
type StatsSnapshot struct {
	Packets, Bytes, Sequenced, Unsequenced, Heartbeats, Debug uint64
	Sent, SentBytes, SentHeartbeats                           uint64
	Empty, Oversized, Truncated, UnknownType, BadLength       uint64
	BadField                                                  uint64
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{
		Packets: s.Packets.Load(), Bytes: s.Bytes.Load(), Sequenced: s.Sequenced.Load(),
		Unsequenced: s.Unsequenced.Load(), Heartbeats: s.Heartbeats.Load(), Debug: s.Debug.Load(),
		Sent: s.Sent.Load(), SentBytes: s.SentBytes.Load(), SentHeartbeats: s.SentHeartbeats.Load(),
		Empty: s.Empty.Load(), Oversized: s.Oversized.Load(), Truncated: s.Truncated.Load(),
		UnknownType: s.UnknownType.Load(), BadLength: s.BadLength.Load(), BadField: s.BadField.Load(),
	}
}

// AppendPacket appends one framed packet of type typ. The payload must be
// at most MaxPayload bytes long: the length field would wrap (Client.Send
// and ServerConn.WritePacket check it).
func AppendPacket(dst []byte, typ byte, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(payload)+1))
	dst = append(dst, typ)
	return append(dst, payload...)
}

// checkPayload returns ErrOversized for a payload the length field cannot
// count.
func checkPayload(p []byte) error {
	if len(p) > MaxPayload {
		return fmt.Errorf("%w: payload of %d bytes, limit %d", ErrOversized, len(p), MaxPayload)
	}
	return nil
}

// AppendAlpha appends s left-justified in a field of width n, padded with
// spaces; longer values are cut to n.
func AppendAlpha(dst []byte, s string, n int) []byte {
	if len(s) > n {
		s = s[:n]
	}
	dst = append(dst, s...)
	for range n - len(s) {
		dst = append(dst, ' ')
	}
	return dst
}

// AppendSession appends a session name right-justified in the 10-byte
// session field, padded on the left with spaces: the specification says
// of the session in Login Accepted "Left padded with spaces", and the
// Requested Session of the Login Request names the same session, so it is
// written the same way (a server that compares the field as it sends it
// then finds it). All spaces (s "") is the currently active session.
// Spaces around s are padding, not part of the name (ParseAlpha drops them
// on reading); longer values are cut to 10.
func AppendSession(dst []byte, s string) []byte {
	s = strings.Trim(s, " ")
	if len(s) > SessionLen {
		s = s[:SessionLen]
	}
	for range SessionLen - len(s) {
		dst = append(dst, ' ')
	}
	return append(dst, s...)
}

// AppendNumeric appends v as ASCII digits right-justified in a field of
// width n, padded on the left with spaces. v must fit (20 digits always
// fit a uint64).
func AppendNumeric(dst []byte, v uint64, n int) []byte {
	var buf [20]byte
	d := strconv.AppendUint(buf[:0], v, 10)
	for range n - len(d) {
		dst = append(dst, ' ')
	}
	return append(dst, d...)
}

// pad reports whether c pads a received field: a space, as the
// specification writes them, or a NUL, as some servers fill fixed fields
// (Nasdaq's own SoupBinTCP library reads numeric fields with both stripped;
// Wireshark dissectors of the Open Markets Initiative read alpha fields up
// to the first NUL).
func pad(c byte) bool { return c == ' ' || c == 0 }

// trim returns f without its padding on either side.
func trim(f []byte) []byte {
	i, j := 0, len(f)
	for j > i && pad(f[j-1]) {
		j--
	}
	for i < j && pad(f[i]) {
		i++
	}
	return f[i:j]
}

// ParseAlpha returns an alpha field without its padding (spaces or NULs)
// on either side.
func ParseAlpha(f []byte) string { return string(trim(f)) }

// ParseNumeric parses a numeric field: ASCII digits with optional padding
// (spaces or NULs) on either side; all padding is 0. Anything else,
// padding between digits included, is ErrBadField.
func ParseNumeric(f []byte) (uint64, error) {
	digits := trim(f)
	if len(digits) == 0 {
		return 0, nil
	}
	var v uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: numeric field %q", ErrBadField, f)
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, fmt.Errorf("%w: numeric field %q overflows", ErrBadField, f)
		}
		v = v*10 + d
	}
	return v, nil
}

// LoginRequest is the client's 'L' packet.
type LoginRequest struct {
	Username string // up to 6 characters
	Password string // up to 10 characters
	Session  string // up to 10 characters; "" = the currently active session
	Sequence uint64 // next sequence number wanted; 0 = the next message generated
}

// String shows the request without its password.
func (r LoginRequest) String() string {
	return fmt.Sprintf("login user %q session %q sequence %d", r.Username, r.Session, r.Sequence)
}

// AppendLoginRequest appends a framed 'L' packet.
func AppendLoginRequest(dst []byte, r LoginRequest) []byte {
	dst = binary.BigEndian.AppendUint16(dst, LoginRequestLen+1)
	dst = append(dst, TypeLoginRequest)
	dst = AppendAlpha(dst, r.Username, UsernameLen)
	dst = AppendAlpha(dst, r.Password, PasswordLen)
	dst = AppendSession(dst, r.Session)
	return AppendNumeric(dst, r.Sequence, SeqLen)
}

// ParseLoginRequest decodes the payload of an 'L' packet.
func ParseLoginRequest(p []byte) (LoginRequest, error) {
	if len(p) != LoginRequestLen {
		return LoginRequest{}, fmt.Errorf("%w: login request of %d bytes, want %d", ErrBadLength, len(p), LoginRequestLen)
	}
	seq, err := ParseNumeric(p[UsernameLen+PasswordLen+SessionLen:])
	if err != nil {
		return LoginRequest{}, fmt.Errorf("login request sequence: %w", err)
	}
	return LoginRequest{
		Username: ParseAlpha(p[:UsernameLen]),
		Password: ParseAlpha(p[UsernameLen : UsernameLen+PasswordLen]),
		Session:  ParseAlpha(p[UsernameLen+PasswordLen : UsernameLen+PasswordLen+SessionLen]),
		Sequence: seq,
	}, nil
}

// AppendLoginAccepted appends a framed 'A' packet.
func AppendLoginAccepted(dst []byte, session string, seq uint64) []byte {
	dst = binary.BigEndian.AppendUint16(dst, LoginAcceptedLen+1)
	dst = append(dst, TypeLoginAccepted)
	dst = AppendSession(dst, session)
	return AppendNumeric(dst, seq, SeqLen)
}

// ParseLoginAccepted decodes the payload of an 'A' packet.
func ParseLoginAccepted(p []byte) (session string, seq uint64, err error) {
	if len(p) != LoginAcceptedLen {
		return "", 0, fmt.Errorf("%w: login accepted of %d bytes, want %d", ErrBadLength, len(p), LoginAcceptedLen)
	}
	seq, err = ParseNumeric(p[SessionLen:])
	if err != nil {
		return "", 0, fmt.Errorf("login accepted sequence: %w", err)
	}
	return ParseAlpha(p[:SessionLen]), seq, nil
}

// AppendLoginRejected appends a framed 'J' packet.
func AppendLoginRejected(dst []byte, reason byte) []byte {
	return AppendPacket(dst, TypeLoginRejected, []byte{reason})
}

// Reader reads framed packets from a byte stream.
type Reader struct {
	br    *bufio.Reader
	dir   Direction
	max   int
	stats *Stats
	buf   []byte
}

// NewReader reads packets sent in direction dir from r, with a read buffer
// of size bytes (0: 64 KiB). Payloads longer than maxPayload (0:
// MaxPayload) are ErrOversized. stats may be nil.
func NewReader(r io.Reader, dir Direction, size, maxPayload int, stats *Stats) *Reader {
	if size <= 0 {
		size = 64 << 10
	}
	if maxPayload <= 0 || maxPayload > MaxPayload {
		maxPayload = MaxPayload
	}
	if stats == nil {
		stats = new(Stats)
	}
	return &Reader{br: bufio.NewReaderSize(r, size), dir: dir, max: maxPayload, stats: stats}
}

// Next returns the next packet's type and payload. The payload is valid
// until the next call. At a clean end of stream (between packets) it
// returns io.EOF; a malformed packet is an error wrapping ErrMalformed,
// counted in the reader's Stats. Other errors are the underlying reader's.
// After a malformed packet the stream is out of step: stop reading.
func (r *Reader) Next() (typ byte, payload []byte, err error) {
	hdr, err := r.br.Peek(HeaderLen)
	if err != nil {
		if len(hdr) == 0 && errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		if len(hdr) == 2 && binary.BigEndian.Uint16(hdr) == 0 {
			return 0, nil, r.fail(ErrEmpty)
		}
		if errors.Is(err, io.EOF) {
			return 0, nil, r.fail(fmt.Errorf("%w: %d header bytes", ErrTruncated, len(hdr)))
		}
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr))
	if n == 0 {
		return 0, nil, r.fail(ErrEmpty)
	}
	typ = hdr[2]
	if !r.dir.Valid(typ) {
		return 0, nil, r.fail(fmt.Errorf("%w 0x%02x", ErrUnknownType, typ))
	}
	plen := n - 1
	if plen > r.max {
		return 0, nil, r.fail(fmt.Errorf("%w: %d bytes, limit %d", ErrOversized, plen, r.max))
	}
	if f := fixedLen(typ); f >= 0 && plen != f {
		return 0, nil, r.fail(fmt.Errorf("%w: '%c' with %d payload bytes, want %d", ErrBadLength, typ, plen, f))
	}
	total := HeaderLen + plen
	if total <= r.br.Size() {
		b, err := r.br.Peek(total)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, nil, r.fail(fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(b), total))
			}
			return 0, nil, err
		}
		payload = b[HeaderLen:]
		r.br.Discard(total) //nolint:errcheck // peeked
	} else {
		if cap(r.buf) < total {
			r.buf = make([]byte, total)
		}
		b := r.buf[:total]
		if k, err := io.ReadFull(r.br, b); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, nil, r.fail(fmt.Errorf("%w: %d of %d bytes", ErrTruncated, k, total))
			}
			return 0, nil, err
		}
		payload = b[HeaderLen:]
	}
	s := r.stats
	s.Packets.Add(1)
	s.Bytes.Add(uint64(total))
	switch typ {
	case TypeSequencedData:
		s.Sequenced.Add(1)
	case TypeUnsequencedData:
		s.Unsequenced.Add(1)
	case TypeServerHeartbeat, TypeClientHeartbeat:
		s.Heartbeats.Add(1)
	case TypeDebug:
		s.Debug.Add(1)
	}
	return typ, payload, nil
}

// Buffered returns the number of bytes read from the stream but not yet
// returned as packets.
func (r *Reader) Buffered() int { return r.br.Buffered() }

func (r *Reader) fail(err error) error {
	r.stats.Count(err)
	return err
}
