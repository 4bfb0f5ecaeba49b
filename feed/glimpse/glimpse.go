package glimpse

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
)

// TypeSnapshot is the GLIMPSE 5.0 Snapshot (end of snapshot) message type.
const TypeSnapshot byte = 'G'

// SnapshotLen is the length of the Snapshot message: type and a 20-byte
// ITCH sequence number in ASCII digits.
const SnapshotLen = 1 + 20

// Errors, for errors.Is.
var (
	ErrLoginRejected  = errors.New("glimpse: login rejected")
	ErrEndOfSession   = errors.New("glimpse: session ended before the snapshot completed")
	ErrStalled        = errors.New("glimpse: snapshot stalled")
	ErrProtocol       = errors.New("glimpse: protocol error")
	ErrSessionRefused = errors.New("glimpse: session refused at login")
	ErrTooLong        = errors.New("glimpse: snapshot not ended within its limits")
)

// DefaultMaxDuration is Config.MaxDuration's default.
const DefaultMaxDuration = 10 * time.Minute

// DefaultMaxBytes is Config.MaxBytes' default: several times a busy day's
// GLIMPSE 5.0 spin (an Add Order of 36 bytes for each of millions of
// resting orders, and a few messages per stock).
const DefaultMaxBytes = 2 << 30

// A snapshot's size as a download buffer holds it, each message after a
// 2-byte length (the handler's; BufferBytes).
const (
	// BufferOrderBytes is an order's: the larger Add Order ('F', with its
	// MPID: 40 bytes; 'A' is 36) and its length.
	BufferOrderBytes = 42
	// BufferLocateBytes is an instrument's: a Stock Directory (39
	// bytes), a Stock Trading Action (25), a Reg SHO Restriction (20) and
	// an Operational Halt (21), 113 bytes with their lengths, rounded up.
	BufferLocateBytes = 128
)

// BufferBytes bounds the capacity of a buffer that holds the messages of
// a GLIMPSE snapshot of books of at most orders orders and locates
// instruments, each after a 2-byte length: the messages, a quarter more
// (append grows a large slice by a quarter of what it holds, so the last
// growth leaves at most that unused) and 64 KiB for the System Events,
// the End of Snapshot and the allocator's rounding; at least 1 MiB, the
// buffer the handler starts with. A snapshot of more orders than the
// books hold cannot be loaded whole: this is what a loadable snapshot
// needs, far below Config.MaxBytes' default.
func BufferBytes(orders, locates int64) int64 {
	n := orders*BufferOrderBytes + locates*BufferLocateBytes
	return max(n+n/4+64<<10, 1<<20)
}

// Config says where and how to fetch a snapshot.
type Config struct {
	Addr           string // host:port
	Username       string
	Password       string        // never logged
	Session        string        // requested SoupBinTCP session; "" = current
	ConnectTimeout time.Duration // dial and login (default 5 s)
	IdleTimeout    time.Duration // no data/heartbeat for this long = stall (default 15 s)
	// MaxDuration bounds the download, from the Login Accepted to the
	// End of Snapshot (default DefaultMaxDuration): a server that keeps
	// sending data and never ends the snapshot (a live SoupBinTCP ITCH
	// port configured in place of GLIMPSE) is ErrTooLong, not a fetch
	// that runs all day, its messages held in memory.
	MaxDuration time.Duration
	// MaxBytes bounds the ITCH messages a snapshot delivers to fn, in
	// bytes, before its End of Snapshot (default DefaultMaxBytes): a
	// server that streams data and never ends the snapshot (a live ITCH
	// port replaying the day from sequence 1, as fast as the link goes)
	// is ErrTooLong once past it, not a caller holding every message
	// until MaxDuration (gigabytes a minute: an out-of-memory kill).
	MaxBytes int64

	// Added beyond the fixed contract:
	HeartbeatInterval time.Duration // client heartbeat interval (default 1 s)
	Stats             *Stats        // optional counters, shared across fetches

	// CheckSession, if set, is called with the session the Login Accepted
	// names (trailing spaces removed) before any of the snapshot is read.
	// An error refuses it: Fetch logs out at once and returns an error
	// wrapping ErrSessionRefused and the one returned, without
	// downloading the snapshot (minutes and hundreds of MB on a busy day).
	CheckSession func(session string) error
}

// Result describes a completed snapshot.
type Result struct {
	Session  string // SoupBinTCP session the server logged us into
	NextSeq  uint64 // first ITCH (MoldUDP64) sequence number NOT reflected in the snapshot: apply live messages with seq >= NextSeq on top of it
	Messages uint64 // ITCH messages delivered to fn
}

// Stats count fetches and what they read. All fields are atomic: read them
// from any goroutine while a fetch runs.
type Stats struct {
	Soup soupbintcp.Stats // packets, heartbeats, bytes, malformed SoupBinTCP by kind

	Fetches   atomic.Uint64 // Fetch calls
	Completed atomic.Uint64 // snapshots completed
	Messages  atomic.Uint64 // ITCH messages delivered

	// Failures by kind.
	Rejected     atomic.Uint64 // login rejected
	EndOfSession atomic.Uint64 // End of Session before the Snapshot message
	Stalled      atomic.Uint64 // idle timeout
	TooLong      atomic.Uint64 // no End of Snapshot within MaxDuration or MaxBytes
	Protocol     atomic.Uint64 // ErrProtocol of any cause
	Cancelled    atomic.Uint64 // ctx ended
	Refused      atomic.Uint64 // session refused at login by Config.CheckSession
	DialFailed   atomic.Uint64 // could not connect

	// Malformed GLIMPSE data, by kind (each also counts as Protocol).
	EmptyMessages     atomic.Uint64 // Sequenced Data with no payload
	ShortMessages     atomic.Uint64 // ITCH message shorter than its type's length
	BadSnapshot       atomic.Uint64 // Snapshot message of the wrong length or sequence number
	Closed            atomic.Uint64 // connection closed before the Snapshot message
	UnknownMessages   atomic.Uint64 // ITCH types not in 5.0: skipped, not an error
	LongMessages      atomic.Uint64 // ITCH messages longer than their type's length: delivered, not an error
	UnsequencedPacket atomic.Uint64 // Unsequenced Data packets: ignored
}

// StatsSnapshot is a plain copy of Stats, field for field
// (TestStatsSnapshotWhole).
type StatsSnapshot struct {
	Soup soupbintcp.StatsSnapshot

	Fetches, Completed, Messages uint64

	Rejected, EndOfSession, Stalled, TooLong, Protocol, Cancelled, Refused, DialFailed uint64

	EmptyMessages, ShortMessages, BadSnapshot, Closed, UnknownMessages, LongMessages, UnsequencedPacket uint64
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{
		Soup:    s.Soup.Snapshot(),
		Fetches: s.Fetches.Load(), Completed: s.Completed.Load(), Messages: s.Messages.Load(),
		Rejected: s.Rejected.Load(), EndOfSession: s.EndOfSession.Load(), Stalled: s.Stalled.Load(),
		TooLong: s.TooLong.Load(), Protocol: s.Protocol.Load(), Cancelled: s.Cancelled.Load(),
		Refused: s.Refused.Load(), DialFailed: s.DialFailed.Load(),
		EmptyMessages: s.EmptyMessages.Load(), ShortMessages: s.ShortMessages.Load(), BadSnapshot: s.BadSnapshot.Load(),
		Closed: s.Closed.Load(), UnknownMessages: s.UnknownMessages.Load(), LongMessages: s.LongMessages.Load(),
		UnsequencedPacket: s.UnsequencedPacket.Load(),
	}
}

// Fetch dials, logs in, hands each ITCH 5.0 message of the snapshot to fn
// (msg valid only during the call), returns after the end-of-snapshot
// message, logging out before it returns. Honours ctx (prompt return on
// cancel).
func Fetch(ctx context.Context, cfg Config, fn func(msg []byte) error) (Result, error) {
	st := cfg.Stats
	if st == nil {
		st = new(Stats)
	}
	st.Fetches.Add(1)
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = soupbintcp.DefaultPeerTimeout
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = DefaultMaxDuration
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if err := ctx.Err(); err != nil {
		st.Cancelled.Add(1)
		return Result{}, err
	}
	c, err := soupbintcp.Dial(ctx, soupbintcp.ClientConfig{
		Addr: cfg.Addr, Username: cfg.Username, Password: cfg.Password, Session: cfg.Session,
		Sequence:          1,
		ConnectTimeout:    cfg.ConnectTimeout,
		HeartbeatInterval: cfg.HeartbeatInterval,
		PeerTimeout:       cfg.IdleTimeout,
		ReadBuffer:        1 << 20,
		Stats:             &st.Soup,
	})
	if err != nil {
		return Result{}, classify(ctx, st, err, true)
	}
	defer c.Logout() //nolint:errcheck // best effort on every path; after a completed snapshot it already ran
	stop := context.AfterFunc(ctx, c.Interrupt)
	defer stop()
	var late atomic.Bool // MaxDuration passed: the read is interrupted
	limit := time.AfterFunc(cfg.MaxDuration, func() { late.Store(true); c.Interrupt() })
	defer limit.Stop()

	res := Result{Session: c.Session()}
	if want := soupbintcp.ParseAlpha(soupbintcp.AppendAlpha(nil, cfg.Session, soupbintcp.SessionLen)); want != "" && res.Session != want {
		// Asked for one session, logged in to another (the server's
		// current one, whatever was asked): a snapshot of another day.
		st.Protocol.Add(1)
		return res, fmt.Errorf("%w: logged in to session %q, asked for %q", ErrProtocol, res.Session, want)
	}
	if cfg.CheckSession != nil {
		if err := cfg.CheckSession(res.Session); err != nil {
			// Refused before the spin is read: the deferred Logout
			// tells the server, which stops sending.
			st.Refused.Add(1)
			return res, fmt.Errorf("%w: %w", ErrSessionRefused, err)
		}
	}
	if s := c.NextSeq(); s > 1 {
		// Logged in for sequence 1, accepted at a later one: the spin's
		// start (its System Event, Stock Directory messages and first
		// orders) will never be sent. Books built from the rest would be
		// whole in name only.
		st.Protocol.Add(1)
		return res, fmt.Errorf("%w: login accepted at sequence number %d, not at the snapshot's start (1)", ErrProtocol, s)
	}
	lastData := time.Now()
	var delivered int64 // bytes of the messages handed to fn
	for {
		typ, p, err := c.Next()
		if err != nil {
			if late.Load() && ctx.Err() == nil {
				st.TooLong.Add(1)
				return res, fmt.Errorf("%w: no End of Snapshot %v after the login, %d messages in", ErrTooLong, cfg.MaxDuration, res.Messages)
			}
			return res, classify(ctx, st, err, false)
		}
		if typ != soupbintcp.TypeSequencedData {
			// Heartbeats, Debug or Unsequenced Data: the server is
			// alive, the snapshot does not move on.
			if typ == soupbintcp.TypeUnsequencedData {
				st.UnsequencedPacket.Add(1)
			}
			if time.Since(lastData) >= cfg.IdleTimeout {
				st.Stalled.Add(1)
				return res, fmt.Errorf("%w: no snapshot data, only heartbeats or other packets, for %v after %d messages", ErrStalled, cfg.IdleTimeout, res.Messages)
			}
			continue
		}
		lastData = time.Now()
		next, done, err := handle(st, p)
		if err != nil {
			st.Protocol.Add(1)
			return res, err
		}
		if done {
			res.NextSeq = next
			st.Completed.Add(1)
			c.Logout() //nolint:errcheck // the snapshot is complete either way
			return res, nil
		}
		if next == 0 { // skipped (unknown type)
			continue
		}
		if res.Messages&1023 == 1023 && ctx.Err() != nil {
			return res, classify(ctx, st, ctx.Err(), false)
		}
		if delivered += int64(len(p)); delivered > cfg.MaxBytes {
			st.TooLong.Add(1)
			return res, fmt.Errorf("%w: no End of Snapshot within %d bytes of messages (MaxBytes), %d messages in", ErrTooLong, cfg.MaxBytes, res.Messages)
		}
		if err := fn(p); err != nil {
			return res, err
		}
		res.Messages++
		st.Messages.Add(1)
	}
}

// handle checks one Sequenced Data payload. It returns done with the
// snapshot's sequence number for the Snapshot message, next=1 for an ITCH
// message to deliver, next=0 for one to skip.
func handle(st *Stats, p []byte) (next uint64, done bool, err error) {
	if len(p) == 0 {
		st.EmptyMessages.Add(1)
		return 0, false, fmt.Errorf("%w: empty sequenced data packet", ErrProtocol)
	}
	t := p[0]
	if t == TypeSnapshot {
		seq, err := ParseSnapshot(p)
		if err != nil {
			st.BadSnapshot.Add(1)
			return 0, false, err
		}
		return seq, true, nil
	}
	n := itch.Length(t)
	if n == 0 {
		st.UnknownMessages.Add(1)
		return 0, false, nil
	}
	if len(p) < n {
		st.ShortMessages.Add(1)
		return 0, false, fmt.Errorf("%w: ITCH '%c' message of %d bytes, want %d", ErrProtocol, t, len(p), n)
	}
	if len(p) > n {
		// SoupBinTCP frames each message by its own length, so bytes past
		// the type's fields cannot break the framing: the message is the
		// live feed's format, which a later revision may extend, and the
		// live path applies such a message by its type's fields (counted
		// Long in the books). Refusing it here would fail every snapshot
		// of a day that carries one, and leave the books unrepaired.
		st.LongMessages.Add(1)
	}
	return 1, false, nil
}

// ParseSnapshot decodes a Snapshot message and returns its ITCH sequence
// number (the next sequence number to process from the live feed).
func ParseSnapshot(p []byte) (uint64, error) {
	if len(p) != SnapshotLen || p[0] != TypeSnapshot {
		return 0, fmt.Errorf("%w: snapshot message of %d bytes, want %d", ErrProtocol, len(p), SnapshotLen)
	}
	seq, err := soupbintcp.ParseNumeric(p[1:])
	if err != nil {
		return 0, fmt.Errorf("%w: snapshot sequence number: %v", ErrProtocol, err)
	}
	if seq == 0 {
		return 0, fmt.Errorf("%w: snapshot sequence number 0", ErrProtocol)
	}
	return seq, nil
}

// AppendSnapshot appends a Snapshot message (not framed) naming next, the
// first ITCH sequence number the snapshot does not reflect. GLIMPSE 5.0
// types the sequence number Alpha (its data types are binary integers and
// alpha fields, "left justified and padded on the right with spaces"), so
// the digits are written left-justified, as a GLIMPSE server sends them.
func AppendSnapshot(dst []byte, next uint64) []byte {
	dst = append(dst, TypeSnapshot)
	end := len(dst) + SnapshotLen - 1
	dst = strconv.AppendUint(dst, next, 10)
	for len(dst) < end {
		dst = append(dst, ' ')
	}
	return dst
}

func classify(ctx context.Context, st *Stats, err error, dialing bool) error {
	switch {
	case ctx.Err() != nil:
		st.Cancelled.Add(1)
		return fmt.Errorf("glimpse fetch: %w", ctx.Err())
	case errors.Is(err, soupbintcp.ErrLoginRejected):
		st.Rejected.Add(1)
		return fmt.Errorf("%w: %w", ErrLoginRejected, err)
	case errors.Is(err, soupbintcp.ErrEndOfSession):
		st.EndOfSession.Add(1)
		return fmt.Errorf("%w: %w", ErrEndOfSession, err)
	case errors.Is(err, soupbintcp.ErrPeerTimeout):
		st.Stalled.Add(1)
		return fmt.Errorf("%w: %w", ErrStalled, err)
	case errors.Is(err, soupbintcp.ErrTruncated), errors.Is(err, soupbintcp.ErrServerClosed):
		st.Closed.Add(1)
		st.Protocol.Add(1)
		return fmt.Errorf("%w: connection closed before the end of the snapshot: %w", ErrProtocol, err)
	case errors.Is(err, soupbintcp.ErrMalformed):
		st.Protocol.Add(1)
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	case dialing:
		st.DialFailed.Add(1)
		return fmt.Errorf("glimpse fetch: %w", err)
	}
	// A reset or other socket error mid-snapshot: the snapshot is incomplete.
	st.Closed.Add(1)
	st.Protocol.Add(1)
	return fmt.Errorf("%w: connection lost before the end of the snapshot: %w", ErrProtocol, err)
}
