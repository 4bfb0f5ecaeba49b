package rerequest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/internal/skmem"
)

// Defaults of Config's zero values.
const (
	DefaultTimeout            = 20 * time.Millisecond
	DefaultRetries            = 3
	DefaultMaxRequestMessages = 2000
	DefaultRequestsPerSecond  = 1000
	DefaultRecvBuffer         = 4 << 20 // bytes
)

// AnswerPacketTruesize is what the kernel charges a socket's receive
// buffer for one answer packet, in bytes: not its payload but the skb's
// truesize (its data buffer, struct sk_buff and skb_shared_info). Measured
// on veth (Linux 6.18): 2304 for a packet of the feed's size
// (moldudp64.MaxPayload, 1400 bytes), 832 for one message of 36 bytes; a
// NIC receiving into 2 KiB buffers charges about 2.3 KiB a packet too.
const AnswerPacketTruesize = 2304

// AnswerMessages returns the most messages whose answer a socket granted
// recvBuffer bytes (SO_RCVBUF as set: the kernel doubles it for its
// bookkeeping, and drops a datagram whose truesize does not fit what is
// left) holds whole, when the server answers with a packet per message:
// MoldUDP64 says nothing of how an answer is packed, and a server that
// resends the feed's packets sends one or a few messages in each outside
// bursts. The receive thread may not read the socket while the answer
// comes (it is busy with the lines), so what does not fit is dropped by
// the kernel and asked again. At least 1.
func AnswerMessages(recvBuffer int) int {
	return max(1, 2*recvBuffer/AnswerPacketTruesize)
}

// ErrNoServers is returned by New without servers.
var ErrNoServers = errors.New("new rerequest client: no servers")

// Config shapes a Client. Zero values pick the defaults.
type Config struct {
	Servers            []netip.AddrPort // tried in order, wrapping round, from the one that filled the last range that failed over (see Client.Want)
	Timeout            time.Duration    // wait for the first answer to a request, at least (the server's measured answer time: rto); doubled on each retry
	Retries            int              // resends per server before failing over
	MaxRequestMessages int              // most messages asked at once (at most moldudp64.MaxCount; and what the receive buffer holds, Client.RequestMessages)
	RequestsPerSecond  float64          // request rate limit
	// RecvBuffer is the receive buffer asked for each socket, in bytes
	// (default DefaultRecvBuffer): SO_RCVBUFFORCE, past
	// net.core.rmem_max, when the process holds cap_net_admin; SO_RCVBUF,
	// capped by rmem_max, otherwise (RecvBufferShort says so).
	RecvBuffer int
	// ServerPort: answers are taken only from the server's address and
	// port, the ones asked; a datagram from its address on another port
	// is WrongSource. Without it (the default), from its address on any
	// port: MoldUDP64 fixes where an answer goes, not where it comes from.
	ServerPort bool
}

// Stats count what the client did.
type Stats struct {
	Requests uint64 // request packets sent (first asks, continuations and retries); not those that failed (SendErrors, OpenErrors)
	Ahead    uint64 // of Requests, those for ranges past the one being filled (Client.Ahead)
	Retries  uint64 // requests resent after a timeout
	Timeouts uint64 // requests that got no answer in time (or none holding the first message asked)
	// AnswerTimes: answers to a first try whose answer time was taken
	// into the request timeout (the first answer to a request not
	// resent, from the server asked); RTO: a first try's timeout now,
	// before its doubling per retry, of the server asked now (or that a
	// range starts with): each server's is its own (estimate;
	// Config.Timeout until an answer of it is measured; then its answer
	// time, smoothed, and four times its variation, at least
	// Config.Timeout, doubled after its timeout until an answer is
	// measured again). docs/RECOVERY.md, "Request timeout".
	AnswerTimes uint64
	RTO         time.Duration
	Failovers   uint64 // moves to the next server
	Failures    uint64 // ranges given up on after every server was tried
	// SendErrors: request writes that failed: for a reason that stays (no
	// route to the server, a firewall refusing it), the server's tries
	// are spent at once; for one that may pass (a send buffer full:
	// EAGAIN), the write is tried again soon, each failure counted here
	// (rewriteDelay), until the request's timeout, which moves on as for
	// a request not answered but doubles no later request's timeout (it
	// says nothing of the server's answer time). The error is reported
	// once per run of failures of a server (SendError).
	SendErrors uint64
	// OpenErrors: requests not sent because the server's new socket (after
	// Forget) could not be opened; the timeout moves on, as for a send
	// error. The error is reported once per run of failures of a server
	// (OpenError).
	OpenErrors   uint64
	RateLimited  uint64 // times a request waited for the rate limit
	Responses    uint64 // answer packets accepted
	Messages     uint64 // messages those carried, all handed to the caller (which uses what it lacks: the handler's ArbiterStats.RecoveredMessages)
	Late         uint64 // answers whose messages the caller already had
	Malformed    uint64 // answers rejected by moldudp64.Parse
	WrongSession uint64 // answers of another session
	Unasked      uint64 // answers overlapping no recent request, heartbeats, end of session
	WrongSource  uint64 // datagrams from an IP address other than the server's (or, with Config.ServerPort, another port)
	// BeforeRestart: answers to requests made before Forget (a sequence
	// restart, or a session change), read after it from the server's
	// address (another's is WrongSource): the old numbering's messages,
	// whatever their sequence numbers. Dropped.
	BeforeRestart uint64
	// DroppedMessages: the messages of the answers dropped whole, as
	// their headers count them: Late, WrongSession, Unasked and
	// BeforeRestart ones (a malformed answer's count is not to be
	// trusted, and a datagram from another address is no answer).
	DroppedMessages uint64
	// KernelDrops: answer datagrams the kernel dropped, a socket's
	// receive buffer full (SO_MEMINFO, SK_MEMINFO_DROPS, of every socket,
	// those set aside at Forget too): their messages are asked again.
	// Read by CountKernelDrops, not by Poll.
	KernelDrops uint64
	ReadErrors  uint64
	moldudp64.ParseErrors
}

// Bad returns the answers dropped as bad (malformed, wrong session,
// unasked, wrong source, before a restart).
func (s *Stats) Bad() uint64 {
	return s.Malformed + s.WrongSession + s.Unasked + s.WrongSource + s.BeforeRestart
}

// askedMemory is how many recent requests are remembered to recognise
// their answers.
const askedMemory = 32

// Client asks re-request servers for missing ranges. It is used by one
// goroutine.
type Client struct {
	cfg  Config
	open func(func() error) error
	// openNew is openNewSocket as a method value made once (New), handed
	// to open by reopen for server reopening: a closure over the server
	// was put on the heap at every reopen, on the receive thread.
	openNew   func() error
	reopening int
	fds       []int                // by server; -1: opened at the next request to it (see Forget)
	stale     []int                // by server, the socket of its requests made before the last Forget (-1: none): only read to drop and count their answers
	addrs     []unix.SockaddrInet4 // by server, as fds
	buf       []byte
	from      unix.RawSockaddrInet4 // the last datagram's source
	req       []byte
	session   moldudp64.Session
	// ports and stalePorts: the local ports of fds and stale, by server.
	ports, stalePorts []uint16
	// fdDrops, staleDrops: by server, the kernel's drop counter of fds
	// and stale at their last reading (countDrops).
	fdDrops, staleDrops []uint32
	// closed: the ports of the sockets closed at a Forget, the newest at
	// closedN-1 (mod closedMemory), with when (the latest now Poll was
	// given then). A server's new socket does not take one closed less
	// than portQuarantine before (see reopen).
	closed  [closedMemory]closedPort
	closedN int

	active bool
	want   moldudp64.Range // what must be filled: [next, want.End())
	next   uint64          // the caller's next expected sequence number

	// flight: the wanted range's request in flight, of the server asked
	// now.
	flight
	// first: the server a range is asked of first, the one asked when the
	// last range that failed over was filled (0 until then); failed: the
	// servers given up on for the current range.
	first, failed int

	asked  [askedMemory]moldudp64.Range
	askedN int

	// ahead: the ranges past the wanted one asked meanwhile (Ahead), the
	// first nAhead in use, in order.
	ahead  [MaxAhead]aheadRange
	nAhead int

	// openErrs, sendErrs: by server, the first error of the current run
	// of failures to open its new socket, or to send it a request.
	openErrs, sendErrs failureRuns

	// lastBad: the last answer dropped as bad (Stats.Bad).
	lastBad BadAnswer

	// perRequest: the most messages asked at once, Config.MaxRequestMessages
	// capped by AnswerMessages of the smallest receive buffer granted.
	perRequest int

	// recvShort: the receive buffer granted to the first socket that got
	// less than Config.RecvBuffer (0: none), until RecvBufferShort
	// reports it; recvReported: it did.
	recvShort    int
	recvReported bool

	// est: by server, its answer time and kept doublings, which make the
	// timeout of the requests asked of it (rto).
	est []estimate

	tokens   float64
	refillAt int64
	seen     int64 // the latest now Poll was given (observe)

	Stats Stats
}

// New opens one UDP socket per server. open, if not nil, runs the socket
// creation (e.g. inside a network namespace).
//
// The sockets are not connected: a server may answer from another port
// than the one asked (the MoldUDP64 spec fixes where the answer goes, not
// where it comes from). A socket takes datagrams from its server's IP
// address on any port (with Config.ServerPort, only from the port asked)
// and counts the rest as WrongSource.
func New(cfg Config, open func(func() error) error) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, ErrNoServers
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.MaxRequestMessages <= 0 {
		cfg.MaxRequestMessages = DefaultMaxRequestMessages
	}
	cfg.MaxRequestMessages = min(cfg.MaxRequestMessages, moldudp64.MaxCount)
	if cfg.RequestsPerSecond <= 0 {
		cfg.RequestsPerSecond = DefaultRequestsPerSecond
	}
	if cfg.RecvBuffer <= 0 {
		cfg.RecvBuffer = DefaultRecvBuffer
	}
	if open == nil {
		open = func(fn func() error) error { return fn() }
	}
	c := &Client{cfg: cfg, open: open, perRequest: cfg.MaxRequestMessages, buf: make([]byte, 1<<16), req: make([]byte, 0, moldudp64.RequestLen),
		openErrs: newFailureRuns(cfg.Servers, "rerequest: new socket for %s after a restart: %w"),
		sendErrs: newFailureRuns(cfg.Servers, "rerequest: send a request to %s: %w"),
		est:      make([]estimate, len(cfg.Servers))}
	c.noteRTO() // Config.Timeout until an answer is measured
	err := open(func() error {
		for _, s := range cfg.Servers {
			fd, port, err := c.open4(s)
			if err != nil {
				return fmt.Errorf("new rerequest client: server %s: %w", s, err)
			}
			c.fds, c.ports = append(c.fds, fd), append(c.ports, port)
			c.stale, c.stalePorts = append(c.stale, -1), append(c.stalePorts, 0)
			c.fdDrops, c.staleDrops = append(c.fdDrops, 0), append(c.staleDrops, 0)
			c.addrs = append(c.addrs, unix.SockaddrInet4{Addr: s.Addr().As4(), Port: int(s.Port())})
		}
		return nil
	})
	if err != nil {
		c.Close()
		return nil, err
	}
	c.openNew = c.openNewSocket
	c.tokens = c.burst()
	return c, nil
}

// open4 opens a socket for server s, bound to a local port the kernel
// picks, and returns it with the port. A receive buffer granted below
// Config.RecvBuffer is kept for RecvBufferShort.
func (c *Client) open4(s netip.AddrPort) (int, uint16, error) {
	if !s.Addr().Is4() {
		return -1, 0, errors.New("not an IPv4 address")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, 0, fmt.Errorf("socket: %w", err)
	}
	// Answers come in a burst of packets: a request asks for no more
	// than the buffer granted holds (AnswerMessages).
	got, _ := privilege.SetRecvBuffer(fd, c.cfg.RecvBuffer)
	if got > 0 && got < c.cfg.RecvBuffer && c.recvShort == 0 {
		c.recvShort = got
	}
	if got > 0 {
		c.perRequest = min(c.perRequest, AnswerMessages(got))
	}
	// Bound now to a port of its own, so the socket reads nothing before
	// its first request and every request leaves from the same port.
	if err := bindAny4(fd); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind: %w", err)
	}
	port, err := localPort4(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("getsockname: %v", err)
	}
	return fd, port, nil
}

// Close closes the sockets, their kernel drops counted first
// (Stats.KernelDrops).
func (c *Client) Close() error {
	c.CountKernelDrops()
	errs := []error{closeAll(c.fds), closeAll(c.stale)}
	c.fds, c.addrs, c.stale = nil, nil, nil
	return errors.Join(errs...)
}

func closeAll(fds []int) error {
	var errs []error
	for _, fd := range fds {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	return errors.Join(errs...)
}

// MaxRequestMessages returns Config.MaxRequestMessages (its default
// filled in): the size of a gap one request is meant to fill.
func (c *Client) MaxRequestMessages() int { return c.cfg.MaxRequestMessages }

// RequestMessages returns the most messages asked at once:
// MaxRequestMessages, capped by AnswerMessages of the smallest receive
// buffer granted to a socket so far, so that an answer sent a packet per
// message is not dropped by the kernel before it is read.
func (c *Client) RequestMessages() int { return c.perRequest }

// Active reports whether a range is being filled.
func (c *Client) Active() bool { return c.active }

// Idle reports that nothing is asked: no range being filled (Active) nor
// ranges ahead (Ahead). WakeFds and NextDue are empty then, and only a
// Want or Ahead changes that; it inlines.
func (c *Client) Idle() bool { return !c.active && c.nAhead == 0 }

// WakeFds appends to dst, while a range is being filled (Active) or
// ranges ahead are asked (Ahead), the sockets their answers come to, the
// one of the server asked now first, and returns dst; nothing otherwise.
// The receive loop waits on them with the lines (rx.Waker), so that an
// answer is read when it comes, not when the lines next bring a packet or
// the wait times out. A socket's fd may change (a new socket after
// Forget, opened at the next request to its server), so the caller asks
// again after each Poll. A server whose socket is not open (-1) is left
// out: after Forget there may be none while a request is due (NextDue
// says when). It allocates nothing when dst has room.
func (c *Client) WakeFds(dst []int) []int {
	if !c.active && c.nAhead == 0 || c.server >= len(c.fds) {
		return dst
	}
	if fd := c.fds[c.server]; fd >= 0 {
		dst = append(dst, fd)
	}
	for i, fd := range c.fds {
		if i != c.server && fd >= 0 {
			dst = append(dst, fd)
		}
	}
	return dst
}

// NextDue returns when Poll next has something to do that no answer
// brings, on the clock of Poll's now: a request's timeout, the end of a
// partly answered request's settle, the rate limit's next token, of the
// wanted range and those asked ahead (Ahead); 0 when there are none. A
// caller that waits for the answers (WakeFds) wakes then too, so that a
// timer is acted on when it is due, not when the wait next ends for
// another reason. It allocates nothing.
func (c *Client) NextDue() int64 {
	due := c.nextDueAhead()
	if t := c.nextDueWanted(); t != 0 && (due == 0 || t < due) {
		due = t
	}
	return due
}

// nextDueWanted is NextDue for the wanted range alone.
func (c *Client) nextDueWanted() int64 {
	switch {
	case !c.active:
		return 0
	case c.sentAt == 0:
		if c.room() == 0 {
			return 0 // waits for room (Ahead): an answer or a timeout ahead makes it
		}
		return c.tokenDue()
	}
	return c.due(c.settle(), c.rto(c.server))
}

// tokenDue returns when a request held back by the rate limit may go:
// now (the latest now Poll was given) with a token, else the next token
// (a microsecond later, so that the sum of its fractions is 1).
func (c *Client) tokenDue() int64 {
	if c.tokens >= 1 || c.refillAt == 0 {
		return c.seen
	}
	return c.refillAt + int64((1-c.tokens)/c.cfg.RequestsPerSecond*1e9) + int64(time.Microsecond)
}

// Want starts filling r of session s (replacing what was wanted before);
// the caller has everything before r.First. It is asked of the servers in
// order, wrapping round, from the one that was asked when the last range
// that failed over was filled: a server down is not waited for at every
// range (each of its timeouts, while what follows the range is held),
// only when the one after it fails in turn. A range asked ahead (Ahead)
// that r starts goes on with its request in flight, its server and
// tries, rather than being asked again at once.
func (c *Client) Want(s moldudp64.Session, r moldudp64.Range, now int64) {
	if s != c.session {
		c.nAhead = 0 // another session's numbers
	}
	c.session = s
	c.want = r
	c.next = r.First
	c.active = r.Count > 0
	c.flight, c.failed = flight{server: c.first}, 0
	c.adopt(r)
	c.noteRTO()
}

// filled ends the wanted range, filled; if it failed over, the server it
// was asked of last is asked first next time.
func (c *Client) filled() {
	c.active = false
	c.sentAt = 0
	if c.failed > 0 {
		c.first = c.server
	}
	c.noteRTO()
}

// Progress tells the client that the caller has every message before next.
// It reports whether the wanted range is now filled.
func (c *Client) Progress(next uint64) bool {
	if next > c.next {
		c.next = next
	}
	if c.nAhead > 0 {
		c.progressAhead(c.next)
	}
	if c.active && c.next >= c.want.End() {
		c.filled()
		return true
	}
	return !c.active
}

// Narrow ends the wanted range at end, when that is before its end: the
// caller no longer needs what lies past end (its source of the range ended
// it there). From now on nothing past end is asked: a request in flight
// that asks more is not sent again, its retries, a continuation and the
// next server ask up to end only; an answer to it is still taken. The
// range is filled once Progress reaches end (at once if it has).
func (c *Client) Narrow(end uint64) {
	if !c.active || end >= c.want.End() {
		return
	}
	c.want.Count = max(end, c.want.First) - c.want.First
	if c.next >= c.want.End() {
		c.filled()
	}
}

// Cancel stops filling the wanted range, and asking those ahead.
func (c *Client) Cancel() {
	c.active = false
	c.sentAt = 0
	c.nAhead = 0
	c.noteRTO()
}

// Forget is Cancel for a session whose numbering starts again (a restart
// of its sequence under the same name): a late answer to a request made
// before is never handed on as the new numbering's. Nothing in an answer
// tells the numberings apart (the session name is the same, and the
// sequence numbers of an old answer may be the ones asked after), but
// where it is sent does: the server answers the address a request came
// from. The sockets asked from so far are kept only to drop and count what
// still comes to them (BeforeRestart, until a later Forget sets aside the
// next, and closes them), and each server is asked from a new socket,
// bound to a new port, from its next request on: not the port of a socket
// closed less than portQuarantine before (reopen), so that an answer to a
// socket closed since, late, never comes to the new one.
func (c *Client) Forget() {
	c.Cancel()
	c.askedN = 0
	for i, fd := range c.fds {
		if fd < 0 {
			continue // not asked since the last Forget: what was set aside then stays
		}
		if c.stale[i] >= 0 {
			c.countDrops(c.stale[i], &c.staleDrops[i])
			unix.Close(c.stale[i])
			c.closed[c.closedN%closedMemory] = closedPort{port: c.stalePorts[i], at: c.seen}
			c.closedN++
		}
		c.stale[i], c.stalePorts[i], c.fds[i] = fd, c.ports[i], -1
		c.staleDrops[i], c.fdDrops[i] = c.fdDrops[i], 0
	}
}

// CountKernelDrops adds to Stats.KernelDrops the answer datagrams the
// kernel dropped on the sockets since the last call: a receive buffer
// full, the answer's packets refused before Poll read them (they are
// asked again). A getsockopt per socket: the caller calls it when it
// copies the counters, not per Poll. It allocates nothing.
func (c *Client) CountKernelDrops() {
	for i, fd := range c.fds {
		c.countDrops(fd, &c.fdDrops[i])
	}
	for i, fd := range c.stale {
		c.countDrops(fd, &c.staleDrops[i])
	}
}

// countDrops adds socket fd's drops since last (its counter then) to
// Stats.KernelDrops. The kernel's counter is 32 bits and wraps: the
// difference modulo 2^32 keeps counting across a wrap.
func (c *Client) countDrops(fd int, last *uint32) {
	if fd < 0 {
		return
	}
	if d, ok := skmem.Drops(fd); ok {
		c.Stats.KernelDrops += uint64(d - *last)
		*last = d
	}
}

// Poll reads every answer waiting, handing valid ones to fn in arrival
// order (fn should call Progress when it moved the stream on), then sends
// whatever request is due. It returns false when the wanted range was
// given up on: every server was tried Retries times without filling it.
func (c *Client) Poll(now int64, fn func(p moldudp64.Packet)) bool {
	c.observe(now)
	for i, fd := range c.fds {
		if fd >= 0 {
			c.read(i, fd, now, fn)
		}
	}
	for i, fd := range c.stale {
		if fd >= 0 {
			c.drop(i, fd)
		}
	}
	ok := true
	switch {
	case !c.active:
	case c.next >= c.want.End():
		c.filled()
	default:
		ok = c.send(now)
	}
	if c.nAhead > 0 {
		c.sendAhead(now)
	}
	return ok
}

func (c *Client) read(server, fd int, now int64, fn func(p moldudp64.Packet)) {
	for range 256 {
		n, err := recvfrom(fd, c.buf, &c.from)
		if err != nil {
			if err != unix.EAGAIN && err != unix.EINTR {
				c.Stats.ReadErrors++
			}
			return
		}
		if c.wrongSource(server, n) {
			continue
		}
		c.accept(server, c.buf[:n], now, fn)
	}
}

// drop reads and counts what came to server's socket of before Forget:
// from another address than the server's, WrongSource, as on its
// current socket; from the server, BeforeRestart.
func (c *Client) drop(server, fd int) {
	for range 256 {
		n, err := recvfrom(fd, c.buf, &c.from)
		if err != nil {
			if err != unix.EAGAIN && err != unix.EINTR {
				c.Stats.ReadErrors++
			}
			return
		}
		if c.wrongSource(server, n) {
			continue
		}
		c.Stats.BeforeRestart++
		if p, err := moldudp64.Parse(c.buf[:n]); err == nil {
			c.Stats.DroppedMessages += uint64(p.Messages())
		}
		c.bad(BadBeforeRestart, c.buf[:n], nil)
	}
}

// wrongSource reports whether the last datagram read (c.buf[:n], from
// c.from) came from another IP address than server's (or, with
// Config.ServerPort, another port), and counts it so.
func (c *Client) wrongSource(server, n int) bool {
	if c.from.Family == unix.AF_INET && c.from.Addr == c.addrs[server].Addr &&
		(!c.cfg.ServerPort || int(fromPort(&c.from)) == c.addrs[server].Port) {
		return false
	}
	c.Stats.WrongSource++
	c.bad(BadWrongSource, c.buf[:n], nil)
	return true
}

// accept checks one answer, from server, and hands it on.
func (c *Client) accept(server int, b []byte, now int64, fn func(p moldudp64.Packet)) {
	p, err := moldudp64.Parse(b)
	if err != nil {
		c.Stats.Malformed++
		c.Stats.ParseErrors.Count(err)
		c.bad(BadMalformed, b, err)
		return
	}
	r := p.Range()
	if p.Session != c.session {
		c.Stats.WrongSession++
		c.Stats.DroppedMessages += r.Count
		c.bad(BadWrongSession, b, nil)
		return
	}
	if r.Count == 0 || !c.wasAsked(r) {
		c.Stats.Unasked++
		c.Stats.DroppedMessages += r.Count
		c.bad(BadUnasked, b, nil)
		return
	}
	if !c.active && c.nAhead == 0 || r.End() <= c.next {
		c.Stats.Late++
		c.Stats.DroppedMessages += r.Count
		return
	}
	c.sample(server, c.heard(server, r, now))
	if c.nAhead > 0 {
		c.answeredAhead(server, r, now)
	}
	c.Stats.Responses++
	c.Stats.Messages += r.Count
	fn(p)
}

// Kinds of bad answers (BadAnswer.Kind), as the handler's metric
// recovery_bad_responses_total labels them.
const (
	BadMalformed     = "malformed"
	BadWrongSession  = "wrong_session"
	BadUnasked       = "unasked"
	BadWrongSource   = "wrong_source"
	BadBeforeRestart = "before_restart"
)

// BadAnswer is an answer dropped as bad (Stats.Bad), for the caller's log.
type BadAnswer struct {
	Kind string         // BadMalformed, ...
	From netip.AddrPort // its source
	// Session, Seq and Count: its header, as sent (none when shorter).
	Session moldudp64.Session
	Seq     uint64
	Count   uint16
	Err     error // moldudp64.Parse's, for a malformed one
}

// LastBad returns the last answer dropped as bad (Kind "" before any).
func (c *Client) LastBad() BadAnswer { return c.lastBad }

// bad notes b, from c.from, as the last bad answer. It allocates nothing.
func (c *Client) bad(kind string, b []byte, err error) {
	c.lastBad = BadAnswer{Kind: kind, From: netip.AddrPortFrom(netip.AddrFrom4(c.from.Addr), fromPort(&c.from)), Err: err}
	if len(b) >= moldudp64.HeaderLen {
		c.lastBad.Session = moldudp64.Session(b[:moldudp64.SessionLen])
		c.lastBad.Seq = binary.BigEndian.Uint64(b[10:])
		c.lastBad.Count = binary.BigEndian.Uint16(b[18:])
	}
}

// wasAsked reports whether r overlaps one of the recent requests. An
// answer may hold more than was asked: a server that resends the original
// packet holding the first message asked for starts before it and may end
// after it. The messages outside the request are the session's too (the
// session is checked), and the caller's in-order stream takes what it
// lacks and drops the rest as duplicates.
func (c *Client) wasAsked(r moldudp64.Range) bool {
	for i := 0; i < min(c.askedN, askedMemory); i++ {
		a := c.asked[i]
		if r.Overlaps(a) {
			return true
		}
	}
	return false
}

// observe notes now. A now before the last one seen is a step back of the
// wall clock: the timers' stamps move back with it, so that a timeout, a
// settle or the rate limit's refill waits what it would have, not as long
// as the step.
func (c *Client) observe(now int64) {
	if c.seen == 0 {
		// Ports closed at a Forget before the first Poll: their
		// quarantine counts from now.
		for i := range min(c.closedN, closedMemory) {
			if c.closed[i].at == 0 {
				c.closed[i].at = now
			}
		}
	}
	if d := now - c.seen; d < 0 {
		for i := range min(c.closedN, closedMemory) {
			c.closed[i].at += d
		}
		c.flight.shift(d)
		for i := range c.nAhead {
			c.ahead[i].shift(d)
		}
		if c.refillAt != 0 {
			c.refillAt += d
		}
	}
	c.seen = now
}

// send sends the request that is due, if any.
func (c *Client) send(now int64) bool {
	if c.sentAt != 0 {
		switch c.check(c.next, now, c.settle(), c.rto(c.server)) {
		case awaited:
			return true
		case rewrite:
			if _, lasting := c.ask(&c.flight, now); lasting {
				c.failedLasting(now)
			}
			return true
		case timedOut:
			// A retry, and after Retries the next server. Not in flight
			// any more (check): a resend held back by the rate limit
			// waits for a token, and is not timed out again meanwhile
			// (with the next server's tries at 0, that shifted by -1: a
			// panic).
			counted := c.timedOut(&c.flight)
			if c.tries > c.cfg.Retries {
				c.tries = 0
				if c.failed++; c.failed >= len(c.fds) {
					c.Stats.Failures++
					c.active = false
					c.nAhead = 0 // the servers rest: the caller declares what follows
					c.noteRTO()
					return false
				}
				c.server = (c.server + 1) % len(c.fds)
				c.Stats.Failovers++
				c.noteRTO()
			} else if counted {
				c.Stats.Retries++
			}
		}
	}
	// The messages asked ahead and not answered yet leave room for
	// the rest (Ahead): answers arriving together fit the receive buffer.
	n := min(c.want.End()-c.next, c.room())
	if n == 0 {
		return true // an answer or a timeout ahead makes room
	}
	if !c.take(now) {
		c.Stats.RateLimited++
		return true
	}
	c.start(moldudp64.Range{First: c.next, Count: n}, now, c.est[c.server].backoff)
	if _, lasting := c.ask(&c.flight, now); lasting {
		c.failedLasting(now)
	}
	return true
}

// ask writes f's request (f.inflight, to f.server), noted among the
// recent requests (wasAsked), and notes how that went (flight.wrote). It
// reports whether the request was sent, and whether its write failed for
// a reason that stays. A failure is counted and
// reported (OpenError, SendError). A write that failed for a reason that
// may pass (transientSendError: a send buffer full) is written again
// soon (check's rewrite), as the same try, until its timeout; one that
// failed to open the server's socket times out as unanswered, its
// timeout doubling none after it (timedOut). One that failed for a reason
// that stays (no route to the server, a firewall) is lasting: no write
// gets through now, and waiting out its timeouts (Timeout x
// (2^(Retries+1)-1)) would only hold delivery back, so the caller takes
// its tries as spent (failedLasting; a range ahead is left to its turn).
func (c *Client) ask(f *flight, now int64) (sent, lasting bool) {
	r := f.inflight
	if f.writeFails == 0 || !c.wasAsked(r) {
		c.asked[c.askedN%askedMemory] = r
		c.askedN++
	}
	c.req = moldudp64.Request{Session: c.session, Seq: r.First, Count: uint16(r.Count)}.Append(c.req[:0])
	server := f.server
	if c.fds[server] < 0 && !c.reopen(server) {
		f.wrote(false, false, now) // counted and reported (OpenError); the timeout moves on
		return false, false
	}
	if err := unix.Sendto(c.fds[server], c.req, 0, &c.addrs[server]); err != nil {
		c.Stats.SendErrors++ // counted and reported (SendError)
		c.sendErrs.fail(server, err)
		transient := transientSendError(err)
		f.wrote(false, transient, now)
		return false, !transient
	}
	c.sendErrs.end(server)
	c.Stats.Requests++
	f.wrote(true, false, now)
	return true, false
}

// failedLasting takes the wanted range's tries as spent and its request
// as timed out after a write that failed for a reason that stays (ask):
// the next check fails over, as after the last timeout.
func (c *Client) failedLasting(now int64) {
	c.tries = c.cfg.Retries + 1
	c.sentAt = now - c.timeout(c.rto(c.server))
}

// transientSendError reports whether a failed request write may succeed
// when sent again soon: the socket's buffer full (EAGAIN, ENOBUFS), a
// signal, the kernel short of memory. Others (no route, a firewall's
// EPERM, EACCES) stay until the network is changed.
func transientSendError(err error) bool {
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EINTR), errors.Is(err, unix.ENOMEM):
		return true
	}
	return false
}

// RecvBufferShort returns, once in the client's life, the receive buffer
// granted to a socket that got less than Config.RecvBuffer: the process
// lacks cap_net_admin (SO_RCVBUFFORCE) and net.core.rmem_max is lower,
// so the answer to a large request may overflow it (its packets dropped
// by the kernel, asked again). It returns 0 otherwise. A server's socket
// opened after Forget, on the receive thread, may be the first: the
// process may have dropped its capabilities since New. The caller logs
// it.
func (c *Client) RecvBufferShort() int {
	if c.recvReported || c.recvShort == 0 {
		return 0
	}
	c.recvReported = true
	return c.recvShort
}

// OpenError returns the error of a failure to open a server's new socket
// after Forget (the request was not sent: its range fails over, or is
// given up, as on timeouts), once per run of failures of that server: the
// first, until that server's socket opens (another server's opening does
// not end it); nil otherwise. With several servers' errors not yet
// reported, each call returns the next. The caller logs it.
func (c *Client) OpenError() error { return c.openErrs.next() }

// SendError returns the error of a request write that failed (the request
// did not leave: its range times out as unanswered, then fails over, or
// is given up), once per run of failures of a server: the first, until a
// request to that server is sent; nil otherwise. With several servers'
// errors not yet reported, each call returns the next. The caller logs
// it. The write's errors are the host's (no route to the server, a
// firewall's refusal, ...): without them an operator saw timeouts only.
func (c *Client) SendError() error { return c.sendErrs.next() }

// settle is how long a partly answered request waits for more of its
// answer before the rest is asked for.
func (c *Client) settle() time.Duration { return max(200*time.Microsecond, c.cfg.Timeout/10) }

func (c *Client) burst() float64 { return max(1, c.cfg.RequestsPerSecond/100) }

// take takes a token of the rate limit.
func (c *Client) take(now int64) bool {
	if c.refillAt != 0 {
		c.tokens = min(c.burst(), c.tokens+float64(now-c.refillAt)/1e9*c.cfg.RequestsPerSecond)
	}
	c.refillAt = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}
