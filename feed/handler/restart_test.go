package handler

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// restartOnLineA runs day1's first 80 packets on both lines, 1 ms apart,
// then day2's first 40 (from sequence number 1) on line A alone over 2 s:
// a restart confirmed on A (LineTimeout 1 s) while line B's queue is
// behind. It returns the Arbiter, the messages it delivered after the
// restart by tag (taggedPackets), the time of A's last packet and that of
// day1's 80th, from which B's queue was received.
func restartOnLineA(t *testing.T, day1, day2 [][]byte) (a *Arbiter, afterRestart *[3]uint64, now, tB int64) {
	t.Helper()
	restarted, afterRestart := false, new([3]uint64)
	a = NewArbiter(ArbiterConfig{LineTimeout: time.Second}, func(p *moldudp64.Packet, skip int, _ int64) {
		it := p.Iter()
		it.Skip(skip)
		for msg, ok := it.Next(); ok; msg, ok = it.Next() {
			if restarted {
				afterRestart[msg[0]]++
			}
		}
	}, nil)
	a.SetSessionFunc(func(old, new moldudp64.Session) {
		if old == new {
			restarted = true
		}
	})
	now = int64(time.Hour)
	offerBoth(a, &now, day1[:80], time.Millisecond)
	tB = now
	for _, p := range day2[:40] {
		now += int64(50 * time.Millisecond)
		a.Offer(0, p, now)
	}
	if !restarted {
		t.Fatalf("no restart confirmed (regressions %d)", a.Stats.Regressions)
	}
	return a, afterRestart, now, tB
}

// TestArbiterRestartLaggingLine: the receiver is behind on line
// B (docs: "a receiver that is behind may hold minutes-old packets of line
// B in its queue while reading line A"; see checkGap). Line A shows the
// restarted sequence (day 2, from 1) for 2 s, so B is not live by A's
// clock and the restart is confirmed on A alone. Then B's queue drains:
// packets of the OLD sequence (day 1), received before the restart. After
// the restart they must not be delivered as the restarted sequence's
// messages: they were received before it, and are dropped and counted
// (BeforeRestart).
func TestArbiterRestartLaggingLine(t *testing.T) {
	day1 := taggedPackets(t, testSession, 1, 100, 5, rand.New(rand.NewPCG(1, 2)))
	day2 := taggedPackets(t, testSession, 2, 100, 5, rand.New(rand.NewPCG(3, 4)))
	a, afterRestart, now, tB := restartOnLineA(t, day1, day2) // line B's next packets were received from tB on (queued)
	// Line B's queue: day 1's packets 80..99, received before the restart.
	for _, p := range day1[80:] {
		tB += int64(time.Millisecond)
		a.Offer(1, p, tB)
	}
	for _, p := range day2[40:] {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
	}
	a.Tick(now + int64(time.Second))
	if a.Stats.Restarts != 1 || a.Stats.Lines[1].BeforeRestart != 20 {
		t.Fatalf("restarts %d, line B's packets dropped as before the restart %d (want 1, 20)", a.Stats.Restarts, a.Stats.Lines[1].BeforeRestart)
	}
	if afterRestart[1] != 0 {
		t.Fatalf("after the restart, %d messages of the old sequence (day 1, received before the restart on line B) were delivered as the restarted sequence's; %d of day 2; next %d, gaps %d",
			afterRestart[1], afterRestart[2], a.Next(), a.Stats.Gaps)
	}
}

// TestArbiterRestartLaggingLineReadStamps is TestArbiterRestartLaggingLine
// with line B's queue read after the restart with stamps of when it was
// read, not received: the kernel gave none (AF_XDP on a driver without
// metadata, xdp_no_meta). The stamps no longer tell B's old packets from
// the restarted sequence's; their sequence numbers do: they go on from
// where B was, far past anything the restarted sequence brought. They
// must be dropped, not held as the restarted sequence's packets far ahead
// (declared a gap and delivered) or followed as a jump, and B's packets of
// the restarted sequence after them taken.
func TestArbiterRestartLaggingLineReadStamps(t *testing.T) {
	for _, from := range []uint64{1_000_000, 50_000_000} { // within MaxJump of the restarted sequence; beyond it
		t.Run(fmt.Sprint("from", from), func(t *testing.T) { testArbiterRestartLaggingLineReadStamps(t, from) })
	}
}

func testArbiterRestartLaggingLineReadStamps(t *testing.T, from uint64) {
	day1 := taggedPacketsFrom(t, testSession, 1, from, 100, 5, rand.New(rand.NewPCG(1, 2)))
	day2 := taggedPackets(t, testSession, 2, 100, 5, rand.New(rand.NewPCG(3, 4)))
	a, afterRestart, now, _ := restartOnLineA(t, day1, day2)
	// Line B's queue read now: day 1's packets 80..99, then the restarted
	// sequence from 41, all stamped as read.
	for _, p := range day1[80:] {
		now += int64(time.Microsecond)
		a.Offer(1, p, now)
	}
	for _, p := range day2[40:] {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	a.Tick(now + int64(time.Second))
	end, _ := moldudp64.Parse(day2[len(day2)-1])
	if afterRestart[1] != 0 || a.Stats.Lines[1].BeforeRestart != 20 || a.Next() != end.Next() {
		t.Fatalf("after the restart, %d messages of the old sequence (day 1, on line B, read after the restart) delivered as the restarted sequence's; line B's packets dropped as before the restart %d (want 20); next %d (want %d), gaps %d, suspect %d",
			afterRestart[1], a.Stats.Lines[1].BeforeRestart, a.Next(), end.Next(), a.Stats.Gaps, a.Stats.Lines[1].Suspect)
	}
	if afterRestart[2] == 0 || a.Stats.Lines[1].Won+a.Stats.Lines[1].Duplicates == 0 {
		t.Fatalf("the restarted sequence after line B's queue: %d messages delivered, line B won %d, duplicates %d", afterRestart[2], a.Stats.Lines[1].Won, a.Stats.Lines[1].Duplicates)
	}
}

// TestArbiterReplayNotRestart: both lines replay recent packets (not from
// sequence number 1) for longer than LineTimeout, then go on. It is
// counted (Regressions, Behind while it lasts) but not followed as a
// restart: the books are kept, nothing is a gap, and everything is
// delivered once, with or without HoldRestart.
func TestArbiterReplayNotRestart(t *testing.T) {
	for _, from := range []int{260, 30, 1} { // from the middle; from near the start (a review: a first version took it for a restart); from the second packet, within the fingerprinted start (noteEarly)
		t.Run(fmt.Sprint("rebuild/from", from), func(t *testing.T) { testArbiterReplayNotRestart(t, false, from) })
		t.Run(fmt.Sprint("hold/from", from), func(t *testing.T) { testArbiterReplayNotRestart(t, true, from) })
	}
}

// countRebuilds counts a's rebuilds (a change to the same session: a
// restart), the sink checking the order from 1 again after each.
func countRebuilds(a *Arbiter, s *sink) *int {
	n := new(int)
	a.SetSessionFunc(func(old, new moldudp64.Session) {
		if old == new {
			*n++
			s.next = 0
		}
	})
	return n
}

func testArbiterReplayNotRestart(t *testing.T, hold bool, from int) {
	day := packets(t, testSession, 400, 5, rand.New(rand.NewPCG(5, 6)))
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second, HoldRestart: hold})
	rebuilds := countRebuilds(a, s)
	now := int64(time.Hour)
	offerBoth(a, &now, day[:300], time.Millisecond)
	offerBoth(a, &now, day[from:from+40], 50*time.Millisecond) // a replay of 40 packets, over 2 s
	offerBoth(a, &now, day[300:], time.Millisecond)
	a.Tick(now + int64(time.Second))
	if want := totalMessages(t, day); *rebuilds != 0 || len(s.gaps) != 0 || s.got != want || a.Stats.Regressions != 1 || a.Stats.Restarts != 0 {
		p, _ := moldudp64.Parse(day[from])
		t.Fatalf("a replay from seq %d (not 1) taken for a restart: books rebuilt %d time(s), gaps %v, regressions %d, delivered %d of %d", p.Seq, *rebuilds, s.gaps, a.Stats.Regressions, s.got, want)
	}
}

// TestRestartLaggingLineHandler is
// TestArbiterRestartLaggingLine through the real receive thread
// (run to completion) with a re-request server serving the restarted
// sequence: once the books report whole and ready, they must equal a replay
// of the restarted sequence (day 2) alone.
func TestRestartLaggingLineHandler(t *testing.T) {
	day1, day2, ref, _, rr := restartDays(t)
	now := time.Now().UnixNano()
	r := &scriptRx{errAt: -1}
	tail := len(day1) - 20
	r.play(&now, day1[:tail], 0)
	tB := now
	add := func(line rx.Line, at int64, b []byte) {
		r.mu.Lock()
		r.script = append(r.script, rx.Packet{Data: b, Line: line, RxTime: at})
		r.mu.Unlock()
	}
	for _, b := range day2[:30] { // line A: the restarted sequence, 3 s
		now += int64(100 * time.Millisecond)
		add(rx.LineA, now, b)
	}
	for _, b := range day1[tail:] { // line B's queue: the old sequence's tail
		tB += int64(time.Microsecond)
		add(rx.LineB, tB, b)
	}
	for _, b := range day2[30:] {
		now += int64(time.Microsecond)
		add(rx.LineA, now, b)
	}
	name := shmtest.Name(t, "fhlagging")
	h := startRestart(t, r, RecoveryConfig{Rerequest: rerequest.Config{Servers: []netip.AddrPort{rr.Addr()}, Timeout: 50 * time.Millisecond}},
		ModeRunToCompletion, nil, name)
	waitFor(t, "the restarted sequence's end reached, applied, ready", func() bool {
		st := h.Stats()
		ok, _ := st.Ready()
		return st.NextSeq == 20_001 && st.Applied() == st.Routed && ok
	})
	st := h.Stats()
	t.Logf("regressions %d, gaps %d, recoveries filled %d, delivered %d, ready", st.Arbiter.Regressions, st.Arbiter.Gaps, st.Arbiter.RecoveriesFilled, st.Arbiter.Delivered)
	compareShm(t, name, ref, false)
}

// TestSequenceRestartLateJoin: the restarted sequence's start gap (what
// the lines brought while the restart was confirmed) is larger than one
// request; it is re-requested whatever recovery.late_join says ("off"
// included): late_join is about the first join, and this gap is the
// handler's own wait (docs/RECOVERY.md).
func TestSequenceRestartLateJoin(t *testing.T) {
	for _, lj := range []string{LateJoinOff, LateJoinRerequest} {
		t.Run(lj, func(t *testing.T) {
			forEachMode(t, func(t *testing.T, mode Mode, shards []int) { testSequenceRestartLateJoin(t, mode, shards, lj) })
		})
	}
}

func testSequenceRestartLateJoin(t *testing.T, mode Mode, shards []int, lateJoin string) {
	day1, day2, ref, _, rr := restartDays(t)
	now := time.Now().UnixNano()
	r := &scriptRx{errAt: -1}
	r.play(&now, day1, 0)
	name := shmtest.Name(t, "fhrestartlj")
	rc := RecoveryConfig{LateJoin: lateJoin,
		Rerequest: rerequest.Config{Servers: []netip.AddrPort{rr.Addr()}, Timeout: 50 * time.Millisecond, MaxRequestMessages: 20}}
	h := startRestart(t, r, rc, mode, shards, name)
	first := totalMessages(t, day1)
	waitFor(t, "the first day applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == first && st.Applied() == st.Routed
	})
	r.play(&now, day2[:30], 100*time.Millisecond) // back to 1 for 3 s
	r.play(&now, day2[30:], time.Microsecond)
	all := first + totalMessages(t, day2)
	waitFor(t, "the second day applied, whole, ready", func() bool {
		st := h.Stats()
		ok, _ := st.Ready()
		return st.Arbiter.Delivered == all && st.Applied() == st.Routed && st.StaleBooks() == 0 && ok
	})
	if st := h.Stats(); st.Arbiter.Restarts != 1 || st.Arbiter.RecoveriesFilled == 0 || st.Arbiter.Gaps != 0 || rr.Stats().Requests < 2 {
		t.Fatalf("restarts %d, recoveries filled %d, gaps %d, requests %d (want several of at most 20 messages)",
			st.Arbiter.Restarts, st.Arbiter.RecoveriesFilled, st.Arbiter.Gaps, rr.Stats().Requests)
	}
	compareShm(t, name, ref, false)
}

// TestArbiterRestartClockStepBack: a restart confirmed on line A while
// line B is down (the cut on packets received before the restart stays:
// B never passes it); then the wall clock steps back an hour. Line A's
// packets after the step were received after the restart and are taken,
// not dropped as received before it for an hour.
func TestArbiterRestartClockStepBack(t *testing.T) {
	day1 := taggedPackets(t, testSession, 1, 100, 5, rand.New(rand.NewPCG(1, 2)))
	day2 := taggedPackets(t, testSession, 2, 100, 5, rand.New(rand.NewPCG(3, 4)))
	a := NewArbiter(ArbiterConfig{LineTimeout: time.Second}, func(*moldudp64.Packet, int, int64) {}, nil)
	now := int64(2 * time.Hour)
	for _, p := range day1[:80] {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	for _, p := range day2[:40] { // line B down from here on
		now += int64(50 * time.Millisecond)
		a.Offer(0, p, now)
	}
	if a.Stats.Restarts != 1 {
		t.Fatalf("no restart")
	}
	now -= int64(time.Hour)
	next := a.Next()
	for _, p := range day2[40:] {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
	}
	if n := a.Stats.Lines[0].BeforeRestart; n != 0 {
		t.Errorf("after a step back: %d of line A's %d packets dropped as before the restart", n, len(day2[40:]))
	}
	// Line B comes back after an empty poll (every line drained, before
	// the restart by the stepped clock): its packets are not cut either.
	// (Line B, not heard from since the restart, is waited for until an
	// empty poll: its packets might be queued. Then the gap from 1 is
	// declared and line A's packets delivered.)
	a.Tick(now)
	if a.Next() == next {
		t.Errorf("after a step back and an empty poll: next stuck at %d (line A's packets held: %d)", next, a.Pending())
	}
	for _, p := range day2[90:] {
		now += int64(time.Millisecond)
		a.Offer(1, p, now)
	}
	if n := a.Stats.Lines[1].BeforeRestart; n != 0 {
		t.Errorf("after a step back and an empty poll: %d of line B's packets dropped as before the restart", n)
	}
}

// TestArbiterRegressionClockStepBack: both lines go back to sequence
// number 1 (a restart), and 750 ms into the spell the wall clock steps an
// hour back. The spell (LineTimeout of every line behind) counts again
// from the step: the restart is followed a LineTimeout after it, not an
// hour later, which would drop the restarted sequence as behind for the
// hour.
func TestArbiterRegressionClockStepBack(t *testing.T) {
	day := packets(t, testSession, 200, 5, rand.New(rand.NewPCG(9, 10)))
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	countRebuilds(a, s)
	now := int64(2 * time.Hour)
	offerBoth(a, &now, day[:100], time.Millisecond)
	offerBoth(a, &now, day[:15], 50*time.Millisecond) // back to 1, for 750 ms
	if a.Stats.Regressions != 0 {
		t.Fatalf("a spell of 750 ms counted (regressions %d)", a.Stats.Regressions)
	}
	now -= int64(time.Hour)
	offerBoth(a, &now, day[15:60], 50*time.Millisecond) // 2.25 s after the step
	if a.Stats.Regressions != 1 || a.Stats.Restarts != 1 {
		t.Fatalf("2.25 s after a step back of an hour: regressions %d, restarts %d (want 1, 1); next %d", a.Stats.Regressions, a.Stats.Restarts, a.Next())
	}
}

// TestArbiterRegressionClockStepBackLineDown: line B goes down, then the
// wall clock steps an hour back, then the sequence restarts on line A
// alone. B's last packet is stamped an hour after everything A brings
// now: B is no live line (it has been silent since before the step, and
// a line read more than LineTimeout apart is not waited for), so the
// restart is confirmed on A after LineTimeout. Before, B counted as live
// and not behind until the clock was back where it was: the restarted
// sequence was dropped as behind for the hour.
func TestArbiterRegressionClockStepBackLineDown(t *testing.T) {
	day := packets(t, testSession, 200, 5, rand.New(rand.NewPCG(11, 12)))
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	countRebuilds(a, s)
	now := int64(2 * time.Hour)
	offerBoth(a, &now, day[:100], time.Millisecond)
	for _, p := range day[100:120] { // line B is down
		now += int64(100 * time.Millisecond)
		a.Offer(0, p, now)
	}
	now -= int64(time.Hour)
	for _, p := range day[:60] { // back to 1 on line A, for 3 s
		now += int64(50 * time.Millisecond)
		a.Offer(0, p, now)
	}
	if a.Stats.Regressions != 1 || a.Stats.Restarts != 1 {
		t.Fatalf("3 s into a restart on line A (line B down since before a step back of an hour): regressions %d, restarts %d (want 1, 1); next %d", a.Stats.Regressions, a.Stats.Restarts, a.Next())
	}
}

// TestArbiterRestartLeadingLineNotCut: a sequence restart with both lines
// live, stamped as read (xdp_no_meta), line A read 10 packets ahead of
// line B. Line B's packet confirms the restart (their stamps are alike);
// A's next packets of the restarted sequence are 9 past B's, and past
// where A's old numbering was less the reorder window (chosen so here:
// the old numbering was within 65,536 of the restarted one's). They are
// the restarted sequence's, close past what it brought: not cut as the
// old numbering. Line B then loses one of them, which A brought: nothing
// may be missing but the restart's start. Before, A's packets were cut
// until B caught up with them, and B's loss was declared a gap.
func TestArbiterRestartLeadingLineNotCut(t *testing.T) {
	const n1, lag = 50, 10
	// The restart is confirmed on B's packet day2[1000] (end 1002): 1000
	// ms after B's first packet of day 2, with A's then at day2[1010].
	// A's old numbering ends at h, with h less the window at 1005.
	h := uint64(1005 + candidateWindow)
	day1 := taggedPacketsFrom(t, testSession, 1, h-n1, n1, 1, rand.New(rand.NewPCG(1, 2)))
	day2 := taggedPackets(t, testSession, 2, 1100, 1, rand.New(rand.NewPCG(3, 4)))
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	countRebuilds(a, s)
	stream := append(append([][]byte{}, day1...), day2...)
	lostB := n1 + 1011 // day2[1011], sequence number 1012: lost on line B
	now := int64(time.Hour)
	for i := 0; i < len(stream)+lag; i++ {
		now += int64(time.Millisecond)
		if j := i - lag; j >= 0 && j != lostB {
			a.Offer(1, stream[j], now)
		}
		if i < len(stream) {
			a.Offer(0, stream[i], now)
		}
	}
	a.Tick(now)
	end, _ := moldudp64.Parse(day2[len(day2)-1])
	missing := false // past a start: the day's (a late join) or the restart's
	for _, g := range s.gaps {
		missing = missing || g.First != 1
	}
	if a.Stats.Restarts != 1 || a.Next() != end.Next() || missing {
		t.Fatalf("restarts %d, next %d (want %d); gaps %v (want only from 1: the day's start, the restart's); line A's packets cut as the old numbering %d",
			a.Stats.Restarts, a.Next(), end.Next(), s.gaps, a.Stats.Lines[0].BeforeRestart)
	}
}

// TestArbiterRestartFirstPacketLost: the publisher restarts the sequence
// from 1 under the same session name and the restarted numbering's first
// packet is lost on both lines. The lines went back to its second
// packet's number, not to 1, as a replay of the session from there would;
// but its messages are not the ones delivered at those numbers (the
// fingerprints of the numbering's first messages, noteEarly), so it is a
// restart: followed from 1 with the books rebuilt, its start (the lost
// packet and what was dropped while the restart was confirmed) a gap from
// 1. Before, it was held as a replay and, once the restarted numbering
// passed what was delivered, its messages went onto the old books:
// "regressions 1, restarts 0, rebuilds 0, behind true, next 184 (was 184),
// gaps []". TestArbiterReplayNotRestart/*/from1 replays the session from
// its second packet, the same messages: not a restart.
func TestArbiterRestartFirstPacketLost(t *testing.T) {
	rng := rand.New(rand.NewPCG(79, 80))
	day1 := taggedPackets(t, testSession, 1, 100, 5, rng)
	day2 := taggedPackets(t, testSession, 2, 100, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	rebuilds := countRebuilds(a, s)
	now := int64(time.Hour)
	offerBoth(a, &now, day1[:60], time.Millisecond)
	offerBoth(a, &now, day2[1:40], 50*time.Millisecond) // day2[0] lost on both lines; 2 s
	a.Tick(now + int64(time.Millisecond))
	a.refreshBehind()
	if a.Stats.Regressions != 1 || a.Stats.Restarts != 1 || *rebuilds != 1 || a.Stats.Behind || len(s.gaps) != 1 || s.gaps[0].First != 1 {
		t.Fatalf("restart, its first packet lost on both lines, after LineTimeout: regressions %d, restarts %d, rebuilds %d, behind %v, next %d, gaps %v; want the restart followed, its start a gap from 1",
			a.Stats.Regressions, a.Stats.Restarts, *rebuilds, a.Stats.Behind, a.Next(), s.gaps)
	}
	offerBoth(a, &now, day2[40:], time.Millisecond)
	a.refreshBehind()
	if want := totalMessages(t, day2) + 1; a.Next() != want || a.Stats.Restarts != 1 || *rebuilds != 1 || a.Stats.Behind || len(s.gaps) != 1 {
		t.Fatalf("after the restarted numbering's day: next %d (want %d), restarts %d, rebuilds %d, behind %v, gaps %v",
			a.Next(), want, a.Stats.Restarts, *rebuilds, a.Stats.Behind, s.gaps)
	}
}
