package demo

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/handler"
)

// Late joins (recovery.late_join, RECOVERY.md) in the namespace lab, the
// handler started once the sender has sent 40% of the day; the books
// published at the end are compared with the whole day's.

// lateJoinRate paces the day (packets a second) so that a handler whose
// start a loaded machine slows still joins while the lines carry the day
// (joinedLive): at 10,000 the whole day (22,000 packets) could be sent
// before the handler was receiving, the join then one after the End of
// Session.
const lateJoinRate = 3000

// lateJoin runs the day in the lab with r's recovery servers, the
// handler (run to completion, configure applied) started once 40% of the
// day was sent, and checks that it joined while the lines carried the day.
func lateJoin(t *testing.T, r *Recovery, configure func(*handler.Config)) *Result {
	t.Helper()
	needLab(t)
	res := run(t, handler.ModeRunToCompletion, Options{Backend: "socket", Rate: lateJoinRate, StartAtSeq: testDay(t).Messages * 4 / 10,
		Recovery: r, Configure: configure})
	joinedLive(t, res)
	return res
}

// startOpen fails the test unless the range open at the end starts at
// from or past it (past: some of the start was recovered first), and
// every published instrument was flagged PossiblyStale.
func startOpen(t *testing.T, res *Result, from uint64, past bool) {
	t.Helper()
	rs := res.Stats.Recovery
	if rs.Open == 0 || len(rs.OpenRanges) == 0 || rs.OpenRanges[0].First < from || !past && rs.OpenRanges[0].First != from {
		t.Errorf("open ranges %v: want the start open from %d (past it: %v)", rs.OpenRanges, from, past)
	}
	if res.Stale != res.Instruments {
		t.Errorf("%d of %d instruments flagged possibly stale; want every one", res.Stale, res.Instruments)
	}
}

// joinedLive fails the test unless the lines brought the handler messages
// of the day, not only its End of Session.
func joinedLive(t *testing.T, res *Result) {
	t.Helper()
	if n := res.Stats.Arbiter.Lines[0].Messages + res.Stats.Arbiter.Lines[1].Messages; n == 0 {
		t.Fatal("the lines brought the handler no message: it joined after the day was sent, not during it")
	}
}

// TestLateJoinSnapshotServerDown: the GLIMPSE server is down when the
// handler joins (its first two fetches are refused by the kernel, nothing
// listening); the snapshot is retried and loaded once the server answers,
// and the books equal the day's, none flagged.
func TestLateJoinSnapshotServerDown(t *testing.T) {
	res := lateJoin(t, &Recovery{Rerequest: true, Snapshot: true, SnapshotDown: 2}, nil)
	checkBooks(t, res)
	rs := res.Stats.Recovery
	t.Logf("recovery: %s; snapshots %d, failures %d (last %q), next seq %d", rs, rs.Snapshots, rs.SnapshotFailures, rs.LastSnapshotError, rs.LastSnapshotNext)
	if rs.SnapshotFailures < 2 || rs.Snapshots == 0 {
		t.Errorf("%d snapshot failures, %d loaded; want at least 2 failed (server down), then one loaded", rs.SnapshotFailures, rs.Snapshots)
	}
	if rs.Open != 0 || rs.SnapshotRetryFailures != 0 {
		t.Errorf("%d ranges open (%v), %d failures in a row after the load; want none", rs.Open, rs.OpenRanges, rs.SnapshotRetryFailures)
	}
}

// TestLateJoinRerequestWholeStart: late_join rerequest asks for the whole
// start of the session (hundreds of thousands of messages, many requests
// at the client's rate), larger than max_rerequest_gap, and never asks the
// snapshot server configured beside it; the books equal the day's.
func TestLateJoinRerequestWholeStart(t *testing.T) {
	res := lateJoin(t, &Recovery{Rerequest: true, Snapshot: true, LateJoin: handler.LateJoinRerequest, MaxRerequestGap: 1000}, nil)
	checkBooks(t, res)
	rs := res.Stats.Recovery
	t.Logf("recovery: %s; re-request %+v", rs, rs.Rerequest)
	if rs.Snapshots != 0 || rs.SnapshotFailures != 0 {
		t.Errorf("%d snapshots loaded, %d failed: late_join rerequest asked the snapshot server", rs.Snapshots, rs.SnapshotFailures)
	}
	if rs.RecoveredByRerequest == 0 || rs.Open != 0 {
		t.Errorf("%d ranges recovered by re-request, %d open; want the start recovered so", rs.RecoveredByRerequest, rs.Open)
	}
}

// TestLateJoinOffNothingPublished: late_join off, with a re-request
// server only: the start is declared, never asked, and stays open to the
// end. The day's Stock Directory messages were in it, so no instrument is
// ever published (the lines' messages are for locates the handler never
// heard of) and the handler is not ready: a strategy finds no book, not
// books flagged PossiblyStale (RECOVERY.md, Configuration).
func TestLateJoinOffNothingPublished(t *testing.T) {
	res := lateJoin(t, &Recovery{Rerequest: true, LateJoin: handler.LateJoinOff}, nil)
	rs := res.Stats.Recovery
	t.Logf("recovery: %s; %d instruments published, %d stale, %d mismatches", rs, res.Instruments, res.Stale, len(res.Mismatches))
	if rs.Rerequest.Requests != 0 {
		t.Errorf("%d re-requests with late_join off", rs.Rerequest.Requests)
	}
	startOpen(t, res, 1, false)
	if res.Instruments != 0 {
		t.Errorf("%d instruments published (%d flagged) without the day's directory", res.Instruments, res.Stale)
	}
	if ok, why := res.Stats.Ready(); ok {
		t.Error("ready with the start of the day declared and open")
	} else {
		t.Logf("not ready: %s", why)
	}
}

// TestLateJoinOffWithSnapshot: late_join off with a snapshot source: the
// declared start is fetched by snapshot at once, as any declared range
// (RECOVERY.md); the books equal the day's.
func TestLateJoinOffWithSnapshot(t *testing.T) {
	res := lateJoin(t, &Recovery{Rerequest: true, Snapshot: true, LateJoin: handler.LateJoinOff}, nil)
	checkBooks(t, res)
	rs := res.Stats.Recovery
	t.Logf("recovery: %s; snapshots %d, re-request %+v", rs, rs.Snapshots, rs.Rerequest)
	if rs.Snapshots == 0 || rs.Open != 0 {
		t.Errorf("%d snapshots loaded, %d ranges open", rs.Snapshots, rs.Open)
	}
}

// TestLateJoinSnapshotBehindLines: the snapshot server lags the feed by
// 20,000 messages, so the snapshot loaded at the late join ends before
// what the lines brought: what lies between is re-requested, never applied
// out of order, and the books equal the day's.
func TestLateJoinSnapshotBehindLines(t *testing.T) {
	res := lateJoin(t, &Recovery{Rerequest: true, Snapshot: true, SnapshotLag: 20000}, nil)
	checkBooks(t, res)
	rs := res.Stats.Recovery
	t.Logf("recovery: %s; snapshots %d (next seq %d), re-request %+v", rs, rs.Snapshots, rs.LastSnapshotNext, rs.Rerequest)
	if rs.Snapshots == 0 || rs.Open != 0 {
		t.Errorf("%d snapshots loaded, %d ranges open (%v)", rs.Snapshots, rs.Open, rs.OpenRanges)
	}
}

// TestLateJoinRerequestSpillFull: late_join rerequest without a snapshot
// source, the start re-requested more slowly than the live feed fills the
// spill (4096 packets, as the arbitration arena; answers of 500
// messages, each 20 ms late): when the spill is full the re-request is given up, what is left
// of the start declared, never applied out of order, and the books,
// published from what was recovered, flagged PossiblyStale to the end,
// the range open (RECOVERY.md, Configuration: the spill must hold the live
// feed for as long as the start takes).
func TestLateJoinRerequestSpillFull(t *testing.T) {
	res := lateJoin(t, &Recovery{Rerequest: true, LateJoin: handler.LateJoinRerequest, MaxRequestMessages: 500, AnswerDelay: 20 * time.Millisecond},
		func(hc *handler.Config) { hc.Arbiter.MaxPending, hc.Arbiter.Spill = 4096, 4096 })
	rs, as := res.Stats.Recovery, res.Stats.Arbiter
	t.Logf("recovery: %s; spill overflows %d, held at most %d; %d instruments, %d stale, %d mismatches", rs, as.SpillOverflows, as.HeldMax, res.Instruments, res.Stale, len(res.Mismatches))
	if as.SpillOverflows == 0 {
		t.Fatal("the spill never filled: the test's re-request is not slower than the feed")
	}
	startOpen(t, res, 2, true)
	if res.Instruments == 0 {
		t.Error("no instrument published from the part of the start recovered")
	}
}
