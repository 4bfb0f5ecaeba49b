package handler

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

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
// followed back) and the new session never was: "following "OLD", want
// "TEST000001"; delivered 0 of its 80 messages and declared 0 missing",
// its data neither delivered nor declared.
func TestShortSessionAfterUnendedOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	old := moldudp64.NewSession("OLD")
	oldPkts := packets(t, old, 20, 5, rng)
	newPkts := packets(t, testSession, 30, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	now := int64(1e12)
	got, gaps := uint64(0), 0
	a.SetSessionFunc(func(o, n moldudp64.Session) {
		if o != (moldudp64.Session{}) {
			got, gaps, s.next = s.got, len(s.gaps), 0
		}
	})
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
	if gaps <= len(s.gaps) {
		for _, g := range s.gaps[gaps:] {
			declared += g.Count
		}
	}
	if want := totalMessages(t, newPkts); a.Session() != testSession || s.got-got+declared != want || s.got == got || !a.Ended() {
		t.Fatalf("following %q, want %q; delivered %d of its %d messages and declared %d missing (gaps %v); ended %v",
			a.Session(), testSession, s.got-got, want, declared, s.gaps[min(gaps, len(s.gaps)):], a.Ended())
	}
}
