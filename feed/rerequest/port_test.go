package rerequest_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestForgetPortNotReused: two restarts (Forget), each followed by a
// request of the same range, in a network namespace whose ephemeral ports
// are 3 (ip_local_port_range), the third taken by the test. At the second
// restart the socket of the first numbering is closed, and its port is
// the only one free when the server's new socket is opened. An answer to
// the first numbering's request, late, comes to that port: it must not be
// read as the new numbering's. The new socket never takes the port of a
// socket closed minutes before: with none free, the request is not sent (an open
// error); once the test frees its port, the retry leaves from it and its
// answer is handed on. Before, the new socket took the closed one's port
// and handed the old answer on.
func TestForgetPortNotReused(t *testing.T) {
	lab, err := netlab.New(netlab.Options{Prefix: "rrp"})
	if errors.Is(err, netlab.ErrNotSupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	in := func(fn func() error) error { return lab.Do(lab.Dst, fn) }
	const low = 40000
	var srv, blocker *net.UDPConn
	err = in(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(fmt.Sprintf("%d %d", low, low+2)), 0); err != nil {
			return err
		}
		var err error
		srv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:5000")))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5000")}, Timeout: time.Second}, in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := moldudp64.Range{First: 5000, Count: 10}
	b := moldudp64.NewBuilder(session, want.First, 0)
	for range want.Count {
		b.Add(make([]byte, 12))
	}
	answer := append([]byte(nil), b.Flush()...)
	now := time.Now().UnixNano()
	first := askFrom(t, c, srv, want, now)
	c.Forget()
	second := askFrom(t, c, srv, want, now)
	free := map[uint16]bool{low: true, low + 1: true, low + 2: true}
	delete(free, first.Port())
	delete(free, second.Port())
	if len(free) != 1 {
		t.Fatalf("asked from ports %d and %d, want two of %d to %d", first.Port(), second.Port(), low, low+2)
	}
	var third uint16
	for p := range free {
		third = p
	}
	err = in(func() error {
		var err error
		blocker, err = net.ListenUDP("udp4", &net.UDPAddr{Port: int(third)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { blocker.Close() }()
	// The second restart: the first numbering's socket is closed, its port
	// the only free one. The range is wanted again, and the first
	// request's answer comes now, late, to that port.
	c.Forget()
	var got []moldudp64.Range
	take := func(p moldudp64.Packet) {
		got = append(got, p.Range())
		c.Progress(p.Next())
	}
	c.Want(session, want, now)
	c.Poll(now, take)
	if _, err := srv.WriteToUDPAddrPort(answer, first); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		c.Poll(now, take)
		if len(got) > 0 {
			t.Fatalf("an answer to a request two restarts back, sent to its port %d, was handed on as the new numbering's: %v (stats %+v)", first.Port(), got, c.Stats)
		}
		time.Sleep(time.Millisecond)
	}
	if c.Stats.OpenErrors != 1 {
		t.Fatalf("with no port free but the closed socket's, open errors %d, want 1 (stats %+v)", c.Stats.OpenErrors, c.Stats)
	}
	// The test's port is free again: the retry, a timeout later, leaves
	// from it, and its answer is handed on.
	blocker.Close()
	now += int64(2 * time.Second)
	c.Poll(now, take)
	srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, from, err := srv.ReadFromUDPAddrPort(make([]byte, 2048))
	if err != nil {
		t.Fatal(err)
	}
	if from.Port() != third {
		t.Fatalf("the retry after the second restart left from port %d, want %d (the first numbering's was %d, the second's %d)", from.Port(), third, first.Port(), second.Port())
	}
	if _, err := srv.WriteToUDPAddrPort(answer, from); err != nil {
		t.Fatal(err)
	}
	for i := 0; len(got) == 0; i++ {
		if i == 1000 {
			t.Fatalf("the answer to the retry was never handed on (stats %+v)", c.Stats)
		}
		c.Poll(now, take)
		time.Sleep(time.Millisecond)
	}
	if len(got) != 1 || got[0] != want || c.Active() {
		t.Fatalf("handed on %v, want the retry's answer %v alone (stats %+v)", got, want, c.Stats)
	}
}

// TestForgetPortsNotExhausted: restarts (Forget) one after another, an
// hour apart, each followed by a request, in a network namespace whose
// ephemeral ports are 4 (ip_local_port_range). A closed socket's port is
// kept from the new sockets for as long as an answer to it may still come
// (RECOVERY.md), not for the client's life: every restart's request is
// sent, from a port that no socket closed less than that before had.
// Before, every port any socket ever had was refused for good: once the
// range's ports had all been used (here at the fourth restart; with the
// default range once some 20,000 new sockets had been opened, fewer where
// the range is narrowed), no new socket could be opened, and re-request
// failed for the rest of the process, every range declared.
func TestForgetPortsNotExhausted(t *testing.T) {
	lab, err := netlab.New(netlab.Options{Prefix: "rrx"})
	if errors.Is(err, netlab.ErrNotSupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	in := func(fn func() error) error { return lab.Do(lab.Dst, fn) }
	const low = 41000
	var srv *net.UDPConn
	err = in(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(fmt.Sprintf("%d %d", low, low+3)), 0); err != nil {
			return err
		}
		var err error
		srv, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:5000")))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5000")}, Timeout: time.Second}, in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := moldudp64.Range{First: 5000, Count: 10}
	now := time.Now().UnixNano()
	var ports []uint16
	for i := range 12 {
		now += int64(time.Hour)
		c.Poll(now, func(moldudp64.Packet) {})
		c.Forget()
		c.Want(session, want, now)
		c.Poll(now, func(moldudp64.Packet) {})
		if c.Stats.OpenErrors != 0 {
			t.Fatalf("restart %d, an hour after the one before: the new socket not opened (open errors %d: %v); ports asked from so far %v, of %d to %d",
				i+1, c.Stats.OpenErrors, c.OpenError(), ports, low, low+3)
		}
		srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, from, err := srv.ReadFromUDPAddrPort(make([]byte, 2048))
		if err != nil {
			t.Fatalf("restart %d: no request: %v (stats %+v)", i+1, err, c.Stats)
		}
		ports = append(ports, from.Port())
		c.Cancel()
	}
}
