package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestSend sends a small BinaryFILE to a local socket (unicast stands in
// for the group) and checks the MoldUDP64 packets that arrive.
func TestSend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "day.itch")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := dayfile.NewWriter(f)
	const n = 100
	for i := range n {
		m := itch.SystemEventFields{Header: itch.Header{Locate: uint16(i)}, EventCode: 'O'}
		if err := w.WriteMessage(m.Append(nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The sender and its receiver in a network namespace of the test's
	// own: send on a thread switched into it.
	ns := loNetns(t, "fhsend")
	c := listenUDPIn(t, ns)
	defer c.Close()
	dst := c.LocalAddr().String()
	var out bytes.Buffer
	if err := netlab.Do(ns, func() error {
		return sendFile([]string{"-a", dst, "-rate", "5000", "-max-packet", "100", "-eos", "-session", "S1", path}, &out)
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("(%d messages)", n)) {
		t.Fatalf("report:\n%s", out.String())
	}
	buf := make([]byte, 2048)
	next := uint64(1)
	for {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d messages: %v", next-1, err)
		}
		p, err := moldudp64.Parse(buf[:k])
		if err != nil {
			t.Fatal(err)
		}
		if p.Session != moldudp64.NewSession("S1") || p.Seq != next {
			t.Fatalf("packet %q seq %d, want S1 seq %d", p.Session, p.Seq, next)
		}
		if p.EndOfSession() {
			break
		}
		next += uint64(p.Count)
	}
	if next != n+1 {
		t.Fatalf("end of session after %d messages, want %d", next-1, n)
	}
}

// TestSendRerequest: `send --rerequest-listen` serves re-requests of what it
// sent, capped at --rerequest-max messages per answer, and sends heartbeats
// while it lingers.
func TestSendRerequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "day.itch")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := dayfile.NewWriter(f)
	const n = 300
	for i := range n {
		m := itch.SystemEventFields{Header: itch.Header{Locate: uint16(i), Timestamp: uint64(i)}, EventCode: 'O'}
		if err := w.WriteMessage(m.Append(nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The sender, its server and the client in a network namespace of
	// the test's own: send on a thread switched into it (its sockets
	// are opened before it sends), the client's sockets opened there.
	ns := loNetns(t, "fhsendrr")
	inNs := func(fn func() error) error { return netlab.Do(ns, fn) }
	sink := listenUDPIn(t, ns)
	defer sink.Close()
	// A free port for the server.
	probe := listenUDPIn(t, ns)
	rrAddr := probe.LocalAddr().(*net.UDPAddr).AddrPort()
	probe.Close()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- inNs(func() error {
			return sendFile([]string{"-a", sink.LocalAddr().String(), "-rate", "2000", "-max-packet", "200", "-session", "RR1",
				"-rerequest-listen", rrAddr.String(), "-rerequest-max", "25", "-rerequest-linger", "3s", path}, &out)
		})
	}()
	// Wait for the last packet to be sent.
	buf := make([]byte, 2048)
	for next := uint64(1); next <= n; {
		sink.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := sink.Read(buf)
		if err != nil {
			t.Fatalf("after %d messages: %v", next-1, err)
		}
		p, _ := moldudp64.Parse(buf[:k])
		next = p.Next()
	}
	c, err := rerequest.New(rerequest.Config{Servers: []netip.AddrPort{rrAddr}, Timeout: 20 * time.Millisecond}, inNs)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	next := uint64(100)
	c.Want(moldudp64.NewSession("RR1"), moldudp64.Range{First: 100, Count: 150}, time.Now().UnixNano())
	for i := 0; c.Active(); i++ {
		if i == 5000 {
			t.Fatalf("range not filled: next %d, %+v", next, c.Stats)
		}
		c.Poll(time.Now().UnixNano(), func(p moldudp64.Packet) {
			if p.Seq <= next && p.Next() > next {
				it := p.Iter()
				it.Skip(int(next - p.Seq))
				for m, ok := it.Next(); ok; m, ok = it.Next() {
					if got := itch.SystemEvent(m).Locate(); uint64(got) != it.Seq()-1 {
						t.Fatalf("message %d has locate %d", it.Seq(), got)
					}
				}
				next = p.Next()
				c.Progress(next)
			}
		})
		time.Sleep(200 * time.Microsecond)
	}
	if c.Stats.Requests < 150/25 {
		t.Fatalf("%d requests for 150 messages at 25 per answer", c.Stats.Requests)
	}
	// While the server lingers the line carries heartbeats (-idle, 1 s),
	// at the next sequence number, as an exchange's idle line does.
	sink.SetReadDeadline(time.Now().Add(2500 * time.Millisecond))
	k, err := sink.Read(buf)
	if err != nil {
		t.Fatalf("no heartbeat while the server lingers: %v", err)
	}
	if p, err := moldudp64.Parse(buf[:k]); err != nil || !p.Heartbeat() || p.Seq != n+1 || p.Session != moldudp64.NewSession("RR1") {
		t.Fatalf("after the file: %+v (%v), want a heartbeat of RR1 at %d", p, err, n+1)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "re-request server:") {
		t.Fatalf("report:\n%s", out.String())
	}
}

// TestSendTTLRange: a -ttl the sender would not use as given is an error
// before anything is sent; 0 and below were taken as the default, 1 (off
// the host for a TTL asked to stay on it).
func TestSendTTLRange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.itch") // never opened: the flags are checked first
	for _, ttl := range []string{"0", "-3", "256"} {
		var out bytes.Buffer
		err := sendFile([]string{"-a", "127.0.0.1:9", "-ttl", ttl, path}, &out)
		if err == nil || !strings.Contains(err.Error(), "-ttl "+ttl) {
			t.Errorf("-ttl %s: %v, want an error naming it", ttl, err)
		}
	}
}
