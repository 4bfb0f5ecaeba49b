package handler

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestArbiterStaleCopyWhileRecovering: while a range lost on both lines is
// re-requested, the lines send again a packet they brought already (a
// stale copy of one held), Grace or more after their latest (the sender
// preempted before it) or within Grace, then go on. The copy says nothing
// of where the lines are: nothing held is dropped as contradicted. Before,
// taken for each line's latest packet, it went below every held packet
// above it, each brought Grace or more before it, and all 24 a line were
// dropped ('48 packets dropped as contradicted'; the soak's seed 20120:
// 610 a line, the rest of the day then re-requested a message at a time
// until the run's deadline).
func TestArbiterStaleCopyWhileRecovering(t *testing.T) {
	us := int64(time.Microsecond)
	for _, after := range []int64{300, 50} { // after the lines' latest packet
		t.Run(time.Duration(after*us).String(), func(t *testing.T) {
			pkts := fixedPackets(t, testSession, 1, 40, 3)
			a, s := newTestArbiter(t, ArbiterConfig{Lines: 2})
			var asked []moldudp64.Range
			a.SetMissing(func(r moldudp64.Range, _ int64) bool { asked = append(asked, r); return true })
			at := int64(time.Hour)
			// Packets 0 to 2 (1 to 9) lost on both lines: re-requested.
			for i := 3; i < 30; i++ {
				a.Offer(0, pkts[i], at)
				a.Offer(1, pkts[i], at+10*us)
				at += 100 * us
			}
			at += after*us - 100*us
			a.Offer(0, pkts[5], at)
			a.Offer(1, pkts[5], at+10*us)
			at += 100 * us
			for i := 30; i < 40; i++ {
				a.Offer(0, pkts[i], at)
				a.Offer(1, pkts[i], at+10*us)
				at += 100 * us
			}
			a.Tick(at + int64(time.Millisecond))
			want := moldudp64.Range{First: 1, Count: 9}
			if r, ok := a.Recovering(); len(asked) != 1 || asked[0] != want || !ok || r != want {
				t.Fatalf("asked %v, recovering %v %v; want %v asked and recovering", asked, r, ok, want)
			}
			if c := a.Stats.Lines[0].Contradicted + a.Stats.Lines[1].Contradicted; c != 0 || a.Pending() != 37 {
				t.Fatalf("%d packets dropped as contradicted, %d held; want none dropped, the 37 after the range held", c, a.Pending())
			}
			// The range answered: everything delivered.
			for i := range 3 {
				p, err := moldudp64.Parse(pkts[i])
				if err != nil {
					t.Fatal(err)
				}
				a.OfferRecovered(pkts[i], p, at+int64(time.Millisecond))
			}
			a.Tick(at + 2*int64(time.Millisecond))
			if s.got != 120 || len(s.gaps) != 0 {
				t.Fatalf("delivered %d, gaps %v; want 120, none", s.got, s.gaps)
			}
		})
	}
}
