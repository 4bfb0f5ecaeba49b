package handler

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// lockDatagram is a datagram on a line at a stamp (ms after the hour).
type lockDatagram struct {
	line int
	at   float64
	data []byte
}

// lockDay plays, with no configured session, the first session (4
// packets sent 1 to 4 ms after the hour, then silent) and a second one
// (lockSecond) on lines A and B, B lagging by lag ms, read in rounds of
// round ms (every line's datagrams stamped before the round's end, line A
// first), then idle an hour on. It returns what the second session
// delivered and declared.
func lockDay(t *testing.T, second []lockDatagram, lag, round float64) (delivered map[uint64]bool, gaps []moldudp64.Range) {
	t.Helper()
	var day []lockDatagram
	for seq := range uint64(4) {
		p := sessionPacket("TEST000001", seq+1, make([]byte, 12))
		day = append(day, lockDatagram{0, float64(seq + 1), p}, lockDatagram{1, float64(seq+1) + lag, p})
	}
	day = append(day, second...)
	slices.SortStableFunc(day, func(x, y lockDatagram) int {
		rx, ry := int(x.at/round), int(y.at/round)
		return cmp.Or(cmp.Compare(rx, ry), cmp.Compare(x.line, y.line), cmp.Compare(x.at, y.at))
	})
	start := int64(time.Hour)
	delivered = map[uint64]bool{}
	a := NewArbiter(ArbiterConfig{Hold: 20 * time.Millisecond, Grace: 200 * time.Microsecond, LineTimeout: time.Second},
		func(p *moldudp64.Packet, skip int, _ int64) {
			if p.Session == secondSession {
				for q := p.Seq + uint64(skip); q < p.Next(); q++ {
					delivered[q] = true
				}
			}
		}, nil)
	a.onGap = func(r moldudp64.Range, _ int64) {
		if a.Session() == secondSession {
			gaps = append(gaps, r)
		}
	}
	for _, d := range day {
		a.Offer(d.line, d.data, start+int64(d.at*float64(time.Millisecond)))
	}
	a.Tick(start + int64(time.Hour))
	if a.Session() != secondSession {
		t.Fatalf("following %q, not the second session", a.Session())
	}
	return delivered, gaps
}

// lockSecond is the second session: packet i (sequence number i+1, one
// message) sent 5+i ms after the hour, for 1100 ms, on line A unless
// lostOnA, and on line B 5 ms later.
func lockSecond(lostOnA func(i int, at float64) bool) []lockDatagram {
	var second []lockDatagram
	for i := range 1100 {
		p := sessionPacket("TEST000002", uint64(i+1), make([]byte, 12))
		at := 5 + float64(i)
		if !lostOnA(i, at) {
			second = append(second, lockDatagram{0, at, p})
		}
		second = append(second, lockDatagram{1, at + 5, p})
	}
	return second
}

// TestSessionLockHoleBeyondStashWaits: the second session confirms while
// the first is not silent yet; line A lost its sequence number 4 (the
// stash ends with a heartbeat past it) and, just before the change, 908,
// which line B, lagging 10 ms, brings after the change. The packets seen
// while the change waited (5 to 904 on B, to 913 on A) are a gap of the
// new session; 908 was never seen, and B brings it within Hold: it is
// delivered. Before, the hole after the stash and the one up to the
// packet that made the change were one, due at once by the stash's old
// stamps: 908 was declared missing.
func TestSessionLockHoleBeyondStashWaits(t *testing.T) {
	var second []lockDatagram
	for i := 1; i < 1000; i++ {
		seq := uint64(i)
		if i > 5 {
			seq--
		}
		p := sessionPacket("TEST000002", seq, make([]byte, 12))
		if i == 5 {
			p = moldudp64.AppendHeader(nil, secondSession, 5, 0) // a heartbeat after 4
		}
		at := 100 + float64(i)
		if i == 5 || seq != 4 && seq != 908 {
			second = append(second, lockDatagram{0, at, p})
		}
		second = append(second, lockDatagram{1, at + 10, p})
	}
	delivered, gaps := lockDay(t, second, 10, 1e-3)
	if !delivered[908] {
		t.Fatalf("seq 908, brought by line B after the change within Hold, not delivered; second session's gaps %v", gaps)
	}
}

// TestSessionLockStashOlderThanLineTimeout: the second session starts on
// the leading line A while the lagging line B (5 ms behind) still brings
// the first's tail, so the change, on the first's silence, comes
// LineTimeout or more after the stashed packets' stamps (line A's, which
// lost sequence number 3: a hole as they are replayed). The loop reads
// line A's batch before line B's. A packet lost on A just after the
// change is brought by B within Hold: it is delivered. Before, the
// stash's replay, stamped that long before the change, was taken for a
// step of the wall clock back: the session's start went back to it, and B,
// not yet heard from in the new session, counted as silent since: dead,
// not waited for, and the packet declared missing.
func TestSessionLockStashOlderThanLineTimeout(t *testing.T) {
	second := lockSecond(func(i int, at float64) bool { return at == 7 || at == 1012 })
	delivered, gaps := lockDay(t, second, 5, 20)
	if !delivered[1008] {
		t.Fatalf("seq 1008, brought by line B within Hold, not delivered; second session's gaps %v", gaps)
	}
}

// TestSessionLockStashedLineLive: as in
// TestSessionLockStashOlderThanLineTimeout (line A's batch read before
// line B's), but line A lost the second session's first 12 packets, so
// the stash holds line B's first one (after A's 13 to 15), stamped more
// than LineTimeout before the change; line B goes on
// bringing the session until the change (its packets dropped while the
// change waited). A packet lost on A after the change is brought by B
// within Hold: it is delivered. Before, B's last packet of the session
// was its stashed one: B counted as silent for LineTimeout, dead, not
// waited for, and the packet was declared missing.
func TestSessionLockStashedLineLive(t *testing.T) {
	second := lockSecond(func(i int, at float64) bool { return i < 12 || at == 1015 })
	delivered, gaps := lockDay(t, second, 5, 20)
	if !delivered[1011] {
		t.Fatalf("seq 1011, brought by line B within Hold, not delivered; second session's gaps %v", gaps)
	}
}
