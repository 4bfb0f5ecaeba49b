package handler

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// TestArbiterAdvanceBehindQueues: the receiver is 2 s behind on both
// lines (their queues hold packets stamped 2 s before the wall clock;
// docs: "a receiver that is behind may hold minutes-old packets"). Line A
// lost packet g; line B's copy is queued, 1 ms behind A's by their stamps.
// One Receive fails before reading B: Advance at the wall clock finds both
// lines "dead" (wall - lastRx >= LineTimeout) and declares the gap at once,
// though by the lines' own clocks B is 1 ms behind and still delivering.
func TestArbiterAdvanceBehindQueues(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pkts := packets(t, testSession, 40, 5, rng)
	a, _ := newTestArbiter(t, ArbiterConfig{Hold: 20 * time.Millisecond, LineTimeout: time.Second})
	wall := int64(10 * time.Hour)
	rx := wall - int64(2*time.Second) // what is being read was received 2 s ago
	for _, p := range pkts[:20] {
		a.Offer(0, p, rx)
		a.Offer(1, p, rx-int64(time.Millisecond))
		rx += 1000
	}
	a.Offer(0, pkts[21], rx) // line A lost 20
	a.Advance(wall)          // a failed Receive (socket backend: stopped at line A)
	if a.Stats.Gaps != 0 {
		t.Errorf("one failed Receive while the queues are 2 s behind: gap %v declared at once (both lines taken for dead by the wall clock); line B's copy is 1 ms behind by the lines' clocks", a.Stats.LastGap)
	}
	a.Offer(1, pkts[20], rx-int64(time.Millisecond)+1000) // line B's copy
	if a.Stats.Gaps != 0 || a.Pending() != 0 {
		t.Errorf("gaps %d, pending %d after line B's copy", a.Stats.Gaps, a.Pending())
	}
}

// TestReceiveErrorBehindQueues: TestReceiveErrorNotDrained with
// the receiver 2 s behind (every stamp 2 s before the wall clock). One
// failed Receive must not declare the gap that line B's queued copy fills.
func TestReceiveErrorBehindQueues(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		pkts := dayPackets(t, 2000)
		g := len(pkts) / 2
		old := time.Now().UnixNano() - int64(2*time.Second)
		var steps [][]rx.Packet
		for _, b := range pkts[:g] {
			steps = append(steps, []rx.Packet{{Data: b, Line: rx.LineA, RxTime: old}, {Data: b, Line: rx.LineB, RxTime: old}})
		}
		steps = append(steps, []rx.Packet{{Data: pkts[g+1], Line: rx.LineA, RxTime: old}}) // A lost g
		steps = append(steps, nil)                                                         // one failed call
		for _, b := range pkts[g:] {
			steps = append(steps, []rx.Packet{{Data: b, Line: rx.LineB, RxTime: old}})
		}
		r := &stepRx{steps: steps}
		h := startRx(t, mode, shards, r, shmtest.Name(t, "fhrx97"), zerolog.Nop(), nil)
		defer h.Stop()
		last, _ := moldudp64.Parse(pkts[len(pkts)-1])
		waitFor(t, "everything delivered", func() bool { return h.Stats().NextSeq == last.Next() })
		if st := h.Stats(); st.Arbiter.Gaps != 0 {
			t.Errorf("gaps %d (%d messages) after one failed Receive with the queues 2 s behind: B's queued copy was not waited for (Advance judged the lines dead by the wall clock)", st.Arbiter.Gaps, st.Arbiter.GapMessages)
		}
	})
}

// TestArbiterSecondGapLaggingLine: no clock step. The receiver reads line
// B 100 ms behind line A (less than LineTimeout; more than Hold: the case
// checkGap's per-line clocks are for). Packet 10 is lost on both lines,
// packet 14 on line A only; packets are 25 ms apart. Line B's packet 12
// (stamped s12) declares the first gap; the loop then starts the second
// gap's wait at the held front's stamp (A's packet 15, s15), which is
// after now (s12): checkGap takes that for a step back and restarts the
// wait from s12. Line B (not past 14) is then "waited for Hold" from s12,
// and its duplicate 13 (s13 = s12+25ms) ends the wait: the gap is declared
// on A's next packet although B's copy of 14 (stamped s14, before A's 15)
// is next in B's queue. Now an earlier stamp is a step only by more than
// LineTimeout, or at an empty poll.
func TestArbiterSecondGapLaggingLine(t *testing.T) {
	pkts := packets(t, testSession, 30, 5, rand.New(rand.NewPCG(3, 9)))
	a, s := newTestArbiter(t, ArbiterConfig{Hold: 20 * time.Millisecond, Grace: 200 * time.Microsecond, LineTimeout: time.Second})
	base := int64(10 * time.Hour)
	st := func(i int) int64 { return base + int64(i)*int64(25*time.Millisecond) }
	for i := range 10 {
		a.Offer(0, pkts[i], st(i))
		a.Offer(1, pkts[i], st(i))
	}
	for _, i := range []int{11, 12, 13, 15, 16} { // line A, read ahead; lost 10 and 14
		a.Offer(0, pkts[i], st(i))
	}
	for _, i := range []int{11, 12, 13} { // line B, 100 ms behind; lost 10
		a.Offer(1, pkts[i], st(i))
	}
	if a.Stats.Gaps != 1 {
		t.Fatalf("gaps %d, want 1 (packet 10, lost on both lines)", a.Stats.Gaps)
	}
	a.Offer(0, pkts[17], st(17)) // line A goes on
	a.Offer(1, pkts[14], st(14)) // line B's copy of 14: next in its queue
	p14, _ := moldudp64.Parse(pkts[14])
	if a.Stats.Gaps != 1 {
		t.Errorf("normal run, line B read 100 ms behind A: gap %v declared (gaps %v) before line B's copy (stamped %v before A's next packet) was read; lost on line A only",
			a.Stats.LastGap, s.gaps, time.Duration(st(15)-st(14)))
	}
	_ = p14
}

// TestArbiterAdvanceStrayPackets: line A's socket fails on every call
// (nothing of it is read), line B lost packet g and then carries nothing of
// the followed session, only datagrams the Arbiter rejects (another
// session's, or malformed: a stray sender on the group). The receive loop
// alternates failed empty Receives (Advance) and Receives that bring a
// rejected datagram (Offer). Only a packet of the followed session ends a
// run of failures: a rejected one moves no line's clock, and when it did
// end the run, the run never aged and the gap was held for ever. The gap
// is declared once both lines are dead.
func TestArbiterAdvanceStrayPackets(t *testing.T) {
	for _, kind := range []string{"wrong-session", "malformed"} {
		t.Run(kind, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			pkts := packets(t, testSession, 30, 5, rng)
			stray := packets(t, moldudp64.NewSession("OTHER00001"), 1, 1, rng)[0]
			if kind == "malformed" {
				stray = []byte("not moldudp64")
			}
			a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Hold: 20 * time.Millisecond, LineTimeout: time.Second})
			now := int64(10 * time.Hour)
			for _, p := range pkts[:10] {
				a.Offer(0, p, now)
				a.Offer(1, p, now)
				now += 1000
			}
			a.Offer(1, pkts[11], now) // g=10 lost on B; A fails from here on
			a.Offer(1, pkts[12], now)
			for range 10000 { // 10 s: the loop sleeps 1 ms after a failed empty Receive
				now += int64(time.Millisecond)
				a.Advance(now)
				now += 1000
				a.Offer(1, stray, now)
			}
			if a.Stats.Gaps != 1 {
				t.Errorf("%s datagrams on line B between failed Receives for 10 s (line_timeout 1 s, both lines dead): gaps %d, pending %d, gaps seen %v: the gap is held for ever (each rejected datagram reset failSince)", kind, a.Stats.Gaps, a.Pending(), s.gaps)
			}
		})
	}
}
