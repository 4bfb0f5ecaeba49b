package handler

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// movedAhead returns a copy of the MoldUDP64 packet pkt with its sequence
// number moved ahead by n: another packet's messages under a corrupt
// number (the sink fails on a message delivered under another number).
func movedAhead(pkt []byte, n uint64) []byte {
	c := append([]byte(nil), pkt...)
	binary.BigEndian.PutUint64(c[10:18], binary.BigEndian.Uint64(c[10:18])+n)
	return c
}

// wantAllDelivered fails unless every one of want messages was delivered,
// no gap declared, and line A counted contradicted packets.
func wantAllDelivered(t *testing.T, a *Arbiter, s *sink, want, contradicted uint64) {
	t.Helper()
	if s.got != want || len(s.gaps) != 0 {
		t.Fatalf("delivered %d of %d, gaps %v", s.got, want, s.gaps)
	}
	if c := a.Stats.Lines[0].Contradicted; c != contradicted {
		t.Errorf("line A contradicted %d, want %d", c, contradicted)
	}
}

// TestArbiterCorruptSeqWithinMaxJump: one packet of line A carries a
// corrupt sequence number (another packet's messages, its number moved
// ahead by less than MaxJump), among two lines delivering the session in
// order. Every message is delivered once, in order and as sent (the sink
// fails on a message delivered under another number), no gap is declared,
// and the packet is counted as contradicted. Before, the packet 999,990
// ahead stood for a hole: once Hold ran out 999,903 messages were declared
// missing and the live feed behind them dropped as duplicates ('delivered
// 99 of 3600'); the one 5 packets ahead was delivered as its numbers'
// messages. Moved off a packet boundary (14 or 16 ahead), it was
// delivered past the end of the line's packet covering its first number
// ('message carries seq 32, iterator says 46').
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
		{"off a boundary", 14, 2, false},
		{"off a boundary B first", 16, 2, true},
		{"off a boundary one line", 14, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts := fixedPackets(t, testSession, 1, 1200, 3)
			corrupt := movedAhead(pkts[10], tc.ahead)
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
			wantAllDelivered(t, a, s, 3600, 1)
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
	corrupt := movedAhead(pkts[30], 999_990)
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
	wantAllDelivered(t, a, s, 120, 1)
}

// TestArbiterClockStepNotContradicted: a line reorders two packets
// (microseconds apart), then the wall clock steps back 100 ms (less than
// LineTimeout: nothing tells it from a line read behind), and a packet
// is lost on every line, the one after it brought by line A alone and
// followed by an empty poll. Exactly the lost packet is declared
// missing, nothing contradicted. Before, the reordered packet's stamp,
// from before the step, lay ahead of every stamp after it and read as
// line A going on below each held packet for Grace or longer: the packet
// after the hole was dropped, line A's highest taken back to the
// reordered packet's end, and the next held packets dropped in turn
// ('delivered 222 of 297, gaps [{151 6} {160 3} {166 3} ...]').
func TestArbiterClockStepNotContradicted(t *testing.T) {
	for _, lines := range []int{1, 2} {
		t.Run(fmt.Sprint(lines, " lines"), func(t *testing.T) {
			pkts := fixedPackets(t, testSession, 1, 100, 3)
			a, s := newTestArbiter(t, ArbiterConfig{Lines: lines})
			now := int64(time.Hour)
			offer := func(i int, at int64) {
				a.Offer(0, pkts[i], at)
				if lines == 2 && i != 50 && i != 51 {
					a.Offer(1, pkts[i], at) // line B lost 50 and 51
				}
			}
			for i := 0; i < 100; i++ {
				now += int64(time.Millisecond)
				switch i {
				case 5:
					offer(6, now)
					offer(5, now+int64(time.Microsecond))
					i++
					continue
				case 10:
					now -= int64(100 * time.Millisecond) // the step back
				case 50:
					continue // lost on every line
				}
				offer(i, now)
				if i == 51 {
					a.Tick(now + int64(time.Millisecond/2))
				}
			}
			a.Tick(now + int64(time.Second))
			if s.got != 297 || len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 151, Count: 3}) {
				t.Fatalf("delivered %d of 297, gaps %v; want one gap of 3 at 151", s.got, s.gaps)
			}
			if c := a.Stats.Lines[0].Contradicted; c != 0 {
				t.Errorf("line A contradicted %d, want 0", c)
			}
		})
	}
}

// TestArbiterCorruptSeqOnLaggingLine: line A lags line B by 10 ms (under
// Hold) and brings one packet with a corrupt sequence number 999,990
// ahead; then line B loses a packet, which line A brings 10 ms later.
// Nothing is declared missing. Before, the corrupt packet, held, had line
// A past the hole, waited for by Grace only: the hole was declared before
// line A brought it ('delivered 297 of 300, gaps [{151 3}]').
func TestArbiterCorruptSeqOnLaggingLine(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 100, 3)
	corrupt := movedAhead(pkts[10], 999_990)
	a, s := newTestArbiter(t, ArbiterConfig{})
	now := int64(time.Hour)
	for i := 0; i < len(pkts)+10; i++ {
		now += int64(time.Millisecond)
		if i < len(pkts) && i != 50 {
			a.Offer(1, pkts[i], now) // line B, which lost packet 50
		}
		if j := i - 10; j >= 0 {
			a.Offer(0, pkts[j], now+1) // line A, 10 packets (10 ms) behind
			if j == 30 {
				a.Offer(0, corrupt, now+1)
			}
		}
	}
	a.Tick(now + int64(time.Second))
	wantAllDelivered(t, a, s, 300, 1)
}

// TestArbiterTwoCorruptSeqsOneLine: line A brings two packets with
// corrupt sequence numbers back to back, the second less far ahead than
// the first, among two lines delivering the session in order. Both are dropped as
// contradicted and nothing is declared missing. Before, dropping the
// first took line A's highest back to its latest packet, below the
// second, which then no longer stood for the line's highest and was
// never contradicted: its hole was declared.
func TestArbiterTwoCorruptSeqsOneLine(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 1200, 3)
	var corrupt [2][]byte
	for k, ahead := range []uint64{999_990, 500_000} {
		corrupt[k] = movedAhead(pkts[10+k], ahead)
	}
	a, s := newTestArbiter(t, ArbiterConfig{})
	now := int64(time.Hour)
	for i, p := range pkts {
		now += int64(time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
		if i == 5 {
			a.Offer(0, corrupt[0], now)
			a.Offer(0, corrupt[1], now) // within Grace of the first
		}
	}
	a.Tick(now + int64(time.Second))
	wantAllDelivered(t, a, s, 3600, 2)
}

// TestArbiterRestartAfterContradicted: a packet lost on both lines, the
// one after it brought by line A alone, then the publisher restarts at 1
// (within Hold), an empty poll after each packet. Line A going on below
// the held packet contradicts it (dropped); the restart is followed all
// the same. Before, the drop took line A's highest back to its latest
// packet, the restarted sequence's: its packets were then in order by
// the line's own highest, never counted as going back, and the restart
// was never followed ('regressions 0 restarts 0'), its packets dropped
// as duplicates (helper-220's probe).
func TestArbiterRestartAfterContradicted(t *testing.T) {
	rng := rand.New(rand.NewPCG(77, 78))
	day := packets(t, testSession, 100, 5, rng)
	a, s := newTestArbiter(t, ArbiterConfig{LineTimeout: time.Second})
	a.SetSessionFunc(func(old, new moldudp64.Session) { s.next = 0 })
	now := int64(time.Hour)
	for i := 0; i < 60; i++ {
		now += int64(time.Millisecond)
		switch i {
		case 58: // lost on both lines
		case 59:
			a.Offer(0, day[i], now) // line A alone
		default:
			a.Offer(0, day[i], now)
			a.Offer(1, day[i], now)
		}
	}
	for _, p := range day[:40] { // back to 1, for 2 s
		now += int64(50 * time.Millisecond)
		a.Offer(0, p, now)
		a.Offer(1, p, now)
		a.Tick(now + int64(time.Millisecond))
	}
	a.Tick(now + int64(time.Millisecond))
	if a.Stats.Restarts != 1 {
		t.Fatalf("regressions %d, restarts %d (want 1), gaps %v, contradicted %d, next %d", a.Stats.Regressions, a.Stats.Restarts, s.gaps, a.Stats.Lines[0].Contradicted, a.Next())
	}
}

// TestArbiterLineReorderBeyondGrace: line A brings packet 11 300 µs
// (more than Grace) before packet 10, by its stamps (stamped on read, the
// pair split across two reads), and line B, 1 ms behind, lost packet 11.
// Everything is delivered, no gap, nothing counted as contradicted: once
// A's packet 10 fills the hole, A's latest packet ends exactly at the
// held one's first number, and A's next packet (beyond it) tells a
// reorder from a corrupt number.
func TestArbiterLineReorderBeyondGrace(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	a, s := newTestArbiter(t, ArbiterConfig{Lines: 2})
	type arr struct {
		line int
		pkt  int
		at   int64
	}
	var q []arr
	start := int64(time.Hour)
	for i := range pkts {
		at := start + int64(i)*int64(time.Millisecond)
		switch i {
		case 10:
			q = append(q, arr{0, i, at + int64(300*time.Microsecond)})
		case 11:
			q = append(q, arr{0, i, at - int64(time.Millisecond)})
		default:
			q = append(q, arr{0, i, at})
		}
		if i != 11 {
			q = append(q, arr{1, i, at + int64(time.Millisecond)})
		}
	}
	slices.SortStableFunc(q, func(x, y arr) int { return cmp.Compare(x.at, y.at) })
	var now int64
	for _, r := range q {
		now = r.at
		a.Offer(r.line, pkts[r.pkt], now)
	}
	a.Tick(now + int64(time.Second))
	c := a.Stats.Lines[0].Contradicted + a.Stats.Lines[1].Contradicted
	if s.got != 120 || len(s.gaps) != 0 || c != 0 {
		t.Fatalf("delivered %d of 120, gaps %v, contradicted %d", s.got, s.gaps, c)
	}
}

// TestArbiterLineReorderBeyondGraceIdle: as TestArbiterLineReorderBeyondGrace,
// one line, which goes idle after the reordered pair: the packet left
// held waits for the line's next packet for Hold at most (then dropped
// as contradicted, as before), not for ever.
func TestArbiterLineReorderBeyondGraceIdle(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 12, 3)
	hold := 10 * time.Millisecond
	a, s := newTestArbiter(t, ArbiterConfig{Lines: 1, Hold: hold})
	now := int64(time.Hour)
	for i := range 10 {
		now += int64(time.Millisecond)
		a.Offer(0, pkts[i], now)
	}
	a.Offer(0, pkts[11], now+int64(time.Millisecond))
	now += int64(time.Millisecond + 300*time.Microsecond)
	a.Offer(0, pkts[10], now)
	a.Tick(now + int64(hold) - 1)
	if a.Pending() != 1 || s.got != 33 {
		t.Fatalf("before Hold: pending %d, delivered %d; want 1 held, 33 delivered", a.Pending(), s.got)
	}
	a.Tick(now + int64(hold))
	if a.Pending() != 0 || a.Stats.Lines[0].Contradicted != 1 {
		t.Fatalf("after Hold: pending %d, contradicted %d; want 0, 1", a.Pending(), a.Stats.Lines[0].Contradicted)
	}
}

// TestArbiterCorruptThenQuiet: line A brings a corrupt packet (packet 5's
// messages 999,990 numbers ahead), then its next packet, the day's last,
// 100 µs (within Grace) later, then nothing; an empty poll a second
// later. The corrupt packet is dropped as contradicted (its line went on
// below it and then brought nothing for Hold), nothing declared. Before,
// it stood for a hole, declared once Hold ran out, and was delivered as
// its numbers' messages ('message carries seq 16, iterator says 1000006';
// TestArbiterLinesModel seeds 64, 92, 1068). A reorder on line A within
// Grace (packet 30 ahead of 29, after a packet lost on both lines), the
// line then quiet alike, is delivered, the hole declared, as before.
func TestArbiterCorruptThenQuiet(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 31, 3)
	for _, reorder := range []bool{false, true} {
		t.Run(fmt.Sprint("reorder ", reorder), func(t *testing.T) {
			a, s := newTestArbiter(t, ArbiterConfig{Lines: 2})
			now := int64(time.Hour)
			for i, p := range pkts {
				now = int64(time.Hour) + int64(i)*int64(time.Millisecond)
				switch {
				case !reorder && i == 29:
					a.Offer(0, p, now)
					a.Offer(1, p, now)
					a.Offer(0, movedAhead(pkts[5], 999_990), now+int64(900*time.Microsecond))
				case reorder && i == 28: // lost on both lines
				case reorder && i == 29: // line A alone, overtaken by 30
					a.Offer(0, pkts[30], now)
					a.Offer(0, p, now+int64(100*time.Microsecond))
				case reorder && i == 30:
				default:
					a.Offer(0, p, now)
					a.Offer(1, p, now)
				}
			}
			a.Tick(now + int64(time.Second))
			if reorder {
				if s.got != 90 || len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 85, Count: 3}) || a.Stats.Lines[0].Contradicted != 0 {
					t.Fatalf("delivered %d of 90, gaps %v (want [{85 3}]), contradicted %d", s.got, s.gaps, a.Stats.Lines[0].Contradicted)
				}
				return
			}
			wantAllDelivered(t, a, s, 93, 1)
			if a.Pending() != 0 || a.Next() != 94 {
				t.Errorf("pending %d, next %d; want 0, 94", a.Pending(), a.Next())
			}
		})
	}
}

// TestArbiterCorruptSeqsApartOneLine: line A, read ahead of line B (500 µs
// behind it) batch by batch, brings a packet with a corrupt sequence
// number, goes on below it for longer than Grace, then brings a second one
// (further ahead) as the first packet of its next batch, once the wait for
// the hole before the first ran out by line B's clock (B's copies, all
// duplicates, moved it without looking at the hole: TestArbiterLinesModel
// seed 5822). Both are dropped as contradicted, nothing is declared
// missing. Before, the second took line A's highest past the first, which
// was then no longer its line's highest, never contradicted: its hole was
// declared and the packet delivered as its numbers' messages ('message
// carries seq 61, iterator says 1000051').
func TestArbiterCorruptSeqsApartOneLine(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 60, 3)
	a, s := newTestArbiter(t, ArbiterConfig{Hold: time.Millisecond})
	us := int64(time.Microsecond)
	at := func(i int) int64 { return int64(time.Hour) + int64(i)*100*us }
	for batch := 0; batch < 6; batch++ {
		for i := batch * 10; i < batch*10+10; i++ {
			switch i {
			case 30:
				a.Offer(0, movedAhead(pkts[35], 1_999_990), at(i)-10*us)
			case 21:
				a.Offer(0, movedAhead(pkts[20], 999_990), at(i)-50*us)
			}
			a.Offer(0, pkts[i], at(i))
		}
		for i := batch * 10; i < batch*10+10; i++ {
			a.Offer(1, pkts[i], at(i)+500*us)
		}
	}
	a.Tick(at(60) + int64(time.Second))
	wantAllDelivered(t, a, s, 180, 2)
}

// TestArbiterCorruptSeqsOneStampThenQuiet: line A brings two packets with
// corrupt sequence numbers, each followed by a packet below it, all with
// one stamp (a batch stamped when read), then nothing; line B brings the
// rest of the day, and an empty poll comes Hold after line A's batch.
// Both are dropped (forsaken: their line went on below them within
// Grace, then nothing for Hold), nothing is declared. Before, only the
// first held was looked at when its hole was due, and with the second
// above it, it was not its line's highest: the hole was declared and the
// packet delivered as its numbers' messages.
func TestArbiterCorruptSeqsOneStampThenQuiet(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	a, s := newTestArbiter(t, ArbiterConfig{Lines: 2})
	ms := int64(time.Millisecond)
	at := func(i int) int64 { return int64(time.Hour) + int64(i)*ms }
	for i := range 10 {
		a.Offer(0, pkts[i], at(i))
		a.Offer(1, pkts[i], at(i))
	}
	for _, p := range [][]byte{pkts[10], movedAhead(pkts[12], 20_000), pkts[11], movedAhead(pkts[14], 40_000), pkts[12]} {
		a.Offer(0, p, at(10))
	}
	for i := 10; i < len(pkts); i++ {
		a.Offer(1, pkts[i], at(i)+ms)
		if i == 35 {
			a.Tick(at(i) + ms)
		}
	}
	a.Tick(at(40) + int64(time.Second))
	wantAllDelivered(t, a, s, 120, 2)
}

// TestArbiterLineReorderTwoBeyondGrace: as TestArbiterLineReorderBeyondGrace,
// with two packets overtaken: line A brings packets 12 and 13 ahead of
// 10 and 11, by 300 µs (more than Grace), and line B lost all four. Every
// message is delivered, nothing contradicted; nothing declared, or only
// packet 14 when both lines lost it too (line A then jumps past 13 from
// 11: it is the line's own, as a packet past an undecided one says).
// Before, 13 was dropped as contradicted when 10 came ('gaps [{40 3}]').
func TestArbiterLineReorderTwoBeyondGrace(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	for _, tc := range []struct {
		lines  int
		lost14 bool
	}{{2, false}, {2, true}, {1, false}, {1, true}} {
		lost14 := tc.lost14
		t.Run(fmt.Sprintf("%d lines, 14 lost %v", tc.lines, lost14), func(t *testing.T) {
			a, s := newTestArbiter(t, ArbiterConfig{Lines: tc.lines})
			start, ms, late := int64(time.Hour), int64(time.Millisecond), int64(300*time.Microsecond)
			for i, p := range pkts {
				at := start + int64(i)*ms
				switch {
				case i == 10 || i == 11 || i == 13: // line A's come with 12, line B lost them
				case i == 12:
					a.Offer(0, p, at)
					a.Offer(0, pkts[13], at)
					a.Offer(0, pkts[10], at+late)
					a.Offer(0, pkts[11], at+late)
				case i == 14 && lost14:
				default:
					a.Offer(0, p, at)
					if tc.lines == 2 {
						a.Offer(1, p, at+ms/2)
					}
				}
			}
			a.Tick(start + int64(len(pkts))*ms + int64(time.Second))
			if !lost14 {
				wantAllDelivered(t, a, s, 120, 0)
				return
			}
			if c := a.Stats.Lines[0].Contradicted; s.got != 117 || len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 43, Count: 3}) || c != 0 {
				t.Fatalf("delivered %d of 117, gaps %v (want [{43 3}]), contradicted %d", s.got, s.gaps, c)
			}
		})
	}
}

// TestArbiterCorruptPairAheadOfReorder: line A brings two corrupt packets
// back to back (packets 5 and 6's messages under 12 and 13's numbers),
// then 10 and 11 by more than Grace after them, then the rest of the day
// (after a late copy of its packet 9 and an empty poll, or not); line B
// lost 10 to 13. They
// look like packets 12 and 13 of TestArbiterLineReorderTwoBeyondGrace
// until line A brings its own 12 and 13: each is then contradicted in
// turn, never delivered as those numbers' messages, and nothing is
// declared. (Kept held while the line caught up, the first was no longer
// the line's highest: delivered unchecked, it would carry packet 5's
// messages as 12's.)
func TestArbiterCorruptPairAheadOfReorder(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	for _, copy9 := range []bool{false, true} {
		t.Run(fmt.Sprint("late copy of 9 ", copy9), func(t *testing.T) {
			a, s := newTestArbiter(t, ArbiterConfig{Lines: 2})
			start, ms, late := int64(time.Hour), int64(time.Millisecond), int64(300*time.Microsecond)
			for i, p := range pkts {
				at := start + int64(i)*ms
				switch i {
				case 10:
					a.Offer(0, movedAhead(pkts[5], 21), at-ms)
					a.Offer(0, movedAhead(pkts[6], 21), at-ms)
					a.Offer(0, p, at-ms+late)
				case 11, 12, 13:
					if i == 12 && copy9 {
						a.Offer(0, pkts[9], at-ms/2)
						a.Tick(at - ms/2) // an empty poll after it
					}
					a.Offer(0, p, at)
				default:
					a.Offer(0, p, at)
					a.Offer(1, p, at+ms/2)
				}
			}
			a.Tick(start + int64(len(pkts))*ms + int64(time.Second))
			wantAllDelivered(t, a, s, 120, 2)
		})
	}
}

// TestArbiterLineReorderTwoOtherLineCopy: line A brings 12 and 13 before 10
// and 11, by more than Grace (as in TestArbiterLineReorderTwoBeyondGrace);
// line B lost 10 and 11 and brings a copy of 12, before A's 10 and 11 (held
// with A's) or after them (in order, while A's 12 waits for A's next
// packet), and lost 13, or brings it after. Either way 12 is delivered by
// B's copy before line A reached 13, its latest packet ending at 12:
// 13 is one of A's reordered packets, left held as 12 was (undecided),
// and delivered when A's next packet goes past it. Without, it was
// dropped as contradicted at once (A's latest ending below it): a gap
// where B lost it, counted contradicted where B brought it.
func TestArbiterLineReorderTwoOtherLineCopy(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 40, 3)
	for _, tc := range []struct {
		copyAt int64 // B's copy of 12, after A's 12 and 13 (A's 10 and 11 come 300 µs after them)
		lost13 bool  // on B
	}{{100, true}, {100, false}, {500, true}, {500, false}} {
		t.Run(fmt.Sprintf("copy of 12 at %d µs, 13 lost on B %v", tc.copyAt, tc.lost13), func(t *testing.T) {
			a, s := newTestArbiter(t, ArbiterConfig{Lines: 2})
			start, ms, us := int64(time.Hour), int64(time.Millisecond), int64(time.Microsecond)
			for i, p := range pkts {
				at := start + int64(i)*ms
				switch i {
				case 10, 11: // A's come with 12, B lost them
				case 12:
					a.Offer(0, p, at)
					a.Offer(0, pkts[13], at)
					if tc.copyAt < 300 {
						a.Offer(1, p, at+tc.copyAt*us)
					}
					a.Offer(0, pkts[10], at+300*us)
					a.Offer(0, pkts[11], at+300*us)
					if tc.copyAt >= 300 {
						a.Offer(1, p, at+tc.copyAt*us)
					}
				case 13:
					if !tc.lost13 {
						a.Offer(1, p, at+ms/2)
					}
				default:
					a.Offer(0, p, at)
					a.Offer(1, p, at+ms/2)
				}
			}
			a.Tick(start + int64(len(pkts))*ms + int64(time.Second))
			if c := a.Stats.Lines[0].Contradicted; c != 0 || len(s.gaps) != 0 {
				t.Fatalf("gaps %v, contradicted %d; want none: 13 is line A's", s.gaps, c)
			}
			wantAllDelivered(t, a, s, 120, 0)
		})
	}
}

// TestArbiterAheadWithinGraceThenPause: line A brings packet 13 and then
// 10, 100 µs later (within Grace: 10 overtaken by 13), line B brings 10;
// 11 and 12 are lost on both lines, and the feed pauses for 100 ms (five
// times Hold, empty polls every millisecond) before both lines go on with
// 14, A first or B first (an empty poll between). 13 is line A's: the
// desk loses 11 and 12 only. Without, 13 was dropped as contradicted once
// line A had brought nothing for Hold (forsaken), and the hole declared
// when the lines went on took 13 with it ('gaps [{34 9}]'): a packet
// lost, or re-requested, that the handler had held. Kept past Hold, a
// corrupt look-alike (packet 5's messages under 13's numbers, A's 11 and
// 12 sent after the pause, B first with its own, 2.5 ms ahead of A) is
// not delivered when B reaches its numbers: B's 13 decides it, as it
// does an undecided one.
func TestArbiterAheadWithinGraceThenPause(t *testing.T) {
	pkts := fixedPackets(t, testSession, 1, 30, 3)
	for _, tc := range []struct{ bFirst, corrupt bool }{{false, false}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("B first %v, corrupt %v", tc.bFirst, tc.corrupt), func(t *testing.T) {
			a, s := newTestArbiter(t, ArbiterConfig{Lines: 2})
			start, ms, us := int64(time.Hour), int64(time.Millisecond), int64(time.Microsecond)
			at := func(i int) int64 { return start + int64(i)*ms }
			for i := 0; i < 10; i++ {
				a.Offer(0, pkts[i], at(i))
				a.Offer(1, pkts[i], at(i)+ms/2)
			}
			ahead := pkts[13]
			if tc.corrupt {
				ahead = movedAhead(pkts[5], 24)
			}
			a.Offer(0, ahead, at(10))
			a.Offer(0, pkts[10], at(10)+100*us)
			a.Offer(1, pkts[10], at(10)+ms/2)
			resume := at(10) + 100*ms
			for now := at(11); now < resume; now += ms {
				a.Tick(now)
			}
			from, lag := 14, 300*us // the lines go on, the second that far behind
			if tc.corrupt {
				from, lag = 11, 2500*us // B's 11 and 12 before A's 11
			}
			first, second := 0, 1
			if tc.bFirst {
				first, second = 1, 0
			}
			for i := from; i < len(pkts)+3; i++ { // the second line's i-3 after the first's i
				rx := resume + int64(i-from)*ms
				if i < len(pkts) {
					a.Offer(first, pkts[i], rx)
					a.Tick(rx + 100*us)
				}
				if j := i - 3; j >= from && j < len(pkts) {
					a.Offer(second, pkts[j], resume+int64(j-from)*ms+lag)
				}
			}
			a.Tick(resume + int64(time.Second))
			if tc.corrupt {
				wantAllDelivered(t, a, s, 90, 1)
				return
			}
			if c := a.Stats.Lines[0].Contradicted; s.got != 84 || len(s.gaps) != 1 || s.gaps[0] != (moldudp64.Range{First: 34, Count: 6}) || c != 0 {
				t.Fatalf("delivered %d of 84, gaps %v (want [{34 6}]: 11 and 12), contradicted %d", s.got, s.gaps, c)
			}
		})
	}
}
