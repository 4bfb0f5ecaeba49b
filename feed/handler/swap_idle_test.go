package handler

import (
	"errors"
	"fmt"
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
			scriptStep(t, h, r, "SWAP", &seq, msgs...)
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
					dups += s.DuplicateSymbols + s.StaleBinds
				}
				t.Fatalf("after the swap and 10 s without a message: AAA at locate %d, BBB at locate %d (0: nowhere), duplicate symbols and refused binds %d; want AAA at 3, BBB at 2", a, b, dups)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// scriptStep adds msgs to r's script, each in a packet of session on both
// lines from sequence number *seq on, and waits until h has applied them.
func scriptStep(t *testing.T, h *Handler, r *scriptRx, session string, seq *uint64, msgs ...[]byte) {
	t.Helper()
	r.mu.Lock()
	for _, m := range msgs {
		b := sessionPacket(session, *seq, m)
		r.script = append(r.script, rx.Packet{Data: b, Line: rx.LineA, RxTime: time.Now().UnixNano()}, rx.Packet{Data: b, Line: rx.LineB, RxTime: time.Now().UnixNano()})
		*seq++
	}
	r.mu.Unlock()
	waitFor(t, "the step's messages applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == *seq-1 && h.Applied() == st.Routed
	})
}

// stepDuplicate plays, in session DUPE, four instruments (enough packets
// to confirm the session: defaultSessionConfirm), then DUPE at locate 7
// with an order, then DUPE at 6 with one (a duplicate), each step applied
// before the next comes. It returns the next sequence number and a reader
// of h's shm file name.
func stepDuplicate(t *testing.T, h *Handler, r *scriptRx, name string) (uint64, *shm.Reader) {
	t.Helper()
	dir := filterDir
	seq := uint64(1)
	scriptStep(t, h, r, "DUPE", &seq, dir(2, "AAA"), dir(3, "BBB"), dir(4, "CCC"), dir(5, "DDD"))
	scriptStep(t, h, r, "DUPE", &seq, dir(7, "DUPE"), filterAdd(7, "DUPE", 1, 100))
	scriptStep(t, h, r, "DUPE", &seq, dir(6, "DUPE"), filterAdd(6, "DUPE", 2, 200))
	rd, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return seq, rd
}

// waitDupeAt6 waits up to 10 s after what for rd to find DUPE at locate
// 6 (the duplicate stepDuplicate announced, promoted).
func waitDupeAt6(t *testing.T, rd *shm.Reader, what string) {
	t.Helper()
	for i := 0; ; i++ {
		if loc, _ := rd.Lookup("DUPE"); loc == 6 {
			return
		}
		if i == 2000 {
			loc, _ := rd.Lookup("DUPE")
			t.Fatalf("10 s after %s: DUPE at locate %d (0: nowhere), want 6", what, loc)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDuplicateSymbolPromoted: DUPE is announced at locate 7, then at 6
// (two shards when sharded), each step applied before the next comes. The
// first announced keeps it and the second counts once, in both modes,
// whichever shard publishes first. Then 7 is given GONE (with a symbol
// filter leaving GONE out: withdrawn): 6 takes DUPE although its shard
// gets no message of its own since (sharded, the claim's marker promotes
// it in its books, and it binds once 7's shard has unbound DUPE).
func TestDuplicateSymbolPromoted(t *testing.T) {
	for _, filter := range []bool{false, true} {
		t.Run(fmt.Sprintf("filter=%v", filter), func(t *testing.T) {
			forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
				var symbols []string
				if filter {
					symbols = []string{"AAA", "BBB", "CCC", "DDD", "DUPE"}
				}
				h, r, name := startScript(t, mode, shards, nil, -1, zerolog.Nop(), symbols)
				defer h.Stop()
				seq, rd := stepDuplicate(t, h, r, name)
				dups := func() (n uint64) {
					for _, s := range h.Stats().Shards {
						n += s.DuplicateSymbols
					}
					return n
				}
				// The shards' counters are copied out every 50 ms.
				waitFor(t, "DUPE published and the duplicate counted", func() bool { _, ok := rd.Lookup("DUPE"); return ok && dups() > 0 })
				if loc, _ := rd.Lookup("DUPE"); loc != 7 || dups() != 1 {
					t.Fatalf("DUPE at locate %d, duplicate symbols %d; want 7 (announced first), 1", loc, dups())
				}
				if _, err := rd.Read(6, make([]byte, rd.Info().MaxSnapshot)); !errors.Is(err, shm.ErrUnknownLocate) {
					t.Fatalf("read of the duplicate locate 6: %v, want ErrUnknownLocate", err)
				}
				scriptStep(t, h, r, "DUPE", &seq, filterDir(7, "GONE"))
				waitDupeAt6(t, rd, "7 left DUPE")
				v, err := rd.Read(6, make([]byte, rd.Info().MaxSnapshot))
				if err != nil || v.BidLevels() != 1 || dups() != 1 {
					t.Fatalf("DUPE at 6: %v, %d bid levels (want its order), duplicate symbols %d (want 1)", err, v.BidLevels(), dups())
				}
			})
		})
	}
}
