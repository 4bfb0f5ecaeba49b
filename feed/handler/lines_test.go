package handler

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// linesRun is one day played to an Arbiter through a model of two lines
// and the receive loop, with what the Arbiter must make of it:
//
//   - the exchange sends packet i at i*period (a heartbeat now and then,
//     carrying the next sequence number);
//   - each line loses and duplicates packets at random, and delivers the
//     rest in order, stamped at their arrival: the send time plus the
//     line's lag plus jitter (kept in order: one queue per line);
//   - the receive loop reads in rounds at times of its own, from each
//     line in turn (the first line read rotating) at most batch packets
//     that arrived by then; a round that reads nothing is an empty poll
//     (Tick);
//   - each line also carries, at random times, datagrams the Arbiter
//     rejects (strays: another session's packets, malformed ones, the
//     session's packets jumping far ahead); and, on some days, the
//     exchange pauses after a packet while both lines carry only strays,
//     back to back: the loop's receive blocks until the next one, so no
//     round of the pause is an empty poll.
//
// Strays change nothing: they are read in their line's order, and a
// pause's strays read Hold past everything the lines brought before it
// end any wait (nothing is held then, without a recovery source). While the lines' lags differ by less than Hold, jitter included, no line
// is ever waited for longer than Hold would allow, so exactly what both
// lines lost is declared missing, and everything else is delivered once,
// in order, whatever the loop's rounds.
type linesRun struct {
	pkts   [][]byte // the day (data and heartbeats), in send order
	period time.Duration
	loss   [2]float64 // per line
	dup    float64
	lag    [2]time.Duration
	jitter time.Duration
	batch  int
	// roundGap: the loop's time between rounds is uniform up to it (a
	// loop behind reads what piled up, in batches).
	roundGap time.Duration
	// recoverIn: with it, a recovery source takes every hole and its
	// answer (the day's packets of the range, each twice at times) comes
	// up to recoverIn later; nothing may then be declared missing.
	recoverIn time.Duration
	// dead: line dead[0] loses every packet from dead[1] to dead[2]
	// (silent for longer than LineTimeout, then back).
	dead [3]int
	// advance: the chance that a round reading nothing is a failed
	// receive (Advance) rather than an empty poll (Tick).
	advance float64
	// strays: datagrams the Arbiter rejects, per line, at random times.
	strays int
	// pause: the exchange sends nothing for pause after packet pauseAt,
	// while both lines carry strays at most pauseGap apart.
	pause    time.Duration
	pauseAt  int
	pauseGap time.Duration
	// corrupt: that many of the lines' copies of data packets carry a
	// corrupt sequence number instead (moved ahead, within MaxJump, past
	// what is sent within 4 Holds), drawn from corruptRng: that line's
	// copy is lost, and nothing of the corrupt one may be delivered, nor
	// may it stand for a hole.
	corrupt    int
	corruptRng *rand.Rand
}

// sentAt is when the exchange sends packet i.
func (r linesRun) sentAt(start int64, i int) int64 {
	at := start + int64(i)*int64(r.period)
	if r.pause > 0 && i > r.pauseAt {
		at += int64(r.pause)
	}
	return at
}

// strays is a source of datagrams the Arbiter rejects: another session's
// packets, malformed ones, and the session's packets jumping far ahead
// (numbered apart: no two agree, so no run of them confirms a jump).
type strays struct {
	wrong, malformed []byte
	n                uint64
}

func newStrays(t *testing.T) *strays {
	return &strays{wrong: strayDatagram(t, "wrong-session"), malformed: strayDatagram(t, "malformed")}
}

func (s *strays) next(rng *rand.Rand) []byte {
	switch rng.IntN(3) {
	case 0:
		return s.wrong
	case 1:
		return s.malformed
	}
	s.n++
	return sessionPacket("TEST000001", 1<<40+s.n<<24, make([]byte, 12))
}

// answer is a recovery source's answer due at a time.
type answer struct {
	at int64
	r  moldudp64.Range
}

type arrival struct {
	line  int
	pkt   int
	at    int64
	stray []byte // a datagram rejected, in place of pkt
	pause bool   // a stray of the pause
}

func (r linesRun) play(t *testing.T, rng *rand.Rand, cfg ArbiterConfig) {
	t.Helper()
	start := int64(time.Hour)
	var queues [2][]arrival
	lostBoth := make([]bool, len(r.pkts))
	for i := range r.pkts {
		got := 0
		for l := range 2 {
			if r.dead[2] > 0 && l == r.dead[0] && i >= r.dead[1] && i < r.dead[2] {
				continue
			}
			if i == 0 && l == 0 || i == len(r.pkts)-1 && l == 1 || rng.Float64() >= r.loss[l] {
				// Line A brings the first packet (the session is
				// locked there) and line B the last (nothing missing
				// at the end goes unseen).
				got++
				n := 1
				if rng.Float64() < r.dup {
					n = 2
				}
				for range n {
					at := r.sentAt(start, i) + int64(r.lag[l]) + rng.Int64N(int64(r.jitter)+1)
					if q := queues[l]; len(q) > 0 {
						at = max(at, q[len(q)-1].at) // one queue: in order
					}
					queues[l] = append(queues[l], arrival{line: l, pkt: i, at: at})
				}
			}
		}
		lostBoth[i] = got == 0
	}
	// Strays, after the day's first packet (a suspect one before it
	// would start the session), merged into each queue by stamp.
	from, end := queues[0][0].at, queues[1][len(queues[1])-1].at+int64(cfg.Hold)
	pauseFrom, pauseEnd := r.sentAt(start, r.pauseAt)+int64(r.period), r.sentAt(start, r.pauseAt+1)
	pauseDue := int64(math.MaxInt64) // Hold past everything sent before the pause
	if r.pause > 0 {
		pauseDue = pauseFrom
		for l := range 2 {
			for _, q := range queues[l] {
				if q.at < pauseEnd {
					pauseDue = max(pauseDue, q.at)
				}
			}
		}
		pauseDue += int64(cfg.Hold)
	}
	st := newStrays(t)
	for l := range 2 {
		for range r.strays {
			queues[l] = append(queues[l], arrival{l, -1, from + rng.Int64N(end-from), st.next(rng), false})
		}
		for at := pauseFrom; r.pause > 0 && at < pauseEnd; at += 1 + rng.Int64N(int64(r.pauseGap)) {
			queues[l] = append(queues[l], arrival{l, -1, at, st.next(rng), true})
		}
		slices.SortStableFunc(queues[l], func(x, y arrival) int { return cmp.Compare(x.at, y.at) })
	}
	r.injectCorrupt(t, start, cfg, &queues, lostBoth)
	var want []moldudp64.Range // what both lines lost, as gaps
	var wantMsgs uint64
	for i, b := range r.pkts {
		p, err := moldudp64.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if !lostBoth[i] {
			wantMsgs += uint64(p.Messages())
			continue
		}
		if p.Messages() == 0 {
			continue
		}
		if n := len(want); n > 0 && want[n-1].End() == p.Seq {
			want[n-1].Count += uint64(p.Messages())
		} else {
			want = append(want, p.Range())
		}
	}

	a, s := newTestArbiter(t, cfg)
	var answers []answer
	var asked []moldudp64.Range
	if r.recoverIn > 0 {
		a.SetMissing(func(rg moldudp64.Range, now int64) bool {
			answers = append(answers, answer{now + rng.Int64N(int64(r.recoverIn)), rg})
			asked = append(asked, rg)
			return true
		})
		want, wantMsgs = nil, wantMsgs+totalMessages(t, lostPkts(r.pkts, lostBoth))
	}
	now := start
	var head [2]int
	var readTo [2]arrival // per line, the latest read
	var due dueCheck
	first := 0
	for rounds := 0; ; rounds++ {
		if rounds > 1_000_000 {
			t.Fatal("the loop's rounds never read the queues")
		}
		now += 1 + rng.Int64N(int64(r.roundGap))
		if head[0] == len(queues[0]) && head[1] == len(queues[1]) && len(answers) == 0 {
			// Everything read and answered: an hour on, what is still
			// held is due (and may be asked for: then answered).
			a.Tick(now + int64(time.Hour))
			if len(answers) == 0 {
				break
			}
			now += int64(time.Hour)
			for i := range answers {
				answers[i].at = now
			}
		}
		read := 0
		for k := range 2 {
			l := (first + k) % 2
			for n := 0; n < r.batch && head[l] < len(queues[l]) && queues[l][head[l]].at <= now; n++ {
				q := queues[l][head[l]]
				if q.stray != nil {
					a.Offer(l, q.stray, q.at)
				} else {
					a.Offer(l, r.pkts[q.pkt], q.at)
				}
				readTo[l] = q
				head[l]++
				read++
			}
		}
		first ^= 1
		if readTo[0].pause && readTo[1].pause && min(readTo[0].at, readTo[1].at) >= pauseDue {
			// Both lines read Hold past everything the lines brought
			// before the pause, bringing only strays since: no wait
			// is left (unless a recovery source is filling a hole).
			if _, rec := a.Recovering(); a.Pending() != 0 && !rec {
				t.Fatalf("both lines read only strays from %v to %v past the pause's start (Hold past what they brought before it): %d packets still held, next %d, gaps %v",
					time.Duration(readTo[0].at-pauseFrom), time.Duration(readTo[1].at-pauseFrom), a.Pending(), a.Next(), s.gaps)
			}
			pauseDue = math.MaxInt64 // checked
		}
		for i := 0; i < len(answers); i++ {
			if ans := answers[i]; ans.at <= now {
				answers = append(answers[:i], answers[i+1:]...)
				i--
				for _, b := range r.pkts {
					if p, _ := moldudp64.Parse(b); p.Messages() > 0 && p.Range().Overlaps(ans.r) {
						for range 1 + rng.IntN(2) {
							a.OfferRecovered(b, p, now)
						}
					}
				}
				read++
			}
		}
		if read == 0 && now >= pauseFrom && now < pauseEnd {
			// The pause: the receive blocks until the next stray.
		} else if read == 0 {
			if rng.Float64() < r.advance {
				a.Advance(now)
			} else {
				due.tick(t, a, now)
			}
		}
		due.round(a, now, read)
	}
	// A hole may be declared in parts: as far as a line moved past, after
	// Grace, then the rest after Hold.
	got := mergeRanges(s.gaps)
	if r.dead[2] > 0 && r.recoverIn == 0 {
		// Beyond what both lost, only what the revived line brought
		// within Hold of its first packet may be declared: until its
		// first packet is read it is dead, by the other line's clock.
		lost := map[uint64]bool{}
		for _, w := range want {
			for q := w.First; q < w.End(); q++ {
				lost[q] = true
			}
		}
		rev, _ := moldudp64.Parse(r.pkts[r.dead[2]])
		var revAt int64 = -1
		for _, q := range queues[r.dead[0]] {
			if q.pkt >= r.dead[2] {
				revAt = q.at
				break
			}
		}
		for _, g := range s.gaps {
			for q := g.First; q < g.End(); q++ {
				if lost[q] {
					continue
				}
				var sentIdx int
				for i, b := range r.pkts {
					if p, _ := moldudp64.Parse(b); p.Messages() > 0 && p.Range().Overlaps(moldudp64.Range{First: q, Count: 1}) {
						sentIdx = i
					}
				}
				sent := r.sentAt(start, sentIdx)
				if q < rev.Seq || sent > revAt+int64(cfg.Hold) {
					t.Errorf("seq %d (packet %d sent %v after the revived line's first stamp) declared, not lost on both; revival at packet %d seq %d", q, sentIdx, time.Duration(sent-revAt), r.dead[2], rev.Seq)
				}
			}
		}
		return
	}
	if r.corrupt > 0 {
		// A line whose copy was replaced by a corrupt one brings that
		// packet on the other line only, which may be read more than
		// Grace behind: its hole may be declared (a cost, not a
		// misapplied message). What holds: nothing misapplied, out of
		// order or twice (the sink), everything lost on both lines
		// declared, nothing left held, and nothing beyond the day's
		// end stood for a hole (next is the day's end).
		lost := map[uint64]bool{}
		for _, g := range got {
			for q := g.First; q < g.End(); q++ {
				lost[q] = true
			}
		}
		for _, w := range want {
			for q := w.First; q < w.End(); q++ {
				if !lost[q] {
					t.Errorf("seq %d lost on both lines, not declared (declared %v)", q, got)
				}
			}
		}
		last, _ := moldudp64.Parse(r.pkts[len(r.pkts)-1])
		var declared uint64
		for _, g := range got {
			declared += g.Count
		}
		if a.Pending() != 0 || a.Next() != last.Next() || s.got+declared != a.Next()-1 {
			t.Errorf("pending %d, next %d (the day ends at %d), delivered %d and declared %d (%v)", a.Pending(), a.Next(), last.Next(), s.got, declared, got)
		}
		return
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || s.got != wantMsgs {
		rg, rec := a.Recovering()
		t.Logf("asked %v; recovering %v %v; stats %+v", asked, rg, rec, a.Stats)
		t.Fatalf("declared missing %v, lost on both lines %v; delivered %d messages of the %d the lines brought (next %d, pending %d)",
			s.gaps, want, s.got, wantMsgs, a.Next(), a.Pending())
	}
}

// injectCorrupt replaces r.corrupt of the lines' copies of data packets
// (not the day's last ten) with a copy whose sequence number is moved
// ahead past everything sent within 4 Holds of it, and marks in lostBoth
// the packets that no line then brings.
func (r linesRun) injectCorrupt(t *testing.T, start int64, cfg ArbiterConfig, queues *[2][]arrival, lostBoth []bool) {
	t.Helper()
	if r.corrupt == 0 {
		return
	}
	rng := r.corruptRng
	for n := 0; n < r.corrupt; n++ {
		l := rng.IntN(2)
		q := queues[l]
		k := rng.IntN(len(q))
		a := q[k]
		if a.stray != nil || a.pkt < 1 || a.pkt >= len(r.pkts)-10 {
			continue
		}
		p, err := moldudp64.Parse(r.pkts[a.pkt])
		if err != nil || p.Messages() == 0 {
			continue
		}
		// Past what is sent within 4 Holds, and within MaxJump.
		past := p.Seq
		for j := a.pkt; j < len(r.pkts) && r.sentAt(start, j) <= r.sentAt(start, a.pkt)+4*int64(cfg.Hold); j++ {
			pj, _ := moldudp64.Parse(r.pkts[j])
			past = max(past, pj.Next())
		}
		ahead := past - p.Seq + 1 + rng.Uint64N(1<<20)
		b := append([]byte(nil), r.pkts[a.pkt]...)
		binary.BigEndian.PutUint64(b[10:18], p.Seq+ahead)
		t.Logf("corrupt: line %d packet %d of %d seq %d at %d moved to %d", l, a.pkt, len(r.pkts), p.Seq, a.at-start, p.Seq+ahead)
		q[k] = arrival{line: l, pkt: -1, at: a.at, stray: b}
	}
	for i := range lostBoth {
		lostBoth[i] = true
	}
	for l := range 2 {
		for _, q := range queues[l] {
			if q.stray == nil {
				lostBoth[q.pkt] = false
			}
		}
	}
}

// mergeRanges returns rs with each range that starts where the one before
// it ends joined to it.
func mergeRanges(rs []moldudp64.Range) []moldudp64.Range {
	var out []moldudp64.Range
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].End() == r.First {
			out[n-1].Count += r.Count
		} else {
			out = append(out, r)
		}
	}
	return out
}

// lostPkts is the packets of pkts that lost marks.
func lostPkts(pkts [][]byte, lost []bool) [][]byte {
	var out [][]byte
	for i, b := range pkts {
		if lost[i] {
			out = append(out, b)
		}
	}
	return out
}

// linesDay is n packets of up to 5 messages, with a heartbeat (the next
// sequence number, no message) in place of about one packet in ten, and
// up to two End of Session packets after them.
func linesDay(t *testing.T, rng *rand.Rand, n int) [][]byte {
	t.Helper()
	return linesDayOf(t, rng, testSession, 0, n)
}

// linesDayOf is linesDay of session s, every message's first byte tag.
func linesDayOf(t *testing.T, rng *rand.Rand, s moldudp64.Session, tag byte, n int) [][]byte {
	t.Helper()
	b := moldudp64.NewBuilder(s, 1, 0)
	msg := make([]byte, 12)
	msg[0] = tag
	var out [][]byte
	for len(out) < n {
		if rng.IntN(10) == 0 {
			out = append(out, append([]byte(nil), b.Heartbeat()...))
			continue
		}
		for range 1 + rng.IntN(5) {
			binary.BigEndian.PutUint64(msg[4:], b.Seq()) // what sink checks
			if err := b.Add(msg); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, append([]byte(nil), b.Flush()...))
	}
	for range rng.IntN(3) {
		out = append(out, append([]byte(nil), b.EndOfSession()...))
	}
	return out
}

// TestArbiterLinesModel plays random days through linesRun: lossy,
// duplicating lines (now and then one dead) with a skew under Hold,
// carrying strays now and then, some days a pause of strays alone, read
// by a loop that keeps up or falls behind, with and without a recovery
// source. Without one, only what both lines lost may be declared missing;
// with one, nothing, and every message is delivered once, in order.
//
// FH_LINES_SEEDS=from-to plays seeds from to to-1 instead of 0 to 1499
// (the default, CI's), and goes on past a failing day: a wider sweep.
func TestArbiterLinesModel(t *testing.T) {
	from, to, sweep := modelSeeds(t, "FH_LINES_SEEDS", 1500)
	dueTotals = dueCheck{}
	for seed := from; seed < to; seed++ {
		if !testArbiterLinesModel(t, seed) && !sweep {
			return
		}
	}
	// The wake timer's cost on busy lines (NextDue): rounds that read
	// packets and left something held or missing, those after which the
	// next wait would end at once, and of those the ones whose empty
	// poll then found nothing due.
	t.Logf("rounds that read packets with something held or missing: %d; NextDue at once after %d, the empty poll finding nothing due after %d",
		dueTotals.held, dueTotals.overdue, dueTotals.empty)
}

// corruptKnown: days with corrupt sequence numbers whose invariant fails
// on a defect not fixed yet, with what fails (helper-222). None: 64, 92
// and 1068 (a corrupt packet followed within Grace only, then nothing:
// delivered) pass since such a packet waits for its line's next packet or
// silence (Arbiter.wentBelow, forsaken).
var corruptKnown = map[uint64]string{}

func testArbiterLinesModel(t *testing.T, seed uint64) bool {
	rng := rand.New(rand.NewPCG(seed, 0x11e5))
	hold := time.Duration(1+rng.IntN(20)) * time.Millisecond
	cfg := ArbiterConfig{Session: testSession, Hold: hold, Grace: 200 * time.Microsecond, LineTimeout: time.Second}
	r := linesRun{
		period:   time.Duration(1+rng.IntN(1000)) * time.Microsecond,
		loss:     [2]float64{rng.Float64() * 0.3, rng.Float64() * 0.3},
		dup:      rng.Float64() * 0.1,
		jitter:   time.Duration(rng.Int64N(int64(hold / 4))),
		batch:    1 + rng.IntN(64),
		roundGap: time.Duration(1 + rng.Int64N(int64(2*hold))),
		advance:  rng.Float64() * 0.5,
	}
	if rng.IntN(10) == 0 {
		r.loss[rng.IntN(2)] = 1 // a line down (but for the day's first or last packet)
	}
	if seed%2 == 1 {
		r.recoverIn = time.Duration(1 + rng.Int64N(int64(3*hold)))
	}
	// The lines' skew, jitter included, under Hold.
	r.lag[rng.IntN(2)] = time.Duration(rng.Int64N(int64(hold - r.jitter - time.Microsecond)))
	r.pkts = linesDay(t, rng, 20+rng.IntN(300))
	if rng.IntN(2) == 0 {
		r.strays = rng.IntN(len(r.pkts))
	}
	if rng.IntN(3) == 0 {
		// A pause of 3 to 8 Holds (under LineTimeout: the lines stay
		// live), strays up to a quarter of Hold apart.
		r.pause = time.Duration(3+rng.IntN(6)) * hold
		r.pauseAt = rng.IntN(len(r.pkts) - 1)
		r.pauseGap = time.Duration(1 + rng.Int64N(int64(hold/4)))
	}
	if crng := rand.New(rand.NewPCG(seed, 0xc0)); r.pause == 0 && r.loss[0] < 1 && r.loss[1] < 1 && crng.IntN(2) == 0 {
		// Corrupt sequence numbers on some days with both lines up and
		// no pause (its check wants nothing held; a corrupt packet held
		// is dropped only once its line brings a packet below it).
		r.corrupt, r.corruptRng = 1+crng.IntN(3), crng
	}
	return t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
		if why, ok := corruptKnown[seed]; ok && r.corrupt > 0 {
			t.Skip("known defect: " + why)
		}
		t.Logf("%d packets every %v, hold %v, loss %.3f/%.3f, dup %.3f, lag %v, jitter %v, batch %d, rounds up to %v apart, recovered within %v, %d strays a line, a pause of %v after packet %d (strays up to %v apart), %d corrupt",
			len(r.pkts), r.period, hold, r.loss[0], r.loss[1], r.dup, r.lag, r.jitter, r.batch, r.roundGap, r.recoverIn, r.strays, r.pause, r.pauseAt, r.pauseGap, r.corrupt)
		r.play(t, rng, cfg)
	})
}

// keptUpLines is a linesRun of lossy, duplicating lines read by a loop that
// keeps within a few Holds of them: a packet every hold/20 to a quarter of
// hold, rounds up to hold apart, 32 to 63 packets a line each.
func keptUpLines(rng *rand.Rand, hold time.Duration) linesRun {
	return linesRun{
		period:   hold/20 + time.Duration(rng.Int64N(int64(hold/5))),
		loss:     [2]float64{rng.Float64() * 0.3, rng.Float64() * 0.3},
		dup:      rng.Float64() * 0.1,
		jitter:   time.Duration(rng.Int64N(int64(hold / 4))),
		batch:    32 + rng.IntN(32),
		roundGap: time.Duration(1 + rng.Int64N(int64(hold))),
		advance:  rng.Float64() * 0.5,
	}
}

// TestArbiterLinesDeadLine plays linesRun days in which one line is silent
// for longer than LineTimeout mid-day, then back, read by a loop that
// keeps within LineTimeout of the lines.
func TestArbiterLinesDeadLine(t *testing.T) {
	for seed := range uint64(1000) {
		rng := rand.New(rand.NewPCG(seed, 0xdead))
		hold := time.Duration(1+rng.IntN(20)) * time.Millisecond
		cfg := ArbiterConfig{Session: testSession, Hold: hold, Grace: 200 * time.Microsecond, LineTimeout: 3 * hold}
		r := keptUpLines(rng, hold)
		if seed%2 == 1 {
			r.recoverIn = time.Duration(1 + rng.Int64N(int64(3*hold)))
		}
		r.lag[rng.IntN(2)] = time.Duration(rng.Int64N(int64(hold - r.jitter - time.Microsecond)))
		w := int(cfg.LineTimeout/r.period) + 2 + rng.IntN(40)
		from := 1 + rng.IntN(100)
		r.pkts = linesDay(t, rng, from+w+20+rng.IntN(200))
		r.dead = [3]int{rng.IntN(2), from, from + w}
		if !t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Logf("%d packets every %v, hold %v, loss %.3f/%.3f, dup %.3f, lag %v, jitter %v, batch %d, rounds up to %v apart, recovered within %v, line %d dead from packet %d to %d",
				len(r.pkts), r.period, hold, r.loss[0], r.loss[1], r.dup, r.lag, r.jitter, r.batch, r.roundGap, r.recoverIn, r.dead[0], r.dead[1], r.dead[2])
			r.play(t, rng, cfg)
		}) {
			return
		}
	}
}

// diffLine is one line's day in TestArbiterDifferential: its own packets
// of the exchange's messages, stamped at arrival, in the order received.
type diffLine struct {
	arr       []diffArrival
	truncated uint64 // malformed datagrams it carries (cut short)
	wrong     uint64 // datagrams of another session it carries
}

type diffArrival struct {
	data []byte
	at   int64
}

// TestArbiterDifferential plays random days against a naive model of
// arbitration: deliver each sequence number exactly once, in order, from
// whichever line has it first; declare a gap only for what neither line
// brought. Unlike linesRun, each line packs the exchange's messages into
// packets of its own (so one line's packet straddles the next expected
// sequence number: packet 10 count 5 when 12 is next), and the lines
// carry heartbeats, losses, duplicates, packets reordered within Grace of
// their own stamps, packets cut short (malformed), packets of another
// session, and on some days sequence numbers that end within a few of
// 2^64-1 (a late join there: [1, first) is a gap); on half the days
// from 1, a recovery source answers every hole with either line's
// packets (then nothing may be declared). The lines' skew, a
// packet's span and the jitter stay under Hold, so nothing a line brought
// may be declared missing; every bad datagram is counted in its line's
// statistics (Malformed with its parse error, WrongSession).
//
// FH_DIFF_SEEDS=from-to plays seeds from to to-1 instead of 0 to 499 (the
// default, CI's), and goes on past a failing day.
func TestArbiterDifferential(t *testing.T) {
	from, to, sweep := modelSeeds(t, "FH_DIFF_SEEDS", 500)
	for seed := from; seed < to; seed++ {
		if !t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { testArbiterDifferential(t, seed) }) && !sweep {
			return
		}
	}
}

// modelSeeds reads the seed range a randomized model test plays from the
// environment variable env ("from-to": seeds from to to-1), and says a
// sweep (go on past a failing day) when it is set; unset, seeds 0 to
// defaultTo-1.
func modelSeeds(t *testing.T, env string, defaultTo uint64) (from, to uint64, sweep bool) {
	v := os.Getenv(env)
	if v == "" {
		return 0, defaultTo, false
	}
	if _, err := fmt.Sscanf(v, "%d-%d", &from, &to); err != nil || from >= to {
		t.Fatalf("%s=%q: want from-to, from below to", env, v)
	}
	return from, to, true
}

func testArbiterDifferential(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xd1ff))
	const hold, grace = 20 * time.Millisecond, 200 * time.Microsecond
	n := 50 + rng.IntN(600)
	first := uint64(1)
	if rng.IntN(4) == 0 {
		first = math.MaxUint64 - uint64(n) - uint64(rng.IntN(3)) // the End of Session at or just under 2^64-1
	}
	period := time.Duration(1+rng.IntN(150)) * time.Microsecond
	loss := [2]float64{rng.Float64() * 0.3, rng.Float64() * 0.3}
	if rng.IntN(8) == 0 {
		loss[rng.IntN(2)] = 1
	}
	dup, reorder, bad := rng.Float64()*0.1, rng.Float64()*0.1, rng.Float64()*0.05
	var lag [2]time.Duration
	lag[rng.IntN(2)] = time.Duration(rng.Int64N(int64(10 * time.Millisecond)))
	jitter := time.Duration(rng.Int64N(int64(time.Millisecond)))
	start := int64(time.Hour)
	sentAt := func(seq uint64) int64 { return start + int64(seq-first)*int64(period) }
	other := moldudp64.NewSession("OTHER00001")

	have := make([]bool, n) // seq first+i brought by a line, whole
	var built [][]byte      // every data packet of either line, lost or not
	var lines [2]diffLine
	msg := make([]byte, 12)
	for l := range lines {
		ln := &lines[l]
		b := moldudp64.NewBuilder(testSession, first, 0)
		stamp := func(seq uint64) int64 {
			at := sentAt(seq) + int64(lag[l]) + rng.Int64N(int64(jitter)+1)
			if k := len(ln.arr); k > 0 {
				at = max(at, ln.arr[k-1].at)
			}
			return at
		}
		// add puts a datagram on the line at at (now and then cut short,
		// or preceded by a copy under another session's name, now and
		// then twice) and reports whether the line brought it whole.
		add := func(data []byte, at int64) bool {
			if rng.Float64() < bad {
				if rng.IntN(2) == 0 {
					ln.arr = append(ln.arr, diffArrival{append([]byte(nil), data[:rng.IntN(len(data))]...), at})
					ln.truncated++
					return false
				}
				w := append([]byte(nil), data...)
				copy(w, other[:])
				ln.arr = append(ln.arr, diffArrival{w, at})
				ln.wrong++
			}
			ln.arr = append(ln.arr, diffArrival{append([]byte(nil), data...), at})
			if rng.Float64() < dup {
				ln.arr = append(ln.arr, diffArrival{append([]byte(nil), data...), at})
			}
			return true
		}
		reordered := -10
		for seq := first; seq < first+uint64(n); {
			from := seq
			for k := 1 + rng.IntN(6); k > 0 && seq < first+uint64(n); k-- {
				binary.BigEndian.PutUint64(msg[4:], seq)
				if err := b.Add(msg); err != nil {
					t.Fatal(err)
				}
				seq++
			}
			p := b.Flush()
			built = append(built, append([]byte(nil), p...))
			if rng.Float64() < loss[l] {
				continue
			}
			i := len(ln.arr)
			if !add(p, stamp(seq-1)) {
				continue
			}
			for q := from; q < seq; q++ {
				have[q-first] = true
			}
			if i > 0 && rng.Float64() < reorder && i-reordered > 4 {
				// This packet goes ahead of the datagram before it,
				// which arrives within Grace after it (by this line's
				// stamps), ahead of what follows.
				at := ln.arr[i].at
				ln.arr[i-1], ln.arr[i] = ln.arr[i], ln.arr[i-1]
				ln.arr[i-1].at, ln.arr[i].at = at, at+rng.Int64N(int64(grace/2))
				for j := i + 1; j < len(ln.arr); j++ {
					ln.arr[j].at = max(ln.arr[j].at, ln.arr[i].at)
				}
				reordered = i
			}
			if rng.IntN(8) == 0 {
				add(b.Heartbeat(), stamp(seq-1)+int64(period/2))
			}
		}
		// Never lost: a hole at the end is known.
		eos := b.EndOfSession()
		for range 2 {
			ln.arr = append(ln.arr, diffArrival{append([]byte(nil), eos...), stamp(first+uint64(n)) + int64(hold)})
		}
	}

	cfg := ArbiterConfig{Session: testSession, Hold: hold, Grace: grace, LineTimeout: time.Second}
	if first > 1 {
		cfg.MaxJump = math.MaxUint64 // joined near 2^64: taken at face value
	}
	a, s := newTestArbiter(t, cfg)
	// On half the days from sequence number 1, a recovery source takes
	// every hole; its answer (each packet of either line that overlaps
	// the range: one line's packing, so straddling next) comes up to 3
	// Holds later. Nothing may then be declared.
	var answers []answer
	withSource := first == 1 && seed%2 == 1
	if withSource {
		a.SetMissing(func(r moldudp64.Range, now int64) bool {
			answers = append(answers, answer{now + rng.Int64N(int64(3*hold)), r})
			return true
		})
	}
	respond := func(r moldudp64.Range, now int64) {
		for _, b := range built {
			if p, _ := moldudp64.Parse(b); p.Range().Overlaps(r) {
				a.OfferRecovered(b, p, now)
			}
		}
	}
	now := start
	var head [2]int
	roundGap, batch := 1+rng.Int64N(int64(2*hold)), 1+rng.IntN(64)
	for rounds := 0; head[0] < len(lines[0].arr) || head[1] < len(lines[1].arr); rounds++ {
		if rounds > 10_000_000 {
			t.Fatal("the loop's rounds never read the queues")
		}
		now += 1 + rng.Int64N(roundGap)
		read := 0
		for k := range 2 {
			l := (rounds + k) % 2
			for c := 0; c < batch && head[l] < len(lines[l].arr) && lines[l].arr[head[l]].at <= now; c++ {
				a.Offer(l, lines[l].arr[head[l]].data, lines[l].arr[head[l]].at)
				head[l]++
				read++
			}
		}
		due := answers[:0:0]
		for _, ans := range answers {
			if ans.at <= now {
				due = append(due, ans)
			}
		}
		answers = slices.DeleteFunc(answers, func(ans answer) bool { return ans.at <= now })
		for _, ans := range due { // may ask for more (answers)
			respond(ans.r, now)
			read++
		}
		if read == 0 {
			a.Tick(now)
		}
	}
	for range 100 {
		// An hour on: what is held is due, and asked for, answered.
		now += int64(time.Hour)
		a.Tick(now)
		due := answers
		answers = nil
		for _, ans := range due {
			respond(ans.r, now)
		}
	}
	if withSource {
		if len(s.gaps) != 0 || s.got != uint64(n) || a.Next() != first+uint64(n) || a.Pending() != 0 {
			t.Fatalf("with a recovery source: declared %v; delivered %d of %d; next %d; %d held", s.gaps, s.got, n, a.Next(), a.Pending())
		}
		return
	}

	// What the model declares: what neither line brought whole.
	var want []moldudp64.Range
	if first > 1 {
		want = append(want, moldudp64.Range{First: 1, Count: first - 1})
	}
	var wantMsgs uint64
	for i, h := range have {
		seq := first + uint64(i)
		if h {
			wantMsgs++
		} else if k := len(want); k > 0 && want[k-1].End() == seq {
			want[k-1].Count++
		} else {
			want = append(want, moldudp64.Range{First: seq, Count: 1})
		}
	}
	got := mergeRanges(s.gaps)
	if !slices.Equal(got, want) || s.got != wantMsgs || a.Next() != first+uint64(n) || a.Pending() != 0 || !a.Ended() {
		t.Fatalf("first %d, %d messages every %v, loss %.3f/%.3f, dup %.3f, reorder %.3f, bad %.3f, lag %v, jitter %v: declared %v, neither line brought %v; delivered %d of %d; next %d, want %d; %d held; ended %v",
			first, n, period, loss[0], loss[1], dup, reorder, bad, lag, jitter, got, want, s.got, wantMsgs, a.Next(), first+uint64(n), a.Pending(), a.Ended())
	}
	for l, ln := range lines {
		st := a.Stats.Lines[l]
		if st.Malformed != ln.truncated || st.ParseErrors.Total() != ln.truncated || st.WrongSession != ln.wrong || st.Suspect != 0 || st.StaleEndOfSession != 0 {
			t.Errorf("line %d: carried %d datagrams cut short and %d of another session; counted malformed %d (parse errors %+v), wrong session %d, suspect %d, stale end of session %d",
				l, ln.truncated, ln.wrong, st.Malformed, st.ParseErrors, st.WrongSession, st.Suspect, st.StaleEndOfSession)
		}
	}
}
