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
	var announced, changed int64
	got := uint64(0)
	a.SetSessionFunc(func(o, n moldudp64.Session) {
		if o != (moldudp64.Session{}) {
			changed, got, s.next = now, s.got, 0
		}
	})
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
	if changed == 0 || announced == 0 || changed-announced > int64(50*time.Millisecond) {
		t.Errorf("session changed %v after the end was announced (at %d, %d), want within 50ms", time.Duration(changed-announced), announced, changed)
	}
	if want := totalMessages(t, newPkts); a.Session() != testSession || s.got-got != want || len(s.gaps) != 0 {
		t.Fatalf("following %q, delivered %d of the new session's %d, gaps %v", a.Session(), s.got-got, want, s.gaps)
	}
}
