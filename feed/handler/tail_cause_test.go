//go:build tailtrace

package handler

import "testing"

// TestTailCause checks the attribution of a slow batch (cause, a pure
// function of the batch's trace and of the batch before it).
func TestTailCause(t *testing.T) {
	// A batch of 8 packets, 20 µs, no stop before or inside, 4 books
	// published in 1 µs.
	base := batchTrace{pickup: 100_000, offered: 119_000, end: 120_000, pkts: 8, runs: 4, msgs: 12, books: 4}
	with := func(f func(*batchTrace)) batchTrace {
		b := base
		f(&b)
		return b
	}
	for _, tc := range []struct {
		name   string
		t      batchTrace
		opened int
		want   int
	}{
		{"voluntary switch, stop before", with(func(b *batchTrace) { b.vcs, b.idleGap = 1, stalledNs }), -1, causeVoluntary},
		{"voluntary and involuntary, stop inside", with(func(b *batchTrace) { b.vcs, b.ivcs, b.maxGap = 2, 1, stalledNs }), -1, causeVoluntary},
		{"involuntary switch, stop inside", with(func(b *batchTrace) { b.ivcs, b.maxGap = 1, 9_000 }), -1, causeInvoluntary},
		{"switch without a stop is not blamed", with(func(b *batchTrace) { b.vcs, b.ivcs = 3, 3 }), -1, causeCascade},
		{"switch without a stop, drain of a slow batch", with(func(b *batchTrace) { b.ivcs = 1 }), causeStall, causeStall},
		{"stall inside, two readings apart", with(func(b *batchTrace) { b.maxGap = stalledNs }), -1, causeStall},
		{"stall inside the publish", with(func(b *batchTrace) { b.offered = b.end - stalledNs - 4*publishPerBookNs }), -1, causeStall},
		{"a publish just under the stall", with(func(b *batchTrace) { b.offered = b.end - stalledNs - 4*publishPerBookNs + 1 }), -1, causeCascade},
		{"stall inside beats a stop before", with(func(b *batchTrace) { b.maxGap, b.idleGap = stalledNs, stalledNs }), causeVoluntary, causeStall},
		{"backlog after a stop", with(func(b *batchTrace) { b.idleGap = stalledNs }), causeVoluntary, causeIdleStall},
		{"short stop before: backlog takes the opener's cause", with(func(b *batchTrace) { b.idleGap = stalledNs - 1 }), causeInvoluntary, causeInvoluntary},
		{"backlog, none slow before", base, -1, causeCascade},
		{"backlog after a slow batch with no stop", base, causeCascade, causeCascade},
		{"backlog after a slow batch of two packets", base, causeOther, causeCascade},
		{"two packets, no stop", with(func(b *batchTrace) { b.pkts = 2 }), causeVoluntary, causeOther},
		{"two packets after a stop", with(func(b *batchTrace) { b.pkts, b.idleGap = 2, 50_000 }), -1, causeOther},
	} {
		if got := tc.t.cause(tc.opened); got != tc.want {
			t.Errorf("%s: cause = %s, want %s", tc.name, causeNames[got], causeNames[tc.want])
		}
	}
}

// TestTailCauses checks that a drain takes the cause of the slow batch
// that opened it, batch after batch, and only while each batch before
// was slow.
func TestTailCauses(t *testing.T) {
	slow := func(pkts int32) batchTrace {
		return batchTrace{pickup: 0, offered: 9_000, end: 10_000, pkts: pkts, books: 1}
	}
	opener := slow(4)
	opener.ivcs, opener.idleGap = 1, 30_000
	fast := batchTrace{pickup: 0, offered: 1_000, end: 1_500, pkts: 4, books: 1}
	trace := []batchTrace{opener, slow(6), slow(5), fast, slow(4), slow(1), slow(4)}
	// The fast batch's own cause is not used (it is not slow); it only
	// ends the drain.
	want := []int8{causeInvoluntary, causeInvoluntary, causeInvoluntary, causeInvoluntary, causeCascade, causeOther, causeCascade}
	got := causes(trace)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("batch %d: cause = %s, want %s", i, causeNames[got[i]], causeNames[want[i]])
		}
	}
}
