package handler

import (
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/rs/zerolog"
)

// endedLines is a script of both lines repeating the End of Session of
// testSession at 5001 ten times: all a handler started after the close
// receives (the exchange sends it "for a while").
func endedLines() []rx.Packet {
	var script []rx.Packet
	now := time.Now().UnixNano()
	for i := range 10 {
		b := endOfSession(testSession, 5001)
		at := now + int64(i)*int64(100*time.Millisecond)
		script = append(script, rx.Packet{Data: b, Line: rx.LineA, RxTime: at}, rx.Packet{Data: b, Line: rx.LineB, RxTime: at})
	}
	return script
}

// TestJoinAfterEndIdle: a handler (re)started after the session's end,
// the nightly restart or a crash after the close, with nothing configured
// to fetch the session (no recovery source): its lines bring only the
// session's End of Session packets. The session is over, no book of it
// was published and nothing more comes: the handler is idle until the
// next session, not a gap open all night (FeedhandlerUnrecoveredGap
// paging, every book flagged). /readyz says why it has no books. Before,
// the whole session, 1 to 5000, was declared a gap: 'gaps_unrecovered 1
// (5000 messages)', and /readyz "1 unrecovered gap(s)" until the morning.
func TestJoinAfterEndIdle(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		logs := new(lockedBuffer)
		h, _, _ := startScript(t, mode, shards, endedLines(), -1, zerolog.New(logs), nil)
		defer h.Stop()
		waitFor(t, "the End of Session packets read", func() bool {
			st := h.Stats()
			return st.Ended && st.Arbiter.Lines[0].Packets+st.Arbiter.Lines[1].Packets == 20
		})
		st := h.Stats()
		if st.UnrecoveredGaps() != 0 || st.Arbiter.Gaps != 0 || st.StaleBooks() != 0 {
			t.Fatalf("gaps_unrecovered %d (%d messages), books_stale %d after a join after the end; want none",
				st.UnrecoveredGaps(), st.Arbiter.GapMessages, st.StaleBooks())
		}
		if st.Arbiter.EndedJoin != 5000 || st.Arbiter.Delivered != 0 {
			t.Fatalf("EndedJoin %d, delivered %d: want the 5000 messages of the ended session counted there, none delivered", st.Arbiter.EndedJoin, st.Arbiter.Delivered)
		}
		if ok, why := st.Ready(); ok || !strings.Contains(why, "after its end") {
			t.Fatalf("ready %v %q: want not ready, joined after the end", ok, why)
		}
		waitFor(t, "the join after the end logged", func() bool { return strings.Contains(logs.String(), "joined the session after its end") })
	})
}

// TestJoinAfterEndFetched: with a source configured to fetch a late
// join's start (late_join rerequest, or snapshot without a snapshot
// source), a join after the end (the line repeating CU's End of Session
// at 27) re-requests the whole session: its final books, what a desk
// restarting after the close wants, flagged until whole, then the session
// ended with nothing open. late_join off is idle, as with no source
// (TestJoinAfterEndIdle), and the next session is followed whole.
func TestJoinAfterEndFetched(t *testing.T) {
	for _, lj := range []string{LateJoinRerequest, LateJoinSnapshot, LateJoinOff} {
		t.Run(lj, func(t *testing.T) {
			l := newCatchUpLab(t, lj)
			h, rec := l.h, l.rec
			for range 10 {
				l.now += int64(100 * time.Millisecond)
				h.arb.Offer(0, endOfSession(moldudp64.NewSession("CU"), 27), l.now)
				h.arb.Tick(l.now)
				rec.poll(l.now)
				h.endBatch()
			}
			rg, busy := h.arb.Recovering()
			if lj != LateJoinOff {
				if !busy || rg.First != 1 || rg.Count != 26 {
					t.Fatalf("recovering %v %v: want the whole session 1 to 26 re-requested", busy, rg)
				}
				l.answer(27, true, false)
				l.orders(25)
				if !h.arb.Ended() || h.arb.Stats.Gaps != 0 || len(rec.open) != 0 {
					t.Fatalf("the session re-requested: ended %v, gaps %d, open %v; want ended, nothing open", h.arb.Ended(), h.arb.Stats.Gaps, rec.open)
				}
				return
			}
			if busy || h.arb.Stats.Gaps != 0 || h.arb.Stats.EndedJoin != 26 || len(rec.open) != 0 {
				t.Fatalf("recovering %v, gaps %d, open %v, EndedJoin %d: want idle, the 26 messages counted in EndedJoin", busy, h.arb.Stats.Gaps, rec.open, h.arb.Stats.EndedJoin)
			}
			// The next session is followed from its first packet, whole.
			for seq := uint64(1); seq <= 10; seq++ {
				l.now += int64(time.Millisecond)
				h.arb.Offer(0, orderPacket("NEXT", "CU", seq, seq+1), l.now)
			}
			l.now += int64(time.Second)
			h.arb.Tick(l.now)
			rec.poll(l.now)
			h.endBatch()
			if h.arb.Session() != moldudp64.NewSession("NEXT") || h.arb.Next() != 11 || h.arb.Stats.Delivered != 10 || h.arb.Stats.Gaps != 0 || len(rec.open) != 0 {
				t.Fatalf("the next session: followed %q, next %d, delivered %d, gaps %d, open %v; want NEXT delivered whole from 1",
					h.arb.Session(), h.arb.Next(), h.arb.Stats.Delivered, h.arb.Stats.Gaps, rec.open)
			}
			if l.stale() {
				t.Fatal("the next session delivered whole from 1: locate 7 published flagged PossiblyStale")
			}
		})
	}
}

// TestJoinAfterEndSnapshot: with a GLIMPSE server, a join after the end
// (the lines repeat PREV's End of Session at 3000) fetches the ended
// session's snapshot, PREV ended with System Event 'C' at 2999: loaded,
// the final books published whole, nothing open, the session ended.
func TestJoinAfterEndSnapshot(t *testing.T) {
	snap, _ := labSnapshot(t, "PREV", "127.0.0.1:0", 3000, true)
	h, sh, rec := recoveryHandler(t, GlimpseSnapshot(glimpse.Config{Addr: snap.Addr().String(), Username: "u", Password: "p", IdleTimeout: 5 * time.Second}))
	rec.cfg.SnapshotRetry = time.Hour
	now := int64(time.Second)
	for range 5 {
		now += int64(100 * time.Millisecond)
		h.arb.Offer(0, endOfSession(moldudp64.NewSession("PREV"), 3000), now)
	}
	h.arb.Tick(now + int64(time.Millisecond)) // the start gap is declared: a snapshot is fetched
	if !rec.fetching {
		t.Fatalf("no snapshot fetched after a join after the end: %+v", rec.stats)
	}
	waitFetch(t, h, rec, now)
	for range 3 {
		now += int64(time.Millisecond)
		rec.poll(now)
		h.endBatch()
	}
	var st RecoveryStats
	rec.copyStats(&st)
	if b := sh.books.Book(7); rec.stats.Snapshots != 1 || b == nil || b.Orders() != 1 || sh.pub.stale || h.arb.Next() != 3000 || !h.arb.Ended() || st.Open != 0 {
		t.Fatalf("loaded %d, failures %d (%q), book 7 %v, stale %v, next %d, ended %v, open %d; want the final books loaded whole at 3000, nothing open",
			rec.stats.Snapshots, rec.stats.SnapshotFailures, rec.stats.LastSnapshotError, b, sh.pub.stale, h.arb.Next(), h.arb.Ended(), st.Open)
	}
}

// TestEndAnnouncedMetric: session_end_announced is 1 from the End of
// Session on, session_ended only once everything before it was delivered
// or declared. The two after-the-close cases of docs/OPERATIONS.md
// ("Restarts after the close") read them: a join after the end
// re-requesting the whole session is announced and not ended while it
// catches up, its books flagged (FeedhandlerStaleBooks leaves it alone
// while the re-request delivers); a late join mid-session with nothing to
// fetch its start (no recovery source) ends with its start gap
// unrecovered, session_ended 1 (FeedhandlerUnrecoveredGap and
// FeedhandlerStaleBooks stop paging at the end, FeedhandlerEndedIncomplete
// warns).
func TestEndAnnouncedMetric(t *testing.T) {
	t.Run("join after the end, re-requested", func(t *testing.T) {
		l := newCatchUpLab(t, LateJoinRerequest)
		h := l.h
		for range 10 {
			l.now += int64(100 * time.Millisecond)
			h.arb.Offer(0, endOfSession(moldudp64.NewSession("CU"), 27), l.now)
			h.arb.Tick(l.now)
			l.rec.poll(l.now)
			h.endBatch()
		}
		if !h.arb.EndAnnounced() || h.arb.Ended() {
			t.Fatalf("catching up the ended session: announced %v, ended %v; want announced, not ended", h.arb.EndAnnounced(), h.arb.Ended())
		}
		l.answer(27, true, false)
		l.orders(25)
		if !h.arb.EndAnnounced() || !h.arb.Ended() {
			t.Fatalf("caught up: announced %v, ended %v; want both", h.arb.EndAnnounced(), h.arb.Ended())
		}
	})
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		pkts := dayPackets(t, 2000)
		p, err := moldudp64.Parse(pkts[0])
		if err != nil {
			t.Fatal(err)
		}
		end := endOfSession(p.Session, nextAfter(t, pkts))
		// Joined half way, no recovery source: the start is declared.
		h, _, _, _ := startScriptedDay(t, mode, shards, pkts[len(pkts)/2:], [][]byte{end, end}, -1, zerolog.Nop())
		defer h.Stop()
		waitFor(t, "the session ended", func() bool { return h.Stats().Ended })
		st := h.Stats()
		if !st.EndAnnounced || st.UnrecoveredGaps() == 0 {
			t.Fatalf("a late join mid-session ended: announced %v, gaps_unrecovered %d; want announced, the start gap unrecovered",
				st.EndAnnounced, st.UnrecoveredGaps())
		}
		text := string(NewExposition(h).AppendText(nil))
		for _, want := range []string{"feedhandler_session_ended{feed=\"\"} 1\n", "feedhandler_session_end_announced{feed=\"\"} 1\n"} {
			if !strings.Contains(text, want) {
				t.Errorf("exposition lacks %q", want)
			}
		}
	})
}
