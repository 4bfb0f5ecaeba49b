package handler

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestEndNotWithdrawnByFillBeforeIt: line B loses the old session's last
// packet and brings its three End of Session packets; line A, 3 ms
// behind, brings that last packet and loses all three End of Session
// packets. B's End of Session announces the end with the hole before it;
// A's copy fills the hole: the session ended there, and the new session,
// sent on both lines a packet every 10 ms for 1.5 s, is followed once it
// confirms, every one of its messages delivered. Before, the fill
// withdrew the announcement as new data would (the session went on),
// nothing announced it again until the old session's next End of
// Session (about a second later: the spec's "for a while instead of
// heartbeats"), and the new session waited for the old one's silence
// (LineTimeout, 1 s): "session changed 1.005s after the end was
// announced ..., want within 50ms", "delivered 153 of the new session's
// 447, gaps [{8 294}]" (what it brought meanwhile declared).
func TestEndNotWithdrawnByFillBeforeIt(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 20, 5, rng)
	newPkts := packets(t, testSession, 150, 5, rng)
	eos := endOfSession(old, nextAfter(t, oldPkts))
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(1e12)
	var announced int64
	change := watchChange(a, s, &now)
	offer := func(line int, p []byte) {
		a.Offer(line, p, now)
		if announced == 0 && a.EndAnnounced() {
			announced = now
		}
	}
	const lag = 3 // line A behind, in packets a millisecond apart
	var b, aLine [][]byte
	b = append(b, oldPkts[:len(oldPkts)-1]...) // B loses the last packet
	b = append(b, eos, eos, eos)
	aLine = append(aLine, oldPkts...) // A loses the End of Session packets
	for i := 0; i < len(b)+lag; i++ {
		now += int64(time.Millisecond)
		if i < len(b) {
			offer(1, b[i])
		}
		if j := i - lag; j >= 0 && j < len(aLine) {
			offer(0, aLine[j])
		}
		a.Tick(now + 1000)
	}
	for _, p := range newPkts {
		now += int64(10 * time.Millisecond)
		offer(0, p)
		offer(1, p)
		a.Tick(now + 1000)
	}
	if change.at == 0 || announced == 0 || change.at-announced > int64(50*time.Millisecond) {
		t.Errorf("session changed %v after the end was announced (at %d, %d), want within 50ms", time.Duration(change.at-announced), announced, change.at)
	}
	if want := totalMessages(t, newPkts); a.Session() != testSession || s.got-change.got != want || len(s.gaps) != 0 {
		t.Fatalf("following %q, delivered %d of the new session's %d, gaps %v", a.Session(), s.got-change.got, want, s.gaps)
	}
}

// changeSeen is what a sink had at a session change (watchChange).
type changeSeen struct {
	at   int64  // when (*now then); 0: none yet
	got  uint64 // messages delivered before it
	gaps int    // gaps declared before it
}

// watchChange has s follow the next session from its start at a's session
// change (not the first lock), and returns what s had then.
func watchChange(a *Arbiter, s *sink, now *int64) *changeSeen {
	c := &changeSeen{}
	a.SetSessionFunc(func(o, n moldudp64.Session) {
		if o != (moldudp64.Session{}) {
			c.at, c.got, c.gaps, s.next = *now, s.got, len(s.gaps), 0
		}
	})
	return c
}

// TestShortSessionAfterUnendedOne: the followed session stops with no End
// of Session (its publisher failed over); the next session starts 10 ms
// later on both lines, sends 30 packets in 300 ms, then its End of
// Session once a second (the spec: "for a while instead of heartbeats"),
// with no recovery source. It confirmed while the old session was not yet
// silent for LineTimeout (1 s), so its data was another session's; its
// End of Session after the old one's silence is followed: the session
// changes, its first packets (the stash) are delivered and the rest of it,
// which the lines brought while it waited, declared missing (a gap of the
// new session, as after a change on the old session's silence), the
// session ended. Before, another session's End of Session was never
// followed (lest the session a change replaced, repeating its end, be
// followed back) and the new session never was: 'following "OLD", want
// "TEST000001"; delivered 62 of its 103 messages and declared 0 missing
// (gaps []); ended false' (the old session's 62), its data neither
// delivered nor declared.
func TestShortSessionAfterUnendedOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 20, 5, rng)
	newPkts := packets(t, testSession, 30, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(1e12)
	change := watchChange(a, s, &now)
	both := func(p []byte, step time.Duration) {
		now += int64(step)
		a.Offer(0, p, now)
		a.Offer(1, p, now+1000)
		a.Tick(now + 2000)
	}
	for _, p := range oldPkts {
		both(p, time.Millisecond)
	}
	now += int64(10 * time.Millisecond)
	for _, p := range newPkts {
		both(p, 10*time.Millisecond)
	}
	eos := endOfSession(testSession, nextAfter(t, newPkts))
	for range 5 {
		both(eos, time.Second)
	}
	for range 10 {
		now += int64(100 * time.Millisecond)
		a.Tick(now)
	}
	declared := uint64(0)
	for _, g := range s.gaps[change.gaps:] {
		declared += g.Count
	}
	if want := totalMessages(t, newPkts); a.Session() != testSession || s.got-change.got+declared != want || s.got == change.got || !a.Ended() {
		t.Fatalf("following %q, want %q; delivered %d of its %d messages and declared %d missing (gaps %v); ended %v",
			a.Session(), testSession, s.got-change.got, want, declared, s.gaps[change.gaps:], a.Ended())
	}
}
