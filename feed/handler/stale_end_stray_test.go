package handler

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestArbiterEndBehindContradictedStray: line A brings a copy of a data
// packet whose sequence number is corrupt, 300,000 (or 2,000,000, within
// MaxJump) ahead, and both lines then the whole day and its End of Session
// packets, three, at once. The corrupt packet is held until Hold after
// its line went on below it, past the End of Session packets, which are
// counted stale; once it is dropped as contradicted, they announce the end
// and the session Ends. Before, they stayed ignored: the session never
// ended (a soak run: 'handler did not finish: ... ended false').
func TestArbiterEndBehindContradictedStray(t *testing.T) {
	for _, ahead := range []uint64{300_000, 2_000_000} {
		rng := rand.New(rand.NewPCG(5, 6))
		pkts := packets(t, testSession, 40, 3, rng)
		a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Hold: time.Second})
		now := offerWithStray(a, pkts, ahead, false)
		last, _ := moldudp64.Parse(pkts[len(pkts)-1])
		eos := moldudp64.AppendHeader(nil, testSession, last.Next(), moldudp64.EndOfSessionCount)
		now += int64(time.Millisecond)
		for range 3 {
			a.Offer(0, eos, now)
			a.Offer(1, eos, now)
		}
		for range 30 {
			now += int64(100 * time.Millisecond)
			a.Tick(now)
		}
		st := a.Stats.Lines
		if !a.Ended() || s.got != totalMessages(t, pkts) || len(s.gaps) != 0 || st[0].Contradicted != 1 || a.Pending() != 0 {
			t.Errorf("%d ahead: ended %v, delivered %d of %d, gaps %v, contradicted %d, held %d, stale End of Session A %d B %d; want ended, all delivered, the corrupt packet contradicted",
				ahead, a.Ended(), s.got, totalMessages(t, pkts), s.gaps, st[0].Contradicted, a.Pending(), st[0].StaleEndOfSession, st[1].StaleEndOfSession)
		}
	}
}

// TestSessionChangeAfterHeldStray: with no configured session, line A
// brings a copy of a data packet whose sequence number is corrupt (300,000
// or 2,000,000 ahead, within MaxJump), both lines then the rest of the day
// and its End of Session packets, and another session follows, its packets
// 10 ms apart. The old session falls silent for LineTimeout (300 ms)
// before Hold (1 s) has the held packet dropped as contradicted, so the
// change comes while it is held. The old session was delivered whole: no
// gap is counted for it at the change. Before, the range up to the
// corrupt packet was ('1 gaps (299934 messages) counted').
func TestSessionChangeAfterHeldStray(t *testing.T) {
	for _, ahead := range []uint64{300_000, 2_000_000} {
		rng := rand.New(rand.NewPCG(5, 6))
		pkts := packets(t, testSession, 40, 3, rng)
		other := moldudp64.NewSession("OTHER")
		pkts2 := packets(t, other, 100, 3, rng)
		a, s := newTestArbiter(t, ArbiterConfig{Hold: time.Second, LineTimeout: 300 * time.Millisecond})
		var changes int
		var got, gaps, lost uint64
		var reported []moldudp64.Range
		held := -1
		a.SetSessionFunc(func(o, n moldudp64.Session) {
			if o == (moldudp64.Session{}) {
				return // the first session followed
			}
			changes++
			got, gaps, lost, reported = s.got, a.Stats.Gaps, a.Stats.GapMessages, slices.Clone(s.gaps)
			s.next = 0 // the new session's numbers start again
		})
		now := offerWithStray(a, pkts, ahead, true)
		last, _ := moldudp64.Parse(pkts[len(pkts)-1])
		eos := moldudp64.AppendHeader(nil, testSession, last.Next(), moldudp64.EndOfSessionCount)
		for range 3 {
			a.Offer(0, eos, now)
			a.Offer(1, eos, now)
		}
		for _, p := range pkts2 {
			now += int64(10 * time.Millisecond)
			if changes == 0 {
				held = a.Pending()
			}
			a.Offer(0, p, now)
			a.Offer(1, p, now)
			a.Tick(now)
		}
		if want := totalMessages(t, pkts); changes != 1 || a.Session() != other || held != 1 || got != want || len(reported) != 0 || gaps != 0 || lost != 0 {
			t.Errorf("%d ahead: %d session changes, following %q, %d packets held before it; at the change: delivered %d of %d, gaps reported %v, %d gaps (%d messages) counted; want one change with the corrupt packet held, the old session delivered whole, no gap",
				ahead, changes, a.Session(), held, got, want, reported, gaps, lost)
		}
	}
}

// offerWithStray offers pkts on both lines, 50 µs apart, and 50 µs before
// the sixth line A's copy of it with its sequence number ahead (corrupt),
// with an empty poll after each when tick; it returns the last stamp.
func offerWithStray(a *Arbiter, pkts [][]byte, ahead uint64, tick bool) int64 {
	now := int64(1)
	for i := range pkts {
		now += int64(50 * time.Microsecond)
		if i == 5 {
			bad := slices.Clone(pkts[i])
			binary.BigEndian.PutUint64(bad[10:], binary.BigEndian.Uint64(bad[10:])+ahead)
			a.Offer(0, bad, now)
			now += int64(50 * time.Microsecond)
		}
		a.Offer(0, pkts[i], now)
		a.Offer(1, pkts[i], now)
		if tick {
			a.Tick(now)
		}
	}
	return now
}
