package handler

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestRerequestMessagesCounted: 10 to 13 are lost on the line and
// re-requested. The answer's first packet (10, 11) is lost twice: the
// server's second packet (12, 13) comes twice, held the first time and a
// duplicate of what is held the second, and the third answer brings 10 to
// 13 in one packet, which fills the hole (the held 12, 13 are then
// dropped). Four messages were recovered, not the eight the answers
// carried: recovered_msgs (feedhandler_recovery_messages_total) says 4,
// and the four received but not used are counted apart.
func TestRerequestMessagesCounted(t *testing.T) {
	srv, h, sh, rec := scriptedRecovery(t, time.Hour, time.Second)
	pkt := func(first, end uint64) []byte {
		b := moldudp64.NewBuilder(moldudp64.NewSession("CNT"), first, 0)
		for seq := first; seq < end; seq++ {
			b.Add(orderMsg("CNT", seq, seq))
		}
		return append([]byte(nil), b.Flush()...)
	}
	now := time.Now().UnixNano()
	for seq := uint64(1); seq <= 16; seq++ {
		if seq < 10 || seq > 13 {
			now += int64(time.Millisecond)
			h.arb.Offer(0, pkt(seq, seq+1), now)
		}
	}
	// Each round: a request (the first, then a retry once the server went
	// quiet: a second of the clock given to poll), answered with
	// [first, end), read.
	for i, a := range [][2]uint64{{12, 14}, {12, 14}, {10, 14}} {
		now += int64(time.Second)
		h.arb.Tick(now)
		rec.poll(now)
		req, from := srv.request(t)
		if req.Seq != 10 || req.Count != 4 {
			t.Fatalf("request %d: asked %d+%d, want 10+4", i, req.Seq, req.Count)
		}
		srv.answer(t, from, pkt(a[0], a[1]))
		for j := 0; rec.client.Stats.Responses != uint64(i+1); j++ {
			if j == 2000 {
				t.Fatalf("answer %d not read: %+v", i, rec.client.Stats)
			}
			time.Sleep(time.Millisecond)
			rec.poll(now)
		}
	}
	h.endBatch()
	if h.arb.Next() != 17 || h.arb.Stats.Gaps != 0 || sh.books.Book(7).Orders() != 15 {
		t.Fatalf("next %d (want 17), gaps %d, orders %d (want 15)", h.arb.Next(), h.arb.Stats.Gaps, sh.books.Book(7).Orders())
	}
	var st Stats
	st.Arbiter = h.arb.Stats
	rec.copyStats(&st.Recovery)
	if got := scalar(t, &st, "recovery_messages_total"); got != 4 {
		t.Fatalf("recovered_msgs %d, want the 4 delivered from the answers (received %d)", got, st.Recovery.Rerequest.Messages)
	}
	if got := scalar(t, &st, "recovery_unused_messages_total"); got != 4 || st.Recovery.Rerequest.Messages != 8 {
		t.Fatalf("unused %d, want 4 (12 and 13 twice); received %d, want 8", got, st.Recovery.Rerequest.Messages)
	}
}

// TestRerequestDroppedAnswersCounted: 10 to 13 are lost on the line,
// re-requested and filled by one answer. Then three answers come that the
// client drops whole: the same answer again (late: 4 messages), one of
// another session (3) and one for a range never asked (2). Their 9
// messages were received and not delivered: unused_msgs
// (feedhandler_recovery_unused_messages_total) counts them, as it counts
// the messages of answers the arbiter took in and did not deliver. Before,
// it counted none of them: the client counted such answers as packets
// (late_responses, bad_responses) only.
func TestRerequestDroppedAnswersCounted(t *testing.T) {
	srv, h, _, rec := scriptedRecovery(t, time.Hour, time.Second)
	pkt := func(session string, first, end uint64) []byte { return orderPacket(session, "CNT", first, end) }
	now, req, from := ask10to13(t, srv, h, rec, "CNT")
	if req.Seq != 10 || req.Count != 4 {
		t.Fatalf("asked %d+%d, want 10+4", req.Seq, req.Count)
	}
	for _, a := range [][]byte{pkt("CNT", 10, 14), pkt("CNT", 10, 14), pkt("OTHER", 10, 13), pkt("CNT", 100, 102)} {
		srv.answer(t, from, a)
	}
	cs := &rec.client.Stats
	for j := 0; cs.Responses+cs.Late+cs.WrongSession+cs.Unasked != 4; j++ {
		if j == 2000 {
			t.Fatalf("answers not read: %+v", *cs)
		}
		time.Sleep(time.Millisecond)
		now += int64(20 * time.Millisecond)
		rec.poll(now)
	}
	h.endBatch()
	if h.arb.Next() != 17 || h.arb.Stats.Gaps != 0 || cs.Late != 1 || cs.WrongSession != 1 || cs.Unasked != 1 {
		t.Fatalf("next %d (want 17), gaps %d; client stats %+v (want one late, one of another session, one unasked)", h.arb.Next(), h.arb.Stats.Gaps, *cs)
	}
	var st Stats
	st.Arbiter = h.arb.Stats
	rec.copyStats(&st.Recovery)
	if got := scalar(t, &st, "recovery_unused_messages_total"); got != 9 || scalar(t, &st, "recovery_messages_total") != 4 {
		t.Fatalf("unused %d, want 9 (4 late, 3 of another session, 2 unasked); recovered %d, want 4", got, scalar(t, &st, "recovery_messages_total"))
	}
}

// TestRerequestBadAnswersLogged: 10 to 13 are lost and re-requested; the
// server answers with another session's packet (a server still on
// yesterday's session) before the right answer, and once more after.
// The first bad answer is logged at once, at warn level, naming its kind,
// source and session; the second, within the minute, is not; one a minute
// later (a range never asked) is, with the two dropped since. Before,
// bad answers were only counted (recovery_bad_responses_total): no line
// said that a server answered with another session.
func TestRerequestBadAnswersLogged(t *testing.T) {
	srv, h, _, rec := scriptedRecovery(t, time.Hour, time.Second)
	var logs bytes.Buffer
	h.log = zerolog.New(&logs)
	pkt := func(session string, first, end uint64) []byte { return orderPacket(session, "BAD", first, end) }
	now, _, from := ask10to13(t, srv, h, rec, "BAD")
	cs := &rec.client.Stats
	// read sends the answers and polls until the client has read n in all.
	read := func(n uint64, answers ...[]byte) {
		t.Helper()
		for _, a := range answers {
			srv.answer(t, from, a)
		}
		for j := 0; cs.Responses+cs.Late+cs.Bad() != n; j++ {
			if j == 2000 {
				t.Fatalf("answers not read: %+v", *cs)
			}
			time.Sleep(time.Millisecond)
			now += int64(20 * time.Millisecond)
			rec.poll(now)
		}
	}
	// logged returns the lines about bad answers.
	logged := func() []string {
		var ls []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "answers dropped as bad") {
				ls = append(ls, l)
			}
		}
		return ls
	}
	read(1, pkt("YESTERDAY", 10, 14))
	read(3, pkt("BAD", 10, 14), pkt("YESTERDAY", 10, 14))
	if h.arb.Next() != 17 || cs.WrongSession != 2 {
		t.Fatalf("next %d (want 17), stats %+v (want 2 of another session)", h.arb.Next(), *cs)
	}
	if ls := logged(); len(ls) != 1 || !strings.Contains(ls[0], `"dropped":1,"last_kind":"wrong_session"`) ||
		!strings.Contains(ls[0], `"last_session":"YESTERDAY"`) || !strings.Contains(ls[0], `"last_from":"`+srv.addr().String()) {
		t.Fatalf("two answers of another session within a minute: logged %d times (want once, at the first, naming the kind, the session and the server): %q", len(ls), ls)
	}
	now += int64(time.Minute)
	read(4, pkt("BAD", 100, 102))
	if ls := logged(); len(ls) != 2 || !strings.Contains(ls[1], `"dropped":2,"last_kind":"unasked"`) {
		t.Fatalf("a range never asked, a minute later: logged %d times in all (want 2, the last an unasked one with the 2 dropped since the first line): %q", len(ls), ls)
	}
}

// orderPacket is a packet of session holding the messages first to
// end-1 of a session announcing sym (orderMsg).
func orderPacket(session, sym string, first, end uint64) []byte {
	b := moldudp64.NewBuilder(moldudp64.NewSession(session), first, 0)
	for seq := first; seq < end; seq++ {
		b.Add(orderMsg(sym, seq, seq))
	}
	return append([]byte(nil), b.Flush()...)
}

// ask10to13 offers h's line the packets 1 to 16 of session (announcing
// it as the symbol too), one a message, 1 ms apart from now on, but 10 to
// 13; a second later it polls rec, which asks srv for them, and returns
// then, the request and where it came from.
func ask10to13(t *testing.T, srv *scriptedServer, h *Handler, rec *recovery, session string) (int64, moldudp64.Request, netip.AddrPort) {
	t.Helper()
	now := time.Now().UnixNano()
	for seq := uint64(1); seq <= 16; seq++ {
		if seq < 10 || seq > 13 {
			now += int64(time.Millisecond)
			h.arb.Offer(0, orderPacket(session, session, seq, seq+1), now)
		}
	}
	now += int64(time.Second)
	h.arb.Tick(now)
	rec.poll(now)
	req, from := srv.request(t)
	return now, req, from
}
