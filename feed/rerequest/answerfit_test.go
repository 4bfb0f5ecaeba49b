package rerequest_test

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestAnswerFitsRecvBuffer: a re-request server in a network namespace of
// its own answers a packet per message (MoldUDP64 leaves the packing to
// the server), to a client whose sockets are granted 256 KiB (the kernel
// books 512 KiB of skb truesize) and which may ask 4000 messages at once.
// The client is read only once each answer was sent whole, as a receive
// thread busy with the lines would. Every answer must fit: the kernel
// drops nothing on the client's namespace (Udp RcvbufErrors), and the
// range is filled with no request timed out. Before, the client asked
// for 4000 messages in one request: about 3.3 MB of truesize, most of it
// dropped by the kernel, then asked again.
func TestAnswerFitsRecvBuffer(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "h174rr"})
	const n = 4000
	h := new(exchange.History)
	b := moldudp64.NewBuilder(session, 1, moldudp64.HeaderLen+2+12) // a message a packet
	msg := make([]byte, 12)
	for range n {
		binary.BigEndian.PutUint64(msg[4:], b.Seq())
		if err := b.Add(msg); err != nil {
			h.Record(b.Flush())
			if err := b.Add(msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.Record(b.Flush())

	var srv *exchange.RerequestServer
	if err := lab.Do(lab.Src, func() error {
		var err error
		srv, err = exchange.NewRerequestServer(exchange.RerequestConfig{Listen: netip.AddrPortFrom(lab.SrcIP, 0),
			Session: session, Message: h.Message, MaxPacket: moldudp64.HeaderLen + 2 + 12})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	const recvBuffer = 256 << 10
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{srv.Addr()}, Timeout: time.Minute,
		MaxRequestMessages: n, RequestsPerSecond: 1e6, RecvBuffer: recvBuffer},
		func(fn func() error) error { return lab.Do(lab.Dst, fn) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if short := c.RecvBufferShort(); short != 0 {
		t.Fatalf("granted %d bytes of %d: needs SO_RCVBUFFORCE (cap_net_admin)", short, recvBuffer)
	}
	if got, want := c.RequestMessages(), rerequest.AnswerMessages(recvBuffer); got != want || got >= n {
		t.Errorf("RequestMessages %d, want AnswerMessages(%d) = %d (below %d)", got, recvBuffer, want, n)
	}
	s := &stream{t: t, c: c, next: 1}
	r := moldudp64.Range{First: 1, Count: n}
	c.Want(session, r, time.Now().UnixNano())
	for range 200 {
		answered := srv.Stats().Messages
		sent := c.Stats.Requests
		c.Poll(time.Now().UnixNano(), s.take) // reads the last answer, asks for the next
		if !c.Active() {
			break
		}
		if c.Stats.Requests == sent {
			t.Fatalf("no request sent at %d: %+v", s.next, c.Stats)
		}
		// The answer sent whole before anything of it is read.
		for i := 0; srv.Stats().Messages == answered; i++ {
			if i == 20000 {
				t.Fatalf("the server answered nothing to request %d: %+v", c.Stats.Requests, srv.Stats())
			}
			time.Sleep(100 * time.Microsecond)
		}
		if d := udpRcvbufErrors(t, lab); d != 0 {
			t.Fatalf("the kernel dropped %d answer packets (Udp RcvbufErrors) of request %d, asking %d messages (RequestMessages %d, recv buffer %d)",
				d, c.Stats.Requests, srv.Stats().Messages-answered, c.RequestMessages(), recvBuffer)
		}
	}
	if s.next != r.End() || c.Stats.Timeouts != 0 || c.Stats.Messages != n {
		t.Fatalf("filled to %d of %v; stats %+v", s.next, r, c.Stats)
	}
}

// udpRcvbufErrors returns Udp RcvbufErrors of /proc/net/snmp in the
// lab's receiving namespace: the datagrams its UDP sockets' full receive
// buffers dropped.
func udpRcvbufErrors(t *testing.T, lab *netlab.Lab) uint64 {
	t.Helper()
	out, err := lab.Exec(lab.Dst, "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "RcvbufErrors" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
	}
	t.Fatalf("no Udp RcvbufErrors in %s's /proc/net/snmp:\n%s", lab.Dst, out)
	return 0
}
