package handler

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
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
	// Besides, a hole seen past the range asked at the start (3, 5 and
	// 7 held: 4 missing) is asked ahead, twice, and declared unasked at
	// its turn, the servers resting.
	if len(got) < 5 || uint64(len(got)) != st.Failures || st.Requests != 2*st.Failures+st.Ahead || st.Ahead != 2 {
		t.Fatalf("40 s with the server down: rests logged %v, ranges given up %d, requests %d (%d ahead); want one rest a range given up, two requests each, 5 at least, and 2 ahead", got, st.Failures, st.Requests, st.Ahead)
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
	d := strayAsked(t, time.Millisecond, 1)
	h, rec := d.h, d.rec
	for seq := uint64(6); seq <= 20; seq++ {
		d.step(d.pkt(seq, 1))
	}
	for range 100 {
		d.step(nil)
	}
	st := rec.client.Stats
	if _, ok := h.arb.Recovering(); ok || rec.client.Active() || st.Failures != 0 || h.arb.Stats.Gaps != 0 || h.arb.Pending() != 0 {
		t.Fatalf("recovering %v, client active %v, failures %d, gaps %d, pending %d; want the range ended, nothing given up, declared or held", ok, rec.client.Active(), st.Failures, h.arb.Stats.Gaps, h.arb.Pending())
	}
}

// strayDay is a one-line day of session STRAY whose packet 6 came with a
// corrupt sequence number, 20,006, as the line's latest when the hole
// before it was due: [6, 20006) is re-requested (strayAsked).
type strayDay struct {
	srv  *scriptedServer
	h    *Handler
	logs *bytes.Buffer
	rec  *recovery
	now  int64
	b    *moldudp64.Builder // the feed's own packets, for a heartbeat
	step func(data []byte)  // the clock 1 ms on, data offered (if any), an empty poll, the recovery polled
}

// pkt is the day's packet of count messages from seq on.
func (d *strayDay) pkt(seq, count uint64) []byte {
	b := moldudp64.NewBuilder(d.b.Session(), seq, 0)
	for s := seq; s < seq+count; s++ {
		b.Add(orderMsg("STRAY", s, s))
	}
	return append([]byte(nil), b.Flush()...)
}

// strayAsked plays a strayDay up to its re-request of [6, 20006), asked of
// a scripted server that does not answer, with the client's timeout and
// retries given.
func strayAsked(t *testing.T, timeout time.Duration, retries int) *strayDay {
	t.Helper()
	d := &strayDay{srv: newScriptedServer(t), now: time.Now().UnixNano(), b: moldudp64.NewBuilder(moldudp64.NewSession("STRAY"), 1, 0)}
	d.h, d.logs, d.rec = loggedRecovery(t, RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{d.srv.addr()}, Timeout: timeout, Retries: retries}})
	d.step = func(data []byte) {
		d.now += int64(time.Millisecond)
		if data != nil {
			d.h.arb.Offer(0, data, d.now)
		}
		d.h.arb.Tick(d.now)
		d.rec.poll(d.now)
	}
	for seq := uint64(1); seq <= 5; seq++ {
		d.step(d.pkt(seq, 1))
	}
	d.step(d.pkt(20_006, 1)) // a corrupt copy of packet 6
	d.step(nil)
	if r, ok := d.h.arb.Recovering(); !ok || r != (moldudp64.Range{First: 6, Count: 20_000}) || !d.rec.client.Active() {
		t.Fatalf("setup: recovering %v %v, client active %v; want [6, 20006) asked", r, ok, d.rec.client.Active())
	}
	return d
}

// answerRetry waits for the client's next request, which must ask [6, 9)
// (the range narrowed), and answers it.
func (d *strayDay) answerRetry(t *testing.T) {
	t.Helper()
	requests := d.rec.client.Stats.Requests
	for i := 0; d.rec.client.Stats.Requests == requests; i++ {
		if i == 1000 {
			t.Fatalf("no retry in 1 s: %+v", d.rec.client.Stats)
		}
		d.step(nil)
	}
	retry, from := d.srv.request(t)
	if retry.Seq != 6 || retry.Count != 3 {
		t.Fatalf("retry asked {%d %d}, want {6 3}: the range narrowed to [6, 9)", retry.Seq, retry.Count)
	}
	d.srv.answer(t, from, d.pkt(6, 3))
	d.step(nil)
	d.step(nil)
}

// TestRerequestAsksNarrowedRange: line A's packet with a corrupt sequence
// number (20,000 ahead) is its latest when the hole before it is due, and
// the hole, [6, 20006), is asked of a server that does not answer at
// first. The line then sends a heartbeat at 9 (the feed went idle after
// packet 8; 6 to 8 lost): the packet is contradicted, dropped, and the
// range narrowed to [6, 9) (Arbiter.strayEnd). From then on the client
// asks only that: its retry asks for 3 messages, not 2,000 again (each
// request and message counted, and maybe throttled, by the exchange), and
// the repair is reported as [6, 9), the range asked first beside it.
// Without, the retry asked the old range ('retry asked {6 2000}') and
// the event reported [6, 20006).
func TestRerequestAsksNarrowedRange(t *testing.T) {
	d := strayAsked(t, 5*time.Millisecond, 3)
	h, rec, srv := d.h, d.rec, d.srv
	first, _ := srv.request(t)
	if first.Seq != 6 || int(first.Count) != rec.client.RequestMessages() {
		t.Fatalf("setup: asked %+v, want 6 and %d messages", first, rec.client.RequestMessages())
	}
	for range 8 {
		d.b.Add(orderMsg("STRAY", 0, 0))
	}
	d.b.Flush()
	d.step(append([]byte(nil), d.b.Heartbeat()...)) // at 9
	if r, ok := h.arb.Recovering(); !ok || r != (moldudp64.Range{First: 6, Count: 3}) {
		t.Fatalf("after the heartbeat at 9: recovering %v %v; want [6, 9)", r, ok)
	}
	d.answerRetry(t)
	st := rec.client.Stats
	if _, ok := h.arb.Recovering(); ok || rec.client.Active() || st.Failures != 0 || h.arb.Stats.Gaps != 0 || h.arb.Pending() != 0 || h.arb.Next() != 9 {
		t.Fatalf("after the answer: recovering %v, client active %v, failures %d, gaps %d, pending %d, next %d; want [6, 9) filled, nothing declared or held",
			ok, rec.client.Active(), st.Failures, h.arb.Stats.Gaps, h.arb.Pending(), h.arb.Next())
	}
	want := RecoveryEvent{Range: moldudp64.Range{First: 6, Count: 3}, Asked: moldudp64.Range{First: 6, Count: 20_000}, By: "re-request"}
	if len(rec.events) != 1 || rec.events[0].Range != want.Range || rec.events[0].Asked != want.Asked || rec.events[0].By != want.By {
		t.Fatalf("events %+v, want one: %+v", rec.events, want)
	}
	// Each repair is logged (Recovery.Events' promise), with what was
	// asked when it was more.
	if line := `"first":6,"count":3,`; !strings.Contains(d.logs.String(), line) || !strings.Contains(d.logs.String(), `"asked_count":20000,`) || !strings.Contains(d.logs.String(), "range repaired by re-request") {
		t.Fatalf("log %q: want the repair of [6, 9), asked 20000", d.logs.String())
	}
}

// TestRerequestNarrowsBelowHeldPackets: as TestRerequestAsksNarrowedRange,
// but the line goes on below the corrupt packet with packets 9 and 10 (6
// to 8 lost), held inside the range asked, below the packet: it is
// contradicted, dropped, and the range narrowed to [6, 9), the first
// packet held. The retry asks for 3 messages, the answer fills them and 9
// and 10 are delivered after. Without, the range was narrowed only while
// the corrupt packet was the first held: the client went on asking the
// full request from 6 until answered ('retry asked {6 2000}').
func TestRerequestNarrowsBelowHeldPackets(t *testing.T) {
	d := strayAsked(t, 5*time.Millisecond, 3)
	h, rec, srv := d.h, d.rec, d.srv
	if first, _ := srv.request(t); first.Seq != 6 || int(first.Count) != rec.client.RequestMessages() {
		t.Fatalf("setup: asked %+v, want 6 and %d messages", first, rec.client.RequestMessages())
	}
	d.step(d.pkt(9, 1))
	d.step(d.pkt(10, 1))
	if r, ok := h.arb.Recovering(); !ok || r != (moldudp64.Range{First: 6, Count: 3}) || h.arb.Pending() != 2 {
		t.Fatalf("after 9 and 10: recovering %v %v, pending %d; want [6, 9), 9 and 10 held", r, ok, h.arb.Pending())
	}
	d.answerRetry(t)
	st := rec.client.Stats
	if _, ok := h.arb.Recovering(); ok || rec.client.Active() || st.Failures != 0 || h.arb.Stats.Gaps != 0 || h.arb.Pending() != 0 || h.arb.Next() != 11 {
		t.Fatalf("after the answer: recovering %v, client active %v, failures %d, gaps %d, pending %d, next %d; want [6, 9) filled, 9 and 10 delivered, nothing declared or held",
			ok, rec.client.Active(), st.Failures, h.arb.Stats.Gaps, h.arb.Pending(), h.arb.Next())
	}
	if c := h.arb.Stats.Lines[0].Contradicted; c != 1 {
		t.Fatalf("%d packets contradicted, want the corrupt one", c)
	}
}
