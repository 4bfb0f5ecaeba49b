package handler

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestLocateSwapThenQuiet: locates 2 and 3 (in different shards when
// sharded) swap their symbols in one session, one Stock Directory message
// at a time, each applied before the next comes, and nothing follows. The
// first re-assignment (2: BBB) is refused as a duplicate, BBB being still
// bound at 3; the second (3: AAA) retires that binding. Both symbols must
// end published at their new locates although neither locate gets another
// message. Sharded, the refused shard asked again only at a flush of its
// own with a book changed: a swap followed by no message for that shard
// left BBB found nowhere.
func TestLocateSwapThenQuiet(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		dir := filterDir
		steps := [][][]byte{
			// Enough packets to confirm the session (defaultSessionConfirm).
			{dir(2, "AAA"), dir(3, "BBB"), dir(4, "CCC"), dir(5, "DDD")},
			{dir(2, "BBB")},
			{dir(3, "AAA")},
		}
		h, r, name := startScript(t, mode, shards, nil, -1, zerolog.Nop(), nil)
		defer h.Stop()
		seq := uint64(1)
		for _, msgs := range steps {
			r.mu.Lock()
			for _, m := range msgs {
				b := sessionPacket("SWAP", seq, m)
				r.script = append(r.script, rx.Packet{Data: b, Line: rx.LineA, RxTime: time.Now().UnixNano()}, rx.Packet{Data: b, Line: rx.LineB, RxTime: time.Now().UnixNano()})
				seq++
			}
			r.mu.Unlock()
			waitFor(t, "the step's messages applied", func() bool {
				st := h.Stats()
				return st.Arbiter.Delivered == seq-1 && h.Applied() == st.Routed
			})
		}
		rd, err := shm.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		for i := 0; ; i++ {
			a, _ := rd.Lookup("AAA")
			b, _ := rd.Lookup("BBB")
			if a == 3 && b == 2 {
				break
			}
			if i == 2000 {
				var dups uint64
				for _, s := range h.Stats().Shards {
					dups += s.DuplicateSymbols
				}
				t.Fatalf("after the swap and 10 s without a message: AAA at locate %d, BBB at locate %d (0: nowhere), duplicate refusals %d; want AAA at 3, BBB at 2", a, b, dups)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}
