package soupbintcp

import (
	"bufio"
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

// ServerConfig shapes the server side of a connection. Zero durations pick
// the defaults.
type ServerConfig struct {
	HeartbeatInterval time.Duration // never silent this long: 'H' after half of it without sending (default 1 s)
	PeerTimeout       time.Duration // nothing heard from the client for this long: the client is dead (default 15 s)
	LoginTimeout      time.Duration // wait this long for the Login Request (default PeerTimeout)
	WriteBuffer       int           // bytes (default 256 KiB)
	Stats             *Stats        // optional
}

// ServerConn is the server side of one SoupBinTCP connection: it reads the
// Login Request, answers it, then writes data packets (buffered; Flush
// sends them) while a goroutine sends heartbeats when the connection is
// idle and another reads the client's packets (heartbeats, logout).
type ServerConn struct {
	conn  net.Conn
	cfg   ServerConfig
	stats *Stats
	r     *Reader

	mu       sync.Mutex // guards w and the socket's write side
	w        *bufio.Writer
	lastSend atomic.Int64

	gone      chan struct{} // closed when the client logged out, died or the reader failed
	goneErr   error
	goneOnce  sync.Once
	done      chan struct{}
	closeOnce sync.Once
	// startMu orders Accept's wg.Add before Close's wg.Wait, or Accept
	// after Close's close(done), when it starts nothing: a WaitGroup's
	// Add from zero must happen before its Wait.
	startMu sync.Mutex
	wg      sync.WaitGroup
}

// NewServerConn wraps an accepted connection.
func NewServerConn(conn net.Conn, cfg ServerConfig) *ServerConn {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.PeerTimeout <= 0 {
		cfg.PeerTimeout = DefaultPeerTimeout
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = cfg.PeerTimeout
	}
	if cfg.WriteBuffer <= 0 {
		cfg.WriteBuffer = 256 << 10
	}
	if cfg.Stats == nil {
		cfg.Stats = new(Stats)
	}
	s := &ServerConn{conn: conn, cfg: cfg, stats: cfg.Stats, gone: make(chan struct{}), done: make(chan struct{})}
	s.w = bufio.NewWriterSize(&countingWriter{s}, cfg.WriteBuffer)
	s.r = NewReader(&deadlineConn{Conn: conn, timeout: cfg.PeerTimeout}, FromClient, 4096, 4096, cfg.Stats)
	return s
}

type countingWriter struct{ s *ServerConn }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.s.conn.SetWriteDeadline(time.Now().Add(c.s.cfg.PeerTimeout)) //nolint:errcheck
	n, err := c.s.conn.Write(p)
	c.s.stats.SentBytes.Add(uint64(n))
	c.s.lastSend.Store(clock.Mono(time.Now()))
	return n, err
}

// ReadLogin waits for the client's Login Request (heartbeats and debug
// packets before it are skipped).
func (s *ServerConn) ReadLogin() (LoginRequest, error) {
	s.conn.SetReadDeadline(time.Now().Add(s.cfg.LoginTimeout)) //nolint:errcheck
	r := NewReader(s.conn, FromClient, 4096, 4096, s.stats)
	for {
		typ, p, err := r.Next()
		if err != nil {
			return LoginRequest{}, fmt.Errorf("read login request: %w", err)
		}
		switch typ {
		case TypeLoginRequest:
			if r.Buffered() > 0 {
				// The client sent more before our answer: keep those bytes.
				rest, _ := r.br.Peek(r.Buffered())
				s.r = NewReader(&deadlineConn{Conn: newMultiConn(rest, s.conn), timeout: s.cfg.PeerTimeout}, FromClient, 4096, 4096, s.stats)
			}
			req, err := ParseLoginRequest(p)
			if err != nil {
				s.stats.Count(err)
			}
			return req, err
		case TypeClientHeartbeat, TypeDebug:
			continue
		default:
			err := fmt.Errorf("%w: '%c' before login", ErrUnknownType, typ)
			s.stats.Count(err)
			return LoginRequest{}, err
		}
	}
}

// Reject sends Login Rejected and closes the connection.
func (s *ServerConn) Reject(reason byte) error {
	s.mu.Lock()
	s.w.Write(AppendLoginRejected(nil, reason)) //nolint:errcheck
	err := s.w.Flush()
	s.mu.Unlock()
	s.stats.Sent.Add(1)
	s.Close()
	return err
}

// Accept sends Login Accepted and starts the heartbeat and client-reader
// goroutines.
func (s *ServerConn) Accept(session string, seq uint64) error {
	s.mu.Lock()
	s.w.Write(AppendLoginAccepted(nil, session, seq)) //nolint:errcheck
	err := s.w.Flush()
	s.mu.Unlock()
	s.stats.Sent.Add(1)
	if err != nil {
		return fmt.Errorf("send login accepted: %w", err)
	}
	s.startMu.Lock()
	select {
	case <-s.done: // closed meanwhile: Close waits for nothing of ours
		s.startMu.Unlock()
		return fmt.Errorf("send login accepted: %w", ErrClosed)
	default:
	}
	s.wg.Add(2)
	s.startMu.Unlock()
	go s.heartbeats()
	go s.readClient()
	return nil
}

// Gone is closed when the client has logged out, gone silent past
// PeerTimeout, closed the connection or sent something invalid; Err then
// says which.
func (s *ServerConn) Gone() <-chan struct{} { return s.gone }

// Err returns why the client is gone (nil while it is not).
func (s *ServerConn) Err() error {
	select {
	case <-s.gone:
		return s.goneErr
	default:
		return nil
	}
}

// ErrLogout reports a client that sent Logout Request.
var ErrLogout = errors.New("soupbintcp: client logged out")

func (s *ServerConn) setGone(err error) {
	s.goneOnce.Do(func() { s.goneErr = err; close(s.gone) })
}

func (s *ServerConn) readClient() {
	defer s.wg.Done()
	for {
		typ, _, err := s.r.Next()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = ErrPeerTimeout
			}
			s.setGone(err)
			return
		}
		if typ == TypeLogoutRequest {
			s.setGone(ErrLogout)
			return
		}
	}
}

func (s *ServerConn) heartbeats() {
	defer s.wg.Done()
	heartbeats(s.cfg.HeartbeatInterval, s.done, s.gone, &s.lastSend, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.w.Buffered() > 0 {
			return true // data waits to go: it is the next send
		}
		s.w.Write([]byte{0, 1, TypeServerHeartbeat}) //nolint:errcheck
		err := s.w.Flush()
		s.stats.Sent.Add(1)
		s.stats.SentHeartbeats.Add(1)
		if err != nil {
			s.setGone(err)
			return false
		}
		return true
	})
}

// WritePacket buffers one packet. A payload longer than MaxPayload is
// ErrOversized, and nothing is buffered.
func (s *ServerConn) WritePacket(typ byte, payload []byte) error {
	if err := checkPayload(payload); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var hdr [3]byte
	hdr[0], hdr[1], hdr[2] = byte((len(payload)+1)>>8), byte(len(payload)+1), typ
	s.w.Write(hdr[:]) //nolint:errcheck
	_, err := s.w.Write(payload)
	s.stats.Sent.Add(1)
	return err
}

// WriteSequenced buffers one Sequenced Data packet.
func (s *ServerConn) WriteSequenced(msg []byte) error { return s.WritePacket(TypeSequencedData, msg) }

// WriteRaw buffers bytes as they are (already framed packets, or garbage
// for fault injection); packets counts them in Stats.Sent.
func (s *ServerConn) WriteRaw(b []byte, packets int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.w.Write(b)
	s.stats.Sent.Add(uint64(packets))
	return err
}

// Flush sends what is buffered.
func (s *ServerConn) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Flush()
}

// EndSession sends End of Session and flushes.
func (s *ServerConn) EndSession() error {
	if err := s.WritePacket(TypeEndOfSession, nil); err != nil {
		return err
	}
	return s.Flush()
}

// Close closes the connection and waits for the goroutines.
func (s *ServerConn) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.startMu.Lock()
		close(s.done)
		s.startMu.Unlock()
		err = s.conn.Close()
		s.setGone(ErrClosed)
		s.wg.Wait()
	})
	return err
}

// multiConn reads rest first, then the connection.
type multiConn struct {
	net.Conn
	rest []byte
}

func newMultiConn(rest []byte, c net.Conn) net.Conn {
	return &multiConn{Conn: c, rest: append([]byte(nil), rest...)}
}

func (m *multiConn) Read(p []byte) (int, error) {
	if len(m.rest) > 0 {
		n := copy(p, m.rest)
		m.rest = m.rest[n:]
		return n, nil
	}
	return m.Conn.Read(p)
}

var _ io.Reader = (*multiConn)(nil)
