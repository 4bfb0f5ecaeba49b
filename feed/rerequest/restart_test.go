package rerequest_test

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// TestForgetStaleAnswer: a request of the old numbering is in flight when
// the followed session's sequence restarts under the same name
// (recovery.sessionChanged: Forget, then Want of the restarted sequence).
// The old request's answer, arriving after the new Want, carries the same
// session name and the sequence numbers asked again after the restart: it
// must not be handed on as the restarted sequence's messages (with Cancel
// alone it was, and with the ranges forgotten too when it overlapped a
// request made after), and is counted BeforeRestart. The answer to the new
// request is handed on.
func TestForgetStaleAnswer(t *testing.T) {
	srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{srv.LocalAddr().(*net.UDPAddr).AddrPort()}, Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now().UnixNano()
	want := moldudp64.Range{First: 5000, Count: 10}
	ask := func() netip.AddrPort {
		t.Helper()
		return askFrom(t, c, srv, want, now)
	}
	answer := func(to netip.AddrPort) {
		t.Helper()
		b := moldudp64.NewBuilder(session, want.First, 0)
		for range want.Count {
			b.Add(make([]byte, 12))
		}
		if _, err := srv.WriteToUDPAddrPort(b.Flush(), to); err != nil {
			t.Fatal(err)
		}
	}
	old := ask()
	// The restart: the old want given up, the same range wanted again, of
	// the restarted sequence.
	c.Forget()
	asked := ask()
	// The old request's answer (old numbering) arrives now, then the new one's.
	answer(old)
	answer(asked)
	var got []moldudp64.Range
	for i := 0; len(got) == 0 || c.Stats.BeforeRestart == 0; i++ {
		if i == 1000 {
			t.Fatalf("answers not read: handed on %v (stats %+v)", got, c.Stats)
		}
		c.Poll(time.Now().UnixNano(), func(p moldudp64.Packet) {
			got = append(got, p.Range())
			c.Progress(p.Next())
		})
		time.Sleep(time.Millisecond)
	}
	if len(got) != 1 || got[0] != want || c.Stats.BeforeRestart != 1 || c.Stats.DroppedMessages != want.Count || c.Stats.Responses != 1 || c.Active() {
		t.Fatalf("an answer to a request made before the restart was handed on after it: handed on %v, want the new answer alone (stats %+v)", got, c.Stats)
	}
	// Two restarts with no request between: the second has no socket of
	// its own to set aside, and reads none.
	c.Forget()
	c.Forget()
	c.Poll(time.Now().UnixNano(), func(moldudp64.Packet) {})
	if old := ask(); old == asked || c.Stats.ReadErrors != 0 {
		t.Fatalf("after two restarts: asked from %v (before them %v), read errors %d", old, asked, c.Stats.ReadErrors)
	}
}

// TestForgetSocketsBounded: a day of many restarts, each with a request
// after it. Each restart's request leaves from a port of its own, its
// answer is handed on (none lost to a socket set aside), and the sockets
// stay bounded: after a restart, the one asked from, set aside (the one
// set aside before is closed), per server; Close closes it.
func TestForgetSocketsBounded(t *testing.T) {
	srv, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fds := func() int {
		t.Helper()
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{srv.LocalAddr().(*net.UDPAddr).AddrPort()}, Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := moldudp64.Range{First: 7, Count: 3}
	b := moldudp64.NewBuilder(session, want.First, 0)
	for range want.Count {
		b.Add(make([]byte, 12))
	}
	answer := append([]byte(nil), b.Flush()...)
	var ports []uint16
	for restart := range 20 {
		from := askFrom(t, c, srv, want, time.Now().UnixNano())
		if n := len(ports); n > 0 && ports[n-1] == from.Port() {
			t.Fatalf("restart %d: asked from port %d, as before it", restart, from.Port())
		}
		ports = append(ports, from.Port())
		if _, err := srv.WriteToUDPAddrPort(answer, from); err != nil {
			t.Fatal(err)
		}
		got := false
		for i := 0; !got; i++ {
			if i == 1000 {
				t.Fatalf("restart %d: the answer to the request made after it was never handed on (stats %+v)", restart, c.Stats)
			}
			c.Poll(time.Now().UnixNano(), func(p moldudp64.Packet) { got = p.Range() == want })
			time.Sleep(time.Millisecond)
		}
		c.Forget()
		if n := fds() - before; n > 1 {
			t.Fatalf("restart %d: %d sockets open for one server after it, want 1 (the one asked from, set aside)", restart, n)
		}
	}
	if err := c.Close(); err != nil || fds() != before {
		t.Fatalf("Close: %v, %d descriptors open after it, %d before New", err, fds(), before)
	}
	if c.Stats.BeforeRestart != 0 || c.Stats.Responses != 20 {
		t.Fatalf("stats %+v: want 20 answers handed on, none dropped as before a restart", c.Stats)
	}
}

// askFrom has c want r and send its request at now, and returns the
// address the request came from, as srv read it.
func askFrom(t *testing.T, c *rerequest.Client, srv *net.UDPConn, r moldudp64.Range, now int64) netip.AddrPort {
	t.Helper()
	c.Want(session, r, now)
	c.Poll(now, func(moldudp64.Packet) {})
	srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, from, err := srv.ReadFromUDPAddrPort(make([]byte, 2048))
	if err != nil {
		t.Fatal(err)
	}
	return from
}
