package handler

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// TestRebuildKeepsCounters: a snapshot rebuild empties the books; the
// bad-input counters, exported as Prometheus counters, must not go back.
// An unknown order reference is counted, then the books are rebuilt from a
// snapshot: shard_inconsistencies_total stays 1 and the applied-message
// count goes on, while the gauges (orders) describe the new books.
func TestRebuildKeepsCounters(t *testing.T) {
	h, sh, _ := recoveryHandler(t, nil)
	h.rec = nil
	h.arb.SetMissing(nil)
	del := itch.OrderDeleteFields{Header: itch.Header{Locate: 7}, OrderRef: 99}
	dir := dirMsg("SNAP")
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := int64(time.Second)
	for i, m := range [][]byte{dir, del.Append(nil), ev.Append(nil), ev.Append(nil)} {
		h.arb.Offer(0, sessionPacket("KEEP", uint64(1+i), m), now)
	}
	h.endBatch()
	inconsistencies := metricNamed(t, "shard_inconsistencies_total").shard
	metric := func() uint64 {
		sh.copyStats(true)
		st := sh.statsCopy()
		return inconsistencies(&st)
	}
	if n := metric(); n != 1 {
		t.Fatalf("inconsistencies %d before the rebuild, want 1", n)
	}
	add := itch.AddOrderFields{Header: itch.Header{Locate: 7}, OrderRef: 1, Side: 'B', Shares: 100, Stock: itch.NewSymbol("SNAP"), Price: 100}
	var msgs []byte
	for _, m := range [][]byte{dir, add.Append(nil)} {
		msgs = append(msgs, byte(len(m)>>8), byte(len(m)))
		msgs = append(msgs, m...)
	}
	h.rebuild(msgs, 5)
	h.endBatch()
	if n := metric(); n != 1 {
		t.Fatalf("inconsistencies %d after the rebuild, want 1 (a counter never goes back)", n)
	}
	if s := sh.books.Stats(); s.Orders != 1 || s.UnknownRefDelete != 1 || s.Messages != 6 {
		t.Fatalf("after the rebuild: orders %d, unknown-ref deletes %d, messages %d", s.Orders, s.UnknownRefDelete, s.Messages)
	}
}
