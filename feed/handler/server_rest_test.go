package handler

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
)

// TestServerRestBacksOff: the only re-request server never answers, and
// a packet is lost every 100 ms of the (fake) clock. Each range is asked
// (twice: Retries 1), given up and declared; re-request then rests,
// ServerRest (1 s) after the first such failure, doubled per failure in
// a row, at most ServerRestMax (8 s here), each rest logged; the gaps
// found meanwhile are declared at once, and every packet not lost is
// delivered. Once the server answers a range, the next failure rests 1 s
// again, as after a session change. Before, the rest was 1 s whatever
// the failures in a row: servers down all day were asked for a range
// every second, each held back the timeouts before it was declared.
func TestServerRestBacksOff(t *testing.T) {
	srv := newScriptedServer(t)
	const rest, restMax = time.Second, 8 * time.Second
	h, logs, rec := loggedRecovery(t, RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: time.Millisecond, Retries: 1},
		ServerRest: rest, ServerRestMax: restMax})
	session := moldudp64.NewSession("RST")
	pkt := func(seq, count uint64) []byte {
		b := moldudp64.NewBuilder(session, seq, 0)
		for s := seq; s < seq+count; s++ {
			b.Add(orderMsg("RST", s, s))
		}
		return append([]byte(nil), b.Flush()...)
	}
	now := time.Now().UnixNano()
	seq, sent, lost := uint64(1), uint64(0), uint64(0)
	// step moves the clock 10 ms; every 10th step a packet is offered and
	// the one after it lost.
	step := func(i int) {
		now += int64(10 * time.Millisecond)
		if i%10 == 0 {
			h.arb.Offer(0, pkt(seq, 1), now)
			seq, sent, lost = seq+2, sent+1, lost+1
		}
		h.arb.Tick(now)
		rec.poll(now)
	}
	rests := func() []time.Duration {
		var got []time.Duration
		sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
		for sc.Scan() {
			var l struct {
				Msg  string  `json:"message"`
				Rest float64 `json:"rest"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Rest > 0 {
				got = append(got, time.Duration(l.Rest*float64(time.Millisecond)))
			}
		}
		return got
	}

	for i := range 4000 { // 40 s
		step(i)
	}
	st := rec.client.Stats
	got := rests()
	if len(got) < 5 || uint64(len(got)) != st.Failures || st.Requests != 2*st.Failures {
		t.Fatalf("40 s with the server down: rests logged %v, ranges given up %d, requests %d; want one rest a range given up, two requests each, 5 at least", got, st.Failures, st.Requests)
	}
	for n, d := range got {
		if want := min(rest<<n, restMax); d != want {
			t.Fatalf("rests %v: the rest after %d failures in a row is %v, want %v (doubled from %v, at most %v)", got, n+1, d, want, rest, restMax)
		}
	}
	// The arbiter has been waiting for the last loss; every other one is
	// declared, every packet sent delivered.
	if g := h.arb.Stats.Gaps; g+1 < lost || g > lost {
		t.Fatalf("%d gaps declared, %d packets lost", g, lost)
	}

	// The server answers the next range asked: the failure after it
	// rests ServerRest again.
	for range st.Requests { // every request so far, unanswered
		srv.request(t)
	}
	asked := st.Requests
	for i := 0; rec.client.Stats.Requests == asked; i++ {
		if i == 2000 {
			t.Fatalf("no range asked for 20 s after the last rest: %+v", rec.client.Stats)
		}
		step(i)
	}
	req, from := srv.request(t)
	srv.answer(t, from, pkt(req.Seq, uint64(req.Count)))
	failures := rec.client.Stats.Failures
	for i := 0; rec.client.Stats.Failures == failures; i++ {
		if i == 1000 {
			t.Fatalf("no range given up in 10 s after an answer: %+v", rec.client.Stats)
		}
		step(i + 1) // the next packet (and loss) at once
	}
	if a := h.arb.Stats.RecoveriesFilled; a != 1 {
		t.Fatalf("%d ranges filled by re-request, want the one answered", a)
	}
	if got := rests(); got[len(got)-1] != rest {
		t.Fatalf("rests %v: the first failure after an answer rests %v, want %v", got, got[len(got)-1], rest)
	}
	// A session change (or sequence restart) starts the backoff again:
	// the new numbering's servers are asked at once, and rest ServerRest
	// after their first failure.
	rec.rest(now) // a second failure in a row: 2 s
	rec.sessionChanged(session, moldudp64.NewSession("RST2"))
	if rec.restUntil != 0 || rec.restWait != rest || rec.restFails != 0 {
		t.Fatalf("after a session change: rest until %d, last rest %v, failures in a row %d; want 0, %v, 0", rec.restUntil, rec.restWait, rec.restFails, rest)
	}
}

// TestRerequestEndsWithStrayEnd: line A's packet with a corrupt sequence
// number (20,000 ahead) is its latest when the hole before it is due: the
// hole is handed to re-request, whose server does not answer. The line
// then goes on below it, filling the hole: the arbiter drops the packet
// (contradicted) and ends the range (Arbiter.strayEnd), and re-request
// stops asking: nothing given up, no server rested, nothing declared.
// Without, the client went on asking the range past the feed's numbers
// until it gave it up ('failures 1'), resting the servers.
func TestRerequestEndsWithStrayEnd(t *testing.T) {
	srv := newScriptedServer(t)
	h, _, rec := loggedRecovery(t, RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{srv.addr()}, Timeout: time.Millisecond, Retries: 1}})
	session := moldudp64.NewSession("STRAY")
	pkt := func(seq uint64) []byte {
		b := moldudp64.NewBuilder(session, seq, 0)
		b.Add(orderMsg("STRAY", seq, seq))
		return append([]byte(nil), b.Flush()...)
	}
	now := time.Now().UnixNano()
	step := func(data []byte) {
		now += int64(time.Millisecond)
		if data != nil {
			h.arb.Offer(0, data, now)
		}
		h.arb.Tick(now)
		rec.poll(now)
	}
	for seq := uint64(1); seq <= 5; seq++ {
		step(pkt(seq))
	}
	step(pkt(20_006)) // a corrupt copy of packet 6
	step(nil)
	if r, ok := h.arb.Recovering(); !ok || r != (moldudp64.Range{First: 6, Count: 20_000}) || !rec.client.Active() {
		t.Fatalf("setup: recovering %v %v, client active %v; want [6, 20006) asked", r, ok, rec.client.Active())
	}
	for seq := uint64(6); seq <= 20; seq++ {
		step(pkt(seq))
	}
	for range 100 {
		step(nil)
	}
	st := rec.client.Stats
	if _, ok := h.arb.Recovering(); ok || rec.client.Active() || st.Failures != 0 || h.arb.Stats.Gaps != 0 || h.arb.Pending() != 0 {
		t.Fatalf("recovering %v, client active %v, failures %d, gaps %d, pending %d; want the range ended, nothing given up, declared or held", ok, rec.client.Active(), st.Failures, h.arb.Stats.Gaps, h.arb.Pending())
	}
}
