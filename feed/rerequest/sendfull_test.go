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
	srv, server := lab.BoundUDPSocket(t, lab.Src)
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{server}, Timeout: time.Hour},
		func(fn func() error) error { return lab.Do(lab.Dst, fn) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
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
