package moldudp64_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/race"
)

type step struct {
	seq   uint64
	count uint16
	want  moldudp64.Verdict
}

func run(t *testing.T, tr *moldudp64.Tracker, s moldudp64.Session, steps []step) {
	t.Helper()
	for i, st := range steps {
		got := tr.Track(s, st.seq, st.count)
		if got != st.want {
			t.Fatalf("step %d (seq %d count %d): got %+v\nwant %+v", i, st.seq, st.count, got, st.want)
		}
	}
}

func v(k moldudp64.Kind, next uint64) moldudp64.Verdict {
	return moldudp64.Verdict{Kind: k, Next: next}
}

func TestTrackerInOrder(t *testing.T) {
	var tr moldudp64.Tracker
	first := v(moldudp64.KindInOrder, 4)
	first.NewSession = true
	run(t, &tr, sess, []step{
		{1, 3, first},
		{4, 10, v(moldudp64.KindInOrder, 14)},
		{14, 1, v(moldudp64.KindInOrder, 15)},
	})
	want := moldudp64.TrackerStats{Packets: 3, InOrder: 3, Applied: 14}
	if tr.Stats != want {
		t.Errorf("stats %+v", tr.Stats)
	}
	if tr.Session() != sess || tr.Next() != 15 || !tr.Started() || tr.Ended() {
		t.Error("state")
	}
}

func TestTrackerGap(t *testing.T) {
	var tr moldudp64.Tracker
	tr.Track(sess, 1, 5) // next 6
	gap := v(moldudp64.KindGap, 22)
	gap.Gap = moldudp64.Range{First: 6, Count: 10}
	run(t, &tr, sess, []step{
		{16, 6, gap},
		{22, 2, v(moldudp64.KindInOrder, 24)},
	})
	if tr.Stats.Gaps != 1 || tr.Stats.GapMessages != 10 || tr.Stats.Applied != 13 {
		t.Errorf("stats %+v", tr.Stats)
	}
	if gap.Gap.End() != 16 || !gap.Apply() {
		t.Error("Range.End / Apply")
	}
}

func TestTrackerLateJoin(t *testing.T) {
	var tr moldudp64.Tracker
	want := v(moldudp64.KindGap, 1010)
	want.Gap = moldudp64.Range{First: 1, Count: 999}
	want.NewSession = true
	run(t, &tr, sess, []step{{1000, 10, want}})

	// Expect: start anywhere, nothing before counts as missing.
	var tr2 moldudp64.Tracker
	tr2.Expect(sess, 1000)
	run(t, &tr2, sess, []step{
		{1000, 10, v(moldudp64.KindInOrder, 1010)},
		{990, 5, v(moldudp64.KindDuplicate, 1010)},
	})
}

func TestTrackerDuplicateAndOverlap(t *testing.T) {
	var tr moldudp64.Tracker
	tr.Track(sess, 1, 10) // next 11
	over := v(moldudp64.KindOverlap, 16)
	over.Skip = 3
	run(t, &tr, sess, []step{
		{1, 10, v(moldudp64.KindDuplicate, 11)},
		{5, 2, v(moldudp64.KindDuplicate, 11)},
		{8, 8, over},
		{15, 1, v(moldudp64.KindDuplicate, 16)},
	})
	s := tr.Stats
	if s.Duplicates != 3 || s.Overlaps != 1 || s.OverlapMessages != 3 || s.Applied != 15 || s.LateMessages != 0 {
		t.Errorf("stats %+v", s)
	}
	if over.Apply() == false || v(moldudp64.KindDuplicate, 0).Apply() {
		t.Error("Apply")
	}
}

// TestTrackerReorder: packets 1, 3, 2 (by packet). The late packet 2 is not
// applied by the Tracker (it is behind the expectation) but is reported as
// KindLate, distinct from a duplicate; its second copy is a duplicate.
func TestTrackerReorder(t *testing.T) {
	var tr moldudp64.Tracker
	tr.Track(sess, 1, 5)
	gap := v(moldudp64.KindGap, 16)
	gap.Gap = moldudp64.Range{First: 6, Count: 5}
	first := v(moldudp64.KindLate, 16)
	first.Filled = 3
	rest := v(moldudp64.KindLate, 16)
	rest.Filled = 2
	run(t, &tr, sess, []step{{11, 5, gap}}) // packet 3 overtakes packet 2
	if m := tr.Missing(nil); len(m) != 1 || m[0] != (moldudp64.Range{First: 6, Count: 5}) {
		t.Errorf("missing %v", m)
	}
	run(t, &tr, sess, []step{
		{6, 3, first}, // part of packet 2: 6, 7, 8 were missing
		{6, 5, rest},  // all of packet 2: only 9 and 10 were still missing
		{6, 5, v(moldudp64.KindDuplicate, 16)},
	})
	if m := tr.Missing(nil); len(m) != 0 {
		t.Errorf("missing after the late packets: %v", m)
	}
	if tr.Stats.Late != 2 || tr.Stats.LateMessages != 5 || tr.Stats.Duplicates != 1 || tr.Stats.Applied != 10 {
		t.Errorf("stats %+v", tr.Stats)
	}
}

func TestTrackerOverlapFillsGap(t *testing.T) {
	var tr moldudp64.Tracker
	tr.Track(sess, 1, 2)        // next 3
	tr.Track(sess, 5, 2)        // gap [3,5), next 7
	got := tr.Track(sess, 3, 6) // 3..8: 3,4 missing, 5,6 seen, 7,8 new
	want := v(moldudp64.KindOverlap, 9)
	want.Skip = 4
	want.Filled = 2
	if got != want {
		t.Fatalf("got %+v want %+v", got, want)
	}
}

func TestTrackerHeartbeat(t *testing.T) {
	var tr moldudp64.Tracker
	hb := v(moldudp64.KindHeartbeat, 1)
	hb.NewSession = true
	tr2 := v(moldudp64.KindHeartbeat, 25)
	tr2.Gap = moldudp64.Range{First: 11, Count: 14}
	run(t, &tr, sess, []step{
		{1, 0, hb}, // idle session before any message
		{1, 10, v(moldudp64.KindInOrder, 11)},
		{11, 0, v(moldudp64.KindHeartbeat, 11)},
		{25, 0, tr2}, // heartbeat ahead: 11..24 missing
		{20, 0, v(moldudp64.KindHeartbeat, 25)},
		{25, 1, v(moldudp64.KindInOrder, 26)},
	})
	if tr.Stats.Heartbeats != 4 || tr.Stats.Gaps != 1 || tr.Stats.GapMessages != 14 {
		t.Errorf("stats %+v", tr.Stats)
	}
	// The missing messages arriving later are late, not duplicates.
	if got := tr.Track(sess, 11, 14); got.Kind != moldudp64.KindLate || got.Filled != 14 {
		t.Errorf("late fill after heartbeat gap: %+v", got)
	}
}

func TestTrackerEndOfSession(t *testing.T) {
	var tr moldudp64.Tracker
	tr.Track(sess, 1, 10)
	end := v(moldudp64.KindEndOfSession, 11)
	endGap := v(moldudp64.KindEndOfSession, 13)
	endGap.Gap = moldudp64.Range{First: 11, Count: 2}
	run(t, &tr, sess, []step{
		{11, moldudp64.EndOfSessionCount, end},
		{13, moldudp64.EndOfSessionCount, endGap},
	})
	if !tr.Ended() || tr.Stats.EndOfSession != 2 {
		t.Errorf("ended %v stats %+v", tr.Ended(), tr.Stats)
	}
}

func TestTrackerSessionChange(t *testing.T) {
	var tr moldudp64.Tracker
	tr.Track(sess, 1, 100)
	tr.Track(sess, 101, moldudp64.EndOfSessionCount)
	next := moldudp64.NewSession("20261125A")
	want := v(moldudp64.KindInOrder, 4)
	want.NewSession = true
	run(t, &tr, next, []step{{1, 3, want}})
	if tr.Session() != next || tr.Ended() || tr.Stats.SessionChanges != 1 {
		t.Errorf("session %q ended %v stats %+v", tr.Session(), tr.Ended(), tr.Stats)
	}
	// Joining the new session late reports the gap from 1.
	var tr2 moldudp64.Tracker
	tr2.Track(sess, 1, 1)
	g := tr2.Track(next, 50, 1)
	if !g.NewSession || g.Kind != moldudp64.KindGap || g.Gap != (moldudp64.Range{First: 1, Count: 49}) {
		t.Errorf("late join after change: %+v", g)
	}
}

func TestTrackerSequenceWrap(t *testing.T) {
	var tr moldudp64.Tracker
	const max = math.MaxUint64
	tr.Expect(sess, max-10)
	run(t, &tr, sess, []step{
		{max - 10, 5, v(moldudp64.KindInOrder, max-5)},
		{max - 5, 5, v(moldudp64.KindInOrder, max)}, // last representable packet
		{max - 1, 2, v(moldudp64.KindMalformed, max)},
		{max, 1, v(moldudp64.KindMalformed, max)},
		{0, 1, v(moldudp64.KindMalformed, max)},
		{max, 0, v(moldudp64.KindHeartbeat, max)},
		{max - 3, 3, v(moldudp64.KindDuplicate, max)},
	})
	if tr.Stats.Malformed != 3 {
		t.Errorf("stats %+v", tr.Stats)
	}
	// A gap that spans more than the window.
	var tr2 moldudp64.Tracker
	tr2.Expect(sess, 1)
	g := tr2.Track(sess, max-100, 100)
	if g.Kind != moldudp64.KindGap || g.Gap.Count != max-101 || g.Next != max {
		t.Errorf("huge gap: %+v", g)
	}
	if l := tr2.Track(sess, max-200, 50); l.Kind != moldudp64.KindLate || l.Filled != 50 {
		t.Errorf("late in huge gap: %+v", l)
	}
}

func TestTrackerZeroAlloc(t *testing.T) {
	var tr moldudp64.Tracker
	seq := uint64(1)
	miss := make([]moldudp64.Range, 0, 4096)
	allocs, exact := race.AllocsPerRun(t, 1000, func() {
		miss = tr.Missing(miss[:0])
		tr.Track(sess, seq, 20)
		tr.Track(sess, seq, 20) // duplicate
		seq += 40               // gap of 20
		tr.Track(sess, seq-20, 10)
		tr.Track(sess, seq, 0)
	})
	if exact && allocs != 0 {
		t.Errorf("Track: %v allocs, want 0", allocs)
	}
}

// naiveTracker is the reference model: a map of every sequence number seen
// and the expectation, with the same window rule (older than next-4096 counts
// as seen).
type naiveTracker struct {
	next uint64
	seen map[uint64]bool
}

func (n *naiveTracker) track(seq uint64, count uint16) moldudp64.Verdict {
	var v moldudp64.Verdict
	if n.next == 0 {
		n.next, v.NewSession = 1, true
	}
	end := seq + uint64(count)
	unseen := func(from, to uint64) uint64 {
		var c uint64
		for s := from; s < to; s++ {
			if (n.next <= 4096 || s >= n.next-4096) && !n.seen[s] {
				c++
			}
			n.seen[s] = true
		}
		return c
	}
	switch {
	case count == 0:
		v.Kind = moldudp64.KindHeartbeat
		if seq > n.next {
			v.Gap = moldudp64.Range{First: n.next, Count: seq - n.next}
			n.next = seq
		}
	case seq >= n.next:
		v.Kind = moldudp64.KindInOrder
		if seq > n.next {
			v.Kind = moldudp64.KindGap
			v.Gap = moldudp64.Range{First: n.next, Count: seq - n.next}
		}
		unseen(seq, end)
		n.next = end
	case end <= n.next:
		v.Filled = unseen(seq, end)
		v.Kind = moldudp64.KindDuplicate
		if v.Filled > 0 {
			v.Kind = moldudp64.KindLate
		}
	default:
		v.Kind = moldudp64.KindOverlap
		v.Skip = uint16(n.next - seq)
		v.Filled = unseen(seq, n.next)
		unseen(n.next, end)
		n.next = end
	}
	v.Next = n.next
	return v
}

func (n *naiveTracker) missing() []moldudp64.Range {
	var out []moldudp64.Range
	lo := uint64(1)
	if n.next > 4096 {
		lo = n.next - 4096
	}
	for s := lo; s < n.next; s++ {
		if n.seen[s] {
			continue
		}
		if k := len(out); k > 0 && out[k-1].End() == s {
			out[k-1].Count++
		} else {
			out = append(out, moldudp64.Range{First: s, Count: 1})
		}
	}
	return out
}

func rangesEqual(a, b []moldudp64.Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestTrackerRandom compares the Tracker with the naive model on random
// streams of in-order, lost, reordered, duplicated and overlapping packets.
func TestTrackerRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for round := range 20 {
		var tr moldudp64.Tracker
		ref := naiveTracker{seen: map[uint64]bool{}}
		head := uint64(1)
		for i := range 3000 {
			var seq uint64
			var count uint16
			switch x := r.IntN(100); {
			case x < 60: // next packet
				seq, count = head, uint16(1+r.IntN(40))
			case x < 70: // loss: skip ahead, sometimes beyond the window
				skip := uint64(1 + r.IntN(200))
				if r.IntN(20) == 0 {
					skip = uint64(4000 + r.IntN(300))
				}
				seq, count = head+skip, uint16(1+r.IntN(40))
			case x < 90: // old or overlapping packet from recent history
				back := uint64(1 + r.IntN(5000))
				if back >= head {
					back = head - 1
				}
				seq, count = head-back, uint16(1+r.IntN(60))
				if seq == 0 {
					seq = 1
				}
			default: // heartbeat, sometimes ahead
				seq = head + uint64(r.IntN(3))*uint64(r.IntN(30))
			}
			want := ref.track(seq, count)
			got := tr.Track(sess, seq, count)
			if got != want {
				t.Fatalf("round %d step %d: Track(%d, %d) = %+v\nmodel %+v", round, i, seq, count, got, want)
			}
			head = ref.next
			if i%97 == 0 {
				if got, want := tr.Missing(nil), ref.missing(); !rangesEqual(got, want) {
					t.Fatalf("round %d step %d: Missing = %v\nmodel %v", round, i, got, want)
				}
			}
		}
		st := tr.Stats
		if st.InOrder == 0 || st.Gaps == 0 || st.Overlaps == 0 || st.Duplicates == 0 || st.Late == 0 || st.Heartbeats == 0 {
			t.Fatalf("round %d did not exercise every kind: %+v", round, st)
		}
	}
}

func TestTrackerStaleSession(t *testing.T) {
	var tr moldudp64.Tracker
	old, cur, third := sess, moldudp64.NewSession("20261125A"), moldudp64.NewSession("20261126A")
	tr.Track(old, 1, 100)
	if v := tr.Track(cur, 1, 10); !v.NewSession || v.Kind != moldudp64.KindInOrder {
		t.Fatalf("change: %+v", v)
	}
	// Line B still delivers the old session: dropped, no flip back.
	for _, seq := range []uint64{90, 101, 5000} {
		if v := tr.Track(old, seq, 5); v.Kind != moldudp64.KindStaleSession || v.Next != 11 {
			t.Fatalf("stale seq %d: %+v", seq, v)
		}
	}
	if v := tr.Track(old, 120, 0); v.Kind != moldudp64.KindStaleSession {
		t.Fatalf("stale heartbeat: %+v", v)
	}
	if v := tr.Track(cur, 11, 1); v.Kind != moldudp64.KindInOrder || v.NewSession {
		t.Fatalf("current after stale: %+v", v)
	}
	if v := tr.Track(third, 1, 1); !v.NewSession || tr.Session() != third {
		t.Fatalf("third session: %+v", v)
	}
	// Now cur is the previous one.
	if v := tr.Track(cur, 12, 1); v.Kind != moldudp64.KindStaleSession {
		t.Fatalf("second stale: %+v", v)
	}
	if tr.Stats.StaleSession != 5 || tr.Stats.SessionChanges != 2 {
		t.Errorf("stats %+v", tr.Stats)
	}
	if moldudp64.KindStaleSession.String() != "stale-session" || moldudp64.Kind(200).String() != "kind(?)" {
		t.Error("Kind.String")
	}
}

func TestRangeRequest(t *testing.T) {
	r := moldudp64.Range{First: 100, Count: 70000}
	if !r.Contains(100) || !r.Contains(70099) || r.Contains(70100) || r.Contains(99) {
		t.Error("Contains")
	}
	for _, c := range []struct {
		o    moldudp64.Range
		want bool
	}{{moldudp64.Range{First: 50, Count: 51}, true}, {moldudp64.Range{First: 50, Count: 50}, false}, {moldudp64.Range{First: 70099, Count: 5}, true},
		{moldudp64.Range{First: 70100, Count: 5}, false}, {moldudp64.Range{First: 200, Count: 0}, false}, {moldudp64.Range{First: 0, Count: 1 << 40}, true}} {
		if r.Overlaps(c.o) != c.want || c.o.Overlaps(r) != c.want {
			t.Errorf("%v overlaps %v: %v, want %v", r, c.o, r.Overlaps(c.o), c.want)
		}
	}
	if q := r.Request(sess, 500); q != (moldudp64.Request{Session: sess, Seq: 100, Count: 500}) {
		t.Errorf("capped request %+v", q)
	}
	if q := r.Request(sess, 0); q.Count != moldudp64.MaxCount {
		t.Errorf("uncapped request %+v", q)
	}
	if q := (moldudp64.Range{First: 5, Count: 3}).Request(sess, 500); q.Count != 3 || q.Seq != 5 {
		t.Errorf("small request %+v", q)
	}
	p, _ := moldudp64.Parse(packet(sess, 9, 2, []byte("a"), []byte("b")))
	if p.Range() != (moldudp64.Range{First: 9, Count: 2}) {
		t.Errorf("Packet.Range %+v", p.Range())
	}
}
