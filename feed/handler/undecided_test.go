package handler

import (
	"fmt"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// undecidedDay plays packets 0 to 9 of pkts (fixedPackets of 3 messages,
// from 1) on every line, 1 ms apart from an hour, then line A's packet 11
// (at 10 ms) ahead of its packet 10 (300 µs, more than Grace, later): a
// line that reordered two of its packets by Grace or more, or one whose
// packet 11 is corrupt. Packet 11 is left held at next (34), undecided
// (see Arbiter.undecided), until line A's next packet. It returns the
// stamp of line A's packet 10.
func undecidedDay(t *testing.T, cfg ArbiterConfig, pkts [][]byte) (*Arbiter, *sink, int64) {
	t.Helper()
	a, s := newTestArbiter(t, cfg)
	at := int64(time.Hour)
	for i := range 10 {
		for l := range a.cfg.Lines {
			a.Offer(l, pkts[i], at+int64(i)*int64(time.Millisecond))
		}
	}
	at += 10 * int64(time.Millisecond)
	a.Offer(0, pkts[11], at)
	at += int64(300 * time.Microsecond)
	a.Offer(0, pkts[10], at)
	if a.Pending() != 1 || a.Next() != 34 || !a.waiting {
		t.Fatalf("setup: pending %d, next %d, waiting %v; want packet 11 held undecided at 34", a.Pending(), a.Next(), a.waiting)
	}
	return a, s, at
}

// recoveringDay plays packets 0 to 9 of pkts (fixedPackets of 3
// messages, from 1) on both lines 1 ms apart from an hour, then line B's
// packet 13 and an empty poll Hold later: packets 10 to 12 are handed to
// a recovery source, which takes them. It returns a time after that.
func recoveringDay(t *testing.T, pkts [][]byte) (*Arbiter, *sink, int64) {
	t.Helper()
	a, s := recoveredDayStart(t, pkts)
	start, ms := int64(time.Hour), int64(time.Millisecond)
	a.Offer(1, pkts[13], start+13*ms)
	a.Tick(start + 13*ms + int64(defaultHold))
	if r, ok := a.Recovering(); !ok || r != (moldudp64.Range{First: 31, Count: 9}) {
		t.Fatalf("setup: recovering %v %v; want [31, 40)", r, ok)
	}
	return a, s, start + 14*ms + int64(defaultHold)
}

// recoveredDayStart plays packets 0 to 9 of pkts on both lines 1 ms apart
// from an hour to an Arbiter whose recovery source takes every hole.
func recoveredDayStart(t *testing.T, pkts [][]byte) (*Arbiter, *sink) {
	t.Helper()
	a, s := newTestArbiter(t, ArbiterConfig{Lines: 2})
	a.SetMissing(func(moldudp64.Range, int64) bool { return true })
	for i := range 10 {
		a.Offer(0, pkts[i], int64(time.Hour)+int64(i)*int64(time.Millisecond))
		a.Offer(1, pkts[i], int64(time.Hour)+int64(i)*int64(time.Millisecond))
	}
	return a, s
}

// heartbeatAt returns a heartbeat of testSession at seq.
func heartbeatAt(seq uint64) []byte {
	return append([]byte(nil), moldudp64.NewBuilder(testSession, seq, 0).Heartbeat()...)
}

// endOfSessionAt returns an End of Session packet of testSession at seq.
func endOfSessionAt(seq uint64) []byte {
	return append([]byte(nil), moldudp64.NewBuilder(testSession, seq, 0).EndOfSession()...)
}

// TestArbiterUndecidedDecided: what decides a packet left held undecided,
// and how: line A's next packet past it (a reorder: delivered), the other
// line's copy of it, line A's heartbeat or End of Session past it, an
// empty poll Hold after line A's latest packet (dropped), a freeze and a
// resume in between.
func TestArbiterUndecidedDecided(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 20, 3)
	ms := int64(time.Millisecond)
	for _, tc := range []struct {
		name  string
		lines int
		then  func(a *Arbiter, at int64)
		got   uint64 // messages delivered
		c     uint64 // line A's contradicted
		ended bool
	}{
		{"line's next packet", 1, func(a *Arbiter, at int64) { a.Offer(0, pkts[12], at+ms) }, 39, 0, false},
		{"other line's copy", 2, func(a *Arbiter, at int64) { a.Offer(1, pkts[10], at+ms); a.Offer(1, pkts[11], at+ms) }, 36, 0, false},
		{"line's heartbeat past it", 1, func(a *Arbiter, at int64) { a.Offer(0, heartbeatAt(37), at+ms) }, 36, 0, false},
		{"line's End of Session past it", 1, func(a *Arbiter, at int64) { a.Offer(0, endOfSessionAt(37), at+ms) }, 36, 0, true},
		{"empty poll before Hold", 1, func(a *Arbiter, at int64) { a.Tick(at + int64(defaultHold) - 1) }, 33, 0, false},
		{"empty poll after Hold", 1, func(a *Arbiter, at int64) { a.Tick(at + int64(defaultHold)) }, 33, 1, false},
		{"frozen, the line's next packet", 1, func(a *Arbiter, at int64) {
			a.Freeze()
			a.Offer(0, pkts[12], at+ms)
			a.Unfreeze(0)
		}, 39, 0, false},
		{"a recovery answer at it, cut elsewhere", 1, func(a *Arbiter, at int64) {
			ans := fixedPackets(t, testSession, 34, 1, 6)[0] // packets 11 and 12's messages
			p, err := moldudp64.Parse(ans)
			if err != nil {
				t.Fatal(err)
			}
			a.OfferRecovered(ans, p, at+ms)
		}, 39, 0, false},
		{"End of Session at it, again", 1, func(a *Arbiter, at int64) {
			a.Offer(0, endOfSessionAt(34), at+ms) // stale: below the line's highest
			a.Offer(0, endOfSessionAt(34), at+2*ms)
		}, 33, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, s, at := undecidedDay(t, ArbiterConfig{Lines: tc.lines}, pkts)
			tc.then(a, at)
			want := 1
			if tc.got != 33 || tc.c != 0 {
				want = 0
			}
			if s.got != tc.got || len(s.gaps) != 0 || a.Stats.Lines[0].Contradicted != tc.c || a.Pending() != want || a.Ended() != tc.ended {
				t.Fatalf("delivered %d (want %d), gaps %v, contradicted %d (want %d), pending %d (want %d), ended %v", s.got, tc.got, s.gaps, a.Stats.Lines[0].Contradicted, tc.c, a.Pending(), want, a.Ended())
			}
		})
	}
}

// TestArbiterUndecidedOtherLineReadAhead: line B lost packet 11, and the
// receive loop reads B's queue (packets 10 to 39, 1 ms apart) before line
// A's next packets, stamped as B's. Line A reordered packets 10 and 11:
// everything is delivered, no gap, nothing contradicted. Line A's packet
// 12 decides the packet left held, whatever the stamps of B's queue say.
func TestArbiterUndecidedOtherLineReadAhead(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	a, s, _ := undecidedDay(t, ArbiterConfig{Lines: 2}, pkts)
	start, ms := int64(time.Hour), int64(time.Millisecond)
	for i := 10; i < len(pkts); i++ {
		if i != 11 {
			a.Offer(1, pkts[i], start+int64(i)*ms)
		}
	}
	for i := 12; i < len(pkts); i++ {
		a.Offer(0, pkts[i], start+int64(i)*ms)
	}
	a.Tick(start + int64(len(pkts))*ms + int64(time.Second))
	if c := a.Stats.Lines[0].Contradicted; s.got != 120 || len(s.gaps) != 0 || c != 0 {
		t.Fatalf("delivered %d of 120, gaps %v, contradicted %d", s.got, s.gaps, c)
	}
}

// TestArbiterUndecidedClockStepBack: line A reordered packets 10 and 11
// and goes down; the wall clock steps back an hour; line B, which lost
// packet 11, brings packets 12 to 39, 1 ms apart, an empty poll after
// each. The packet left held waits for line A for Hold from the step, not
// for as long as the step: dropped (a gap, line A gone), and line B's
// packets delivered as they come.
func TestArbiterUndecidedClockStepBack(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	a, s, at := undecidedDay(t, ArbiterConfig{Lines: 2}, pkts)
	now := at - int64(time.Hour)
	a.Tick(now)
	for i := 12; i < len(pkts); i++ {
		now += int64(time.Millisecond)
		a.Offer(1, pkts[i], now)
		a.Tick(now)
	}
	if s.got != 117 || len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 34, Count: 3}) || a.Pending() != 0 {
		t.Fatalf("delivered %d of 117, gaps %v (want [{34 3}]), pending %d", s.got, s.gaps, a.Pending())
	}
}

// TestArbiterUndecidedOtherLineAtItsNumbers: line A brings a corrupt
// packet (packet 5's messages under packet 11's number) ahead of its
// packet 10, by more than Grace; line B, which lost packet 10, brings
// packet 11 before line A does. The corrupt packet is dropped and counted
// as contradicted, as it was before packets were left held undecided; it
// was dropped uncounted, as a copy of B's.
func TestArbiterUndecidedOtherLineAtItsNumbers(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	corrupt := movedAhead(pkts[5], 18)
	a, s := newTestArbiter(t, ArbiterConfig{Lines: 2})
	start, ms := int64(time.Hour), int64(time.Millisecond)
	for i, p := range pkts {
		at := start + int64(i)*ms
		switch i {
		case 10:
			a.Offer(0, corrupt, at-ms/2)
			a.Offer(0, p, at+ms/2)
		case 11:
			a.Offer(1, p, at)
			a.Offer(0, p, at+ms/2)
		default:
			a.Offer(1, p, at)
			a.Offer(0, p, at+ms/2)
		}
	}
	a.Tick(start + int64(len(pkts))*ms + int64(time.Second))
	wantAllDelivered(t, a, s, 120, 1)
}

// TestArbiterUndecidedRecoveredAtItsNumbers: as
// TestArbiterUndecidedOtherLineAtItsNumbers, the corrupt packet left held
// undecided inside a range being re-requested (packets 10 to 12, lost on
// both lines, line A's packet 10 arriving late), whose answer brings
// packet 11: the corrupt packet is dropped and counted as contradicted.
// Cut elsewhere (one answer of packets 10 to 12's messages): the same.
func TestArbiterUndecidedRecoveredAtItsNumbers(t *testing.T) {
	for _, cut := range []bool{false, true} {
		t.Run(fmt.Sprint("cut ", cut), func(t *testing.T) { testArbiterUndecidedRecovered(t, cut) })
	}
}

func testArbiterUndecidedRecovered(t *testing.T, cut bool) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	a, s, now := recoveringDay(t, pkts)
	ms := int64(time.Millisecond)
	a.Offer(0, movedAhead(pkts[5], 18), now)
	a.Offer(0, pkts[10], now+ms)
	if !a.waiting {
		t.Fatal("the corrupt packet is not left held undecided")
	}
	answers := [][]byte{pkts[11], pkts[12]}
	if cut {
		answers = fixedPackets(t, testSession, 31, 1, 9) // packets 10 to 12's messages
	}
	for _, ans := range answers {
		p, err := moldudp64.Parse(ans)
		if err != nil {
			t.Fatal(err)
		}
		a.OfferRecovered(ans, p, now+2*ms)
	}
	for i := 11; i < len(pkts); i++ {
		a.Offer(0, pkts[i], now+int64(i-8)*ms)
		a.Offer(1, pkts[i], now+int64(i-8)*ms)
	}
	a.Tick(now + int64(time.Second))
	wantAllDelivered(t, a, s, 120, 1)
}

// TestArbiterUndecidedHeartbeatAtIt: line A brings a heartbeat at the
// first number of the packet left held undecided: the next packet it
// sends is that number, and the held one, brought more than Grace before
// it, is not its own: dropped as contradicted at once, not an empty poll
// Hold after the heartbeat. So does an End of Session at it (stale: below
// the line's highest).
func TestArbiterUndecidedHeartbeatAtIt(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 20, 3)
	for name, pkt := range map[string][]byte{"heartbeat": heartbeatAt(34), "End of Session": endOfSessionAt(34)} {
		t.Run(name, func(t *testing.T) {
			a, s, at := undecidedDay(t, ArbiterConfig{Lines: 1}, pkts)
			a.Offer(0, pkt, at+int64(time.Millisecond))
			if c := a.Stats.Lines[0].Contradicted; a.Pending() != 0 || c != 1 || s.got != 33 {
				t.Fatalf("pending %d, contradicted %d, delivered %d; want 0, 1, 33", a.Pending(), c, s.got)
			}
		})
	}
}

// TestArbiterUndecidedSessionChange: no session configured; while line
// A's packet is left held undecided, line B brings three packets of the
// next session within Hold, and a fourth once the followed session is
// silent (LineTimeout): the next session replaces it with the packet
// still held. It is forgotten with the old session (never delivered,
// nothing counted as contradicted), and the next session is delivered
// whole from 1, nothing left held.
func TestArbiterUndecidedSessionChange(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 20, 3)
	next := moldudp64.NewSession("NEXT")
	day := fixedPackets(t, next, 1, 20, 3)
	a, s, at := undecidedDay(t, ArbiterConfig{Lines: 2, LineTimeout: time.Second}, pkts)
	a.SetSessionFunc(func(_, _ moldudp64.Session) { s.next = 0 })
	ms := int64(time.Millisecond)
	for i := range 3 {
		a.Offer(1, day[i], at+int64(i+1)*ms)
	}
	if a.Pending() != 1 || a.Session() != testSession {
		t.Fatalf("before the change: pending %d, session %q", a.Pending(), a.Session())
	}
	now := at + int64(time.Second) + ms
	for i := 3; i < len(day); i++ {
		now += ms
		a.Offer(1, day[i], now)
		a.Offer(0, day[i], now)
	}
	a.Tick(now + int64(time.Second))
	if a.Session() != next || a.Stats.SessionChanges != 1 || s.got != 33+60 || a.Pending() != 0 || a.Stats.Lines[0].Contradicted != 0 {
		t.Fatalf("session %q, changes %d, delivered %d (want 93), pending %d, contradicted %d", a.Session(), a.Stats.SessionChanges, s.got, a.Pending(), a.Stats.Lines[0].Contradicted)
	}
}

// TestArbiterUndecidedArenaFull: line A reordered packets 10 and 11 and
// goes quiet; line B, which lost packet 11, brings packets 12 to 19 into
// a hold-back arena of 4. With no room to wait for line A, the packet left
// held is dropped (contradicted), its numbers declared, and line B's
// packets delivered as they come, nothing left held.
func TestArbiterUndecidedArenaFull(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 20, 3)
	a, s, at := undecidedDay(t, ArbiterConfig{Lines: 2, MaxPending: 4}, pkts)
	for i := 12; i < len(pkts); i++ {
		a.Offer(1, pkts[i], at+int64(i-11)*int64(time.Millisecond))
	}
	if s.got != 57 || len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 34, Count: 3}) || a.Pending() > 4 || a.Stats.ForcedByFull == 0 || a.Stats.Lines[0].Contradicted != 1 {
		t.Fatalf("delivered %d of 57, gaps %v, pending %d, forced %d, contradicted %d", s.got, s.gaps, a.Pending(), a.Stats.ForcedByFull, a.Stats.Lines[0].Contradicted)
	}
}

// TestArbiterUndecidedAbandon: line A's packet 11, brought ahead of its
// packet 10, is left held undecided inside a range being re-requested
// (packets 10 to 12, line B lost them) when the re-request is given up:
// nothing is declared at it, and line A's packet 12 then decides it (a
// reorder): everything delivered, no gap.
func TestArbiterUndecidedAbandon(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	a, s, now := recoveringDay(t, pkts)
	ms := int64(time.Millisecond)
	a.Offer(0, pkts[11], now)
	a.Offer(0, pkts[10], now+ms)
	if _, ok := a.Recovering(); !ok || !a.waiting {
		t.Fatalf("setup: recovering %v, waiting %v", ok, a.waiting)
	}
	a.Abandon(now + 2*ms)
	if len(s.gaps) != 0 || a.Stats.RecoveriesFailed != 1 {
		t.Fatalf("after Abandon: gaps %v, failed %d", s.gaps, a.Stats.RecoveriesFailed)
	}
	for i := 12; i < len(pkts); i++ {
		a.Offer(0, pkts[i], now+int64(i-9)*ms)
		if i != 12 {
			a.Offer(1, pkts[i], now+int64(i-9)*ms)
		}
	}
	a.Tick(now + int64(time.Second))
	wantAllDelivered(t, a, s, 120, 0)
}

// TestArbiterRecoveringUpToStray: line A brings a packet with a corrupt
// sequence number (20,000 ahead) as its latest, and the hole before it is
// handed to a recovery source once Hold ran out; both lines then go on
// below it, in order, to the day's end. The packet is dropped as
// contradicted and the recovery ends, filled by the lines: nothing held,
// nothing asked, nothing declared. Before, the recovery went on up to the
// packet for ever (TestArbiterLinesModel seeds 2649, 7991, 8123: 'pending
// 1, next 898 (the day ends at 898)'); a re-request server given up on it
// had the hole up to it declared, the feed below it dropped as duplicates.
func TestArbiterRecoveringUpToStray(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	a, s := recoveredDayStart(t, pkts)
	start, ms := int64(time.Hour), int64(time.Millisecond)
	stray := movedAhead(pkts[12], 20_000)
	a.Offer(0, stray, start+10*ms)
	a.Tick(start + 10*ms + int64(defaultHold))
	if r, ok := a.Recovering(); !ok || r != (moldudp64.Range{First: 31, Count: 20_006}) {
		t.Fatalf("setup: recovering %v %v; want [31, 20037)", r, ok)
	}
	now := start + 11*ms + int64(defaultHold)
	for i := 10; i < len(pkts); i++ {
		a.Offer(0, pkts[i], now+int64(i)*ms)
		a.Offer(1, pkts[i], now+int64(i)*ms)
	}
	a.Tick(now + int64(time.Hour))
	r, ok := a.Recovering()
	if ok || a.Pending() != 0 || a.Stats.RecoveriesFilled != 1 {
		t.Fatalf("at the day's end: recovering %v %v, pending %d, next %d, filled %d; want none, 0, 121, 1", r, ok, a.Pending(), a.Next(), a.Stats.RecoveriesFilled)
	}
	wantAllDelivered(t, a, s, 120, 1)
}
