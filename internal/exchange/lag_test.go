package exchange

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestLineLag: a line with Lag 3 sends each packet once 3 more were
// queued behind it, the last 3 at the end: all of them, in order, while
// the other line's go out at once. The sink of the lagging line has read
// nothing when the other line's third packet came.
func TestLineLag(t *testing.T) {
	a, portA := loopbackSink(t)
	b, portB := loopbackSink(t)
	s, err := NewSender(Config{Lines: []Line{{Group: loopback, Port: portA}, {Group: loopback, Port: portB, Lag: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pkts := numbered(10)
	var seenB []uint32
	src := func(yield func([]byte) bool) {
		for i, p := range pkts {
			if i == 3 {
				// Packets 0-2 went out on line A, none yet on line B.
				b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				buf := make([]byte, 2048)
				if _, err := b.Read(buf); err == nil {
					seenB = append(seenB, 0)
				}
			}
			if !yield(p) {
				return
			}
		}
	}
	st, err := s.Send(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	if len(seenB) != 0 {
		t.Error("line B, lagging 3 packets, sent one of the first 3 before the 4th was offered")
	}
	want := make([]uint32, 10)
	for i := range want {
		want[i] = uint32(i)
	}
	if got := drain(t, a, 10); !slices.Equal(got, want) {
		t.Errorf("line A got %v, want %v", got, want)
	}
	if got := drain(t, b, 10); !slices.Equal(got, want) {
		t.Errorf("line B (lag 3) got %v, want %v", got, want)
	}
	if st.Lines[1].Sent != 10 {
		t.Errorf("line B sent %d, want 10", st.Lines[1].Sent)
	}
}

// TestLineLagKeepsBursts: a line with Lag 1 that reorders every other
// packet (each held one released after the next) sends, per input packet,
// the copies one input packet earlier put on it, together: the packet and
// the one it went behind in one batch (one sendmmsg), as without Lag, not
// an input packet apart. Before, Lag counted datagrams: each went out with
// the next input packet's, the pair split across two batches, 100 µs apart
// at 10,000 packets a second (the soak's line B, reordering by more than
// the arbiter's grace: a gap of a packet line A lost, declared before line
// B brought it).
func TestLineLagKeepsBursts(t *testing.T) {
	for _, dup := range []float64{0, 1} {
		l := lineState{Line: Line{Lag: 1, Reorder: 1, Dup: dup}, q: &batch{}, rng: rand.New(rand.NewPCG(1, 2))}
		var got [][]uint32
		take := func() {
			var b []uint32
			for _, d := range l.q.out {
				b = append(b, binary.BigEndian.Uint32(d.p))
			}
			got, l.q.out = append(got, b), l.q.out[:0]
		}
		for _, p := range numbered(6) {
			l.offer(p)
			take()
		}
		l.flush()
		take()
		// Every other packet held and released after the next: 1 0, 3 2,
		// 5 4 (with Dup, the held packet's duplicate goes out at once: 0,
		// then 1 1 0, 2, 3 3 2, ...), each input packet's copies one input
		// packet later (the last at the end).
		want := [][]uint32{nil, nil, nil, {1, 0}, nil, {3, 2}, {5, 4}}
		if dup == 1 {
			want = [][]uint32{nil, {0}, {1, 1, 0}, {2}, {3, 3, 2}, {4}, {5, 5, 4}}
		}
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("dup %v: batches %v, want %v", dup, got, want)
		}
	}
}

// TestRerequestServerShuffle: with Shuffle, an answer of 40 messages in
// packets of at most 100 bytes goes out in another order than the
// messages', every message once.
func TestRerequestServerShuffle(t *testing.T) {
	h := new(History)
	b := moldudp64.NewBuilder(rrSession, 1, math.MaxUint16)
	for i := range 40 {
		b.Add(fmt.Appendf(nil, "message %02d", i+1))
	}
	h.Record(b.Flush())
	srv, err := NewRerequestServer(RerequestConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Session: rrSession, Message: h.Message, MaxPacket: 100, Shuffle: true, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort(moldudp64.Request{Session: rrSession, Seq: 1, Count: 40}.Append(nil), srv.Addr()); err != nil {
		t.Fatal(err)
	}
	var firsts []uint64
	got := map[uint64]string{}
	buf := make([]byte, 1<<16)
	for len(got) < 40 {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d messages: %v", len(got), err)
		}
		p, err := moldudp64.Parse(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		firsts = append(firsts, p.Seq)
		it := p.Iter()
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			got[it.Seq()] = string(m)
		}
	}
	for seq := uint64(1); seq <= 40; seq++ {
		if want := fmt.Sprintf("message %02d", seq); got[seq] != want {
			t.Errorf("message %d answered as %q, want %q", seq, got[seq], want)
		}
	}
	if len(firsts) < 2 || slices.IsSorted(firsts) {
		t.Errorf("answer packets starting at %v: not shuffled", firsts)
	}
}
