package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
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
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := c.LocalAddr().String()
	var out bytes.Buffer
	if err := sendFile([]string{"-a", dst, "-rate", "5000", "-max-packet", "100", "-eos", "-session", "S1", path}, &out); err != nil {
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
