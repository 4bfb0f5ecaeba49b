package handler

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestSnapshotSpillOverflowWaitsRetry: snapshot recovery only (no
// re-request server), a late join. While the snapshot downloads the feed
// brings more packets than the spill holds: the oldest are dropped, so
// after the load a hole runs from the snapshot's sequence number to the
// first packet still held. That hole is declared (counted, the books
// flagged, what is held delivered), and the next snapshot waits
// SnapshotRetry rather than starting at once: on a feed as busy, it would
// overflow the same way, and so on for ever, delivery frozen throughout.
// Once the retry is due and the feed allows it, the next snapshot repairs
// the books.
func TestSnapshotSpillOverflowWaitsRetry(t *testing.T) {
	release := make(chan struct{})
	var fetches atomic.Int32
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		if fetches.Add(1) == 1 {
			<-release // downloading while the feed goes on
			fn(dirMsg("SNAP"))
			return Snapshot{Next: 4004}, nil
		}
		fn(dirMsg("SNAP"))
		fn(addMsg7("SNAP", 1, 1111))
		return Snapshot{Next: 4020}, nil // where the lines are, the feed quiet
	}
	h, sh := oneShardHandler(t, 0, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Second, MaxPending: 4, Spill: 4},
		RecoveryConfig{Snapshot: fetch, SnapshotRetry: time.Hour})
	// The recovery's retry deadlines are read on the wall clock.
	now := time.Now().UnixNano()
	joinLate(h, "BSY", now)
	now += int64(time.Millisecond)
	h.arb.Tick(now) // the start gap is declared: a snapshot is fetched
	if !rec.fetching || !h.arb.Frozen() {
		t.Fatalf("late join: fetching %v, frozen %v", rec.fetching, h.arb.Frozen())
	}
	ev := itch.SystemEventFields{EventCode: 'Q'}
	for seq := uint64(4004); seq < 4020; seq++ { // 16 packets, a spill of 4
		h.arb.Offer(0, sessionPacket("BSY", seq, ev.Append(nil)), now)
	}
	close(release)
	pollUntilLoaded(t, h, rec, 1, now)
	now += int64(time.Millisecond)
	h.arb.Tick(now) // drained: the hole after the snapshot is due
	rec.poll(now)
	h.endBatch()
	if rec.fetching || h.arb.Frozen() || fetches.Load() != 1 {
		t.Fatalf("the spill overflowed while the snapshot downloaded: after its load, fetching %v, frozen %v, fetches %d; want the hole declared and the next snapshot after SnapshotRetry (a fetch at once overflows the same way on a feed as busy, for ever)",
			rec.fetching, h.arb.Frozen(), fetches.Load())
	}
	if h.arb.Next() != 4020 || h.arb.Stats.SpillDropped != 16 || len(rec.open) != 1 || rec.open[0] != (moldudp64.Range{First: 4004, Count: 12}) || !sh.pub.stale {
		t.Fatalf("next %d, spill dropped %d, open %v, stale %v; want 4020, 16 (4000 to 4015), [4004, 4016), flagged",
			h.arb.Next(), h.arb.Stats.SpillDropped, rec.open, sh.pub.stale)
	}
	if rec.stats.SnapshotSpillOverflows != 1 || rec.snapFails != 1 {
		t.Fatalf("snapshot spill overflows %d, consecutive failures %d; want 1, 1 (a failed attempt: the next backs off)", rec.stats.SnapshotSpillOverflows, rec.snapFails)
	}
	now += int64(time.Hour)
	pollUntilLoaded(t, h, rec, 2, now)
	if rec.snapFails != 0 {
		t.Fatalf("consecutive failures %d after a snapshot loaded whole, want 0", rec.snapFails)
	}
	if b := sh.books.Book(7); b == nil || b.Orders() != 1 || sh.pub.stale || len(rec.open) != 0 {
		t.Fatalf("after the second snapshot: book 7 %v, stale %v, open %v; want order 1, whole", b, sh.pub.stale, rec.open)
	}
}
