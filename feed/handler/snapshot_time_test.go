package handler

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestSnapshotRepairTimeFromDetection: a gap is declared and its snapshot
// fails; the next, SnapshotRetry later, repairs it. The repair's time,
// in RecoveryStats.Events and in recovery_time_seconds alike (which "has
// their times"), runs from the gap's detection to its repair: not from the
// start of the fetch that repaired it, which left out the failed attempt
// and the wait before the retry.
func TestSnapshotRepairTimeFromDetection(t *testing.T) {
	var calls atomic.Int32
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		if calls.Add(1) == 1 {
			return Snapshot{}, errors.New("snapshot server down")
		}
		return Snapshot{Next: 13}, fn(dirMsg("RT"))
	}
	h, _, rec := recoveryHandler(t, fetch)
	const retry = 5 * time.Second
	rec.cfg.SnapshotRetry, rec.snapWait = retry, retry
	pkt := func(seq uint64) []byte { return sessionPacket("RT", seq, orderMsg("RT", seq, seq)) }
	now := int64(time.Second)
	for _, seq := range []uint64{1, 2, 3, 4, 5, 9, 10, 11, 12} { // 6..8 lost
		h.arb.Offer(0, pkt(seq), now)
	}
	for i := 0; !rec.fetching; i++ {
		if i == 1000 {
			t.Fatalf("no snapshot fetched for the gap: %+v", rec.stats)
		}
		now += int64(time.Millisecond)
		h.arb.Tick(now)
	}
	detected := now
	waitFetch(t, h, rec, now)
	if rec.stats.SnapshotFailures != 1 {
		t.Fatalf("the first snapshot's failure not taken: %+v", rec.stats)
	}
	now += int64(retry + time.Second)
	rec.poll(now)
	h.endBatch()
	waitFetch(t, h, rec, now)
	if rec.stats.Snapshots != 1 || len(rec.events) != 1 || rec.events[0].By != "snapshot" {
		t.Fatalf("snapshots loaded %d, repairs %+v; want the gap repaired by the second snapshot", rec.stats.Snapshots, rec.events)
	}
	took := time.Duration(now - detected)
	if ev := rec.events[0]; ev.Range != (moldudp64.Range{First: 6, Count: 3}) || ev.Took < took-time.Second {
		t.Fatalf("repair %+v; want 6..8 taking about %v", ev, took)
	}
	if n, mx := rec.hist.Count(), time.Duration(rec.hist.Max()); n != 1 || mx != rec.events[0].Took {
		t.Fatalf("recovery times: %d, the longest %v; want 1, the repair's %v (from the gap's detection)", n, mx, rec.events[0].Took)
	}
}
