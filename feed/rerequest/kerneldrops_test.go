package rerequest_test

import (
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
	srv, server := lab.BoundUDPSocket(t, lab.Src)
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{server}, Timeout: time.Minute, RecvBuffer: recvBuffer},
		func(fn func() error) error { return lab.Do(lab.Dst, fn) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
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
