package handler

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/exchange"
)

// waitFetch polls rec at now until no fetch is in flight (the lab server
// answers over TCP on its own goroutine).
func waitFetch(t *testing.T, h *Handler, rec *recovery, now int64) {
	t.Helper()
	for i := 0; rec.fetching; i++ {
		if i == 5000 {
			t.Fatalf("the fetch never returned: %+v", rec.stats)
		}
		time.Sleep(time.Millisecond)
		rec.poll(now)
		h.endBatch()
	}
}

// pollStarted polls rec at now after the arbiter's tick, as the receive
// loop does, and says whether a fetch was started by the tick (a gap
// declared, a session change) or by the poll. The tick's fetch runs on
// its own goroutine and may be back before the poll (the test's goroutine
// descheduled under load, a refusal at login being quick), which then
// consumes it: fetching is read before the poll as well as after. The
// caller waits for every fetch started (waitFetch), so none is in flight
// before the tick.
func pollStarted(h *Handler, rec *recovery, now int64) bool {
	fetched := rec.fetching
	rec.poll(now)
	h.endBatch()
	return fetched || rec.fetching
}

// pollFetches polls rec a second at a time from now for span, as the
// receive loop does, each fetch started waited for (waitFetch), and
// returns the time reached, starts with each fetch's start appended, and
// the waits between the starts.
func pollFetches(t *testing.T, h *Handler, rec *recovery, now int64, span time.Duration, starts []int64) (int64, []int64, []time.Duration) {
	t.Helper()
	for stop := now + int64(span); now < stop; {
		now += int64(time.Second)
		rec.poll(now)
		h.endBatch()
		if rec.fetching {
			starts = append(starts, now)
			waitFetch(t, h, rec, now)
		}
	}
	var gaps []time.Duration
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, time.Duration(starts[i]-starts[i-1]))
	}
	return now, starts, gaps
}

// TestSnapshotRetryBacksOff: the process's first join, late, of NEW at
// 4000; the lab GLIMPSE server persistently serves the previous day's
// snapshot (PREV, ended with System Event 'C' at 2999, behind the lines),
// which is downloaded whole and refused every time. Driven through ten
// minutes of the recovery's own clock (poll's now, a second a step), the
// snapshot is asked for again after SnapshotRetry (5s), then twice as
// long after each consecutive refusal, up to SnapshotRetryMax (2m); not
// every 5s for ever (120 downloads in ten minutes, delivery frozen during
// each). The books stay flagged throughout. A session change (the lines on
// NEW2) is a new condition: its snapshot is fetched at once, and the wait
// after its refusal is SnapshotRetry again.
func TestSnapshotRetryBacksOff(t *testing.T) {
	srv, _ := labSnapshot(t, "PREV", "127.0.0.1:0", 3000, true)
	h, sh, rec := recoveryHandler(t, GlimpseSnapshot(glimpse.Config{Addr: srv.Addr().String(), Username: "u", Password: "p", IdleTimeout: 5 * time.Second}))
	backoffFrom5s(rec)

	now := int64(time.Second)
	var starts []int64 // the recovery's now at each fetch's start
	joinLate(h, "NEW", now)
	h.arb.Tick(now + int64(time.Millisecond)) // the start gap is declared: a snapshot is fetched
	if !rec.fetching {
		t.Fatalf("no snapshot fetched after the late join: %+v", rec.stats)
	}
	starts = append(starts, now)
	waitFetch(t, h, rec, now)
	var gaps []time.Duration
	now, starts, gaps = pollFetches(t, h, rec, now, 10*time.Minute, starts)
	want := tenMinutesOfBackoff
	if len(gaps) != len(want) {
		t.Fatalf("a snapshot refused every time, ten minutes: %d downloads (server: %d), waits between them %v; want %d, waits %v (SnapshotRetry doubled per consecutive refusal, capped at SnapshotRetryMax)",
			len(starts), srv.Stats().Snapshots, gaps, len(want)+1, want)
	}
	sameWaits(t, "downloads", gaps, want)
	var st RecoveryStats
	rec.copyStats(&st)
	if st.Snapshots != 0 || st.SnapshotFailures != uint64(len(starts)) || st.SnapshotRetryFailures != uint64(len(starts)) || !sh.pub.stale || h.arb.Frozen() {
		t.Fatalf("after %d refused downloads: loaded %d, failures %d, consecutive %d, stale %v, frozen %v",
			len(starts), st.Snapshots, st.SnapshotFailures, st.SnapshotRetryFailures, sh.pub.stale, h.arb.Frozen())
	}

	if g := scalar(t, &Stats{Recovery: st}, "recovery_snapshot_consecutive_failures"); g != uint64(len(starts)) || st.SnapshotRetryIn != backoffRetryMax {
		t.Fatalf("feedhandler_recovery_snapshot_consecutive_failures %d, retry in %v; want %d, %v", g, st.SnapshotRetryIn, len(starts), backoffRetryMax)
	}

	// NEW goes quiet; NEW2 confirms. Its snapshot is fetched at once, and
	// after its refusal the wait is SnapshotRetry again.
	now += 2 * int64(time.Second)
	joinLate(h, "NEW2", now)
	h.arb.Tick(now + int64(time.Millisecond))
	if h.arb.Session() != moldudp64.NewSession("NEW2") {
		t.Fatalf("session %q after the change, want NEW2", h.arb.Session())
	}
	if !pollStarted(h, rec, now) {
		t.Fatalf("no snapshot fetched at once after the session change (consecutive failures %d)", rec.snapFails)
	}
	changed := now
	waitFetch(t, h, rec, now)
	for i := 0; !rec.fetching; i++ {
		if i == 600 {
			t.Fatal("no snapshot asked for after the session change's refusal in ten minutes")
		}
		now += int64(time.Second)
		rec.poll(now)
		h.endBatch()
	}
	if d := time.Duration(now - changed); d != backoffRetry {
		t.Fatalf("after a session change, the refused snapshot asked for again %v later, want %v (SnapshotRetry: the backoff restarts)", d, backoffRetry)
	}
	waitFetch(t, h, rec, now)
}

// TestSnapshotRetryResetByLoad: the snapshot source fails three times
// (a server down), backing off 5s, 10s, 20s; the fourth attempt loads:
// the count of consecutive failures is back to 0 and the next failure
// waits SnapshotRetry again.
func TestSnapshotRetryResetByLoad(t *testing.T) {
	var fetches int
	fetch := func(ctx context.Context, s moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		if fetches++; fetches <= 3 || fetches == 5 {
			return Snapshot{}, errors.New("connection refused")
		}
		fn(dirMsg("SNAP"))
		fn(addMsg7("SNAP", 1, 1111))
		return Snapshot{Next: 4012}, nil // where the lines are: whole
	}
	h, sh, rec := recoveryHandler(t, fetch)
	backoffFrom5s(rec)
	now := int64(time.Second)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	for seq := uint64(4000); seq < 4012; seq++ { // the snapshot at 4012 is where the lines are: loaded at once
		h.arb.Offer(0, sessionPacket("RST", seq, ev.Append(nil)), now)
	}
	h.arb.Tick(now + int64(time.Millisecond))
	waitFetch(t, h, rec, now)
	var starts []int64
	for i := 0; rec.stats.Snapshots == 0; i++ {
		if i == 600 {
			t.Fatalf("no snapshot loaded: %+v", rec.stats)
		}
		now += int64(time.Second)
		rec.poll(now)
		h.endBatch()
		if rec.fetching {
			starts = append(starts, now)
			waitFetch(t, h, rec, now)
		}
	}
	if len(starts) != 3 || starts[1]-starts[0] != int64(10*time.Second) || starts[2]-starts[1] != int64(20*time.Second) {
		t.Fatalf("fetch starts %v after the first failure, want 5s, 15s and 35s after it", starts)
	}
	if rec.snapFails != 0 || sh.pub.stale {
		t.Fatalf("after the load: consecutive failures %d, stale %v; want 0, whole", rec.snapFails, sh.pub.stale)
	}
	// A new gap: declared, its snapshot fails, and waits SnapshotRetry.
	h.arb.Offer(0, sessionPacket("RST", 4020, ev.Append(nil)), now)
	h.arb.Tick(now + int64(time.Hour))
	waitFetch(t, h, rec, now)
	if fetches != 5 {
		t.Fatalf("%d fetches, want the new gap's snapshot fetched (5)", fetches)
	}
	if d := time.Duration(rec.snapAt - now); d != backoffRetry {
		t.Fatalf("after a load, a failed snapshot is asked for again in %v, want %v", d, backoffRetry)
	}
}

// TestSnapshotRetryMaxFromConfig: recovery.snapshot.retry and retry_max
// reach the recovery (RecoveryConfig.SnapshotRetry, SnapshotRetryMax),
// their defaults too.
func TestSnapshotRetryMaxFromConfig(t *testing.T) {
	t.Setenv("FH_TEST_SNAPSHOT_PASSWORD", "p")
	const base = "feed: {name: t}\nlines:\n  a: {interface: eth0, group: 239.0.0.1, port: 1}\nrecovery:\n  snapshot:\n    server: 127.0.0.1:26401\n    username: u\n    password_env: FH_TEST_SNAPSHOT_PASSWORD\n"
	for _, tc := range []struct {
		text            string
		retry, retryMax time.Duration
	}{
		{base, DefaultSnapshotRetry, DefaultSnapshotRetryMax},
		{base + "    retry_max: 30s\n", DefaultSnapshotRetry, 30 * time.Second},
		{base + "    retry: 2s\n", 2 * time.Second, DefaultSnapshotRetryMax},
		{base + "    retry_max: 10m\n    retry: 30s\n", 30 * time.Second, 10 * time.Minute},
	} {
		c, err := config.Parse("t.yaml", []byte(tc.text))
		if err != nil {
			t.Fatal(err)
		}
		rc := FromConfig(c, zerolog.Nop()).Recovery
		if rc.SnapshotRetry != tc.retry || rc.SnapshotRetryMax != tc.retryMax {
			t.Errorf("%q: SnapshotRetry %v, SnapshotRetryMax %v; want %v, %v", tc.text, rc.SnapshotRetry, rc.SnapshotRetryMax, tc.retry, tc.retryMax)
		}
	}
}

// TestSnapshotRefusedAtLoginNoBackoff: the lines left OLD for NEW, and
// the GLIMPSE server is still on OLD: each fetch is refused at its Login
// Accepted (glimpse.ErrSessionRefused), before any of the snapshot is
// read. Such a refusal costs a login, not a download, and the server's
// rollover to NEW is the only way the books get whole: it is asked again
// every SnapshotRetry, not after a backoff growing to SnapshotRetryMax
// (which kept the books flagged up to 2 minutes after the rollover). Once
// the server is on NEW its snapshot loads at the next attempt.
func TestSnapshotRefusedAtLoginNoBackoff(t *testing.T) {
	old, stopOld := labSnapshot(t, "OLD", "127.0.0.1:0", 4000, false)
	addr := old.Addr().String()
	st := new(glimpse.Stats)
	h, sh, rec := recoveryHandler(t, GlimpseSnapshot(glimpse.Config{Addr: addr, Username: "u", Password: "p", IdleTimeout: 5 * time.Second, Stats: st}))
	backoffFrom5s(rec)

	// The lines on OLD, then on NEW (a session change): NEW's snapshot
	// is asked for at once, and refused at login (the server is on OLD).
	now := int64(time.Second)
	joinLate(h, "OLD", now)
	h.arb.Tick(now + int64(time.Millisecond))
	pollUntilLoaded(t, h, rec, 1, now) // OLD's, from the server on OLD
	now += 2 * int64(time.Second)
	joinLate(h, "NEW", now)
	h.arb.Tick(now + int64(time.Millisecond))
	if h.arb.Session() != moldudp64.NewSession("NEW") {
		t.Fatalf("session %q after the change, want NEW", h.arb.Session())
	}
	var logs bytes.Buffer
	h.log = zerolog.New(&logs)
	var starts []int64
	if pollStarted(h, rec, now) {
		starts = append(starts, now)
	}
	waitFetch(t, h, rec, now)
	var gaps []time.Duration
	now, starts, gaps = pollFetches(t, h, rec, now, 2*time.Minute, starts)
	if len(starts) < 2 || st.Refused.Load() != uint64(len(starts)) || rec.stats.Snapshots != 1 {
		t.Fatalf("fetches %d on NEW (refused at login %d, loaded %d, OLD's included): want every one refused at login", len(starts), st.Refused.Load(), rec.stats.Snapshots)
	}
	// Logged the first time, then once a minute: at most 3 lines in two
	// minutes, not one per refusal.
	if n := strings.Count(logs.String(), `"level":"warn"`); n < 1 || n > 3 {
		t.Fatalf("%d logins refused in two minutes logged %d warnings, want 1 to 3 (the first, then once a minute):\n%s", len(starts), n, logs.String())
	}
	for _, g := range gaps {
		if g != backoffRetry {
			t.Fatalf("two minutes of a GLIMPSE server on the session the lines left: %d logins refused, waits between them %v; want every one %v (a refusal at login downloads nothing: no backoff)", len(starts), gaps, backoffRetry)
		}
	}
	if rec.snapFails != 0 || !sh.pub.stale {
		t.Fatalf("after %d refusals at login: consecutive failures %d (want 0: not counted), stale %v (want true)", len(starts), rec.snapFails, sh.pub.stale)
	}

	// The server rolls over to NEW (the lab's: a server on NEW at the same
	// address): the next attempt, SnapshotRetry on, loads its snapshot.
	stopOld()
	labSnapshot(t, "NEW", addr, 4000, false)
	rolled := now
	for i := 0; rec.stats.Snapshots == 1; i++ {
		if i == 600 {
			t.Fatalf("no snapshot loaded in ten minutes after the server rolled over: %+v", rec.stats)
		}
		now += int64(time.Second)
		rec.poll(now)
		h.endBatch()
		if rec.fetching {
			pollUntilLoaded(t, h, rec, 2, now)
		}
	}
	if d := time.Duration(now - rolled); d > backoffRetry {
		t.Fatalf("the server rolled over to the lines' session; its snapshot loaded %v later, want at most %v", d, backoffRetry)
	}
}

// TestSnapshotLaggingBacksOff: the process's first join, late, of NEW at
// 4000; the lab GLIMPSE server, on NEW too, is always a little behind the
// lines: its snapshot ends at 3990, and no re-request server is there to
// fill 3990..3999. Each snapshot loads, what it missed is found missing
// again and declared: the load was a failed attempt (a snapshot must
// fetch that range again), so the snapshots back off as failed ones do
// (5s, 10s, 20s, ... up to SnapshotRetryMax), the books flagged
// throughout. Before, a lagging load restarted the backoff: the whole
// snapshot was downloaded every SnapshotRetry (5s) for ever, delivery
// frozen during each.
func TestSnapshotLaggingBacksOff(t *testing.T) {
	srv, _ := labSnapshot(t, "NEW", "127.0.0.1:0", 3990, false)
	h, sh, rec := recoveryHandler(t, GlimpseSnapshot(glimpse.Config{Addr: srv.Addr().String(), Username: "u", Password: "p", IdleTimeout: 5 * time.Second}))
	backoffFrom5s(rec)

	// The recovery's own clock, as in the other backoff tests: the
	// arbiter's now (its Tick, the packets' receive times) and poll's.
	// gap() used to read the wall clock instead, far past every wait set
	// by this one, and started a snapshot at each declaration.
	now := int64(time.Second)
	joinLate(h, "NEW", now)
	h.arb.Tick(now + int64(time.Millisecond))
	if !rec.fetching {
		t.Fatalf("no snapshot fetched after the late join: %+v", rec.stats)
	}
	starts := []int64{now}
	waitFetch(t, h, rec, now)
	// The receive loop's round, a second at a time: the arbiter's tick
	// (which declares what the load missed), the recovery's poll.
	for stop := now + int64(10*time.Minute); now < stop; {
		now += int64(time.Second)
		h.arb.Tick(now)
		if pollStarted(h, rec, now) {
			starts = append(starts, now)
			waitFetch(t, h, rec, now)
		}
	}
	behindBackedOff(t, "a snapshot always behind the lines", starts, srv, sh, rec)
}

// TestSnapshotBehindMovingLines: the process's first join, late, of NEW
// at 4000, the lines bringing a packet every 100ms; the lab GLIMPSE server
// is always 20 messages (2s) behind them, and no re-request server is
// there. Each snapshot loads behind what the books had been brought to
// when it was fetched, what it missed is declared again: a failed attempt,
// whether or not it covered the ranges open then. Before, once the backoff
// had let delivery go past the open range (its wait longer than the
// server's lag), the next snapshot covered it and was taken as whole: the
// backoff restarted and the range it missed, declared, was fetched at
// once, back to back: two downloads every 5s for ever.
func TestSnapshotBehindMovingLines(t *testing.T) {
	const behind = 20
	var live atomic.Uint64 // the lines' next sequence number
	srv, err := exchange.NewSnapshotServer(exchange.SnapshotConfig{Listen: "127.0.0.1:0", Username: "u", Password: "p", Session: "NEW",
		Messages: snapDay(1<<40, false), Position: func() uint64 { return live.Load() - 1 - behind }, FollowInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() { srv.Close(); <-served })
	h, sh, rec := recoveryHandler(t, GlimpseSnapshot(glimpse.Config{Addr: srv.Addr().String(), Username: "u", Password: "p", IdleTimeout: 5 * time.Second}))
	backoffFrom5s(rec)

	ev := itch.SystemEventFields{EventCode: 'Q'}
	now, seq := int64(time.Second), uint64(4000)
	var starts []int64
	for stop := now + int64(10*time.Minute); now < stop; {
		now += int64(100 * time.Millisecond)
		h.arb.Offer(0, sessionPacket("NEW", seq, ev.Append(nil)), now)
		seq++
		live.Store(seq)
		h.arb.Tick(now)
		// A fetch the gap Tick declared started (the late join's, or
		// what a lagging load missed declared again) may be back, and
		// loaded, by the poll: it is counted all the same.
		if pollStarted(h, rec, now) {
			starts = append(starts, now)
			waitFetch(t, h, rec, now)
		}
	}
	behindBackedOff(t, "a snapshot always 2s behind moving lines", starts, srv, sh, rec)
}

// behindBackedOff fails the test unless the snapshots of srv, each loaded
// behind the feed (what says how), fetched at starts over ten minutes,
// waited tenMinutesOfBackoff between them, as failed attempts do (what
// each missed was declared again), and were each loaded and counted a
// consecutive failure, the books flagged after the last.
func behindBackedOff(t *testing.T, what string, starts []int64, srv *exchange.SnapshotServer, sh *shard, rec *recovery) {
	t.Helper()
	var gaps []time.Duration
	for i := 1; i < len(starts); i++ {
		gaps = append(gaps, time.Duration(starts[i]-starts[i-1]))
	}
	want := tenMinutesOfBackoff
	var st RecoveryStats
	rec.copyStats(&st)
	if len(gaps) != len(want) {
		t.Fatalf("%s, ten minutes: %d downloads (server: %d, loaded %d), the first waits between them %v; want %d, waits %v (every load behind the feed whose miss is declared again is a failed attempt)",
			what, len(starts), srv.Stats().Snapshots, st.Snapshots, gaps[:min(len(gaps), 12)], len(want)+1, want)
	}
	sameWaits(t, "downloads", gaps, want)
	if st.Snapshots != uint64(len(starts)) || st.SnapshotRetryFailures != uint64(len(starts)) || !sh.pub.stale {
		t.Fatalf("%s: after %d downloads: loaded %d, consecutive failures %d, stale %v; want every one loaded and counted, books flagged",
			what, len(starts), st.Snapshots, st.SnapshotRetryFailures, sh.pub.stale)
	}
}

// TestSessionWholeSnapshotDown: the lines follow OLD, then leave it for
// NEW, which they bring from sequence number 1, a packet a second; the
// GLIMPSE server is down (every fetch fails). The change's snapshot is
// fetched at once and fails; the lines deliver NEW from its start with no
// gap: the books are whole, no snapshot is wanted any more, and the
// backoff restarts. Before, the snapshot was asked for again for as long
// as the server was down (5s, 10s, ... 2m, delivery frozen during each)
// and the books stayed flagged though whole.
func TestSessionWholeSnapshotDown(t *testing.T) {
	var fetches int
	fetch := func(context.Context, moldudp64.Session, func([]byte) error) (Snapshot, error) {
		fetches++
		return Snapshot{}, errors.New("connection refused")
	}
	h, sh, rec := recoveryHandler(t, fetch)
	backoffFrom5s(rec)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := int64(time.Second)
	round := func(session string, seq uint64) { sessionRound(t, h, rec, session, seq, ev, now) }
	for seq := uint64(1); seq < 6; seq++ {
		round("OLD", seq)
		now += int64(100 * time.Millisecond)
	}
	if h.arb.Session() != moldudp64.NewSession("OLD") || h.arb.Next() != 6 || sh.pub.stale || fetches != 0 {
		t.Fatalf("OLD from 1: session %q next %d stale %v fetches %d; want OLD at 6, whole, no snapshot", h.arb.Session(), h.arb.Next(), sh.pub.stale, fetches)
	}
	now += int64(2 * time.Second)
	for seq := uint64(1); seq <= 600; seq++ { // ten minutes of NEW
		round("NEW", seq)
		now += int64(time.Second)
	}
	var st RecoveryStats
	rec.copyStats(&st)
	if h.arb.Session() != moldudp64.NewSession("NEW") || h.arb.Next() != 601 || st.Open != 0 {
		t.Fatalf("NEW from 1: session %q next %d open %v; want NEW delivered whole to 601", h.arb.Session(), h.arb.Next(), st.OpenRanges)
	}
	if fetches != 1 || sh.pub.stale || rec.wantSnap || st.SnapshotRetryFailures != 0 {
		t.Fatalf("NEW delivered from its first message, the GLIMPSE server down, ten minutes: %d snapshots fetched, books stale %v, snapshot still wanted %v, consecutive failures %d; want the change's one, whole, none wanted, 0",
			fetches, sh.pub.stale, rec.wantSnap, st.SnapshotRetryFailures)
	}
}

// TestSnapshotRefusedByOwnCheckBacksOff: the exemption from the backoff
// is for a server on a session the lines left (ErrSnapshotSession), whose
// rollover makes the books whole. A refusal at login by the caller's own
// glimpse.Config.CheckSession (also a glimpse.ErrSessionRefused) says
// nothing of a rollover: it is a failed attempt like a rejected login, and
// backs off (5s, 10s, 20s, 40s in two minutes), not asked again every
// SnapshotRetry for ever.
func TestSnapshotRefusedByOwnCheckBacksOff(t *testing.T) {
	srv, _ := labSnapshot(t, "NEW", "127.0.0.1:0", 4000, false)
	st := new(glimpse.Stats)
	own := func(session string) error { return errors.New("not a session this strategy trades") }
	h, sh, rec := recoveryHandler(t, GlimpseSnapshot(glimpse.Config{Addr: srv.Addr().String(), Username: "u", Password: "p",
		IdleTimeout: 5 * time.Second, Stats: st, CheckSession: own}))
	backoffFrom5s(rec)

	now := int64(time.Second)
	joinLate(h, "NEW", now)
	h.arb.Tick(now + int64(time.Millisecond)) // the start gap is declared: a snapshot is fetched
	if !rec.fetching {
		t.Fatalf("no snapshot fetched after the late join: %+v", rec.stats)
	}
	starts := []int64{now}
	waitFetch(t, h, rec, now)
	var gaps []time.Duration
	_, starts, gaps = pollFetches(t, h, rec, now, 2*time.Minute, starts)
	if st.Refused.Load() != uint64(len(starts)) || rec.stats.Snapshots != 0 || rec.stats.SnapshotsWrongSession != 0 || !sh.pub.stale {
		t.Fatalf("%d fetches: refused at login %d, loaded %d, wrong session %d, stale %v; want every one refused by the caller's check, none of a left session, books flagged",
			len(starts), st.Refused.Load(), rec.stats.Snapshots, rec.stats.SnapshotsWrongSession, sh.pub.stale)
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second}
	if len(gaps) != len(want) {
		t.Fatalf("two minutes of logins refused by the caller's own CheckSession: %d logins, waits between them %v; want %d, waits %v (the backoff: not a session the lines left)",
			len(starts), gaps, len(want)+1, want)
	}
	sameWaits(t, "logins", gaps, want)
	if rec.snapFails != uint64(len(starts)) {
		t.Fatalf("consecutive failures %d after %d refusals, want %d", rec.snapFails, len(starts), len(starts))
	}
}

// TestSessionWholeSnapshotBehind: a new session delivered from its first
// message with nothing declared is whole; the change's snapshot, fetched
// at once, comes back behind where delivery froze for it (the GLIMPSE
// server two messages behind the lines). Loaded, it would take back the
// two messages the books had, which no line sends again: declared, the
// whole books flagged, and the next snapshot (as far behind) the same, for
// as long as the server lags, where a server down left them whole
// (TestSessionWholeSnapshotDown). It is not loaded: the books are whole.
func TestSessionWholeSnapshotBehind(t *testing.T) {
	var fetches int
	var lines atomic.Uint64 // the sequence number the lines brought last
	ev := itch.SystemEventFields{EventCode: 'Q'}
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		fetches++
		fn(ev.Append(nil))
		return Snapshot{Next: lines.Load() - 1}, nil
	}
	h, sh, rec := recoveryHandler(t, fetch)
	backoffFrom5s(rec)
	now := int64(time.Second)
	round := func(session string, seq uint64) {
		lines.Store(seq)
		sessionRound(t, h, rec, session, seq, ev, now)
	}
	for seq := uint64(1); seq < 6; seq++ {
		round("OLD", seq)
		now += int64(100 * time.Millisecond)
	}
	now += int64(2 * time.Second)
	for seq := uint64(1); seq <= 600; seq++ { // ten minutes of NEW
		round("NEW", seq)
		now += int64(time.Second)
	}
	var st RecoveryStats
	rec.copyStats(&st)
	if h.arb.Session() != moldudp64.NewSession("NEW") || fetches != 1 || sh.pub.stale || st.Open != 0 || rec.wantSnap {
		t.Fatalf("NEW delivered from its first message, its snapshot two messages behind the lines, ten minutes: %d snapshots fetched (%d loaded), books stale %v, open %v, snapshot still wanted %v; want the change's one, not loaded, whole, none open, none wanted",
			fetches, st.Snapshots, sh.pub.stale, st.OpenRanges, rec.wantSnap)
	}
}

// TestSnapshotRefusalRunEndsWhenWhole: the refusals at login of a server
// on the session the lines left are logged the first time in a run, then
// once a minute. A run ends with any outcome other than such a refusal,
// and also when the snapshot is no longer wanted: the new session,
// delivered from its first message, made the books whole (7ba4886), or
// another session change. A later gap's snapshot refused the same way
// begins a new run, logged at once: here 10 s after the first, it was not
// (the count went on from the run before, the minute not over).
func TestSnapshotRefusalRunEndsWhenWhole(t *testing.T) {
	var fetches atomic.Int32
	fetch := func(context.Context, moldudp64.Session, func([]byte) error) (Snapshot, error) {
		fetches.Add(1)
		return Snapshot{}, errors.Join(ErrSnapshotSession, errors.New("the server's current session is OLD"))
	}
	h, sh, rec := recoveryHandler(t, fetch)
	backoffFrom5s(rec)
	var logs bytes.Buffer
	h.log = zerolog.New(&logs)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	now := int64(time.Second)
	round := func(session string, seq uint64) { sessionRound(t, h, rec, session, seq, ev, now) }
	for seq := uint64(1); seq < 6; seq++ {
		round("OLD", seq)
		now += int64(100 * time.Millisecond)
	}
	now += int64(2 * time.Second)
	for seq := uint64(1); seq < 6; seq++ {
		round("NEW", seq)
		now += int64(time.Second)
	}
	const refused = "snapshot server on a session the lines left"
	if n := strings.Count(logs.String(), refused); fetches.Load() != 1 || n != 1 || sh.pub.stale {
		t.Fatalf("NEW from 1, its snapshot refused at login: %d fetches, %d refusals logged, stale %v; want 1, 1, whole", fetches.Load(), n, sh.pub.stale)
	}
	// A gap in NEW (6 to 9 lost), declared: its snapshot, refused at login
	// within the minute.
	first := now
	round("NEW", 10)
	for seq := uint64(11); fetches.Load() < 2 && seq < 30; seq++ {
		now += int64(time.Second)
		round("NEW", seq)
	}
	if n := strings.Count(logs.String(), refused); fetches.Load() != 2 || n != 2 {
		t.Fatalf("a later gap's snapshot refused at login (%v after the gap, within a minute of the change's refusal; the books made whole between): %d fetches, %d refusals logged; want 2, 2 (a new run, its first logged):\n%s",
			time.Duration(now-first), fetches.Load(), n, logs.String())
	}
}

// backoffRetry and backoffRetryMax are the snapshot retry and its cap
// the backoff tests drive (tenMinutesOfBackoff).
const backoffRetry, backoffRetryMax = 5 * time.Second, 2 * time.Minute

// backoffFrom5s sets rec's snapshot retry to backoffRetry, doubled per
// consecutive failure up to backoffRetryMax, the next wait backoffRetry.
func backoffFrom5s(rec *recovery) {
	rec.cfg.SnapshotRetry, rec.cfg.SnapshotRetryMax = backoffRetry, backoffRetryMax
	rec.snapWait = backoffRetry
}

// sessionRound is one step of the session-change tests at now: line A
// brings session's packet seq (the event ev), the arbiter ticks, the
// recovery polls, the batch ends, and a snapshot fetch started is waited
// for.
func sessionRound(t *testing.T, h *Handler, rec *recovery, session string, seq uint64, ev itch.SystemEventFields, now int64) {
	t.Helper()
	h.arb.Offer(0, sessionPacket(session, seq, ev.Append(nil)), now)
	h.arb.Tick(now)
	rec.poll(now)
	h.endBatch()
	if rec.fetching {
		waitFetch(t, h, rec, now)
	}
}

// tenMinutesOfBackoff is the waits between snapshot attempts failing for
// ten minutes with SnapshotRetry 5s and SnapshotRetryMax 2m: doubled per
// consecutive failure, capped.
var tenMinutesOfBackoff = []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
	2 * time.Minute, 2 * time.Minute, 2 * time.Minute}

// sameWaits fails the test when the waits between attempts (of what: downloads,
// logins) differ from want, whose length the caller has checked.
func sameWaits(t *testing.T, what string, gaps, want []time.Duration) {
	t.Helper()
	for i := range want {
		if gaps[i] != want[i] {
			t.Fatalf("waits between %s %v, want %v", what, gaps, want)
		}
	}
}
