package handler

import (
	"bytes"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/proto/bookfb"
)

// TestSessionChangePromotesDuplicate: DUPE is at locate 7 and a duplicate
// at 6 (sharded: shard 1 and shard 0), then 7 is given GONE and the
// session changes at once (End of Session, a new session that does not
// list DUPE). Run to completion publishes DUPE at 6 when 7 leaves it, and
// the session change keeps that book, flagged possibly stale, as it keeps
// every book of the old session until the new one is whole. Sharded,
// shard 0 asks again for 6's binding once shard 1 has retired 7's (at its
// next flush, or after 50 ms idle); the session change emptied shard 0's
// books and forgot the refusal first when it came before that retirement,
// and DUPE was then nowhere. The test holds shard 1 in its stats copy (its
// idle thread waits for the stats lock the test holds) until shard 0 has
// met the session change, so that the retirement comes after it.
func TestSessionChangePromotesDuplicate(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		h, r, name := startScript(t, mode, shards, nil, -1, zerolog.Nop(), nil)
		defer h.Stop()
		seq, rd := stepDuplicate(t, h, r, name)
		waitFor(t, "DUPE published at 7", func() bool { loc, _ := rd.Lookup("DUPE"); return loc == 7 })

		buf := make([]byte, 1<<20)
		var release func()
		if mode == ModeSharded {
			release = holdIdleShard(t, h.shards[1], buf)
		}
		old := moldudp64.NewSession("DUPE")
		r.mu.Lock()
		add := func(b []byte) {
			now := time.Now().UnixNano()
			r.script = append(r.script, rx.Packet{Data: b, Line: rx.LineA, RxTime: now}, rx.Packet{Data: b, Line: rx.LineB, RxTime: now})
		}
		add(sessionPacket("DUPE", seq, filterDir(7, "GONE")))
		add(moldudp64.AppendHeader(nil, old, seq+1, moldudp64.EndOfSessionCount))
		for i, sym := range []string{"AAA", "BBB", "CCC", "DDD"} {
			add(sessionPacket("NEXT", uint64(i+1), filterDir(uint16(i+2), sym)))
		}
		r.mu.Unlock()
		if release != nil {
			// Shard 0 met the session change: it waits there for
			// shard 1, or it went on past it.
			s0 := h.shards[0]
			for i := 0; !settling(buf) && (h.Delivered() != seq+4 || s0.ring.Len() != 0); i++ {
				if i == 10_000 {
					t.Fatal("shard 0 never met the session change")
				}
				time.Sleep(time.Millisecond)
			}
			release()
		}
		waitFor(t, "the new session applied", func() bool { return h.Delivered() == seq+4 && h.Applied() == h.Stats().Routed })
		waitDupeAt6(t, rd, "7 left DUPE and the session changed")
		v, err := rd.Read(6, make([]byte, rd.Info().MaxSnapshot))
		if err != nil || v.Flags()&bookfb.FlagsPossiblyStale == 0 || v.BidLevels() != 1 {
			t.Fatalf("DUPE at 6: %v, flags %v, %d bid levels; want its order, flagged possibly stale (the old session's)", err, v.Flags(), v.BidLevels())
		}
	})
}

// settling reports whether a shard thread waits in settleRebuild, from a
// traceback as waitingForStatsLock reads it.
func settling(buf []byte) bool {
	for _, g := range stacks(buf) {
		if bytes.Contains(g, []byte(".(*shard).settleRebuild(")) {
			return true
		}
	}
	return false
}
