package handler

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// strayDatagram is a datagram the Arbiter rejects: another session's
// packet, or one moldudp64.Parse refuses (a count claiming more messages
// than the datagram carries).
func strayDatagram(t *testing.T, kind string) []byte {
	t.Helper()
	ev := itch.SystemEventFields{EventCode: 'Q'}
	if kind == "malformed" {
		p := sessionPacket("TEST000001", 1, ev.Append(nil))
		return p[:len(p)-3] // truncated inside its message
	}
	return sessionPacket("OTHER00001", 1, ev.Append(nil))
}

// TestArbiterStrayFloodEndsGapWait: a packet is lost on both lines, the
// packets after it are held, and from then on both lines carry only
// datagrams the Arbiter rejects (another session's on the group, or
// malformed), back to back: the receive loop never finds them empty (no
// Tick) and never fails (no Advance). Each line's queue is read past the
// hole all the same, so the gap is due once Grace has passed by the
// stamps of what is read. Before, only the session's packets and empty
// polls moved the wait's clock: the gap was never declared and what was
// held behind it never delivered.
func TestArbiterStrayFloodEndsGapWait(t *testing.T) {
	for _, kind := range []string{"wrong-session", "malformed"} {
		t.Run(kind, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 8))
			pkts := packets(t, testSession, 13, 3, rng)
			stray := strayDatagram(t, kind)
			a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, LineTimeout: time.Second})
			now := int64(10 * time.Hour)
			for i, p := range pkts {
				if i == 10 {
					continue // lost on both lines
				}
				a.Offer(0, p, now)
				a.Offer(1, p, now)
				now += 1000
			}
			for range 2000 { // 2 s of stamps, line_timeout 1 s
				now += int64(time.Millisecond)
				a.Offer(0, stray, now)
				a.Offer(1, stray, now)
			}
			if a.Stats.Gaps != 1 || a.Pending() != 0 {
				t.Errorf("both lines read 2 s past a hole, bringing only %s datagrams: gaps %d, pending %d (gaps seen %v); want the gap declared and the held packets delivered",
					kind, a.Stats.Gaps, a.Pending(), s.gaps)
			}
		})
	}
}

// TestSnapshotAheadStrayFlood: a late join's snapshot is ahead of the
// lines, which from then on bring only malformed datagrams, back to back
// (no empty poll). What is read of the lines moves past the snapshot's
// arrival all the same, and they never reach it: it is refused once
// LineTimeout of it has been read, and delivery resumes. Before, only the
// session's stamps and empty polls measured the wait: the books stayed
// frozen and flagged for as long as the flood lasted.
func TestSnapshotAheadStrayFlood(t *testing.T) {
	now := int64(time.Second)
	h, rec := waitEarly(t, "STR", now)
	stray := strayDatagram(t, "malformed")
	for range 2000 { // 2 s of stamps, line_timeout 1 s
		now += int64(time.Millisecond)
		h.arb.Offer(0, stray, now)
		rec.poll(now)
		h.endBatch()
	}
	if rec.stats.SnapshotFailures != 1 || h.arb.Frozen() || rec.stats.Snapshots != 0 {
		t.Fatalf("2 s of malformed datagrams read after the snapshot came (line_timeout 1 s): failures %d, frozen %v, loaded %d; want the snapshot refused and delivery resumed",
			rec.stats.SnapshotFailures, h.arb.Frozen(), rec.stats.Snapshots)
	}
}

// TestArbiterStrayBeforeClockStep: both lines carried a stray datagram,
// then the wall clock, which receive timestamps follow, stepped back by
// less than LineTimeout (500 ms), and the lines went on with the session
// alone. Line B is read 5 ms behind line A; a packet lost on line A only
// opens a hole that B brings within Hold. The stray's stamp, from before
// the step, says nothing of where B's queue was read after it: B's
// session packets read since tell that. Before, the stray's stamp stayed
// B's clock (readRx) until the next stray: every wait for B ended at once
// for as long as the step, and the hole was declared while B held it.
func TestArbiterStrayBeforeClockStep(t *testing.T) {
	a, s, pkts, now := skewedLines(t, 9, 20)
	ms := int64(time.Millisecond)
	stray := strayDatagram(t, "wrong-session")
	a.Offer(0, stray, now+15*ms)
	a.Offer(1, stray, now+15*ms)
	now -= 500 * ms // the step back
	for i := 10; i < 15; i++ {
		a.Offer(0, pkts[i], now+int64(i)*ms)
		a.Offer(1, pkts[i], now+int64(i)*ms+5*ms)
	}
	// A is read ahead of B by its 5 ms of skew, and lost packet 15.
	for i := 16; i < 20; i++ {
		a.Offer(0, pkts[i], now+int64(i)*ms)
	}
	for i := 15; i < 20; i++ {
		a.Offer(1, pkts[i], now+int64(i)*ms+5*ms)
	}
	if len(s.gaps) != 0 || a.Pending() != 0 || s.got != totalMessages(t, pkts[:20]) {
		t.Fatalf("line B read 5 ms behind A after a step of the clock back, with a stray of each line stamped before the step: gaps %v, pending %d, delivered %d of %d; want nothing declared (B brought the hole within Hold)",
			s.gaps, a.Pending(), s.got, totalMessages(t, pkts[:20]))
	}
}

// TestArbiterStrayEndsFailureRun: a receive failed with nothing read
// (Advance), then line B's queue, read 5 ms behind A, brings a stray
// datagram, and the next receive fails again, LineTimeout after the first
// failure. The failures were not one run: a datagram was read between
// them, as a packet of the session would have been, and B's queue is
// still read, behind the hole A lost. Before, only the session's packets
// and empty polls ended a run of failures: the wall clock was taken for
// the lines' after the second failure, both lines counted dead by it, and
// the hole was declared while B held it.
func TestArbiterStrayEndsFailureRun(t *testing.T) {
	a, s, pkts, now := skewedLines(t, 10, 14)
	ms := int64(time.Millisecond)
	for i := 11; i < 14; i++ { // A lost packet 10
		a.Offer(0, pkts[i], now+int64(i)*ms)
	}
	// Read so far: B up to packet 9 (stamped 14 ms), A up to 13.
	a.Advance(now + 20*ms)
	a.Offer(1, strayDatagram(t, "wrong-session"), now+14*ms+ms/2)
	a.Advance(now + 20*ms + int64(time.Second))
	for i := 10; i < 14; i++ {
		a.Offer(1, pkts[i], now+int64(i)*ms+5*ms)
	}
	if len(s.gaps) != 0 || a.Pending() != 0 || s.got != totalMessages(t, pkts[:14]) {
		t.Fatalf("a stray read between two failed receives LineTimeout apart, line B behind the hole A lost: gaps %v, pending %d, delivered %d of %d; want nothing declared (B brought the hole)",
			s.gaps, a.Pending(), s.got, totalMessages(t, pkts[:14]))
	}
}

// skewedLines is an Arbiter of a session of n packets (seed draws them)
// whose first ten were read from both lines, line B 5 ms behind A: A's
// packet i stamped now+i ms.
func skewedLines(t *testing.T, seed uint64, n int) (*Arbiter, *sink, [][]byte, int64) {
	t.Helper()
	pkts := packets(t, testSession, n, 3, rand.New(rand.NewPCG(7, seed)))
	a, s := newTestArbiter(t, ArbiterConfig{Session: testSession, LineTimeout: time.Second})
	now, ms := int64(10*time.Hour), int64(time.Millisecond)
	for i := range 10 {
		a.Offer(0, pkts[i], now+int64(i)*ms)
		a.Offer(1, pkts[i], now+int64(i)*ms+5*ms)
	}
	return a, s, pkts, now
}

// TestArbiterFailingLineIdleOther: line A's receive fails from its packet
// 19 on (its link is down: every round fails, nothing read, no empty
// poll); line B lost packet 20, brings 21 (held) and then only heartbeats,
// less than LineTimeout apart. Line A is silent, by the lines' stamps and
// the run of failures since they were read, LineTimeout after its last
// packet: from then on it is not waited for, and B, past the hole by more
// than Grace, lets it go. Before, each heartbeat ended the run of failures
// and A was dead only by a stamp of B's LineTimeout after A's last packet:
// with heartbeats 900 ms apart, 21 was held 1.8 s.
func TestArbiterFailingLineIdleOther(t *testing.T) {
	a, s, pkts, t0 := skewedLines(t, 20, 30)
	ms := int64(time.Millisecond)
	for i := 10; i < 20; i++ {
		a.Offer(0, pkts[i], t0+int64(i)*ms)
		a.Offer(1, pkts[i], t0+int64(i)*ms+5*ms)
	}
	lastA := t0 + 19*ms
	hole := t0 + 21*ms + 5*ms
	a.Offer(1, pkts[21], hole)
	hb := moldudp64.AppendHeader(nil, testSession, a.Next()+100, 0)
	nextHB := hole + int64(900*time.Millisecond)
	var declared int64
	for now := hole + ms; now < hole+int64(3*time.Second) && len(s.gaps) == 0; now += ms {
		if now >= nextHB {
			a.Offer(1, hb, nextHB)
			nextHB += int64(900 * time.Millisecond)
		} else {
			a.Advance(now)
		}
		declared = now
	}
	if len(s.gaps) != 1 || declared-lastA < int64(time.Second) || declared-lastA > int64(time.Second)+2*ms {
		t.Fatalf("line A failing since its last packet, line B idle (heartbeats 900 ms apart): hole declared %v after A's last packet (gaps %v); want LineTimeout (1s), A silent then",
			time.Duration(declared-lastA), s.gaps)
	}
}
