package handler

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestSnapshotWakesQuietLines: a real handler on each backend (in a lab
// namespace, both modes), a snapshot source and no re-request,
// arbitration.hold 2 s (the receive wait times out after 500 ms), grace
// 1 ms, lines quiet. Messages 1 to 5 come on both lines, then 7: 6 is
// declared (the wake timer, TestHoleWakesQuietLines) and a snapshot
// fetched, delivery frozen, 7 held. Then, by kind:
//
//   - loaded: the fetch returns a snapshot at 7; it is loaded and 7
//     delivered. The fetch's result ends the wait it comes in (an eventfd,
//     recovery.snapDone).
//   - retried: the fetch fails; the retry, recovery.snapshot.retry (100
//     ms) later, fetches a snapshot at 7, loaded. The failure ends the wait
//     it comes in, the retry's wait the wake timer (recovery.nextDue:
//     snapAt).
//   - held: the fetch returns a snapshot at 9, ahead of the lines (at 8):
//     held for line_timeout (100 ms), then refused and 7 delivered. The
//     result ends the wait, the hold's end the wake timer (earlyAt).
//
// In each, no receive wait ends by its timeout (the receiver's
// wait_timeouts) between the fetch's return and 7's delivery (or the
// retry's fetch). Before, the result was taken from its channel at the
// round after it came, on quiet lines the wait's timeout, and the retry
// and the hold's end were not on the timer: 'receive waits ended by
// timeout between the fetch's return and 7 delivered: 1, want 0' (loaded,
// 500 ms; held: 2, 1 s), 'between the failed fetch's return and the
// retry: 2, want 0' (retried, 1 s), on every backend and mode; with the
// eventfd alone, retried and held still 1 (500 ms).
func TestSnapshotWakesQuietLines(t *testing.T) {
	for _, backend := range []string{rx.BackendSocket, rx.BackendUring, rx.BackendXDP} {
		for _, m := range modes {
			for _, kind := range []string{"loaded", "retried", "held"} {
				t.Run(fmt.Sprintf("%s/%s/%s", backend, m.mode, kind), func(t *testing.T) { testSnapshotWakes(t, backend, m.mode, m.shards, kind) })
			}
		}
	}
}

// snapReply is what the test's SnapshotFunc returns.
type snapReply struct {
	snap Snapshot
	err  error
}

func testSnapshotWakes(t *testing.T, backend string, mode Mode, shards []int, kind string) {
	lab := netlab.ForTest(t, netlab.Options{})
	const sess = "SNAPWAKE"
	var pkts [][]byte
	for seq := uint64(1); seq <= 8; seq++ {
		pkts = append(pkts, sessionPacket(sess, seq, orderMsg(sess, 100+seq, seq)))
	}
	groups := []netip.AddrPort{netip.MustParseAddrPort("239.7.3.1:26520"), netip.MustParseAddrPort("239.7.3.2:26521")}
	senders := labSenders(t, lab, groups)
	send := func(from, to int) { t.Helper(); sendOnLines(t, senders, pkts[from:to]) }
	// Each fetch says it began, with the receive waits timed out by then,
	// and returns what the test replies (or ends with its ctx).
	var rcv atomic.Pointer[rx.Receiver]
	timeoutsOf := func(r rx.Receiver) uint64 { return r.Stats().Extra.Get("wait_timeouts") }
	calls := make(chan uint64, 4)
	replies := make(chan snapReply, 1)
	fetch := func(ctx context.Context, _ moldudp64.Session, _ func([]byte) error) (Snapshot, error) {
		calls <- timeoutsOf(*rcv.Load())
		select {
		case r := <-replies:
			return r.snap, r.err
		case <-ctx.Done():
			return Snapshot{}, ctx.Err()
		}
	}
	rc := RecoveryConfig{Snapshot: fetch, SnapshotRetry: time.Hour}
	arb := ArbiterConfig{Grace: time.Millisecond, Hold: 2 * time.Second}
	switch kind {
	case "retried":
		rc.SnapshotRetry = 100 * time.Millisecond
	case "held":
		arb.LineTimeout = 100 * time.Millisecond
	}
	h, recv := startOnLabArb(t, lab, backend, mode, shards, groups, rc, "fhsnapwake", arb)
	rcv.Store(&recv)
	timeouts := func() uint64 { return timeoutsOf(recv) }
	call := func(what string) uint64 {
		t.Helper()
		select {
		case n := <-calls:
			return n
		case <-time.After(20 * time.Second):
			t.Fatalf("no snapshot fetched %s in 20 s", what)
		}
		return 0
	}
	send(0, 5)
	waitFor(t, "messages 1 to 5 delivered", func() bool { return h.delivered.Load() == 5 })
	send(6, 7) // 6 lost on both lines: declared, a snapshot fetched
	call("for the hole at 6")
	// Both copies of 7 read first: the hole is declared Grace after one
	// line moved past it, and the other line's copy may come later; the
	// fetch's result must come in a wait, not be taken in that copy's
	// round (before: 'no receive wait woken between the fetch's return
	// and 7 delivered', once in a loaded CI run).
	for i := 0; ; i++ {
		if st := recv.Stats(); st.Packets[0]+st.Packets[1] == 2*6 {
			break
		}
		if i == 50_000 {
			st := recv.Stats()
			t.Fatalf("the lines' 12 packets not read in 5 s (%d and %d)", st.Packets[0], st.Packets[1])
		}
		time.Sleep(100 * time.Microsecond)
	}
	before, woken := timeouts(), recv.Stats().Extra.Get("wait_woken")
	var took time.Duration
	switch kind {
	case "loaded":
		replies <- snapReply{snap: Snapshot{Next: 7}}
	case "held":
		replies <- snapReply{snap: Snapshot{Next: 9}}
	case "retried":
		sent := time.Now()
		replies <- snapReply{err: errors.New("the test's snapshot server is down")}
		if after := call("again after the failure"); after != before {
			t.Fatalf("receive waits ended by timeout between the failed fetch's return and the retry: %d, want 0 (woken %d; retried after %v)", after-before, recv.Stats().Extra.Get("wait_woken")-woken, time.Since(sent))
		}
		took = time.Since(sent)
		before = timeouts()
		replies <- snapReply{snap: Snapshot{Next: 7}}
	}
	sent := time.Now()
	// 7 delivered: the snapshot loaded at 7, or the one at 9 refused (6
	// declared); a look every 100 µs.
	for i := 0; h.delivered.Load() != 6; i++ {
		if i == 50_000 {
			t.Fatalf("7 not delivered in 5 s (delivered %d)", h.delivered.Load())
		}
		time.Sleep(100 * time.Microsecond)
	}
	if kind != "retried" {
		took = time.Since(sent)
	}
	if after := timeouts(); after != before {
		t.Fatalf("receive waits ended by timeout between the fetch's return and 7 delivered: %d, want 0 (woken %d; delivered after %v)", after-before, recv.Stats().Extra.Get("wait_woken")-woken, time.Since(sent))
	}
	if recv.Stats().Extra.Get("wait_woken") == woken {
		t.Fatal("no receive wait woken between the fetch's return and 7 delivered")
	}
	send(7, 8) // the next packet
	waitFor(t, "message 8 delivered", func() bool { return h.delivered.Load() == 7 })
	waitFor(t, "the stats copied", func() bool { return h.Stats().Arbiter.Lines[0].Packets == 7 })
	st := h.Stats().Recovery
	switch {
	case kind == "loaded" && (st.Snapshots != 1 || st.SnapshotFailures != 0),
		kind == "retried" && (st.Snapshots != 1 || st.SnapshotFailures != 1),
		kind == "held" && (st.Snapshots != 0 || st.SnapshotFailures != 1 || !strings.Contains(st.LastSnapshotError, "after waiting")):
		t.Fatalf("%s: snapshots %d, failures %d (%q)", kind, st.Snapshots, st.SnapshotFailures, st.LastSnapshotError)
	}
	what := map[string]string{"loaded": "the snapshot's return to 7 delivered", "retried": "the failure's return to the retry's fetch (retry 100 ms)",
		"held": "the held snapshot's return to its refusal, 7 delivered (line_timeout 100 ms)"}[kind]
	t.Logf("%s %v: %s %v (the wait's timeout 500 ms)", backend, mode, what, took)
}

// TestSnapshotRefusedWakesAgain: a session change while in sync, a
// snapshot source, and the new session delivered from its first message;
// the change's snapshot is refused (far ahead: another numbering), which
// resumes delivery in the round that took it, after that round's look at
// books whole. The next round looks again at once: the recovery's next
// deadline is that round's now (the wake timer armed for timerSlack), not
// the retry's, and that round marks the books whole. Before, the next look
// came at the wait's timeout on quiet lines (the recovery's deadline was
// the retry's, an hour on: 'after the refusal the recovery is next due in
// 1h0m0s, want at once').
func TestSnapshotRefusedWakesAgain(t *testing.T) {
	fetch := func(_ context.Context, s moldudp64.Session, _ func([]byte) error) (Snapshot, error) {
		return Snapshot{Next: 1 << 23}, nil // past the lines by more than MaxJump
	}
	h, _ := oneShardHandler(t, 0, smallBooks)
	rec := withRecovery(t, h, ArbiterConfig{Lines: 1, LineTimeout: time.Second},
		RecoveryConfig{Snapshot: fetch, SnapshotRetry: time.Hour})
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := int64(time.Second)
	for seq := uint64(1); seq <= 6; seq++ {
		h.arb.Offer(0, sessionPacket("OLD", seq, ev.Append(nil)), now)
	}
	rec.poll(now)
	now += 2 * int64(time.Second) // OLD quiet; NEW confirms and is locked
	for seq := uint64(1); seq <= 4; seq++ {
		h.arb.Offer(0, sessionPacket("NEW", seq, ev.Append(nil)), now)
	}
	if h.arb.Session() != moldudp64.NewSession("NEW") || !rec.pendingWhole {
		t.Fatalf("session %q, pending whole %v after the change (gen %d want %v fetching %v next %d)", h.arb.Session(), rec.pendingWhole, rec.gen, rec.wantSnap, rec.fetching, h.arb.Next())
	}
	rec.poll(now)
	if !rec.fetching {
		t.Fatal("no snapshot fetched at the session change")
	}
	for i := 0; rec.fetching; i++ {
		if i == 2000 {
			t.Fatal("the fetch never returned")
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
	}
	if rec.stats.SnapshotFailures != 1 || !rec.pendingWhole {
		t.Fatalf("after the refusal: failures %d, pending whole %v; want 1, true", rec.stats.SnapshotFailures, rec.pendingWhole)
	}
	if d := rec.nextDue(now); d != now {
		t.Fatalf("after the refusal the recovery is next due in %v, want at once", time.Duration(d-now))
	}
	rec.poll(now)
	if rec.pendingWhole || rec.wantSnap {
		t.Fatalf("the round after: pending whole %v, snapshot wanted %v; want the books whole", rec.pendingWhole, rec.wantSnap)
	}
	if d := rec.nextDue(now); d != 0 {
		t.Fatalf("whole: the recovery next due in %v, want never", time.Duration(d-now))
	}
}
