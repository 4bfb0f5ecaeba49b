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
