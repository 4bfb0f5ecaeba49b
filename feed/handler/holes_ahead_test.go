package handler

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestArbiterHolesAheadAsBefore: holesAhead, which walks each line's held
// packets once and stops at the first hole a live line brought nothing
// past, finds the holes the scan of every line's held packets from each
// hole found (holesAheadBefore, as it was) did, on random days: two
// lossy lines, one of them now and then going silent (dead after
// LineTimeout) or late, a spill of up to 600 packets (past aheadScan)
// held while the first hole is recovered, looked at every few packets
// with a few maxCounts and clocks.
func TestArbiterHolesAheadAsBefore(t *testing.T) {
	const (
		grace   = 100 * time.Microsecond
		hold    = 5 * time.Millisecond
		timeout = 50 * time.Millisecond
	)
	looks, holes := 0, 0
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 0xa4ead))
		a := NewArbiter(ArbiterConfig{Lines: 2, Grace: grace, Hold: hold, LineTimeout: timeout, MaxPending: 1024},
			func(*moldudp64.Packet, int, int64) {}, func(moldudp64.Range, int64) {})
		a.SetMissing(func(moldudp64.Range, int64) bool { return true })
		var loss [2]float64
		for l := range 2 {
			loss[l] = rng.Float64() * 0.3
		}
		silentFrom := [2]uint64{1 << 62, 1 << 62}
		if rng.IntN(3) == 0 {
			silentFrom[rng.IntN(2)] = 10 + rng.Uint64N(500)
		}
		var late [2]int64
		late[rng.IntN(2)] = rng.Int64N(int64(2 * hold))
		n := 50 + rng.Uint64N(550)
		now := int64(time.Hour)
		buf := make([]moldudp64.Range, 0, 64)
		ref := make([]moldudp64.Range, 0, 64)
		for seq := uint64(1); seq <= n; seq++ {
			now += rng.Int64N(int64(200 * time.Microsecond))
			for l := range 2 {
				if seq > 3 && (seq == 4 || seq >= silentFrom[l] || rng.Float64() < loss[l]) {
					continue // 4 lost on both: recovered while the rest is held
				}
				a.Offer(l, sessionPacket("AHD", seq, orderMsg("AHD", seq, seq)), now+late[l])
			}
			if seq%7 == 0 || seq == n {
				if seq == 7 {
					a.Tick(now + int64(hold)) // 4 handed to the recovery source
				}
				for _, maxCount := range []uint64{1, 3, 1000} {
					at := now + rng.Int64N(int64(2*timeout))
					got := a.holesAhead(buf[:0], maxCount, at)
					want := holesAheadBefore(a, ref[:0], maxCount, at)
					if !slices.Equal(got, want) {
						t.Fatalf("seed %d, after %d, maxCount %d: holes ahead %v, want %v (as before)", seed, seq, maxCount, got, want)
					}
					looks++
					holes += len(got)
				}
			}
		}
	}
	if holes == 0 {
		t.Fatalf("%d looks found no hole ahead", looks)
	}
	t.Logf("%d looks, %d holes found ahead", looks, holes)
}

// holesAheadBefore is holesAhead as it was: each hole's lines searched
// from the hole to the end of what is looked at.
func holesAheadBefore(a *Arbiter, dst []moldudp64.Range, maxCount uint64, now int64) []moldudp64.Range {
	if !a.recovering || a.frozen || a.pend.n == 0 {
		return dst
	}
	k := sort.Search(a.pend.n, func(i int) bool { return a.pend.at(i).seq >= a.recoverEnd })
	cur := a.recoverEnd
	if k > 0 {
		cur = max(cur, a.pend.at(k-1).end)
	}
	missing := func(k, end int) bool {
		past := 0
		for i := 0; i < a.cfg.Lines; i++ {
			if a.lastRx[i] == 0 {
				continue
			}
			j := k
			for j < end && a.pend.at(j).lineRx[i] == 0 {
				j++
			}
			if j == end {
				if now-a.lastRx[i] >= int64(a.cfg.LineTimeout) {
					continue
				}
				return false
			}
			e := a.pend.at(j)
			if a.lastRx[i]-e.lineRx[i] < int64(a.cfg.Grace) || a.high[i] <= e.end {
				return false
			}
			past++
		}
		return past > 0
	}
	for end := min(a.pend.n, k+aheadScan); k < end && len(dst) < cap(dst); k++ {
		e := a.pend.at(k)
		if e.seq > cur && e.seq-cur <= maxCount && missing(k, end) {
			dst = append(dst, moldudp64.Range{First: cur, Count: e.seq - cur})
		}
		cur = max(cur, e.end)
	}
	return dst
}
