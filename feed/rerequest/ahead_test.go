package rerequest_test

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/race"
)

// quietServer is a re-request server that answers nothing by itself: the
// test reads the requests (sent already: loopback) and answers them.
type quietServer struct {
	t    *testing.T
	conn *net.UDPConn
	from netip.AddrPort
}

func newQuietServer(t *testing.T) *quietServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &quietServer{t: t, conn: conn}
}

func (s *quietServer) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// requests returns, as "first+count", the requests its socket holds,
// without waiting.
func (s *quietServer) requests() []string {
	s.t.Helper()
	raw, err := s.conn.SyscallConn()
	if err != nil {
		s.t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 64)
	for {
		var n int
		var sa unix.Sockaddr
		var rerr error
		raw.Read(func(fd uintptr) bool {
			n, sa, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return true
		})
		if rerr != nil {
			return got
		}
		req, err := moldudp64.ParseRequest(buf[:n])
		if err != nil {
			s.t.Fatal(err)
		}
		a := sa.(*unix.SockaddrInet4)
		s.from = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		got = append(got, fmt.Sprintf("%d+%d", req.Seq, req.Count))
	}
}

// answer sends the client the messages first..end-1 (12 bytes each).
func (s *quietServer) answer(first, end uint64) {
	s.t.Helper()
	b := moldudp64.NewBuilder(session, first, 0)
	for seq := first; seq < end; seq++ {
		b.Add(make([]byte, 12))
	}
	if _, err := s.conn.WriteToUDPAddrPort(b.Flush(), s.from); err != nil {
		s.t.Fatal(err)
	}
}

func rg(first, count uint64) moldudp64.Range { return moldudp64.Range{First: first, Count: count} }

// newQuietClient returns a client of srv (then more, in order: its
// backups).
func newQuietClient(t *testing.T, srv *quietServer, cfg rerequest.Config, more ...*quietServer) *rerequest.Client {
	t.Helper()
	cfg.Servers = []netip.AddrPort{srv.addr()}
	for _, s := range more {
		cfg.Servers = append(cfg.Servers, s.addr())
	}
	c, err := rerequest.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pollUntil polls the client at now until it has taken n answers.
func pollUntil(t *testing.T, c *rerequest.Client, now int64, n uint64, fn func(p moldudp64.Packet)) {
	t.Helper()
	for i := 0; c.Stats.Responses+c.Stats.Late < n; i++ {
		if i == 5000 {
			t.Fatalf("%d answers not read: %+v", n, c.Stats)
		}
		time.Sleep(200 * time.Microsecond)
		c.Poll(now, fn)
	}
}

// TestAheadBounded: ranges ahead are asked with the wanted one, in order,
// until the messages in flight reach RequestMessages (100): the wanted
// range's 30, the first ahead's 40, 30 of the second's 40; the third and
// fourth wait, and a fifth is not taken (MaxAhead is 4). Once the wanted
// range's answer comes there is room again: the third and fourth are
// asked (the rest of the second once its request is answered: one
// request in flight per range).
func TestAheadBounded(t *testing.T) {
	srv := newQuietServer(t)
	c := newQuietClient(t, srv, rerequest.Config{MaxRequestMessages: 100, Timeout: time.Hour})
	now := time.Now().UnixNano()
	c.Want(session, rg(10, 30), now)
	c.Ahead([]moldudp64.Range{rg(100, 40), rg(200, 40), rg(300, 10), rg(400, 5), rg(500, 5)})
	if c.Aheads() != rerequest.MaxAhead {
		t.Fatalf("%d ranges ahead, want %d", c.Aheads(), rerequest.MaxAhead)
	}
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+30", "100+40", "200+30"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	next := uint64(10)
	srv.answer(10, 40)
	pollUntil(t, c, now, 1, func(p moldudp64.Packet) {
		if p.Seq == next {
			next = p.Next()
			c.Progress(next)
		}
	})
	if c.Active() {
		t.Fatal("the wanted range is not filled")
	}
	if got, want := srv.requests(), []string{"300+10", "400+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests once the wanted range was answered: %v, want %v", got, want)
	}
}

// TestAheadRetriesThenWaits: a range ahead that is not answered is asked
// again after Timeout, doubled per retry, Retries times, of its server;
// then it waits for its turn (Want), which goes on from its last request
// rather than ask it again at once. Its answer, when it comes, is handed
// on: the caller holds it.
func TestAheadRetriesThenWaits(t *testing.T) {
	srv := newQuietServer(t)
	const timeout = 10 * time.Millisecond
	c := newQuietClient(t, srv, rerequest.Config{Timeout: timeout, Retries: 2})
	now := time.Now().UnixNano()
	c.Want(session, rg(10, 2), now)
	c.Ahead([]moldudp64.Range{rg(20, 2)})
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+2", "20+2"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	// The wanted range answered at once; the one ahead never.
	srv.answer(10, 12)
	pollUntil(t, c, now, 1, func(p moldudp64.Packet) { c.Progress(p.Next()) })
	if due := c.NextDue(); due != now+int64(timeout) {
		t.Fatalf("next due %d after now, want the timeout of the range ahead, %v", due-now, timeout)
	}
	for i, d := range []time.Duration{timeout, 2 * timeout} {
		now += int64(d)
		c.Poll(now, func(moldudp64.Packet) {})
		if got, want := srv.requests(), []string{"20+2"}; !slices.Equal(got, want) {
			t.Fatalf("retry %d: requests %v, want %v", i+1, got, want)
		}
	}
	now += int64(4 * timeout)
	c.Poll(now, func(moldudp64.Packet) {})
	if got := srv.requests(); len(got) != 0 || c.NextDue() != 0 {
		t.Fatalf("after its retries: requests %v, next due %d: want none (it waits for its turn)", got, c.NextDue())
	}
	if c.Stats.Timeouts != 3 || c.Stats.Retries != 2 || c.Stats.Failures != 0 || c.Stats.Requests != 4 || c.Stats.Ahead != 3 {
		t.Fatalf("timeouts %d, retries %d, failures %d, requests %d (ahead %d): want 3, 2, 0, 4 (3)",
			c.Stats.Timeouts, c.Stats.Retries, c.Stats.Failures, c.Stats.Requests, c.Stats.Ahead)
	}
	// Its turn: asked again now, the servers in turn as for any range.
	c.Want(session, rg(20, 2), now)
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"20+2"}; !slices.Equal(got, want) {
		t.Fatalf("at its turn: requests %v, want %v", got, want)
	}
}

// TestAheadAdopted: the wanted range that a request ahead already asks
// for goes on with that request: not asked again at once, its timeout
// counted from when it was sent. An answer to a range ahead that came
// before its turn is handed on when it comes.
func TestAheadAdopted(t *testing.T) {
	srv := newQuietServer(t)
	const timeout = 10 * time.Millisecond
	c := newQuietClient(t, srv, rerequest.Config{Timeout: timeout})
	now := time.Now().UnixNano()
	c.Want(session, rg(10, 2), now)
	c.Ahead([]moldudp64.Range{rg(20, 2), rg(30, 2)})
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+2", "20+2", "30+2"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	var handed []uint64
	srv.answer(30, 32) // the second range ahead's answer first
	pollUntil(t, c, now, 1, func(p moldudp64.Packet) { handed = append(handed, p.Seq) })
	srv.answer(10, 12)
	pollUntil(t, c, now, 2, func(p moldudp64.Packet) { handed = append(handed, p.Seq); c.Progress(12) })
	now += int64(timeout / 2)
	c.Want(session, rg(20, 2), now)
	c.Poll(now, func(moldudp64.Packet) {})
	if got := srv.requests(); len(got) != 0 {
		t.Fatalf("requests at the turn of a range asked ahead: %v, want none (its request is in flight)", got)
	}
	if due := c.NextDue(); due != now+int64(timeout/2) {
		t.Fatalf("next due %v from now, want its request's timeout, %v", time.Duration(due-now), timeout/2)
	}
	if !slices.Equal(handed, []uint64{30, 10}) {
		t.Fatalf("answers handed on %v, want 30 then 10", handed)
	}
}

// TestAheadRateLimited: requests ahead take tokens of the rate limit
// after the wanted range's: with one token, the wanted range is asked and
// the range ahead waits for the next token (NextDue says when).
func TestAheadRateLimited(t *testing.T) {
	srv := newQuietServer(t)
	c := newQuietClient(t, srv, rerequest.Config{Timeout: time.Hour, RequestsPerSecond: 10})
	now := time.Now().UnixNano()
	c.Want(session, rg(10, 2), now)
	c.Ahead([]moldudp64.Range{rg(20, 2)})
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+2"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	due := c.NextDue()
	if due <= now || due > now+int64(100*time.Millisecond)+int64(time.Microsecond) {
		t.Fatalf("next due %v from now, want the next token's (100 ms)", time.Duration(due-now))
	}
	c.Poll(due, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"20+2"}; !slices.Equal(got, want) {
		t.Fatalf("requests at the next token: %v, want %v", got, want)
	}
}

// TestAheadAllocatesNothing: Ahead and a Poll that asks ahead allocate
// nothing (the receive thread's).
func TestAheadAllocatesNothing(t *testing.T) {
	srv := newQuietServer(t)
	c := newQuietClient(t, srv, rerequest.Config{Timeout: time.Hour, RequestsPerSecond: 1e9})
	now := time.Now().UnixNano()
	rs := []moldudp64.Range{rg(20, 2), rg(30, 2)}
	fn := func(moldudp64.Packet) {}
	allocs, exact := race.AllocsPerRun(t, 100, func() {
		now += int64(time.Millisecond)
		c.Want(session, rg(10, 2), now)
		c.Ahead(rs)
		c.Poll(now, fn)
		c.NextDue()
		c.Cancel()
	})
	srv.requests()
	if exact && allocs != 0 {
		t.Fatalf("%v allocations per round, want 0", allocs)
	}
}

// TestAheadTimeoutFreesRoom: a range found ahead later than another,
// before it in order, waits for room while the other's request, its
// answer lost, takes it; once that request times out it takes room no
// longer, and the first is asked, then the other again with what room
// is left. Before, the one waiting for room stopped the round before the
// other's timeout was seen: room never came, the first was never asked
// ('requests at the timeout: [10+2], want [10+2 100+4 200+4]').
func TestAheadTimeoutFreesRoom(t *testing.T) {
	srv := newQuietServer(t)
	const timeout = 10 * time.Millisecond
	c := newQuietClient(t, srv, rerequest.Config{MaxRequestMessages: 10, Timeout: timeout})
	now := time.Now().UnixNano()
	c.Want(session, rg(10, 2), now)
	c.Ahead([]moldudp64.Range{rg(200, 8)})
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+2", "200+8"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	c.Ahead([]moldudp64.Range{rg(100, 4), rg(200, 8)})
	c.Poll(now, func(moldudp64.Packet) {})
	if got := srv.requests(); len(got) != 0 {
		t.Fatalf("requests with no room: %v, want none", got)
	}
	now += int64(timeout)
	c.Poll(now, func(moldudp64.Packet) {})
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+2", "100+4", "200+4"}; !slices.Equal(got, want) {
		t.Fatalf("requests at the timeout: %v, want %v", got, want)
	}
}

// TestAheadSendErrorFreesRoom: a range ahead asked of a server that
// cannot be written to (a broadcast address without SO_BROADCAST:
// EACCES, as a firewall's EPERM or no route would be) is left to its
// turn with nothing in flight: it takes no room, and the next wanted
// range is asked, of that server (failing again) then of the next one.
// Before, the failed request kept its room for ever: the wanted range was
// never asked, and NextDue said nothing was due (no timeout, no
// failover).
func TestAheadSendErrorFreesRoom(t *testing.T) {
	srv := newQuietServer(t)
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("255.255.255.255:9"), srv.addr()},
		MaxRequestMessages: 100, Timeout: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	now := time.Now().UnixNano()
	c.Want(session, rg(1, 1), now)
	c.Progress(2)
	c.Ahead([]moldudp64.Range{rg(100, 100)})
	c.Poll(now, func(moldudp64.Packet) {}) // its send fails
	if c.Stats.SendErrors != 1 {
		t.Fatalf("send errors %d, want 1 (the range ahead's)", c.Stats.SendErrors)
	}
	c.Want(session, rg(10, 2), now)
	var got []string
	for i := 0; i < 50 && len(got) == 0; i++ {
		time.Sleep(time.Millisecond)
		now += int64(10 * time.Millisecond)
		c.Poll(now, func(moldudp64.Packet) {})
		got = srv.requests()
	}
	if want := []string{"10+2"}; !slices.Equal(got, want) {
		t.Fatalf("requests at the reachable server %v, want %v (next due %d, requests %d, send errors %d)",
			got, want, c.NextDue(), c.Stats.Requests, c.Stats.SendErrors)
	}
}

// TestAheadNotAdoptedPastItsStart: a range ahead answered in part, the
// answer not kept by the caller (its hold full), is asked on from past
// that answer; at its turn (Want) that request does not hold the range's
// first message, so the wanted range is asked at once rather than
// waiting out the request's timeout for a message nobody asked. Before,
// Want took the request over (it overlapped): no request at the turn,
// the first one after a timeout.
func TestAheadNotAdoptedPastItsStart(t *testing.T) {
	srv := newQuietServer(t)
	const timeout = time.Hour
	c := newQuietClient(t, srv, rerequest.Config{Timeout: timeout})
	now := time.Now().UnixNano()
	c.Want(session, rg(10, 2), now)
	c.Ahead([]moldudp64.Range{rg(20, 10)})
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+2", "20+10"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	srv.answer(20, 25) // in part; the caller does not keep it
	pollUntil(t, c, now, 1, func(moldudp64.Packet) {})
	now += int64(timeout / 5) // past the settle (Timeout/10): the rest is asked
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"25+5"}; !slices.Equal(got, want) {
		t.Fatalf("requests after the partial answer %v, want %v", got, want)
	}
	srv.answer(10, 12)
	pollUntil(t, c, now, 2, func(p moldudp64.Packet) {
		if p.Seq == 10 {
			c.Progress(12)
		}
	})
	c.Want(session, rg(20, 10), now)
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"20+10"}; !slices.Equal(got, want) {
		t.Fatalf("requests at its turn: %v, want %v (next due %v from now)", got, want, time.Duration(c.NextDue()-now))
	}
}

// TestAheadListedAgainPastItsRequest: a range ahead asked in part (the
// room: RequestMessages 10, the wanted range's 2 in flight) and answered,
// the answer not kept by the caller (its hold full), is asked on at once
// from past that answer; the caller lists it again from its start (the
// handler does every aheadEvery), and the request in flight, which does
// not ask that start, is dropped: the range is asked again from its start
// at once rather than waiting out that request's timeout for a message
// nobody asked.
func TestAheadListedAgainPastItsRequest(t *testing.T) {
	srv := newQuietServer(t)
	const timeout = time.Hour
	c := newQuietClient(t, srv, rerequest.Config{MaxRequestMessages: 10, Timeout: timeout})
	now := time.Now().UnixNano()
	c.Want(session, rg(10, 2), now)
	c.Ahead([]moldudp64.Range{rg(20, 10)})
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"10+2", "20+8"}; !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
	srv.answer(20, 28) // the caller does not keep it
	pollUntil(t, c, now, 1, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"28+2"}; !slices.Equal(got, want) {
		t.Fatalf("requests after the answer %v, want %v", got, want)
	}
	c.Ahead([]moldudp64.Range{rg(20, 10)}) // still lacked whole
	c.Poll(now, func(moldudp64.Packet) {})
	if got, want := srv.requests(), []string{"20+8"}; !slices.Equal(got, want) {
		t.Fatalf("requests once listed again: %v, want %v (next due %v from now)", got, want, time.Duration(c.NextDue()-now))
	}
}
