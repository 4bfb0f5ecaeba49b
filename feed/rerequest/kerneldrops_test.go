package rerequest_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestKernelDropsCounted: a server in a network namespace of its own
// floods the client's socket, granted 64 KiB, with 600 datagrams of 1400
// bytes while the client does not read: the kernel drops what its buffer
// cannot hold. CountKernelDrops counts them (SO_MEMINFO), as many as the
// client's namespace's Udp RcvbufErrors, and every datagram sent is either
// read by Poll or counted so. The same for the socket set aside at
// Forget, flooded in turn and then closed at the next Forget: its drops
// are counted before it is closed. Before, the kernel's drops on the
// re-request sockets were counted nowhere: an answer overflowing the
// buffer showed only as requests asked again.
func TestKernelDropsCounted(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "h178kd"})
	const recvBuffer = 64 << 10
	c, srv, where := labClient(t, lab, recvBuffer)
	// A datagram of another session: read by Poll, it is counted
	// (WrongSession, BeforeRestart on a socket set aside) and dropped.
	other := moldudp64.NewBuilder(moldudp64.NewSession("OTHER"), 1, 0)
	other.Add(make([]byte, 1400-moldudp64.HeaderLen-2))
	flood := append([]byte(nil), other.Flush()...)
	const n = 600 // 1.3 MB of truesize against 128 KiB booked
	send := func(to netip.AddrPort) {
		t.Helper()
		if err := <-netlab.SendPaced(srv, to, n, 100*time.Microsecond, func(int) []byte { return flood }); err != nil {
			t.Fatal(err)
		}
	}
	read := func() uint64 { return c.Stats.WrongSession + c.Stats.BeforeRestart }
	drain := func() {
		for range 100 {
			c.Poll(time.Now().UnixNano(), func(moldudp64.Packet) {})
		}
	}
	check := func(what string, sent uint64) {
		t.Helper()
		kernel := udpRcvbufErrors(t, lab)
		if c.Stats.KernelDrops == 0 || c.Stats.KernelDrops != kernel || read()+c.Stats.KernelDrops != sent {
			t.Fatalf("%s: KernelDrops %d, want above 0 and the namespace's Udp RcvbufErrors %d; read %d + dropped %d, want the %d sent; stats %+v",
				what, c.Stats.KernelDrops, kernel, read(), c.Stats.KernelDrops, sent, c.Stats)
		}
	}

	send(where())
	c.CountKernelDrops()
	drain()
	check("the server's socket", n)

	first := where() // the same socket
	c.Forget()       // set aside
	where()          // a new socket opened
	send(first)
	c.CountKernelDrops()
	drain()
	check("the socket set aside at Forget", 2*n)

	where()
	send(first)
	c.Forget() // closes the socket set aside: its drops are counted first
	c.CountKernelDrops()
	if kernel := udpRcvbufErrors(t, lab); c.Stats.KernelDrops == 0 || c.Stats.KernelDrops != kernel {
		t.Fatalf("the socket closed at the second Forget: KernelDrops %d, want the namespace's Udp RcvbufErrors %d", c.Stats.KernelDrops, kernel)
	}
}

// labClient is a client of one server, srv, bound in lab's Src, its
// sockets in lab's Dst granted recvBuffer bytes, closed at the test's end.
// where has the client send a request (of the next message) and returns
// the address it came from: the socket the answers go to.
func labClient(t *testing.T, lab *netlab.Lab, recvBuffer int) (c *rerequest.Client, srv int, where func() netip.AddrPort) {
	t.Helper()
	c, srv, _ = newLabClient(t, lab, rerequest.Config{Timeout: time.Minute, RecvBuffer: recvBuffer})
	if short := c.RecvBufferShort(); short != 0 {
		t.Fatalf("granted %d bytes of %d: needs SO_RCVBUFFORCE (cap_net_admin)", short, recvBuffer)
	}
	seq := uint64(1)
	where = func() netip.AddrPort {
		t.Helper()
		c.Want(session, moldudp64.Range{First: seq, Count: 1}, time.Now().UnixNano())
		seq++
		c.Poll(time.Now().UnixNano(), func(moldudp64.Packet) {})
		buf := make([]byte, 64)
		n, from := netlab.Recv(t, srv, buf)
		if _, err := moldudp64.ParseRequest(buf[:n]); err != nil {
			t.Fatal(err)
		}
		return from
	}
	return c, srv, where
}

// newLabClient is a client, shaped by cfg, of one server, srv at server,
// bound in lab's Src, its sockets in lab's Dst, closed at the test's end.
func newLabClient(t *testing.T, lab *netlab.Lab, cfg rerequest.Config) (c *rerequest.Client, srv int, server netip.AddrPort) {
	t.Helper()
	srv, server = lab.BoundUDPSocket(t, lab.Src)
	cfg.Servers = []netip.AddrPort{server}
	c, err := rerequest.New(cfg, func(fn func() error) error { return lab.Do(lab.Dst, fn) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, srv, server
}

// TestWrongSourceOnSocketSetAside: after Forget, the socket set aside
// (only read to drop the old numbering's answers) gets two well-formed
// answers: one from its server, one from another address. The server's
// is counted BeforeRestart, the other's WrongSource, as on a server's
// current socket; neither reaches the caller. Before, every datagram read
// there was counted BeforeRestart, whoever sent it, so
// recovery_bad_responses_total{kind="wrong_source"} missed a stranger
// writing to the re-request sockets after a restart.
func TestWrongSourceOnSocketSetAside(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "h178ws"})
	c, srv, where := labClient(t, lab, 256<<10)
	old := where()
	c.Forget()
	where()                               // the server's new socket
	stranger := lab.UDPSocket(t, lab.Dst) // another address than the server's: the client's own
	b := moldudp64.NewBuilder(session, 1, 0)
	b.Add(make([]byte, 12))
	answer := append([]byte(nil), b.Flush()...)
	to := &unix.SockaddrInet4{Addr: old.Addr().As4(), Port: int(old.Port())}
	for _, fd := range []int{stranger, srv} {
		if err := unix.Sendto(fd, answer, 0, to); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; c.Stats.Bad() < 2; i++ {
		if i == 5000 {
			t.Fatalf("the answers not read: %+v", c.Stats)
		}
		time.Sleep(time.Millisecond)
		c.Poll(time.Now().UnixNano(), func(p moldudp64.Packet) { t.Fatalf("handed on: %v", p.Range()) })
	}
	if st := c.Stats; st.WrongSource != 1 || st.BeforeRestart != 1 || st.DroppedMessages != 1 {
		t.Fatalf("wrong source %d (want 1), before restart %d (want 1), dropped messages %d (want the server's 1); %+v", st.WrongSource, st.BeforeRestart, st.DroppedMessages, st)
	}
}

// TestServerPort: a server in a network namespace of its own is asked for
// message 1; a socket of the same host (its address) on another port
// answers first, then the server from the port asked. With
// Config.ServerPort the first is counted WrongSource and never handed on,
// the server's is; without (the default), both are answers from the
// server's address and both are handed on (the second late).
func TestServerPort(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "h185sp"})
	b := moldudp64.NewBuilder(session, 1, 0)
	b.Add(make([]byte, 12))
	answer := append([]byte(nil), b.Flush()...)
	for _, strict := range []bool{true, false} {
		srv, server := lab.BoundUDPSocket(t, lab.Src)
		sibling, other := lab.BoundUDPSocket(t, lab.Src)
		if other.Addr() != server.Addr() || other.Port() == server.Port() {
			t.Fatalf("sibling at %v, server at %v: want the same address, another port", other, server)
		}
		c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{server}, Timeout: time.Minute, ServerPort: strict},
			func(fn func() error) error { return lab.Do(lab.Dst, fn) })
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var handed []netip.AddrPort // the source of each answer handed on, as LastBad would name it
		c.Want(session, moldudp64.Range{First: 1, Count: 1}, time.Now().UnixNano())
		c.Poll(time.Now().UnixNano(), func(moldudp64.Packet) { t.Fatal("an answer before any was sent") })
		buf := make([]byte, 64)
		_, from := netlab.Recv(t, srv, buf)
		to := &unix.SockaddrInet4{Addr: from.Addr().As4(), Port: int(from.Port())}
		for i, fd := range []int{sibling, srv} {
			if err := unix.Sendto(fd, answer, 0, to); err != nil {
				t.Fatal(err)
			}
			src := []netip.AddrPort{other, server}[i]
			read := func() uint64 { return c.Stats.Bad() + c.Stats.Responses + c.Stats.Late }
			before := read()
			for j := 0; read() == before; j++ {
				if j == 5000 {
					t.Fatalf("server port %v: the answer from %v not read: %+v", strict, src, c.Stats)
				}
				time.Sleep(time.Millisecond)
				c.Poll(time.Now().UnixNano(), func(p moldudp64.Packet) {
					handed = append(handed, src)
					c.Progress(p.Next())
				})
			}
		}
		st := c.Stats
		if strict {
			if st.WrongSource != 1 || st.Responses != 1 || len(handed) != 1 || handed[0] != server || c.LastBad().From != other {
				t.Fatalf("server port: handed on the answers of %v (want only the server's, %v); wrong source %d (want 1, from %v: last bad %+v); %+v",
					handed, server, st.WrongSource, other, c.LastBad(), st)
			}
			continue
		}
		if st.WrongSource != 0 || st.Responses != 1 || st.Late != 1 || len(handed) != 1 || handed[0] != other {
			t.Fatalf("any port: handed on the answers of %v (want the first, %v's; the server's late); wrong source %d (want 0); %+v",
				handed, other, st.WrongSource, st)
		}
	}
}

// TestSendBufferFullRetriedSoon: the client's socket, in a network
// namespace of its own, has its send buffer full: its link's qdisc (tbf
// at 8 bit/s) holds what was written before, so the request's write fails
// with EAGAIN. The write is tried again at the next Poll, then at doubling
// intervals (each failure counted in SendErrors), not a whole request
// timeout (an hour here) later: once the qdisc is gone (the buffer freed)
// the request reaches the server at the next Poll that is due, with the
// client's clock at most 10 ms on; it is no timeout and no retry. A
// write that keeps failing does not spin: over a minute of Polls a
// millisecond apart, one write at the next Poll, then spaced by 100 µs
// doubled per failure up to 10 ms (about 6,000, not one per Poll). Before,
// the request waited its hour.
func TestSendBufferFullRetriedSoon(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "r42sb"})
	c, srv, server := newLabClient(t, lab, rerequest.Config{Timeout: time.Hour})
	if out, err := lab.Exec(lab.Dst, "tc", "qdisc", "add", "dev", lab.DstIf, "root", "tbf", "rate", "8bit", "burst", "1600", "limit", "1000000"); err != nil {
		t.Fatalf("tc: %v: %s", err, out)
	}
	now := int64(1)
	c.Want(session, moldudp64.Range{First: 1, Count: 5}, now)
	fds := c.WakeFds(nil)
	if len(fds) != 1 {
		t.Fatalf("wake fds %v, want the server's socket", fds)
	}
	fillSendBuffer(t, fds[0], server)

	const polls = 60_000 // a minute of the client's clock
	for i := range polls {
		now += int64(time.Millisecond)
		c.Poll(now, func(moldudp64.Packet) {})
		if i == 0 && c.Stats.SendErrors != 1 {
			t.Fatalf("the first write: send errors %d, want 1 (EAGAIN)", c.Stats.SendErrors)
		}
	}
	// At once, then 100 µs doubled per failure up to every 10 ms: about
	// 6,000 writes, where one per Poll would be 60,000.
	if st := c.Stats; st.Requests != 0 || st.SendErrors < 2 || st.SendErrors > polls/10+16 || st.Timeouts != 0 {
		t.Fatalf("a minute with the buffer full: requests %d (want 0), send errors %d (want tried again, backing off: 2 to %d), timeouts %d (want 0)",
			st.Requests, st.SendErrors, polls/10+16, st.Timeouts)
	}
	if err := c.SendError(); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("send error reported %v, want EAGAIN", err)
	}
	if out, err := lab.Exec(lab.Dst, "tc", "qdisc", "del", "dev", lab.DstIf, "root"); err != nil {
		t.Fatalf("tc: %v: %s", err, out)
	}
	due := c.NextDue()
	if due <= now || due-now > int64(10*time.Millisecond) {
		t.Fatalf("next due %d ns after now, want the next write within 10 ms", due-now)
	}
	c.Poll(due, func(moldudp64.Packet) {})
	buf := make([]byte, 64)
	n, _ := netlab.Recv(t, srv, buf)
	for n == len("fill") { // those the qdisc's burst let through
		n, _ = netlab.Recv(t, srv, buf)
	}
	req, err := moldudp64.ParseRequest(buf[:n])
	if err != nil || req.Seq != 1 || req.Count != 5 {
		t.Fatalf("the server got %+v (%v), want a request for 1+5", req, err)
	}
	if st := c.Stats; st.Requests != 1 || st.Timeouts != 0 || st.Retries != 0 {
		t.Fatalf("requests %d (want 1), timeouts %d, retries %d (want 0: the hour not waited)", st.Requests, st.Timeouts, st.Retries)
	}
}

// fillSendBuffer shrinks socket fd's send buffer to the kernel's least
// and writes to to until the kernel refuses (EAGAIN): its link's qdisc
// holds what was written.
func fillSendBuffer(t *testing.T, fd int, to netip.AddrPort) {
	t.Helper()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1); err != nil {
		t.Fatal(err)
	}
	sa := &unix.SockaddrInet4{Addr: to.Addr().As4(), Port: int(to.Port())}
	for i := range 1000 {
		err := unix.Sendto(fd, []byte("fill"), unix.MSG_DONTWAIT, sa)
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		if err != nil {
			t.Fatalf("write %d to fill the send buffer: %v", i, err)
		}
	}
	t.Fatal("the send buffer never filled: the qdisc does not hold the writes")
}
