package handler

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestArbiterCorruptSeqWithinMaxJump: one packet of line A carries a
// corrupt sequence number (another packet's messages, its number moved
// ahead by less than MaxJump), among two lines delivering the session in
// order. Every message is delivered once, in order and as sent (the sink
// fails on a message delivered under another number), no gap is declared,
// and the packet is counted as contradicted. Before, the packet 999,990
// ahead stood for a hole: once Hold ran out 999,903 messages were declared
// missing and the live feed behind them dropped as duplicates ('delivered
// 99 of 3600'); the one 5 packets ahead was delivered as its numbers'
// messages.
func TestArbiterCorruptSeqWithinMaxJump(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ahead  uint64 // how far the corrupt number is moved
		lines  int
		bFirst bool // line B's copy of each packet is offered first
	}{
		{"far", 999_990, 2, false},
		{"far B first", 999_990, 2, true},
		{"near", 15, 2, false},
		{"near B first", 15, 2, true},
		{"far one line", 999_990, 1, false},
		{"near one line", 15, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts := fixedPackets(t, testSession, 1, 1200, 3)
			corrupt := append([]byte(nil), pkts[10]...)
			seq := binary.BigEndian.Uint64(corrupt[10:18])
			binary.BigEndian.PutUint64(corrupt[10:18], seq+tc.ahead)
			a, s := newTestArbiter(t, ArbiterConfig{Lines: tc.lines})
			now := int64(time.Hour)
			for i, p := range pkts {
				now += int64(time.Millisecond)
				order := []int{0, 1}
				if tc.bFirst {
					order = []int{1, 0}
				}
				for _, l := range order[:tc.lines] {
					a.Offer(l, p, now)
				}
				if i == 5 {
					a.Offer(0, corrupt, now)
				}
			}
			a.Tick(now + int64(time.Second))
			if s.got != 3600 || len(s.gaps) != 0 {
				t.Fatalf("delivered %d of 3600, gaps %v", s.got, s.gaps)
			}
			if c := a.Stats.Lines[0].Contradicted; c != 1 {
				t.Errorf("line A contradicted %d, want 1", c)
			}
			if a.Pending() != 0 || a.maxHigh() != a.Next() {
				t.Errorf("pending %d, highest %d, next %d", a.Pending(), a.maxHigh(), a.Next())
			}
		})
	}
}

// TestArbiterHoleAfterOneLinePacketDeclared: a packet lost on both lines,
// the packet after it brought by line A alone, which goes on above it.
// The hole is declared as before: only a line going on below a held
// packet contradicts it.
func TestArbiterHoleAfterOneLinePacketDeclared(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 100, 3)
	a, s := newTestArbiter(t, ArbiterConfig{})
	now := int64(time.Hour)
	for i, p := range pkts {
		now += int64(time.Millisecond)
		switch i {
		case 20:
			continue // lost on both lines
		case 21:
			a.Offer(0, p, now) // line B lost it too
			continue
		}
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	a.Tick(now + int64(time.Second))
	if s.got != 297 || len(s.gaps) != 1 || s.gaps[0].First != 61 || s.gaps[0].Count != 3 {
		t.Fatalf("delivered %d of 297, gaps %v; want one gap of 3 at 61", s.got, s.gaps)
	}
	if c := a.Stats.Lines[0].Contradicted; c != 0 {
		t.Errorf("line A contradicted %d, want 0", c)
	}
}

// TestArbiterLineReorderNotContradicted: line A brings each tenth packet
// before the one before it, microseconds apart, and line B is silent: the
// packets held are delivered, none counted as contradicted.
func TestArbiterLineReorderNotContradicted(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 100, 3)
	a, s := newTestArbiter(t, ArbiterConfig{Lines: 1})
	now := int64(time.Hour)
	for i := 0; i < len(pkts); i++ {
		now += int64(time.Millisecond)
		if i%10 == 5 {
			a.Offer(0, pkts[i+1], now)
			a.Offer(0, pkts[i], now+int64(time.Microsecond))
			i++
			continue
		}
		a.Offer(0, pkts[i], now)
	}
	a.Tick(now + int64(time.Second))
	if s.got != 300 || len(s.gaps) != 0 || a.Stats.Lines[0].Contradicted != 0 {
		t.Fatalf("delivered %d of 300, gaps %v, contradicted %d", s.got, s.gaps, a.Stats.Lines[0].Contradicted)
	}
}

// TestArbiterCorruptSeqIdleLine: the lines are idle (a heartbeat a second
// each, at the next sequence number) when line A brings one data packet
// with a corrupt sequence number 10^6 ahead. Its hole is not declared
// before A's next heartbeat, which contradicts it; the feed that resumes
// afterwards is delivered. Before, the hole was declared once Hold ran
// out (999,990 messages) and the resumed feed dropped as duplicates.
func TestArbiterCorruptSeqIdleLine(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	corrupt := append([]byte(nil), pkts[30]...)
	binary.BigEndian.PutUint64(corrupt[10:18], binary.BigEndian.Uint64(corrupt[10:18])+999_990)
	a, s := newTestArbiter(t, ArbiterConfig{})
	now := int64(time.Hour)
	for _, p := range pkts[:20] {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	hb := func(line int, at int64) {
		b := moldudp64.NewBuilder(testSession, a.Next(), 0)
		a.Offer(line, append([]byte(nil), b.Flush()...), at)
	}
	now += int64(time.Second) / 2
	hb(0, now)
	hb(1, now+int64(time.Millisecond))
	a.Offer(0, corrupt, now+int64(2*time.Millisecond))
	for k := int64(1); k <= 30; k++ { // empty polls, 10 ms apart, until a heartbeat
		a.Tick(now + 2*int64(time.Millisecond) + k*int64(10*time.Millisecond))
	}
	now += int64(time.Second) / 2
	hb(1, now)
	hb(0, now+int64(time.Millisecond))
	for _, p := range pkts[20:] {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
	}
	a.Tick(now + int64(time.Second))
	if s.got != 120 || len(s.gaps) != 0 {
		t.Fatalf("delivered %d of 120, gaps %v", s.got, s.gaps)
	}
	if c := a.Stats.Lines[0].Contradicted; c != 1 {
		t.Errorf("line A contradicted %d, want 1", c)
	}
}
