package handler

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// Tests of the session change after an End of Session (session.go).

var strayName = moldudp64.NewSession("STRAY")

// endOfSession returns an End of Session packet of s with sequence number seq.
func endOfSession(s moldudp64.Session, seq uint64) []byte {
	return moldudp64.AppendHeader(nil, s, seq, moldudp64.EndOfSessionCount)
}

// nextAfter is the sequence number after pkts' last message.
func nextAfter(t *testing.T, pkts [][]byte) uint64 {
	t.Helper()
	p, err := moldudp64.Parse(pkts[len(pkts)-1])
	if err != nil {
		t.Fatal(err)
	}
	return p.Next()
}

func wrongSession(a *Arbiter) uint64 {
	return a.Stats.Lines[0].WrongSession + a.Stats.Lines[1].WrongSession
}

// noChange fails t on any session change after the first lock.
func noChange(t *testing.T, a *Arbiter) {
	a.SetSessionFunc(func(o, n moldudp64.Session) {
		if o != (moldudp64.Session{}) {
			t.Fatalf("session changed from %q to %q", o, n)
		}
	})
}

func staleEnds(a *Arbiter) uint64 {
	return a.Stats.Lines[0].StaleEndOfSession + a.Stats.Lines[1].StaleEndOfSession
}

// TestSessionChangeAfterEnd: the old session ends (End of Session with the
// next sequence number) and keeps repeating its end on both lines every
// 100 ms, so it is never silent for LineTimeout; the new session starts
// meanwhile. It is followed as soon as it confirms, every one of its
// messages is delivered (the stash replayed), and the old session's later
// End of Session packets count as another session's.
func TestSessionChangeAfterEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 20, 5, rng)
	newPkts := packets(t, testSession, 50, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	var changes [][2]moldudp64.Session
	a.SetSessionFunc(func(o, n moldudp64.Session) { changes = append(changes, [2]moldudp64.Session{o, n}) })
	now := int64(1)
	for _, p := range oldPkts {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	if want := totalMessages(t, oldPkts); a.Session() != old || s.got != want {
		t.Fatalf("following %q, delivered %d of %d", a.Session(), s.got, want)
	}
	eos := endOfSession(old, nextAfter(t, oldPkts))
	a.Offer(0, eos, now)
	a.Offer(1, eos, now)
	if !a.Ended() || a.Stats.EndOfSession != 1 {
		t.Fatalf("ended %v, end of session %d", a.Ended(), a.Stats.EndOfSession)
	}
	got := s.got
	// The sink follows the new session from its start. Both lines' copies
	// of a packet count towards SessionConfirm.
	s.next = 0
	confirmAt := (defaultSessionConfirm+1)/2 - 1
	for i, p := range newPkts {
		now += int64(100 * time.Millisecond)
		a.Offer(0, eos, now)
		a.Offer(1, eos, now)
		a.Offer(0, p, now+1)
		a.Offer(1, p, now+1)
		want := old
		if i >= confirmAt {
			want = testSession
		}
		if a.Session() != want {
			t.Fatalf("following %q after %d packets of the new session on both lines, want %q", a.Session(), i+1, want)
		}
	}
	if want := totalMessages(t, newPkts); s.got-got != want || len(s.gaps) != 0 {
		t.Fatalf("delivered %d of the new session's %d, gaps %v", s.got-got, want, s.gaps)
	}
	if a.Stats.SessionChanges != 1 || len(changes) != 2 || changes[1] != [2]moldudp64.Session{old, testSession} {
		t.Fatalf("session changes %d, callbacks %v", a.Stats.SessionChanges, changes)
	}
	// Another session's: the new session's confirming packets, then every
	// End of Session of the old one after the change.
	if ws, want := wrongSession(a), uint64(2*(confirmAt+1)+2*(len(newPkts)-confirmAt-1)); ws != want {
		t.Fatalf("wrong session %d, want %d", ws, want)
	}
	if staleEnds(a) != 0 || a.Ended() {
		t.Fatalf("stale ends %d, ended %v", staleEnds(a), a.Ended())
	}
}

// TestStaleEndOfSessionIgnored: a live session receives an End of Session
// of its own behind what it delivered (a late copy or a replay); then a
// stray session sends a consistent run, at once and then between the live
// session's packets. The stale end changes nothing: the live session stays
// followed and whole, every stray packet counts as another session's.
func TestStaleEndOfSessionIgnored(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	live := packets(t, testSession, 100, 5, rng)
	stray := packets(t, strayName, 60, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	noChange(t, a)
	now := int64(1)
	offer := func(p []byte) {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	for _, p := range live[:50] {
		offer(p)
	}
	p10, _ := moldudp64.Parse(live[10])
	a.Offer(0, endOfSession(testSession, p10.Seq), now)
	si := 0
	for ; si < defaultSessionConfirm+1; si++ {
		a.Offer(si%2, stray[si], now)
	}
	if a.Session() != testSession {
		t.Fatalf("a stale End of Session let %q take the live feed over", a.Session())
	}
	if a.ended || a.Stats.EndOfSession != 0 || a.Stats.Lines[0].StaleEndOfSession != 1 {
		t.Fatalf("stale end: ended %v, end of session %d, line stats %+v", a.ended, a.Stats.EndOfSession, a.Stats.Lines[0])
	}
	for _, p := range live[50:] {
		offer(p)
		a.Offer(si%2, stray[si], now)
		si++
	}
	liveKept(t, a, s, live, si, 1)
}

// TestEndOfSessionBehindHeldIsStale: an End of Session at the next expected
// sequence number, but behind packets already held back (line A lost one,
// line B lags), contradicts what was received: stale, it announces nothing.
func TestEndOfSessionBehindHeldIsStale(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	pkts := packets(t, testSession, 20, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{})
	now := int64(1)
	for i, p := range pkts {
		if i != 10 {
			a.Offer(0, p, now)
		}
		if i < 10 {
			a.Offer(1, p, now)
		}
	}
	p10, _ := moldudp64.Parse(pkts[10])
	if a.Next() != p10.Seq || a.Pending() == 0 {
		t.Fatalf("next %d pending %d, want %d and some", a.Next(), a.Pending(), p10.Seq)
	}
	a.Offer(1, endOfSession(testSession, p10.Seq), now)
	if a.ended || a.Stats.EndOfSession != 0 || a.Stats.Lines[1].StaleEndOfSession != 1 {
		t.Fatalf("ended %v, end of session %d, line B %+v", a.ended, a.Stats.EndOfSession, a.Stats.Lines[1])
	}
	for _, p := range pkts[10:] {
		a.Offer(1, p, now)
	}
	if want := totalMessages(t, pkts); s.got != want || len(s.gaps) != 0 {
		t.Fatalf("delivered %d of %d, gaps %v", s.got, want, s.gaps)
	}
	// The real end, on each line: announced once, repeated, not stale.
	end := endOfSession(testSession, nextAfter(t, pkts))
	a.Offer(0, end, now)
	a.Offer(1, end, now)
	a.Offer(0, end, now)
	if !a.Ended() || a.Stats.EndOfSession != 1 || staleEnds(a) != 1 {
		t.Fatalf("ended %v, end of session %d, stale %d", a.Ended(), a.Stats.EndOfSession, staleEnds(a))
	}
}

// TestDataAfterEndWithdrawsIt: the session announces its end, then sends
// more data after all. The end is withdrawn, so a stray session's run (at
// once, then between the live packets) does not take the feed over.
func TestDataAfterEndWithdrawsIt(t *testing.T) {
	rng := rand.New(rand.NewPCG(37, 38))
	live := packets(t, testSession, 60, 5, rng)
	stray := packets(t, strayName, 40, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	noChange(t, a)
	now := int64(1)
	offer := func(p []byte) {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	for _, p := range live[:30] {
		offer(p)
	}
	offer(endOfSession(testSession, nextAfter(t, live[:30])))
	if !a.Ended() || a.Stats.EndOfSession != 1 {
		t.Fatalf("ended %v, end of session %d", a.Ended(), a.Stats.EndOfSession)
	}
	offer(live[30])
	si := 0
	for ; si < defaultSessionConfirm+1; si++ {
		a.Offer(si%2, stray[si], now)
	}
	if a.Session() != testSession {
		t.Fatalf("%q took over a session that went on after its end", a.Session())
	}
	if a.Ended() || a.ended {
		t.Fatal("data after the end did not withdraw it")
	}
	for _, p := range live[31:] {
		offer(p)
		a.Offer(si%2, stray[si], now)
		si++
	}
	liveKept(t, a, s, live, si, 0)
}

// TestEndOfSessionFarAheadIsSuspect: an End of Session further ahead than
// MaxJump is suspect like data: alone it is dropped and ends nothing; a
// stray run after it does not take over.
func TestEndOfSessionFarAheadIsSuspect(t *testing.T) {
	rng := rand.New(rand.NewPCG(39, 40))
	live := packets(t, testSession, 20, 5, rng)
	stray := packets(t, strayName, 10, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{Lines: 1, MaxJump: 1000})
	noChange(t, a)
	now := int64(1)
	for _, p := range live[:10] {
		now++
		a.Offer(0, p, now)
	}
	a.Offer(0, endOfSession(testSession, a.Next()+5000), now)
	if a.ended || a.Stats.Lines[0].Suspect != 1 || a.Stats.EndOfSession != 0 {
		t.Fatalf("ended %v, end of session %d, line %+v", a.ended, a.Stats.EndOfSession, a.Stats.Lines[0])
	}
	for _, p := range stray {
		a.Offer(0, p, now)
	}
	for _, p := range live[10:] {
		now++
		a.Offer(0, p, now)
	}
	if want := totalMessages(t, live); a.Session() != testSession || s.got != want || len(s.gaps) != 0 {
		t.Fatalf("following %q, delivered %d of %d, gaps %v", a.Session(), s.got, want, s.gaps)
	}
}

// TestSessionChangeWaitsForRecoveryBeforeEnd: the old session ended while a
// range before its end was being re-requested. The new session confirms
// meanwhile but is followed only once the range is filled, so the old
// session's last messages are delivered, not dropped; then none of the new
// session's messages is lost either (the packet that found the stash full
// is delivered after the replay).
func TestSessionChangeWaitsForRecoveryBeforeEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 20, 5, rng)
	newPkts := packets(t, testSession, 30, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{Lines: 1, Grace: time.Millisecond, Hold: 10 * time.Millisecond})
	var asked []moldudp64.Range
	a.SetMissing(func(r moldudp64.Range, _ int64) bool {
		asked = append(asked, r)
		return true
	})
	a.SetSessionFunc(func(o, n moldudp64.Session) {
		if want := totalMessages(t, oldPkts); o == old && s.got != want {
			t.Fatalf("changed to %q with %d of the old session's %d messages delivered", n, s.got, want)
		}
	})
	now := int64(1)
	for i, p := range oldPkts {
		if i != 10 {
			now += int64(time.Microsecond)
			a.Offer(0, p, now)
		}
	}
	eos := endOfSession(old, nextAfter(t, oldPkts))
	a.Offer(0, eos, now)
	now += int64(2 * time.Millisecond)
	a.Tick(now)
	p10, _ := moldudp64.Parse(oldPkts[10])
	if r, ok := a.Recovering(); !ok || r != p10.Range() || !a.ended || a.Ended() {
		t.Fatalf("recovering %v %v, ended %v/%v; want %v", r, ok, a.ended, a.Ended(), p10.Range())
	}
	for _, p := range newPkts[:defaultSessionConfirm] {
		now += int64(time.Millisecond)
		a.Offer(0, eos, now)
		a.Offer(0, p, now)
	}
	if a.Session() != old || a.Stats.SessionChanges != 0 {
		t.Fatalf("following %q while the old session's end is recovered", a.Session())
	}
	a.OfferRecovered(oldPkts[10], p10, now)
	if want := totalMessages(t, oldPkts); s.got != want || len(s.gaps) != 0 || !a.Ended() {
		t.Fatalf("old session: delivered %d of %d, gaps %v, ended %v", s.got, want, s.gaps, a.Ended())
	}
	s.next = 0 // the sink follows the new session from its start
	got := s.got
	for _, p := range newPkts[defaultSessionConfirm:] {
		now += int64(time.Millisecond)
		a.Offer(0, eos, now)
		a.Offer(0, p, now)
	}
	a.Tick(now + int64(time.Second))
	if a.Session() != testSession || a.Stats.SessionChanges != 1 {
		t.Fatalf("following %q, session changes %d", a.Session(), a.Stats.SessionChanges)
	}
	if want := totalMessages(t, newPkts); s.got-got != want || len(s.gaps) != 0 || len(asked) != 1 {
		t.Fatalf("new session: delivered %d of %d, gaps %v, recoveries asked %v", s.got-got, want, s.gaps, asked)
	}
}

// TestEndedSessionNotFollowedBack: after a session change, the old session
// goes on repeating its End of Session on both lines while the new one
// falls silent for longer than LineTimeout. The old session's repeated ends
// agree with each other, but an ended session is never a candidate: the new
// one stays followed and its later packets are delivered.
func TestEndedSessionNotFollowedBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 10, 5, rng)
	newPkts := packets(t, testSession, 30, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: 50 * time.Millisecond})
	var changes int
	a.SetSessionFunc(func(o, n moldudp64.Session) { changes++ })
	now := int64(1)
	offer := func(p []byte) {
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	for _, p := range oldPkts {
		now += int64(time.Millisecond)
		offer(p)
	}
	eos := endOfSession(old, nextAfter(t, oldPkts))
	offer(eos)
	got := s.got
	s.next = 0
	for _, p := range newPkts[:10] {
		now += int64(time.Millisecond)
		offer(eos)
		offer(p)
	}
	if a.Session() != testSession || changes != 2 {
		t.Fatalf("following %q after the new session's first packets, %d callbacks", a.Session(), changes)
	}
	// The new session is silent for 20 LineTimeouts; the old one repeats
	// its end every 10 ms.
	for range 100 {
		now += int64(10 * time.Millisecond)
		offer(eos)
	}
	if a.Session() != testSession || changes != 2 || a.Stats.SessionChanges != 1 {
		t.Fatalf("following %q after the old session's repeated ends, %d callbacks, %d changes", a.Session(), changes, a.Stats.SessionChanges)
	}
	for _, p := range newPkts[10:] {
		now += int64(time.Millisecond)
		offer(p)
	}
	if want := totalMessages(t, newPkts); s.got-got != want || len(s.gaps) != 0 {
		t.Fatalf("delivered %d of the new session's %d, gaps %v", s.got-got, want, s.gaps)
	}
}

// TestForgedCurrentEndThenOneStrayPacket: a stray sender confirmed a run
// early in the day; a forged End of Session at the current sequence number,
// then one stray packet. Announcing the end drops every candidate's count,
// so the stray must confirm again before the next live packet withdraws the
// end: the live session stays followed (review 9, M1).
func TestForgedCurrentEndThenOneStrayPacket(t *testing.T) {
	rng := rand.New(rand.NewPCG(91, 92))
	live := packets(t, testSession, 100, 5, rng)
	stray := packets(t, strayName, 10, 5, rng)
	a, _ := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	noChange(t, a)
	now := int64(1)
	for i, p := range live {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
		if i < defaultSessionConfirm {
			// early in the day: a stray sender's short consistent run
			a.Offer(0, stray[i], now)
		}
		if i == 50 {
			a.Offer(0, endOfSession(testSession, a.Next()), now) // forged, current
			a.Offer(0, stray[defaultSessionConfirm], now)        // one stray packet
		}
	}
}

// Review 9: a legitimate session end; a stray candidate confirmed long
// before wins over the real next session with a single packet, and the
// real next session is then blocked while the stray keeps sending.
// TestStrayConfirmedBeforeEndDoesNotWin: a stray run confirmed an hour
// before the followed session really ends; the real next session then
// starts on both lines while the stray goes on on one. Only packets after
// the end count, so the real next session confirms first (review 9, M2).
func TestStrayConfirmedBeforeEndDoesNotWin(t *testing.T) {
	rng := rand.New(rand.NewPCG(93, 94))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 50, 5, rng)
	stray := packets(t, strayName, 100, 5, rng)
	newPkts := packets(t, testSession, 50, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(1)
	for i, p := range oldPkts {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
		if i < defaultSessionConfirm {
			a.Offer(0, stray[i], now)
		}
	}
	now += int64(time.Hour) // hours of trading later (heartbeats elided)
	eos := endOfSession(old, a.Next())
	a.Offer(0, eos, now)
	a.Offer(1, eos, now)
	s.next = 0 // the sink follows whatever session comes next
	s.t = nopTB{t}
	si := defaultSessionConfirm
	for _, p := range newPkts {
		now += int64(10 * time.Millisecond)
		a.Offer(0, stray[si], now) // the stray keeps sending now and then
		si++
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	if a.Session() != testSession {
		t.Fatalf("following %q after the real next session sent %d packets on both lines (session changes %d)", a.Session(), len(newPkts), a.Stats.SessionChanges)
	}
}

type nopTB struct{ testing.TB }

func (nopTB) Fatalf(string, ...any) {}

// TestNewSessionBeforeEnd: the new session's first packet arrives on both
// lines before the old session's End of Session. Announcing the end drops
// the candidates' counts, not their stashes, so the new session is followed
// from its first message with nothing lost (review 10, M1).
func TestNewSessionBeforeEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 20, 5, rng)
	newPkts := packets(t, testSession, 50, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(1)
	for _, p := range oldPkts {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	got := s.got
	s.next = 0
	eos := endOfSession(old, nextAfter(t, oldPkts))
	// First packet of the new session, both lines, before the end.
	now += int64(time.Millisecond)
	a.Offer(0, newPkts[0], now)
	a.Offer(1, newPkts[0], now)
	for _, p := range newPkts[1:] {
		now += int64(10 * time.Millisecond)
		a.Offer(0, eos, now)
		a.Offer(1, eos, now)
		a.Offer(0, p, now+1)
		a.Offer(1, p, now+1)
	}
	for i := 0; i < 50; i++ {
		now += int64(100 * time.Millisecond)
		a.Tick(now)
	}
	t.Logf("session %q delivered %d of %d, gaps %v", a.Session(), s.got-got, totalMessages(t, newPkts), s.gaps)
	if want := totalMessages(t, newPkts); s.got-got != want || len(s.gaps) != 0 {
		t.Fatalf("delivered %d of the new session's %d, gaps %v", s.got-got, want, s.gaps)
	}
}

// TestHeartbeatOnlyNewSessionConfirms: with one line, a new session that
// sends only heartbeats, one a second, still confirms: a candidate's count
// starts again only after candidateSilence LineTimeouts of silence
// (review 10, L1).
func TestHeartbeatOnlyNewSessionConfirms(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 20, 5, rng)
	a, _ := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(1)
	for _, p := range oldPkts {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
	}
	eos := endOfSession(old, nextAfter(t, oldPkts))
	hb := moldudp64.AppendHeader(nil, testSession, 1, 0)
	for i := 0; i < 20; i++ {
		now += int64(time.Second)
		a.Offer(0, eos, now)
		a.Offer(0, hb, now+1)
	}
	if a.Session() != testSession {
		t.Fatalf("following %q after 20 s of the new session's heartbeats", a.Session())
	}
}

// TestEndLostOnFastLine: line A loses the End of Session and line B is a
// few packets behind; the new session is still followed whole.
func TestEndLostOnFastLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 20, 5, rng)
	newPkts := packets(t, testSession, 50, 5, rng)
	eos := endOfSession(old, nextAfter(t, oldPkts))
	var stream [][]byte
	stream = append(stream, oldPkts...)
	stream = append(stream, eos)
	stream = append(stream, newPkts...)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(1)
	const lag = 3
	got := uint64(0)
	for i := 0; i < len(stream)+lag; i++ {
		now += int64(time.Millisecond)
		if i < len(stream) && i != len(oldPkts) { // A loses the EOS
			if i == len(oldPkts)+1 {
				got = s.got
				s.next = 0
			}
			a.Offer(0, stream[i], now)
		}
		if j := i - lag; j >= 0 && j < len(stream) {
			if j == len(oldPkts) && got == 0 {
				got = s.got
				s.next = 0
			}
			a.Offer(1, stream[j], now)
		}
	}
	for i := 0; i < 50; i++ {
		now += int64(100 * time.Millisecond)
		a.Tick(now)
	}
	if want := totalMessages(t, newPkts); a.Session() != testSession || s.got-got != want || len(s.gaps) != 0 {
		t.Fatalf("following %q, delivered %d of the new session's %d, gaps %v", a.Session(), s.got-got, want, s.gaps)
	}
}

// liveKept fails t unless a still follows testSession with no session
// change and every message of live delivered without a gap, the strays
// stray packets counted as another session's, and stale End of Session
// packets counted.
func liveKept(t *testing.T, a *Arbiter, s *sink, live [][]byte, strays int, stale uint64) {
	t.Helper()
	if a.Session() != testSession || a.Stats.SessionChanges != 0 {
		t.Fatalf("following %q, session changes %d", a.Session(), a.Stats.SessionChanges)
	}
	if want := totalMessages(t, live); s.got != want || len(s.gaps) != 0 {
		t.Fatalf("delivered %d of %d, gaps %v", s.got, want, s.gaps)
	}
	if wrongSession(a) != uint64(strays) || staleEnds(a) != stale {
		t.Fatalf("wrong session %d, want %d; stale ends %d, want %d", wrongSession(a), strays, staleEnds(a), stale)
	}
}

// TestEndKeptThroughLaggingFill: line A loses the day's last three
// packets and then brings the End of Session, line B, lagging, brings
// those three (the second first: held, then the first and the third) and
// loses every End of Session copy; nothing more comes. The fills are
// before the end: the session has Ended once the last is delivered, with
// nothing declared. Before, each withdrew the end, and with no repetition
// it never Ended (the soak's seed 20054: 'ended false', everything
// delivered).
func TestEndKeptThroughLaggingFill(t *testing.T) {
	a, s, live, now := endDay(t, 3)
	n := len(live)
	now += int64(time.Millisecond)
	a.Offer(0, endOfSession(testSession, nextAfter(t, live)), now)
	if !a.EndAnnounced() || a.Ended() {
		t.Fatalf("after line A's End of Session: announced %v, ended %v; want announced, not ended", a.EndAnnounced(), a.Ended())
	}
	for _, i := range []int{n - 2, n - 3, n - 1} {
		now += int64(time.Microsecond)
		a.Offer(1, live[i], now)
		if !a.EndAnnounced() {
			t.Fatalf("line B's fill, packet %d of %d, withdrew the end", i, n)
		}
	}
	if want := totalMessages(t, live); !a.Ended() || s.got != want || len(s.gaps) != 0 {
		t.Fatalf("ended %v, delivered %d of %d, gaps %v; want ended, all delivered", a.Ended(), s.got, want, s.gaps)
	}
}

// TestForgedEndAheadWithdrawnByItsLine: an End of Session ahead of
// everything received, within MaxJump (forged, or a corrupt sequence
// number), on line A at a packet's boundary 10 packets on, and a stray
// sender on line A from then on (a packet after each of the feed's,
// confirming after the end). The feed goes on on both lines, line A
// leading or lagging line B by two packets; line A's packets below the
// end, Grace or more after it, withdraw it: the feed is followed all day,
// every message delivered, nothing declared. A legitimate end stays
// announced through line A's own last packet reordered within Grace and
// a stale copy of an old packet after it, and ends the session.
func TestForgedEndAheadWithdrawnByItsLine(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, lagA := range []int{0, 2} {
		t.Run(fmt.Sprint("forged/lagA", lagA), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(91, 92))
			live := packets(t, testSession, 100, 5, rng)
			stray := packets(t, strayName, 100, 5, rng)
			a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
			a.SetSessionFunc(func(o, n moldudp64.Session) {
				if o != (moldudp64.Session{}) {
					t.Fatalf("session changed from %q to %q, delivered %d of the feed's %d messages", o, n, s.got, totalMessages(t, live))
				}
			})
			forged := nextAfter(t, live[:61])
			now, si := int64(1), 0
			for i := range len(live) + lagA {
				now += ms
				if i < len(live) {
					a.Offer(1, live[i], now)
				}
				if j := i - lagA; j >= 0 {
					a.Offer(0, live[j], now)
				}
				if i == 50 {
					a.Offer(0, endOfSession(testSession, forged), now)
				}
				if i >= 50 {
					a.Offer(0, stray[si], now)
					si++
				}
			}
			if want := totalMessages(t, live); s.got != want || len(s.gaps) != 0 || a.EndAnnounced() {
				t.Fatalf("delivered %d of %d, gaps %v, end announced %v; want all delivered, no gap, not announced", s.got, want, s.gaps, a.EndAnnounced())
			}
		})
	}
	t.Run("legitimate", func(t *testing.T) {
		a, s, live, now := endDay(t, 1)
		n := len(live)
		now += ms
		end := endOfSession(testSession, nextAfter(t, live))
		a.Offer(0, end, now)
		a.Offer(0, live[n-1], now+int64(50*time.Microsecond)) // its last packet, reordered within Grace
		a.Offer(1, live[n-1], now+ms)                         // line B lost the End of Session
		a.Offer(0, live[n-5], now+2*ms)                       // a stale copy
		a.Offer(1, live[n-5], now+2*ms)
		if want := totalMessages(t, live); !a.Ended() || s.got != want || len(s.gaps) != 0 {
			t.Fatalf("ended %v (announced %v), delivered %d of %d, gaps %v; want ended, all delivered", a.Ended(), a.EndAnnounced(), s.got, want, s.gaps)
		}
	})
	// Line A's last packet reordered behind its End of Session by Grace
	// or more: it fills the line's own hole (from where it was, not past
	// it), and line B brought it and announced the same end, or lost its
	// End of Session: the end stays.
	for _, bEnd := range []bool{true, false} {
		t.Run(fmt.Sprintf("legitimate/lastLate/lineBEnd=%v", bEnd), func(t *testing.T) {
			a, s, live, now := endDay(t, 1)
			n := len(live)
			now += ms
			end := endOfSession(testSession, nextAfter(t, live))
			a.Offer(1, live[n-1], now)
			if bEnd {
				a.Offer(1, end, now+int64(10*time.Microsecond))
			}
			a.Offer(0, end, now+int64(20*time.Microsecond))
			a.Offer(0, live[n-1], now+int64(320*time.Microsecond)) // 300 µs behind its End of Session, Grace 200 µs
			if want := totalMessages(t, live); !a.Ended() || s.got != want || len(s.gaps) != 0 {
				t.Fatalf("ended %v (announced %v), delivered %d of %d, gaps %v; want ended, all delivered", a.Ended(), a.EndAnnounced(), s.got, want, s.gaps)
			}
		})
	}
	// Both lines announced the end, line A's last two packets reordered
	// behind it by Grace or more: the later one is past where line A was,
	// which withdraws line A's announcement only; line B's stands.
	t.Run("legitimate/lastTwoLate", func(t *testing.T) {
		a, s, live, now := endDay(t, 2)
		n := len(live)
		now += ms
		end := endOfSession(testSession, nextAfter(t, live))
		a.Offer(1, live[n-2], now)
		a.Offer(1, live[n-1], now)
		a.Offer(1, end, now+int64(10*time.Microsecond))
		a.Offer(0, end, now+int64(20*time.Microsecond))
		a.Offer(0, live[n-2], now+int64(320*time.Microsecond))
		a.Offer(0, live[n-1], now+int64(330*time.Microsecond))
		if want := totalMessages(t, live); !a.Ended() || s.got != want || len(s.gaps) != 0 {
			t.Fatalf("ended %v (announced %v), delivered %d of %d, gaps %v; want ended, all delivered", a.Ended(), a.EndAnnounced(), s.got, want, s.gaps)
		}
	})
}

// TestEndOneLineLateTailAnnouncedAgain pins what RECOVERY.md leaves open:
// only line A announced the end (line B lost its End of Session), and
// A's last two packets came 300 and 310 µs behind it (Grace 200 µs): the
// later one is past where A was when it announced, which to the Arbiter
// is its sender going on (a forged end's mark), so the end is withdrawn.
// Nothing of the session is lost or declared for it (every message
// delivered, line B having brought both), and A's next End of Session
// announces the end again and ends the session. What the wait costs is
// a next session begun before then: it is followed after the old one's
// silence (line_timeout), what it brought meanwhile declared, as for
// any session whose end never came.
func TestEndOneLineLateTailAnnouncedAgain(t *testing.T) {
	a, s, live, now := endDay(t, 2)
	n := len(live)
	now += int64(time.Millisecond)
	end := endOfSession(testSession, nextAfter(t, live))
	a.Offer(1, live[n-2], now)
	a.Offer(1, live[n-1], now) // and lost its End of Session
	a.Offer(0, end, now+int64(20*time.Microsecond))
	a.Offer(0, live[n-2], now+int64(320*time.Microsecond))
	a.Offer(0, live[n-1], now+int64(330*time.Microsecond))
	a.Tick(now + int64(time.Millisecond))
	want := totalMessages(t, live)
	if s.got != want || len(s.gaps) != 0 || a.EndAnnounced() || a.Ended() {
		t.Fatalf("after line A's late tail: delivered %d of %d, gaps %v, announced %v, ended %v; want all delivered, none declared, the end withdrawn (RECOVERY.md: still open)",
			s.got, want, s.gaps, a.EndAnnounced(), a.Ended())
	}
	a.Offer(0, end, now+int64(500*time.Millisecond)) // its next End of Session
	if s.got != want || len(s.gaps) != 0 || !a.Ended() {
		t.Fatalf("after line A's next End of Session: delivered %d of %d, gaps %v, ended %v (announced %v); want ended", s.got, want, s.gaps, a.Ended(), a.EndAnnounced())
	}
}

// endDay plays a day of 40 packets of testSession to a new Arbiter on both
// lines, 1 ms apart, but for its last left: the Arbiter, its sink, the
// day and the last packet's stamp.
func endDay(t *testing.T, left int) (*Arbiter, *sink, [][]byte, int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(95, 96))
	live := packets(t, testSession, 40, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, LineTimeout: time.Second})
	now := int64(1)
	for _, p := range live[:len(live)-left] {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	return a, s, live, now
}
