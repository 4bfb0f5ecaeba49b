package rerequest_test

import (
	"net/netip"
	"testing"
	"time"

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
	srv, server := lab.BoundUDPSocket(t, lab.Src)
	const recvBuffer = 64 << 10
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{server}, Timeout: time.Minute, RecvBuffer: recvBuffer},
		func(fn func() error) error { return lab.Do(lab.Dst, fn) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if short := c.RecvBufferShort(); short != 0 {
		t.Fatalf("granted %d bytes of %d: needs SO_RCVBUFFORCE (cap_net_admin)", short, recvBuffer)
	}
	// where has the client send a request and returns the port it came
	// from: the socket the answers go to.
	seq := uint64(1)
	where := func() netip.AddrPort {
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
