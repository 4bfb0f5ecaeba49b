package handler

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/race"
)

// recordingRecovery is withRecovery with the arbiter's deliveries
// recorded too: every sequence number handed to the books, in order.
func recordingRecovery(t *testing.T, h *Handler, ac ArbiterConfig, rc RecoveryConfig, seqs *[]uint64) *recovery {
	t.Helper()
	return withRecoveryTo(t, h, ac, rc, func(p *moldudp64.Packet, skip int, rxTime int64) {
		for seq := p.Seq + uint64(skip); seq < p.Next(); seq++ {
			*seqs = append(*seqs, seq)
		}
		h.route(p, skip, rxTime)
	})
}

// pendingRequests reads, without waiting, the requests the server's
// socket holds: a request is in it once the client's sendto returned
// (loopback).
func pendingRequests(t *testing.T, srv *scriptedServer) (reqs []moldudp64.Request, from netip.AddrPort) {
	t.Helper()
	raw, err := srv.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for {
		var n int
		var sa unix.Sockaddr
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, sa, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if rerr != nil {
			return reqs, from
		}
		req, err := moldudp64.ParseRequest(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		a := sa.(*unix.SockaddrInet4)
		from = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		reqs = append(reqs, req)
	}
}

// TestRerequestAsksAhead: messages 5-6, 15-16 and 25-26 of 40 are lost on
// both lines. While the first hole is re-requested, the other two, held
// packets past them showing them missing on both lines, are asked too:
// the three requests are at the server before any answer is sent. The
// answers come in reverse order (the third hole's first): held until
// delivery reaches them, each delivered once, in order, and the books are
// those of the 40 messages replayed in order. Each hole is a gap detected
// and a range repaired by re-request, and the rounds while the answers are
// awaited allocate nothing. Before, one range was asked at a time:
// 'requests before any answer: [5+2], want [5+2 15+2 25+2]'.
func TestRerequestAsksAhead(t *testing.T) {
	srv, h, sh, rec, seqs, now := threeHoles(t, time.Hour)
	reqs, from := pendingRequests(t, srv)
	var got []string
	for _, r := range reqs {
		got = append(got, fmt.Sprintf("%d+%d", r.Seq, r.Count))
	}
	if want := []string{"5+2", "15+2", "25+2"}; !slices.Equal(got, want) {
		t.Fatalf("requests before any answer: %v, want %v", got, want)
	}
	if next := h.arb.Next(); next != 5 {
		t.Fatalf("next %d before the answers, want 5", next)
	}
	// The rounds meanwhile (the held packets looked at again for holes,
	// nothing new to ask) allocate nothing: the receive thread's.
	if allocs, exact := race.AllocsPerRun(t, 50, func() {
		now += int64(time.Millisecond)
		rec.poll(now)
	}); exact && allocs != 0 {
		t.Fatalf("%v allocations per round while asking ahead, want 0", allocs)
	}
	if got, _ := pendingRequests(t, srv); len(got) != 0 {
		t.Fatalf("requests again before any answer: %v", got)
	}
	for _, first := range []uint64{25, 15, 5} {
		srv.answer(t, from, aheadPkt(first, first+2))
		responses := rec.client.Stats.Responses
		for i := 0; rec.client.Stats.Responses == responses; i++ {
			if i == 5000 {
				t.Fatalf("the answer for %d not read: %+v", first, rec.client.Stats)
			}
			time.Sleep(200 * time.Microsecond)
			rec.poll(now)
		}
		if first != 5 && h.arb.Next() != 5 {
			t.Fatalf("answer for %d: next %d, want 5 (held until the first hole is filled)", first, h.arb.Next())
		}
	}
	rec.poll(now)
	h.endBatch()
	wantSeqs := make([]uint64, 0, 40)
	for seq := uint64(1); seq <= 40; seq++ {
		wantSeqs = append(wantSeqs, seq)
	}
	if !slices.Equal(*seqs, wantSeqs) {
		t.Fatalf("delivered %v, want 1 to 40 once each, in order", *seqs)
	}
	if h.arb.Next() != 41 || h.arb.Stats.Gaps != 0 {
		t.Fatalf("next %d (want 41), gaps %d", h.arb.Next(), h.arb.Stats.Gaps)
	}
	sameBooks(t, "re-requested ahead", sh.books, replayed(t, now, nil))
	var st RecoveryStats
	rec.copyStats(&st)
	if st.GapsDetected != 3 || st.RecoveredByRerequest != 3 || len(st.Events) != 3 || st.Rerequest.Requests != 3 {
		t.Fatalf("gaps detected %d, repaired by re-request %d, events %v, requests %d: want 3 of each", st.GapsDetected, st.RecoveredByRerequest, st.Events, st.Rerequest.Requests)
	}
	if st.State != StateInSync || rec.nAhead != 0 || rec.client.Aheads() != 0 {
		t.Fatalf("state %q, holes asked ahead remembered %d, client's %d: want in sync, none", st.State, rec.nAhead, rec.client.Aheads())
	}
}

// aheadPkt is a packet of session AHD holding messages first..end-1.
func aheadPkt(first, end uint64) []byte {
	const sess = "AHD"
	b := moldudp64.NewBuilder(moldudp64.NewSession(sess), first, 0)
	for seq := first; seq < end; seq++ {
		b.Add(orderMsg(sess, seq, seq))
	}
	return append([]byte(nil), b.Flush()...)
}

// threeHoles is a two-line handler re-requesting from a scripted server
// (the client's Timeout given) that received messages 1 to 40 of session
// AHD on both lines, 1 ms apart, but for 5-6, 15-16 and 25-26, lost on
// both, and polled once after: the first hole re-requested. It returns
// the sequence numbers delivered (so far and from then on) and the clock.
func threeHoles(t *testing.T, timeout time.Duration) (*scriptedServer, *Handler, *shard, *recovery, *[]uint64, int64) {
	t.Helper()
	srv := newScriptedServer(t)
	h, sh := oneShardHandler(t, 0, smallBooks)
	seqs := new([]uint64)
	rec := recordingRecovery(t, h, ArbiterConfig{Lines: 2, LineTimeout: time.Hour, Grace: 100 * time.Microsecond, Hold: 5 * time.Millisecond},
		RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: timeout, Retries: 1}}, seqs)
	now := time.Now().UnixNano()
	for seq := uint64(1); seq <= 40; seq++ {
		if threeHolesLost(seq) {
			continue
		}
		now += int64(time.Millisecond)
		h.arb.Offer(0, aheadPkt(seq, seq+1), now)
		h.arb.Offer(1, aheadPkt(seq, seq+1), now+int64(10*time.Microsecond))
	}
	now += int64(time.Millisecond)
	h.arb.Tick(now)
	rec.poll(now)
	return srv, h, sh, rec, seqs, now
}

func threeHolesLost(seq uint64) bool {
	return seq == 5 || seq == 6 || seq == 15 || seq == 16 || seq == 25 || seq == 26
}

// replayed returns the books of messages 1 to 40 of session AHD, but for
// those lost, delivered in order by a handler without recovery.
func replayed(t *testing.T, now int64, lost func(seq uint64) bool) *book.Books {
	t.Helper()
	ref, refShard := oneShardHandler(t, 0, smallBooks)
	var seqs []uint64
	recordingRecovery(t, ref, ArbiterConfig{Lines: 1, LineTimeout: time.Hour}, RecoveryConfig{}, &seqs)
	for seq := uint64(1); seq <= 40; seq++ {
		if lost == nil || !lost(seq) {
			ref.arb.Offer(0, aheadPkt(seq, seq+1), now)
		}
	}
	ref.arb.Tick(now + int64(time.Second))
	ref.endBatch()
	return refShard.books
}

// TestRerequestAheadGivenUp: the three holes of TestRerequestAsksAhead
// asked at once, the server answering only 15 (the second hole's first
// message), then nothing. Every server failed the first hole: it is
// declared, and so are what is left of the others (16, and 25-26), asked
// ahead but not answered, at their turn (the servers rest): exactly the
// numbers no source brought, the rest delivered once each, in order, the
// books those of the messages received.
func TestRerequestAheadGivenUp(t *testing.T) {
	const timeout = 10 * time.Millisecond
	srv, h, sh, rec, seqs, now := threeHoles(t, timeout)
	var from netip.AddrPort
	for range 3 {
		var req moldudp64.Request
		req, from = srv.request(t)
		if req.Seq == 15 {
			srv.answer(t, from, aheadPkt(15, 16))
		}
	}
	for i := 0; rec.client.Stats.Responses == 0; i++ {
		if i == 5000 {
			t.Fatalf("the answer not read: %+v", rec.client.Stats)
		}
		time.Sleep(200 * time.Microsecond)
		rec.poll(now)
	}
	for i := 0; h.arb.Next() <= 40; i++ {
		if i == 100 {
			t.Fatalf("next %d after %d timeouts: %+v", h.arb.Next(), i, rec.client.Stats)
		}
		now += int64(timeout)
		h.arb.Tick(now)
		rec.poll(now)
	}
	h.endBatch()
	var want []uint64
	for seq := uint64(1); seq <= 40; seq++ {
		if !threeHolesLost(seq) || seq == 15 {
			want = append(want, seq)
		}
	}
	if !slices.Equal(*seqs, want) {
		t.Fatalf("delivered %v, want %v", *seqs, want)
	}
	var st RecoveryStats
	rec.copyStats(&st)
	wantOpen := []moldudp64.Range{{First: 5, Count: 2}, {First: 16, Count: 1}, {First: 25, Count: 2}}
	if !slices.Equal(st.OpenRanges, wantOpen) || h.arb.Stats.Gaps != 3 || h.arb.Stats.GapMessages != 5 || st.GapsDetected != 3 || st.RecoveredByRerequest != 0 {
		t.Fatalf("open %v (want %v), gaps %d (%d messages; want 3, 5), detected %d (want 3), repaired %d (want 0)",
			st.OpenRanges, wantOpen, h.arb.Stats.Gaps, h.arb.Stats.GapMessages, st.GapsDetected, st.RecoveredByRerequest)
	}
	sameBooks(t, "given up", sh.books, replayed(t, now, func(seq uint64) bool { return threeHolesLost(seq) && seq != 15 }))
}
