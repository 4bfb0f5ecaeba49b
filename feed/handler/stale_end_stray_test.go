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
		}
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
