package capture

import (
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestRerequestFillAnyOrder: a range re-requested is filled, in the
// capture's view (openRequest.fill), up to the first number none of the
// datagrams taken so far brought, as the arbiter delivers what it holds
// once the numbers before come: against a naive set of the numbers
// brought, 2000 random runs of packets covering the range in pieces, in
// any order, some twice, some past its ends, of up to 8 runs apart.
func TestRerequestFillAnyOrder(t *testing.T) {
	s := moldudp64.NewSession("SESS000001")
	rng := rand.New(rand.NewPCG(1, 2))
	const first, end = 100, 160
	for run := range 2000 {
		// Pieces from 95 to 165, cut at random.
		var pieces [][2]uint64
		for seq := uint64(95); seq < 165; {
			n := 1 + rng.Uint64N(12)
			pieces = append(pieces, [2]uint64{seq, n})
			seq += n
		}
		if len(pieces) > maxAhead+1 {
			pieces = pieces[:maxAhead+1] // at most maxAhead runs ahead of lo
		}
		for range rng.IntN(3) {
			pieces = append(pieces, pieces[rng.IntN(len(pieces))]) // twice
		}
		rng.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
		q := openRequest{open: true, first: first, lo: first, end: end, session: s}
		have := map[uint64]bool{}
		for k, pc := range pieces {
			q.fill(moldPacket(s, pc[0], int(pc[1])), k%2 == 0)
			for seq := pc[0]; seq < pc[0]+pc[1]; seq++ {
				have[seq] = true
			}
			lo := uint64(first)
			for lo < end && have[lo] {
				lo++
			}
			if open := lo < end; q.open != open || open && q.lo != lo {
				t.Fatalf("run %d, after %v of %v: open %v at %d, want open %v at %d", run, pc, pieces[:k+1], q.open, q.lo, open, lo)
			}
		}
	}
}
