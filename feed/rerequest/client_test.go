package rerequest_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/race"
)

var session = moldudp64.NewSession("RRTEST")

// history returns a History of n 12-byte messages, each carrying its
// sequence number, packed 9 to a packet.
func history(t testing.TB, n int) *exchange.History {
	t.Helper()
	h := new(exchange.History)
	b := moldudp64.NewBuilder(session, 1, 20+9*14)
	msg := make([]byte, 12)
	for range n {
		binary.BigEndian.PutUint64(msg[4:], b.Seq())
		if err := b.Add(msg); err != nil {
			h.Record(b.Flush())
			b.Add(msg)
		}
	}
	h.Record(b.Flush())
	return h
}

// stream is the caller's in-order stream: it takes the packets that
// continue it and checks every message's sequence number.
type stream struct {
	t    testing.TB
	c    *rerequest.Client
	next uint64
	msgs int
}

func (s *stream) take(p moldudp64.Packet) {
	if p.Seq > s.next || p.Next() <= s.next {
		return // not contiguous: asked again later
	}
	it := p.Iter()
	it.Skip(int(s.next - p.Seq))
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		if got := binary.BigEndian.Uint64(m[4:]); got != it.Seq() || got != s.next {
			s.t.Fatalf("message %d carries %d, want %d", it.Seq(), got, s.next)
		}
		s.next++
		s.msgs++
	}
	s.c.Progress(s.next)
}

// fill polls until r is filled or the attempt count runs out.
func fill(t *testing.T, c *rerequest.Client, r moldudp64.Range) *stream {
	t.Helper()
	s := &stream{t: t, c: c, next: r.First}
	c.Want(session, r, time.Now().UnixNano())
	for range 20000 {
		if !c.Poll(time.Now().UnixNano(), s.take) {
			t.Fatalf("gave up at %d: %+v", s.next, c.Stats)
		}
		if !c.Active() {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	if s.next != r.End() {
		t.Fatalf("filled up to %d of %v: %+v", s.next, r, c.Stats)
	}
	return s
}

// answerServer listens on a UDP port of the loopback address and calls
// answer with each request it reads, until the test ends.
func answerServer(t *testing.T, answer func(conn *net.UDPConn, req []byte, from netip.AddrPort)) netip.AddrPort {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			answer(conn, buf[:n], from)
		}
	}()
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// packet returns one answer packet holding h's messages first..end-1.
func packet(h *exchange.History, first, end uint64) []byte {
	b := moldudp64.NewBuilder(session, first, 0)
	for seq := first; seq < end; seq++ {
		m, _ := h.Message(nil, seq)
		b.Add(m)
	}
	return bytes.Clone(b.Flush())
}

func newServer(t *testing.T, cfg exchange.RerequestConfig) *exchange.RerequestServer {
	t.Helper()
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Session = session
	srv, err := exchange.NewRerequestServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestFillCappedLossy: answers of at most 7 messages, 30% of answer packets
// lost: the range is filled by continuations and retries, in order, once.
func TestFillCappedLossy(t *testing.T) {
	h := history(t, 2000)
	srv := newServer(t, exchange.RerequestConfig{Message: h.Message, MaxMessages: 7, Loss: 0.3, Seed: 3})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{srv.Addr()}, Timeout: 2 * time.Millisecond,
		MaxRequestMessages: 100, RequestsPerSecond: 1e6, Retries: 50}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := moldudp64.Range{First: 10, Count: 500}
	s := fill(t, c, r)
	st := c.Stats
	if s.msgs != int(r.Count) || st.Requests < r.Count/7 || st.Retries == 0 || st.Messages != r.Count {
		t.Fatalf("%d messages; stats %+v", s.msgs, st)
	}
}

// TestFailover: the first server never answers; the second fills the range.
func TestFailover(t *testing.T) {
	h := history(t, 100)
	dead := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	live := newServer(t, exchange.RerequestConfig{Message: h.Message})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{dead.Addr(), live.Addr()},
		Timeout: time.Millisecond, Retries: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fill(t, c, moldudp64.Range{First: 1, Count: 100})
	if st := c.Stats; st.Failovers != 1 || st.Timeouts != 3 || st.Retries != 2 {
		t.Fatalf("stats %+v, want 1 failover after 3 timeouts (2 retries)", st)
	}
	if dead.Stats().Requests != 3 {
		t.Fatalf("dead server read %d requests, want 3", dead.Stats().Requests)
	}
}

// TestAllServersDown: every server is tried, then Poll reports failure.
func TestAllServersDown(t *testing.T) {
	h := history(t, 10)
	dead := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{dead.Addr()}, Timeout: time.Millisecond, Retries: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Want(session, moldudp64.Range{First: 1, Count: 5}, time.Now().UnixNano())
	failed := false
	for range 10000 {
		if !c.Poll(time.Now().UnixNano(), func(moldudp64.Packet) { t.Fatal("an answer from a refusing server") }) {
			failed = true
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	if !failed || c.Active() || c.Stats.Failures != 1 {
		t.Fatalf("failed %v, active %v, stats %+v", failed, c.Active(), c.Stats)
	}
}

// TestBadAnswers: a server answering garbage first (another session, a
// count claiming more messages than carried, a range never asked, a
// heartbeat), then the right answer, then the right answer again (late).
// Only the right answer reaches the caller; each bad one is counted.
func TestBadAnswers(t *testing.T) {
	h := history(t, 100)
	var (
		mu   sync.Mutex
		reqs [][]byte
	)
	addr := answerServer(t, func(conn *net.UDPConn, req []byte, from netip.AddrPort) {
		mu.Lock()
		reqs = append(reqs, bytes.Clone(req))
		mu.Unlock()
		rq, err := moldudp64.ParseRequest(req)
		if err != nil {
			return
		}
		pkt := packet(h, rq.Seq, rq.Seq+uint64(rq.Count))
		other := bytes.Clone(pkt)
		copy(other, "OTHER     ")
		lying := bytes.Clone(pkt)
		binary.BigEndian.PutUint16(lying[18:], uint16(rq.Count)+5)
		unasked := bytes.Clone(pkt)
		binary.BigEndian.PutUint64(unasked[10:], rq.Seq+1000)
		hb := moldudp64.AppendHeader(nil, session, rq.Seq, 0)
		for _, p := range [][]byte{other, lying, unasked, hb, pkt, pkt} {
			conn.WriteToUDPAddrPort(p, from)
		}
	})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{addr}, Timeout: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fill(t, c, moldudp64.Range{First: 20, Count: 30})
	// Let the duplicate arrive.
	for range 100 {
		c.Poll(time.Now().UnixNano(), func(moldudp64.Packet) { t.Fatal("an answer after the range was filled") })
		if c.Stats.Late > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	st := c.Stats
	if st.WrongSession != 1 || st.Malformed != 1 || st.Overrun != 1 || st.Unasked != 2 || st.Late != 1 || st.Responses != 1 || st.Messages != 30 {
		t.Fatalf("stats %+v", st)
	}
	// The request on the wire: session, sequence number, count (spec table).
	want := append(append([]byte("RRTEST    "), 0, 0, 0, 0, 0, 0, 0, 20), 0, 30)
	mu.Lock()
	defer mu.Unlock()
	if len(reqs) == 0 || !bytes.Equal(reqs[0], want) {
		t.Fatalf("request bytes % x, want % x", reqs, want)
	}
}

// TestPollIdleAllocatesNothing: the receive loop polls the client on every
// batch.
func TestPollIdleAllocatesNothing(t *testing.T) {
	h := history(t, 10)
	srv := newServer(t, exchange.RerequestConfig{Message: h.Message})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{srv.Addr()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fn := func(moldudp64.Packet) {}
	if n, exact := race.AllocsPerRun(t, 1000, func() { c.Poll(time.Now().UnixNano(), fn) }); exact && n != 0 {
		t.Fatalf("%v allocations per idle Poll", n)
	}
}

// TestPollAnswersAllocateNothing: Poll on the receive thread while answers
// arrive (7 messages each, so many packets) allocates nothing either.
func TestPollAnswersAllocateNothing(t *testing.T) {
	h := history(t, 3000)
	srv := newServer(t, exchange.RerequestConfig{Message: h.Message, MaxMessages: 7})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{srv.Addr()}, RequestsPerSecond: 1e6}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &stream{t: t, c: c, next: 1}
	fn := s.take
	c.Want(session, moldudp64.Range{First: 1, Count: 3000}, time.Now().UnixNano())
	c.Poll(time.Now().UnixNano(), fn)
	before := c.Stats.Responses
	n, exact := race.AllocsPerRun(t, 500, func() {
		c.Poll(time.Now().UnixNano(), fn)
		time.Sleep(50 * time.Microsecond)
	})
	if exact && n != 0 {
		t.Fatalf("%v allocations per Poll taking answers", n)
	}
	if c.Stats.Responses == before {
		t.Fatalf("no answer arrived while measuring: %+v", c.Stats)
	}
}

// TestRateLimit: a server that never answers, a 1 ms timeout (doubled per
// retry, up to 64 ms) and 50 requests per second: over a simulated second
// the limit holds requests back and never more than 51 are sent.
func TestRateLimit(t *testing.T) {
	h := history(t, 10)
	dead := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{dead.Addr()}, Timeout: time.Millisecond,
		Retries: 100000, RequestsPerSecond: 50}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := int64(1)
	c.Want(session, moldudp64.Range{First: 1, Count: 5}, now)
	for range 1000 {
		now += int64(time.Millisecond)
		c.Poll(now, func(moldudp64.Packet) {})
	}
	if st := c.Stats; st.Requests > 51 || st.RateLimited == 0 {
		t.Fatalf("%d requests in a second at 50/s (rate limited %d times)", st.Requests, st.RateLimited)
	}
}

// TestSupersetAnswer: the server answers a request with a packet that
// starts before the messages asked for and ends after them (as a server
// resending its original packets would). The answer is taken, not
// counted as unasked, and the range is filled from it.
func TestSupersetAnswer(t *testing.T) {
	h := history(t, 100)
	addr := answerServer(t, func(conn *net.UDPConn, req []byte, from netip.AddrPort) {
		rq, err := moldudp64.ParseRequest(req)
		if err != nil {
			return
		}
		// 5 messages before the first asked, 5 after the last.
		conn.WriteToUDPAddrPort(packet(h, rq.Seq-5, rq.Seq+uint64(rq.Count)+5), from)
	})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{addr},
		Timeout: 50 * time.Millisecond, Retries: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := moldudp64.Range{First: 20, Count: 10}
	s := &stream{t: t, c: c, next: r.First}
	c.Want(session, r, time.Now().UnixNano())
	for i := 0; i < 20000 && c.Active(); i++ {
		if !c.Poll(time.Now().UnixNano(), s.take) {
			t.Fatalf("gave up at %d: %+v", s.next, c.Stats)
		}
		time.Sleep(100 * time.Microsecond)
	}
	// The stream took the asked messages and the 5 after them; the answer
	// carried 20, all handed on (the caller counts what it used).
	if st := c.Stats; c.Active() || s.next != r.End()+5 || st.Unasked != 0 || st.Responses != 1 || st.Messages != uint64(r.Count)+10 {
		t.Fatalf("stream at %d (want %d), active %v, stats %+v", s.next, r.End()+5, c.Active(), st)
	}
}

// TestAnswerFromOtherPort: the server answers from another port than the
// one asked, and a stranger on another address sends a well-formed answer
// first. The server's answers fill the range; the stranger's is counted
// WrongSource and never reaches the caller.
func TestAnswerFromOtherPort(t *testing.T) {
	h := history(t, 100)
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	addr := answerServer(t, func(_ *net.UDPConn, req []byte, from netip.AddrPort) {
		rq, err := moldudp64.ParseRequest(req)
		if err != nil {
			return
		}
		pkt := packet(h, rq.Seq, rq.Seq+uint64(rq.Count))
		stranger.WriteToUDPAddrPort(pkt, from)
		other.WriteToUDPAddrPort(pkt, from)
	})
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{addr}, Timeout: 50 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := fill(t, c, moldudp64.Range{First: 20, Count: 30})
	if st := c.Stats; s.msgs != 30 || st.WrongSource == 0 || st.Messages != 30 || st.Bad() != st.WrongSource {
		t.Fatalf("took %d messages, stats %+v", s.msgs, st)
	}
}

// TestClockStepBack: a request unanswered, then the wall clock (the
// caller's now) steps back an hour. The request is retried once its
// timeout has passed on the new clock, and the rate limit still has
// tokens; not an hour later.
func TestClockStepBack(t *testing.T) {
	h := history(t, 10)
	dead := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	const timeout = 10 * time.Millisecond
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{dead.Addr()}, Timeout: timeout,
		Retries: 100, RequestsPerSecond: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now().UnixNano()
	c.Want(session, moldudp64.Range{First: 1, Count: 5}, now)
	c.Poll(now, func(moldudp64.Packet) {})
	if st := c.Stats; st.Requests != 1 {
		t.Fatalf("stats %+v, want 1 request", st)
	}
	now -= int64(time.Hour) // the step back
	c.Poll(now, func(moldudp64.Packet) {})
	c.Poll(now+int64(timeout)+1, func(moldudp64.Packet) {})
	if st := c.Stats; st.Requests != 2 || st.Timeouts != 1 || st.RateLimited != 0 {
		t.Fatalf("a timeout after the clock stepped back an hour: stats %+v, want the request timed out and sent again", st)
	}
}

// TestNarrow: a range [6, 20006) asked, its first request (the most
// messages one asks) unanswered; the caller then narrows it to [6, 9)
// (its source of the range ended it there). The retry asks for 3
// messages, and the answer to them fills the range; narrowed to where
// the caller is, a range is filled at once. Without Narrow the retry
// asked the old range again, and the range stayed wanted past the answer.
func TestNarrow(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	const timeout = 10 * time.Millisecond
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{srv.LocalAddr().(*net.UDPAddr).AddrPort()}, Timeout: timeout}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() moldudp64.Request {
		t.Helper()
		buf := make([]byte, 64)
		srv.SetReadDeadline(time.Now().Add(2 * time.Second)) // sent already: only a broken test waits
		n, err := srv.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		req, err := moldudp64.ParseRequest(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return req
	}
	now := time.Now().UnixNano()
	c.Want(session, moldudp64.Range{First: 6, Count: 20_000}, now)
	c.Poll(now, func(moldudp64.Packet) {})
	if req := read(); req.Seq != 6 || int(req.Count) != c.RequestMessages() {
		t.Fatalf("first request %+v, want 6 and %d messages", req, c.RequestMessages())
	}
	c.Narrow(9)
	c.Narrow(20_006) // past its end: nothing changes
	c.Poll(now+int64(timeout), func(moldudp64.Packet) {})
	if req := read(); req.Seq != 6 || req.Count != 3 {
		t.Fatalf("the retry after Narrow(9) asked {%d %d}, want {6 3}", req.Seq, req.Count)
	}
	if c.Progress(9); c.Active() {
		t.Fatal("[6, 9) delivered: still active")
	}
	c.Want(session, moldudp64.Range{First: 20, Count: 100}, now)
	c.Progress(30)
	if c.Narrow(25); c.Active() {
		t.Fatal("narrowed to 25 with 30 delivered: still active")
	}
	if st := c.Stats; st.Requests != 2 || st.Retries != 1 {
		t.Fatalf("stats %+v, want 2 requests, 1 of them a retry", st)
	}
}

// TestNextDue: NextDue tells when Poll next has something to do that no
// answer brings (the caller's wait wakes then: a request's timeout,
// doubled at each retry, and a request the rate limit holds back until
// its token), and Poll at that time does it (a retry sent); nothing when
// no range is being filled.
func TestNextDue(t *testing.T) {
	h := history(t, 10)
	dead := newServer(t, exchange.RerequestConfig{Message: h.Message, Refuse: true})
	const timeout = 10 * time.Millisecond
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{dead.Addr()}, Timeout: timeout,
		Retries: 3, RequestsPerSecond: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := c.NextDue(); d != 0 {
		t.Fatalf("nothing wanted: due %d, want 0", d)
	}
	now := int64(time.Second)
	c.Want(session, moldudp64.Range{First: 1, Count: 5}, now)
	poll := func() { c.Poll(now, func(moldudp64.Packet) {}) }
	poll()
	if st := c.Stats; st.Requests != 1 {
		t.Fatalf("%d requests, want 1", st.Requests)
	}
	if d := c.NextDue(); d != now+int64(timeout) {
		t.Fatalf("a request out: due %v after it, want its timeout %v", time.Duration(d-now), timeout)
	}
	// Polled just before the timeout: nothing happens.
	now += int64(timeout) - 1
	poll()
	if st := c.Stats; st.Requests != 1 || st.Timeouts != 0 {
		t.Fatalf("before the timeout: %+v", st)
	}
	// At it, the request times out; the retry is held back by the rate
	// limit (10 a second, a burst of 1): due at the next token, 100 ms
	// after the first request.
	now++
	poll()
	if st := c.Stats; st.Timeouts != 1 || st.Requests != 1 || st.RateLimited != 1 {
		t.Fatalf("at the timeout: %+v; want a timeout, the retry rate limited", st)
	}
	first := int64(time.Second)
	if d := c.NextDue(); d != first+int64(100*time.Millisecond+time.Microsecond) {
		t.Fatalf("retry rate limited: due %v after the first request, want 100.001ms", time.Duration(d-first))
	}
	now = c.NextDue()
	poll()
	if st := c.Stats; st.Requests != 2 {
		t.Fatalf("at the token: %d requests, want 2 (%+v)", st.Requests, st)
	}
	// The retry's timeout is doubled.
	if d := c.NextDue(); d != now+2*int64(timeout) {
		t.Fatalf("a retry out: due %v after it, want %v", time.Duration(d-now), 2*timeout)
	}
	c.Forget()
	if d := c.NextDue(); d != 0 {
		t.Fatalf("forgotten: due %d, want 0", d)
	}
}
