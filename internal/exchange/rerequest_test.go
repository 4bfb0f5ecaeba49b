package exchange

import (
	"bytes"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

var rrSession = moldudp64.NewSession("RRLAB")

// ask sends srv one request from a socket of its own and returns the
// messages of the answer packets by sequence number, read until one
// ending at end came (or 5 s passed: the answer stopped short).
func ask(t *testing.T, srv *RerequestServer, req moldudp64.Request, end uint64) map[uint64][]byte {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort(req.Append(nil), srv.Addr()); err != nil {
		t.Fatal(err)
	}
	got := map[uint64][]byte{}
	buf := make([]byte, 1<<16)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := c.Read(buf)
		if err != nil {
			return got
		}
		p, err := moldudp64.Parse(buf[:n])
		if err != nil {
			t.Fatalf("answer packet: %v", err)
		}
		it := p.Iter()
		for msg, ok := it.Next(); ok; msg, ok = it.Next() {
			got[it.Seq()] = bytes.Clone(msg)
		}
		if p.Next() >= end {
			return got
		}
	}
}

// labServer serves msgs, recorded as one packet numbered from first.
func labServer(t *testing.T, first uint64, msgs ...[]byte) *RerequestServer {
	t.Helper()
	h := new(History)
	b := moldudp64.NewBuilder(rrSession, first, math.MaxUint16)
	for _, m := range msgs {
		if err := b.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	h.Record(b.Flush())
	srv, err := NewRerequestServer(RerequestConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Session: rrSession, Message: h.Message})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// TestRerequestServerLargeMessage: message 2 is longer than an answer
// packet holds (3,000 bytes; MaxPacket 1,400), as a feed sent with
// `send --max-packet 9000` may carry. The server answers it alone in a
// packet of its size, and message 3 under its own number. Before, the
// Builder refused it (ErrTooLarge), the error was taken for none, and
// message 3 went out numbered 2: the client filled the hole with the
// wrong message.
func TestRerequestServerLargeMessage(t *testing.T) {
	big := bytes.Repeat([]byte{'B'}, 3000)
	want := map[uint64][]byte{1: []byte("one"), 2: big, 3: []byte("three")}
	got := ask(t, labServer(t, 1, want[1], want[2], want[3]), moldudp64.Request{Session: rrSession, Seq: 1, Count: 3}, 4)
	for seq := uint64(1); seq <= 3; seq++ {
		if m, ok := got[seq]; !ok || !bytes.Equal(m, want[seq]) {
			t.Errorf("message %d answered as %.10q (%d bytes, answered %v), want %.10q (%d bytes)", seq, m, len(m), ok, want[seq], len(want[seq]))
		}
	}
}

// TestRerequestServerNearEnd: the last two messages a sequence can have
// (2^64-3 and 2^64-2: a packet's next number is at most 2^64-1) are asked
// for with a count of 100, as a client asks that does not know where the
// sequence ends. Both are answered. Before, first+count wrapped past
// 2^64 to 97, below the first number asked, and nothing was answered.
func TestRerequestServerNearEnd(t *testing.T) {
	first := uint64(math.MaxUint64 - 2)
	srv := labServer(t, first, []byte("a"), []byte("b"))
	got := ask(t, srv, moldudp64.Request{Session: rrSession, Seq: first, Count: 100}, math.MaxUint64)
	if string(got[first]) != "a" || string(got[first+1]) != "b" || len(got) != 2 {
		t.Errorf("answered %d messages (%d: %q, %d: %q), want 2: a and b", len(got), first, got[first], first+1, got[first+1])
	}
}

// TestRerequestServerBadMaxPacket: an answer packet size that cannot hold
// a header and one message block (or is past 65,535) is refused by
// NewRerequestServer with an error. Before, it was taken, and the first
// request panicked in the serving goroutine (moldudp64.NewBuilder), which
// took the whole process down.
func TestRerequestServerBadMaxPacket(t *testing.T) {
	for _, size := range []int{1, moldudp64.HeaderLen + 1, math.MaxUint16 + 1} {
		srv, err := NewRerequestServer(RerequestConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Session: rrSession,
			Message: new(History).Message, MaxPacket: size})
		if err == nil {
			srv.Close()
			t.Errorf("MaxPacket %d taken, want an error", size)
		}
	}
}

// TestRerequestServerBadLoss: a loss probability outside [0, 1], NaN
// included (send -rerequest-loss NaN), is refused; NaN passed the check and
// the server lost no answer.
func TestRerequestServerBadLoss(t *testing.T) {
	for _, loss := range []float64{-0.5, 1.5, math.NaN()} {
		srv, err := NewRerequestServer(RerequestConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Session: rrSession,
			Message: new(History).Message, Loss: loss})
		if err == nil {
			srv.Close()
			t.Errorf("Loss %v taken, want an error", loss)
		}
	}
}

// TestHistoryPast4GiB: the messages a History records after its first
// 4 GiB (a real day's file is 8 to 13 GB of messages) are served as
// recorded. The History is brought to 4 GiB without touching the memory:
// its bytes are resliced into a larger, untouched allocation (the pages
// of a fresh one are the kernel's zero pages until written). Before, a
// message's offset was kept in 32 bits, and one recorded past 4 GiB was
// served from the offset modulo 4 GiB: another message, silently.
func TestHistoryPast4GiB(t *testing.T) {
	h := new(History)
	b := moldudp64.NewBuilder(rrSession, 1, 0)
	b.Add([]byte("first"))
	h.Record(b.Flush())
	big := make([]byte, 1<<32+1<<16)
	copy(big, h.data)
	h.data = big[:1<<32]
	b.Add([]byte("past 4 GiB"))
	h.Record(b.Flush())
	if m, ok := h.Message(nil, 2); !ok || string(m) != "past 4 GiB" {
		t.Fatalf("message 2 served as %q (%v), want \"past 4 GiB\"", m, ok)
	}
	if m, _ := h.Message(nil, 1); string(m) != "first" {
		t.Fatalf("message 1 served as %q, want \"first\"", m)
	}
}
