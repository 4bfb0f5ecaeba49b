package handler

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/rx"
)

// TestStopPromotesDuplicate: sharded (two shards), DUPE is at locate 7
// (shard 1) and a duplicate at 6 (shard 0); then 7 is given GONE and the
// handler stops at once. Shard 0 gets the claim (6 takes DUPE in its
// books) while shard 1 has not yet retired 7's binding of DUPE, so its
// publisher keeps 6 refused and would ask again at its next flush; Stop
// closes both rings, and shard 0 drains and ends before shard 1 retires
// the binding. Run to completion publishes DUPE at 6 in the batch of the
// Stock Directory message (TestDuplicateSymbolPromoted): the shm file the
// stopped handler leaves must say so too. The test holds shard 1's stats
// lock, so that its idle thread waits in its stats copy (as a Stats
// reader can make it wait), until shard 0 has ended.
func TestStopPromotesDuplicate(t *testing.T) {
	h, r, name := startScript(t, ModeSharded, []int{-1, -1}, nil, -1, zerolog.Nop(), nil)
	stopped := false
	defer func() {
		if !stopped {
			h.Stop()
		}
	}()
	seq, rd := stepDuplicate(t, h, r, name)
	waitFor(t, "DUPE published at 7", func() bool { loc, _ := rd.Lookup("DUPE"); return loc == 7 })

	s0 := h.shards[0]
	buf := make([]byte, 1<<20)
	release := holdIdleShard(t, h.shards[1], buf)
	batches := s0.batches.Load()
	r.mu.Lock()
	b := sessionPacket("DUPE", seq, filterDir(7, "GONE"))
	r.script = append(r.script, rx.Packet{Data: b, Line: rx.LineA, RxTime: time.Now().UnixNano()}, rx.Packet{Data: b, Line: rx.LineB, RxTime: time.Now().UnixNano()})
	r.mu.Unlock()
	for i := 0; h.Delivered() != seq || s0.batches.Load() == batches || s0.ring.Len() != 0; i++ {
		if i == 10_000 {
			t.Fatal("shard 0 never took the claim of 7's Stock Directory message")
		}
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- h.Stop() }()
	for i := 0; shardThreads(buf) != 1; i++ {
		if i == 10_000 {
			t.Fatalf("%d shard threads left after Stop; want shard 0 ended, shard 1 waiting", shardThreads(buf))
		}
		time.Sleep(time.Millisecond)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	stopped = true
	if loc, _ := rd.Lookup("DUPE"); loc != 6 {
		t.Fatalf("after Stop: DUPE at locate %d (0: nowhere), want 6 (the duplicate, promoted when 7 left it)", loc)
	}
	if loc, _ := rd.Lookup("GONE"); loc != 7 {
		t.Fatalf("after Stop: GONE at locate %d, want 7", loc)
	}
}
