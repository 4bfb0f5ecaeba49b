package rerequest_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/race"
)

// TestReopenAllocatesNothing: after a session change or a sequence
// restart (Forget) the next request to a server goes out on a new socket
// (reopen), on the receive thread. Opening it allocates nothing: it took
// 4 allocations (the sockaddrs of unix.Bind and unix.Getsockname, and the
// closure handed to the client's open function).
func TestReopenAllocatesNothing(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{srv.LocalAddr().(*net.UDPAddr).AddrPort()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now().UnixNano()
	restart := func() {
		now += int64(time.Hour) // past the closed ports' quarantine
		c.Forget()
		c.Want(session, moldudp64.Range{First: 1, Count: 5}, now)
		c.Poll(now, func(moldudp64.Packet) {})
	}
	restart()
	if a, exact := race.AllocsPerRun(t, 20, restart); exact && a != 0 {
		t.Fatalf("a request on a new socket after Forget allocates %v times", a)
	}
	if st := c.Stats; st.Requests != 22 || st.OpenErrors != 0 || st.SendErrors != 0 {
		t.Fatalf("requests %d, open errors %d, send errors %d; want 22, 0, 0", st.Requests, st.OpenErrors, st.SendErrors)
	}
}
