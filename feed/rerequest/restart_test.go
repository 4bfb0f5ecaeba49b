package rerequest_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// TestForgetStaleAnswer: a request of the old numbering is in flight when
// the followed session's sequence restarts under the same name
// (recovery.sessionChanged: Forget, then Want of the restarted sequence
// from 1). The old request's answer, arriving after the new Want, carries
// the same session name: it must not be handed on as the restarted
// sequence's messages (with Cancel alone it was), and is counted Unasked.
// An old answer that overlaps the new request cannot be told apart.
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
	c.Want(session, moldudp64.Range{First: 5000, Count: 10}, now)
	c.Poll(now, func(moldudp64.Packet) {})
	buf := make([]byte, 2048)
	srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, client, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	// The restart: the old want given up, the restarted sequence wanted from 1.
	c.Forget()
	c.Want(session, moldudp64.Range{First: 1, Count: 3000}, now)
	c.Poll(now, func(moldudp64.Packet) {})
	// The old request's answer (old numbering) arrives now.
	b := moldudp64.NewBuilder(session, 5000, 0)
	for range 10 {
		b.Add(make([]byte, 12))
	}
	if _, err := srv.WriteToUDPAddrPort(b.Flush(), client); err != nil {
		t.Fatal(err)
	}
	var got []moldudp64.Range
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && len(got) == 0 && c.Stats.Unasked == 0 {
		c.Poll(time.Now().UnixNano(), func(p moldudp64.Packet) { got = append(got, p.Range()) })
		time.Sleep(time.Millisecond)
	}
	if len(got) != 0 || c.Stats.Unasked != 1 {
		t.Fatalf("an answer to a request made before the restart was handed on after it: %v (stats %+v)", got, c.Stats)
	}
}
