package handler

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestArbiterCorruptSeqInsidePacket: line A brings a copy of the packet of
// messages 5 and 6 with a corrupt sequence number, 6 or 7 (starting inside
// that packet), in place of its own copy or besides it, 5 ms (beyond Grace)
// before line B's 5 and 6; then both lines bring the rest, B first, 5 ms
// apart. Every message is delivered once, in order and as sent (the sink
// fails on a message delivered under another number), and no gap is
// declared. Before, once line B's packet delivered 5 and 6, what the
// corrupt packet held past 6 was delivered as 7 ('message carries seq 6,
// iterator says 7'); found by the lab soak (internal/demo TestSoak).
func TestArbiterCorruptSeqInsidePacket(t *testing.T) {
	const seq = 6 // inside the packet of 5 and 6
	for _, replace := range []bool{false, true} {
		pkts := pairPackets()
		a, s := newTestArbiter(t, ArbiterConfig{Session: testSession})
		now := int64(1)
		step := func() int64 { now += int64(5 * time.Millisecond); return now }
		for i := range 2 {
			a.Offer(0, pkts[i], step())
			a.Offer(1, pkts[i], now)
		}
		bad := slices.Clone(pkts[2]) // messages 5 and 6
		binary.BigEndian.PutUint64(bad[10:], seq)
		a.Offer(0, bad, step())
		for i := 2; i < len(pkts); i++ {
			a.Offer(1, pkts[i], step())
			if !replace || i > 2 {
				a.Offer(0, pkts[i], now)
			}
		}
		for range 10 {
			a.Tick(step())
		}
		if s.got != 20 || len(s.gaps) != 0 || a.Stats.Lines[0].Contradicted != 1 {
			t.Errorf("numbered %d, in place of line A's copy %v: delivered %d of 20, gaps %v, contradicted %d", seq, replace, s.got, s.gaps, a.Stats.Lines[0].Contradicted)
		}
	}
}

// TestArbiterCorruptSeqInsideAnswer: as TestArbiterCorruptSeqInsidePacket,
// the packet of 5 and 6 lost on both lines and line A's corrupt copy
// numbered 6 held: the re-request answer for the hole, 5 and 6, delivers
// them, and the corrupt copy's 6 is not delivered as 7.
func TestArbiterCorruptSeqInsideAnswer(t *testing.T) {
	pkts := pairPackets()
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, Grace: time.Microsecond, Hold: time.Millisecond})
	a.SetMissing(func(moldudp64.Range, int64) bool { return true })
	now := int64(1)
	step := func() int64 { now += int64(5 * time.Millisecond); return now }
	for i := range 2 {
		a.Offer(0, pkts[i], step())
		a.Offer(1, pkts[i], now)
	}
	bad := slices.Clone(pkts[2]) // messages 5 and 6, lost on both lines
	binary.BigEndian.PutUint64(bad[10:], 6)
	a.Offer(0, bad, step())
	a.Tick(step())
	r, ok := a.Recovering()
	if !ok || r.First != 5 {
		t.Fatalf("recovering %v %v, want the hole at 5", r, ok)
	}
	answer, _ := moldudp64.Parse(pkts[2])
	a.OfferRecovered(pkts[2], answer, step())
	for i := 3; i < len(pkts); i++ {
		a.Offer(1, pkts[i], step())
		a.Offer(0, pkts[i], now)
	}
	for range 10 {
		a.Tick(step())
	}
	if s.got != 20 || len(s.gaps) != 0 || a.Stats.Lines[0].Contradicted != 1 {
		t.Errorf("delivered %d of 20, gaps %v, contradicted %d", s.got, s.gaps, a.Stats.Lines[0].Contradicted)
	}
}

// pairPackets returns messages 1 to 20, two a packet, each message's
// bytes 4-11 its sequence number (as the sink checks).
func pairPackets() [][]byte {
	var pkts [][]byte
	for first := uint64(1); first <= 20; first += 2 {
		b := moldudp64.NewBuilder(testSession, first, 0)
		for k := range uint64(2) {
			m := make([]byte, 12)
			binary.BigEndian.PutUint64(m[4:], first+k)
			b.Add(m)
		}
		pkts = append(pkts, slices.Clone(b.Flush()))
	}
	return pkts
}
