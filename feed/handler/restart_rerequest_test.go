package handler

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// scriptedServer is a re-request server on loopback that answers only
// what the test sends, where the test says.
type scriptedServer struct{ conn *net.UDPConn }

func newScriptedServer(t *testing.T) *scriptedServer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &scriptedServer{conn: conn}
}

func (s *scriptedServer) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// request reads the next request (sent already: the deadline only keeps a
// broken test from hanging) and where it came from.
func (s *scriptedServer) request(t *testing.T) (moldudp64.Request, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 64)
	s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := s.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no request: %v", err)
	}
	req, err := moldudp64.ParseRequest(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return req, from
}

func (s *scriptedServer) answer(t *testing.T, to netip.AddrPort, pkt []byte) {
	t.Helper()
	if _, err := s.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		t.Fatal(err)
	}
}

// TestRestartLateOldAnswer: order 10 of the old numbering is lost on the
// line and re-requested; the server is slow. The sequence restarts under
// the same session name (confirmed after LineTimeout), the restarted
// numbering's start is re-requested and answered, and it goes on until
// its own 10 is lost and re-requested in turn. Only then does the old
// request's answer arrive: old 10, same session name, overlapping the
// request of new 10. It must not be applied as the restarted numbering's
// message (the books would hold the old numbering's order 110 and miss
// order 210); it is dropped and counted, and the answer of the new
// request fills the hole.
func TestRestartLateOldAnswer(t *testing.T) {
	srv := newScriptedServer(t)
	h, sh := oneShardHandler(t, 0, smallBooks) // the receive thread's side alone is at stake: one mode
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Second, Grace: time.Microsecond, Hold: time.Millisecond},
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: time.Hour}})
	// Numbering n (1 old, 2 restarted): 1 the directory, then orders
	// n*100+seq.
	msg := func(n, seq uint64) []byte {
		if seq == 1 {
			return sessionPacket("RST", 1, dirMsg("RST"))
		}
		add := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: n*100 + seq, Side: 'B', Shares: 100,
			Stock: itch.NewSymbol("RST"), Price: uint32(1000 + seq)}
		return sessionPacket("RST", seq, add.Append(nil))
	}
	now := time.Now().UnixNano()
	offer := func(n, from, to uint64, step time.Duration) {
		for seq := from; seq <= to; seq++ {
			now += int64(step)
			h.arb.Offer(0, msg(n, seq), now)
		}
	}
	poll := func() {
		now += int64(time.Millisecond)
		h.arb.Tick(now)
		rec.poll(now)
		h.endBatch()
	}
	// The old numbering: 10 lost, re-requested.
	offer(1, 1, 9, time.Millisecond)
	offer(1, 11, 20, time.Millisecond)
	poll()
	req, oldFrom := srv.request(t)
	if req.Seq != 10 || req.Count != 1 {
		t.Fatalf("asked %d+%d, want old 10", req.Seq, req.Count)
	}
	// The restart: the restarted numbering from 1, 2 s on the line.
	offer(2, 1, 5, 500*time.Millisecond)
	if h.arb.Stats.Restarts != 1 {
		t.Fatalf("no restart followed (regressions %d)", h.arb.Stats.Regressions)
	}
	// Its start, brought while the restart was confirmed, is re-requested
	// and answered; the rest comes on the line but its own 10.
	poll()
	req, from := srv.request(t)
	if req.Seq != 1 {
		t.Fatalf("asked %d+%d, want the restarted numbering from 1", req.Seq, req.Count)
	}
	for seq := range uint64(req.Count) {
		srv.answer(t, from, msg(2, 1+seq))
	}
	offer(2, 6, 9, time.Millisecond)
	offer(2, 11, 15, time.Millisecond)
	for i := 0; h.arb.Next() != 10 || rec.client.Stats.Requests != 3; i++ {
		if i == 2000 {
			t.Fatalf("the restarted numbering's start not filled, or its 10 not asked: next %d, requests %d", h.arb.Next(), rec.client.Stats.Requests)
		}
		time.Sleep(time.Millisecond)
		poll()
	}
	req, from = srv.request(t)
	if req.Seq != 10 || req.Count != 1 {
		t.Fatalf("asked %d+%d, want new 10", req.Seq, req.Count)
	}
	// The old request's answer arrives now, then the new one's.
	srv.answer(t, oldFrom, msg(1, 10))
	srv.answer(t, from, msg(2, 10))
	for i := 0; h.arb.Next() != 16; i++ {
		if i == 2000 {
			t.Fatalf("new 10 not filled: next %d, client %+v", h.arb.Next(), rec.client.Stats)
		}
		time.Sleep(time.Millisecond)
		poll()
	}
	_, _, old := sh.books.Order(110)
	_, _, restarted := sh.books.Order(210)
	if old || !restarted || rec.client.Stats.BeforeRestart != 1 {
		t.Fatalf("the old numbering's answer applied as the restarted one's: order 110 in the books %v, order 210 %v (client %+v)",
			old, restarted, rec.client.Stats)
	}
}
