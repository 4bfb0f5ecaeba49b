package handler

import (
	"context"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestArbiterSequenceNearMax: a session whose sequence numbers run up to
// 2^64-1 (the last packet's next expected sequence number is 2^64-1, as
// far as MoldUDP64's 8-byte field goes), joined there, with and without a
// configured session. Its jump from 1 is confirmed by the packets that
// follow it (MaxJump), or the session confirmed (session.go), and the
// session is followed to its end: every message from the confirmation on
// delivered once, in order. Before, where a candidate's or a suspect
// jump's packets ended plus candidateWindow wrapped past 2^64, so every
// packet looked far from the one before: none ever confirmed, and every
// packet was dropped (counted Suspect, or Unconfirmed).
func TestArbiterSequenceNearMax(t *testing.T) {
	// 40 packets of 5 messages, the last ending at 2^64-1.
	pkts := fixedPackets(t, testSession, math.MaxUint64-200, 40, 5)
	last, _ := moldudp64.Parse(pkts[len(pkts)-1])
	for _, configured := range []bool{true, false} {
		cfg := ArbiterConfig{LineTimeout: time.Second}
		if configured {
			cfg.Session = testSession
		}
		a, s := newTestArbiter(t, cfg)
		now := int64(time.Hour)
		for _, p := range pkts {
			a.Offer(0, p, now)
			a.Offer(1, p, now)
			now += int64(time.Millisecond)
		}
		a.Tick(now + int64(time.Second))
		if a.Next() != last.Next() || s.got == 0 || a.Pending() != 0 {
			t.Errorf("configured session %v: next %d, want %d (the last packet's end); delivered %d messages, %d held, gaps %v; suspect %d, unconfirmed %d",
				configured, a.Next(), last.Next(), s.got, a.Pending(), s.gaps, a.Stats.Lines[0].Suspect+a.Stats.Lines[1].Suspect, a.Stats.Unconfirmed)
		}
	}
}

// fixedPackets is n packets of k messages each from sequence number seq,
// each message carrying its sequence number (as packets' do).
func fixedPackets(t testing.TB, s moldudp64.Session, seq uint64, n, k int) [][]byte {
	t.Helper()
	b := moldudp64.NewBuilder(s, seq, 0)
	msg := make([]byte, 12)
	var out [][]byte
	for range n {
		for range k {
			binary.BigEndian.PutUint64(msg[4:], b.Seq())
			if err := b.Add(msg); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, append([]byte(nil), b.Flush()...))
	}
	return out
}

// TestSnapshotNearMaxLoaded: a late join whose lines are within MaxJump
// of 2^64-1, and a snapshot at the lines' sequence number. It is loaded.
// Before, the lines' sequence number plus MaxJump wrapped past 2^64, so
// every snapshot was refused as far ahead of the lines ("another
// numbering") and the books stayed flagged.
func TestSnapshotNearMaxLoaded(t *testing.T) {
	const first = math.MaxUint64 - 100
	var fetches int
	fetch := func(_ context.Context, _ moldudp64.Session, fn func([]byte) error) (Snapshot, error) {
		fetches++
		fn(dirMsg("SNAP"))
		fn(addMsg7("SNAP", 1, 1111))
		return Snapshot{Next: first + 4}, nil // where the lines are
	}
	h, sh, rec := recoveryHandler(t, fetch)
	now := int64(time.Second)
	ev := itch.SystemEventFields{EventCode: 'Q'}
	for i := range uint64(4) {
		h.arb.Offer(0, sessionPacket("MAX", first+i, ev.Append(nil)), now)
	}
	h.arb.Tick(now + int64(time.Second/2))
	for i := 0; rec.stats.Snapshots == 0; i++ {
		if i == 3000 {
			t.Fatalf("no snapshot loaded after %d fetches: %+v; failures %d (%q)", fetches, rec.stats, rec.stats.SnapshotFailures, rec.stats.LastSnapshotError)
		}
		time.Sleep(time.Millisecond)
		rec.poll(time.Now().UnixNano())
		h.endBatch()
	}
	if rec.stats.SnapshotFailures != 0 || h.arb.Next() != first+4 {
		t.Fatalf("failures %d (%q), next %d; want 0, %d", rec.stats.SnapshotFailures, rec.stats.LastSnapshotError, h.arb.Next(), uint64(first+4))
	}
	if b := sh.books.Book(7); b == nil || b.Orders() != 1 {
		t.Fatal("the snapshot's order is not in the book")
	}
}

// TestArbiterSuspectCopiesDoNotConfirm: one data packet claiming a
// sequence number 2^40 ahead, seen again and again (on both lines and once
// more), is suspect each time: dropped and counted, no gap declared, the
// feed delivered whole. Three different packets of a sequence that moved
// on still confirm the jump, and so do the heartbeats of an idle feed
// joined late (nothing else comes). Before, the third copy of the data
// packet confirmed it: the 2^40 sequence numbers before it were declared
// missing, and the live feed was then dropped as behind.
func TestArbiterSuspectCopiesDoNotConfirm(t *testing.T) {
	const far = 1 << 40
	live := fixedPackets(t, testSession, 1, 60, 3)
	forged := fixedPackets(t, testSession, far, 1, 3)[0]
	a, s := newTestArbiter(t, ArbiterConfig{})
	now := int64(time.Hour)
	for i, p := range live {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
		if i == 20 {
			for range 3 {
				a.Offer(0, forged, now)
				a.Offer(1, forged, now)
			}
		}
	}
	a.Tick(now + int64(time.Minute))
	suspect := a.Stats.Lines[0].Suspect + a.Stats.Lines[1].Suspect
	if want := totalMessages(t, live); s.got != want || len(s.gaps) != 0 || a.Next() != want+1 || suspect != 6 {
		t.Errorf("a data packet at 2^40 six times: delivered %d of %d, gaps %v, next %d, %d suspect (want 6)",
			s.got, want, s.gaps, a.Next(), suspect)
	}
	// A sequence that moved on 2^40 ahead, on both lines: its third packet confirms.
	a, s = newTestArbiter(t, ArbiterConfig{})
	now = int64(time.Hour)
	for _, p := range append(live[:20:20], fixedPackets(t, testSession, far, 10, 3)...) {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	a.Tick(now + int64(time.Minute))
	if want := uint64(far + 30); a.Next() != want || len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 61, Count: far + 6 - 61}) {
		t.Errorf("a sequence that moved on: next %d (want %d), gaps %v", a.Next(), want, s.gaps)
	}
	// An idle feed joined late: its heartbeats, the same number on both
	// lines once a second, confirm where it is.
	a, s = newTestArbiter(t, ArbiterConfig{Session: testSession})
	hb := moldudp64.AppendHeader(nil, testSession, far, 0)
	now = int64(time.Hour)
	for range 3 {
		now += int64(time.Second)
		a.Offer(0, hb, now)
		a.Offer(1, hb, now)
	}
	a.Tick(now + int64(time.Second))
	if a.Next() != far || len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 1, Count: far - 1}) {
		t.Errorf("an idle feed joined late at 2^40: next %d (want %d), gaps %v", a.Next(), uint64(far), s.gaps)
	}
}
