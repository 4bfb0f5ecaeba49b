package handler

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestHandlerSessionChange runs the real threads over one day's session on
// both lines, then, after the lines were silent for longer than
// LineTimeout, over the next day's session, whose locates name other
// symbols. In both modes (sharded: two shards, so an instrument's locate
// may move to the other shard) the published books are the next day's
// alone, every symbol is found at its new locate, and the old day's
// symbols that the new day does not list are gone from the directory.
// No recovery is configured: the new session, delivered whole from its
// first sequence number, leaves the books whole (not flagged).
func TestHandlerSessionChange(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) { testHandlerSessionChange(t, mode, shards, 0) })
}

// TestHandlerSessionChangeJoinedLate is TestHandlerSessionChange with the
// new session's first packet lost on both lines: with no recovery
// configured, the books stay flagged possibly stale, and the gap is
// counted.
func TestHandlerSessionChangeJoinedLate(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) { testHandlerSessionChange(t, mode, shards, 1) })
}

// testHandlerSessionChange runs the two days, the second without its
// first lost packets.
func testHandlerSessionChange(t *testing.T, mode Mode, shards []int, lost int) {
	day1 := sessionDay(t, "DAY1", 9, 20_000, 0, 50)
	day2 := sessionDay(t, "DAY2", 10, 20_000, 0, 50)
	ref, err := book.New(book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	old, err := book.New(book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	var script []rx.Packet
	now := time.Now().UnixNano()
	for d, day := range [][][]byte{day1, day2} {
		rxTime := now + int64(d)*int64(3*time.Second)
		books := old
		if d == 1 {
			books = ref
		}
		for i, ms := range dayMessages(t, day) {
			if d == 1 && i < lost {
				continue
			}
			for _, m := range ms {
				books.Apply(itch.Msg(m))
			}
			b := day[i]
			script = append(script, rx.Packet{Data: b, Line: rx.LineA, RxTime: rxTime}, rx.Packet{Data: b, Line: rx.LineB, RxTime: rxTime})
		}
	}
	moved := 0
	for b := range ref.All() {
		if o := old.Book(b.Locate()); o == nil || o.Name() != b.Name() {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("the two days list the same symbols at the same locates")
	}
	r := &scriptRx{script: script, errAt: -1}
	name := shmtest.Name(t, "fhsession")
	h, err := Start(Config{
		Receive:    rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Arbiter:    ArbiterConfig{Grace: time.Millisecond, Hold: 5 * time.Millisecond, LineTimeout: time.Second},
		Book:       book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
		Mode:       mode,
		ShardCores: shards,
		ShmName:    name,
		Open:       func(rx.Config) (rx.Receiver, error) { return r, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	missing := totalMessages(t, day2[:lost])
	want := totalMessages(t, day1) + totalMessages(t, day2) - missing
	waitFor(t, "both days applied", func() bool {
		st := h.Stats()
		return st.Arbiter.Delivered == want && st.Applied() == st.Routed
	})
	time.Sleep(60 * time.Millisecond) // one more stats copy
	st := h.Stats()
	wantGaps := uint64(0)
	if lost > 0 {
		wantGaps = 1
	}
	if st.Arbiter.SessionChanges != 1 || st.Arbiter.Gaps != wantGaps || st.Arbiter.GapMessages != missing {
		t.Fatalf("session changes %d (want 1), gaps %d (want %d) of %d messages (want %d)", st.Arbiter.SessionChanges, st.Arbiter.Gaps, wantGaps, st.Arbiter.GapMessages, missing)
	}
	for i, s := range st.Shards {
		if s.PublishErrors != 0 || s.StaleBinds != 0 || s.DuplicateSymbols != 0 {
			t.Fatalf("shard %d: publish errors %d, stale binds %d, duplicate symbols %d", i, s.PublishErrors, s.StaleBinds, s.DuplicateSymbols)
		}
	}
	if lost > 0 {
		// The lost packet announced locates the old day's books keep in
		// the directory (flagged), so compareShm does not apply.
		for range 2 { // after one more stats copy too
			waitFor(t, "every shard flagged", func() bool {
				st := h.Stats()
				for _, s := range st.Shards {
					if !s.Stale {
						return false
					}
				}
				return true
			})
			time.Sleep(30 * time.Millisecond)
		}
		return
	}
	waitFor(t, "the new day's books whole", func() bool { st := h.Stats(); return st.StaleBooks() == 0 })
	compareShm(t, name, ref, false)
	rd, err := shm.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	gone := 0
	for b := range old.All() {
		if nb := ref.Book(b.Locate()); nb != nil && nb.Name() == b.Name() {
			continue
		}
		listed := false
		for nb := range ref.All() {
			listed = listed || nb.Name() == b.Name()
		}
		if loc, ok := rd.Lookup(b.Name()); ok && !listed {
			t.Fatalf("%s of the old day still found, at locate %d", b.Name(), loc)
		}
		if !listed {
			gone++
		}
	}
	if gone == 0 {
		t.Fatal("every old symbol is listed again: nothing checked for removal")
	}
}
