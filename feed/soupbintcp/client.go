package soupbintcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/internal/clock"
)

// Session-level errors.
var (
	ErrLoginRejected = errors.New("soupbintcp: login rejected")
	ErrEndOfSession  = errors.New("soupbintcp: end of session")
	ErrPeerTimeout   = errors.New("soupbintcp: peer silent past its timeout")
	ErrClosed        = errors.New("soupbintcp: connection closed")
	ErrServerClosed  = errors.New("soupbintcp: server closed the connection")
	ErrInterrupted   = errors.New("soupbintcp: interrupted")
)

// RejectError is a Login Rejected answer; it matches ErrLoginRejected with
// errors.Is.
type RejectError struct{ Reason byte }

func (e *RejectError) Error() string {
	switch e.Reason {
	case RejectNotAuthorized:
		return "soupbintcp: login rejected: not authorized (A)"
	case RejectSessionUnavailable:
		return "soupbintcp: login rejected: session not available (S)"
	}
	return fmt.Sprintf("soupbintcp: login rejected: reason %q", e.Reason)
}

func (e *RejectError) Is(target error) bool { return target == ErrLoginRejected }

// Default timings, from the specification.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultPeerTimeout       = 15 * time.Second
	DefaultConnectTimeout    = 5 * time.Second
)

// ClientConfig shapes a Client. Zero durations pick the defaults.
type ClientConfig struct {
	Addr     string // host:port
	Username string
	Password string // never logged
	Session  string // requested session; "" = the currently active one
	Sequence uint64 // requested sequence number; 0 = the next message generated

	ConnectTimeout    time.Duration // dial and login (default 5 s)
	HeartbeatInterval time.Duration // never silent this long: 'R' after half of it without sending (default 1 s)
	PeerTimeout       time.Duration // nothing heard from the server for this long: ErrPeerTimeout (default 15 s)
	ReadBuffer        int           // bytes (default 256 KiB)
	MaxPayload        int           // longest payload accepted (default MaxPayload)

	Stats *Stats // optional; counters shared with the caller
}

// Client is a logged-in SoupBinTCP connection. Next must be called from one
// goroutine; Close and Logout may be called from any.
type Client struct {
	conn    net.Conn
	r       *Reader
	stats   *Stats
	peerTO  time.Duration
	session string
	seq     uint64 // sequence number of the next 'S' packet

	wmu      sync.Mutex
	lastSend atomic.Int64 // the last write (clock.Mono)

	closed      atomic.Bool
	interrupted atomic.Bool
	done        chan struct{}
	closeOnce   sync.Once
	hbWG        sync.WaitGroup
}

// deadlineConn sets the read deadline before each read from the socket
// (one per buffer fill, not per packet). Once stop is set, reads fail at
// once: the deadline set for the next fill must not undo an interrupt.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	stop    *atomic.Bool // may be nil
}

var past = time.Unix(1, 0)

func (d *deadlineConn) Read(p []byte) (int, error) {
	if d.stop != nil && d.stop.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	if err := d.Conn.SetReadDeadline(time.Now().Add(d.timeout)); err != nil {
		return 0, err
	}
	if d.stop != nil && d.stop.Load() { // Interrupt ran between the check and the set
		d.Conn.SetReadDeadline(past) //nolint:errcheck
	}
	return d.Conn.Read(p)
}

// Dial connects, logs in and returns the logged-in client, or the login's
// failure (a *RejectError for Login Rejected). ctx bounds the dial and the
// login only.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.PeerTimeout <= 0 {
		cfg.PeerTimeout = DefaultPeerTimeout
	}
	if cfg.ReadBuffer <= 0 {
		cfg.ReadBuffer = 256 << 10
	}
	if cfg.Stats == nil {
		cfg.Stats = new(Stats)
	}
	if len(cfg.Username) > UsernameLen || len(cfg.Password) > PasswordLen || len(cfg.Session) > SessionLen {
		return nil, fmt.Errorf("soupbintcp dial %s: username, password or session longer than %d/%d/%d characters", cfg.Addr, UsernameLen, PasswordLen, SessionLen)
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("soupbintcp dial %s: %w", cfg.Addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetNoDelay(true) //nolint:errcheck // best effort
	}
	c := &Client{
		conn:   conn,
		stats:  cfg.Stats,
		peerTO: cfg.PeerTimeout,
		done:   make(chan struct{}),
	}
	c.r = NewReader(&deadlineConn{Conn: conn, timeout: cfg.PeerTimeout, stop: &c.interrupted}, FromServer, cfg.ReadBuffer, cfg.MaxPayload, cfg.Stats)
	// The login is bounded by ctx and ConnectTimeout: unblock on either.
	stop := context.AfterFunc(dctx, func() {
		c.Interrupt()
		conn.SetWriteDeadline(past) //nolint:errcheck
	})
	err = c.login(cfg)
	if !stop() || dctx.Err() != nil {
		conn.Close()
		if err == nil || dctx.Err() != nil {
			err = fmt.Errorf("not logged in within %v (ConnectTimeout): %w", cfg.ConnectTimeout, dctx.Err())
			if ctx.Err() != nil {
				err = ctx.Err()
			}
		}
		return nil, fmt.Errorf("soupbintcp login to %s: %w", cfg.Addr, err)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("soupbintcp login to %s: %w", cfg.Addr, err)
	}
	conn.SetWriteDeadline(time.Time{}) //nolint:errcheck
	c.hbWG.Add(1)
	go c.heartbeats(cfg.HeartbeatInterval)
	return c, nil
}

func (c *Client) login(cfg ClientConfig) error {
	req := AppendLoginRequest(nil, LoginRequest{Username: cfg.Username, Password: cfg.Password, Session: cfg.Session, Sequence: cfg.Sequence})
	if err := c.write(req, false); err != nil {
		return err
	}
	for {
		typ, p, err := c.r.Next()
		if err != nil {
			return c.readErr(err)
		}
		switch typ {
		case TypeLoginAccepted:
			s, seq, err := ParseLoginAccepted(p)
			if err != nil {
				c.stats.Count(err)
				return err
			}
			c.session, c.seq = s, seq
			return nil
		case TypeLoginRejected:
			return &RejectError{Reason: p[0]}
		case TypeServerHeartbeat, TypeDebug:
			continue
		case TypeEndOfSession:
			return ErrEndOfSession
		default:
			err := fmt.Errorf("%w: '%c' before login accepted", ErrUnknownType, typ)
			c.stats.Count(err)
			return err
		}
	}
}

// Session returns the session the server logged the client into.
func (c *Client) Session() string { return c.session }

// NextSeq returns the sequence number of the next Sequenced Data packet.
func (c *Client) NextSeq() uint64 { return c.seq }

// Stats returns the client's counters.
func (c *Client) Stats() *Stats { return c.stats }

// Next returns the next data packet: TypeSequencedData or
// TypeUnsequencedData and its payload, valid until the next call, or
// TypeServerHeartbeat with no payload, or TypeDebug and its text (so that
// a caller can tell a live server that sends no data from a busy one).
// End of Session
// is ErrEndOfSession; silence for PeerTimeout is ErrPeerTimeout; after
// Close it is ErrClosed.
func (c *Client) Next() (typ byte, payload []byte, err error) {
	for {
		typ, payload, err = c.r.Next()
		if err != nil {
			return 0, nil, c.readErr(err)
		}
		switch typ {
		case TypeSequencedData:
			c.seq++
			return typ, payload, nil
		case TypeUnsequencedData:
			return typ, payload, nil
		case TypeServerHeartbeat:
			return typ, nil, nil
		case TypeDebug:
			return typ, payload, nil
		case TypeEndOfSession:
			return 0, nil, ErrEndOfSession
		default: // 'A' or 'J' after login
			err := fmt.Errorf("%w: '%c' after login", ErrUnknownType, typ)
			c.stats.Count(err)
			return 0, nil, err
		}
	}
}

func (c *Client) readErr(err error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if c.interrupted.Load() {
		return ErrInterrupted
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%v)", ErrPeerTimeout, c.peerTO)
	}
	if errors.Is(err, ErrMalformed) {
		return err
	}
	if errors.Is(err, io.EOF) {
		return ErrServerClosed
	}
	return err
}

// Send sends an Unsequenced Data packet. A message longer than MaxPayload
// is ErrOversized, and nothing is sent.
func (c *Client) Send(msg []byte) error {
	if err := checkPayload(msg); err != nil {
		return err
	}
	return c.write(AppendPacket(nil, TypeUnsequencedData, msg), false)
}

func (c *Client) write(b []byte, heartbeat bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	wto := c.peerTO
	if len(b) == 3 && b[2] == TypeLogoutRequest {
		wto = min(wto, logoutTimeout) // a logout never holds up a return
	}
	c.conn.SetWriteDeadline(time.Now().Add(wto)) //nolint:errcheck
	_, err := c.conn.Write(b)
	if err != nil {
		return fmt.Errorf("soupbintcp write: %w", err)
	}
	c.lastSend.Store(clock.Mono(time.Now()))
	c.stats.Sent.Add(1)
	c.stats.SentBytes.Add(uint64(len(b)))
	if heartbeat {
		c.stats.SentHeartbeats.Add(1)
	}
	return nil
}

var heartbeatPacket = []byte{0, 1, TypeClientHeartbeat}

func (c *Client) heartbeats(every time.Duration) {
	defer c.hbWG.Done()
	heartbeats(every, c.done, nil, &c.lastSend, func() bool { return c.write(heartbeatPacket, true) == nil })
}

const logoutTimeout = 100 * time.Millisecond

// Logout sends a Logout Request (waiting at most 100 ms for the socket to
// take it) and closes the connection.
func (c *Client) Logout() error {
	err := c.write([]byte{0, 1, TypeLogoutRequest}, false)
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close closes the connection; a blocked Next returns ErrClosed.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		c.closed.Store(true)
		c.wmu.Unlock()
		close(c.done)
		err = c.conn.Close()
		c.hbWG.Wait()
	})
	return err
}

// Interrupt makes a blocked Next, and every later one, return promptly with
// ErrInterrupted. Safe from any goroutine.
func (c *Client) Interrupt() {
	c.interrupted.Store(true)
	c.conn.SetReadDeadline(past) //nolint:errcheck
}
