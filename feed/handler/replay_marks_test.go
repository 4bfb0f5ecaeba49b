package handler

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/feed/rx"
)

// marksScript is one live run of the receive loop, as the Arbiter saw it:
// batches of datagrams, each after zero or more empty polls and failed
// receive calls.
type marksScript struct {
	batches [][]rx.Packet
	polls   [][]marksPoll // before each batch (times ascending)
}

// marksPoll is a receive call that returned nothing: an empty poll (the
// Arbiter's Tick) or, failed, a call that failed (Advance).
type marksPoll struct {
	at     int64
	failed bool
}

// newMarksScript builds two lines of one session with loss on each line
// (some sequence numbers lost on both), B lagging A by a varying skew,
// duplicates and reordering within a line, read in batches by a receive
// thread that sometimes polls empty between them and sometimes is busy
// (a stall: datagrams milliseconds apart in one batch). With failures,
// runs of receive calls that fail (every 0.1 to 1.5 ms, the loop's back
// off and more) come between some batches, before, among or after their
// empty polls, sometimes past the next batch's receive times (its
// datagrams queued while the calls failed); the rest of the script is the
// one without.
func newMarksScript(seed uint64, sess moldudp64.Session, failures bool) marksScript {
	rng := rand.New(rand.NewPCG(seed, 0x6d61726b))
	frng := rand.New(rand.NewPCG(seed, 0x6661696c))
	type dg struct {
		line int
		at   int64
		data []byte
	}
	var all []dg
	t0 := time.Date(2026, 12, 6, 14, 30, 0, 0, time.UTC).UnixNano()
	seq := uint64(1)
	at := t0
	for p := 0; p < 400; p++ {
		n := 1 + rng.IntN(4)
		b := moldudp64.NewBuilder(sess, seq, 1400)
		for i := 0; i < n; i++ {
			m := make([]byte, itch.Length(itch.TypeSystemEvent))
			m[0] = itch.TypeSystemEvent
			binary.BigEndian.PutUint64(m[3:11], seq+uint64(i)) // locate 0, tracking number 0, a timestamp
			m[11] = 'Q'
			if err := b.Add(m); err != nil {
				panic(err)
			}
		}
		pkt := slices.Clone(b.Flush())
		seq += uint64(n)
		at += int64(time.Duration(2+rng.IntN(40)) * time.Microsecond)
		if rng.IntN(20) == 0 {
			at += int64(time.Duration(rng.IntN(3000)) * time.Microsecond) // a quiet spell
		}
		lost := rng.IntN(25) == 0 // on both lines
		for line := 0; line < 2; line++ {
			if lost || rng.IntN(12) == 0 {
				continue
			}
			t := at
			if line == 1 {
				t += int64(time.Duration(rng.IntN(1500)) * time.Microsecond) // B's skew
			}
			t += int64(rng.IntN(3000)) // jitter: reorders close datagrams within a line
			all = append(all, dg{line, t, pkt})
			if rng.IntN(30) == 0 {
				all = append(all, dg{line, t + int64(time.Duration(rng.IntN(200))*time.Microsecond), pkt}) // a duplicate
			}
		}
	}
	slices.SortStableFunc(all, func(a, b dg) int { return int(a.at - b.at) })
	var s marksScript
	last := t0 - int64(time.Millisecond)
	clk := last // the latest call's time: the loop's clock only moves on
	for i := 0; i < len(all); {
		// How the receive thread met this batch: polling empty right up to
		// it, or busy since the batch before (a stall reads a backlog of
		// milliseconds in one batch), or polled empty a while before.
		var polls []marksPoll
		switch rng.IntN(4) {
		case 0, 1:
			first := all[i].at
			for t := last + 1; t < first; t += max((first-last)/3, 1) {
				polls = append(polls, marksPoll{at: t})
			}
			polls = append(polls, marksPoll{at: max(first-int64(rng.IntN(500)), last+1)})
		case 2:
			polls = append(polls, marksPoll{at: last + 1 + int64(rng.IntN(int(max(all[i].at-last, 1))))})
		}
		if failures && frng.IntN(3) == 0 {
			t := last + 1 + int64(frng.IntN(int(max(all[i].at-last, 1)+int64(3*time.Millisecond))))
			for range 1 + frng.IntN(6) {
				polls = append(polls, marksPoll{at: t, failed: true})
				t += int64(100*time.Microsecond) + int64(frng.IntN(int(1400*time.Microsecond)))
			}
			slices.SortStableFunc(polls, func(a, b marksPoll) int { return int(a.at - b.at) })
		}
		if failures {
			polls = slices.DeleteFunc(polls, func(p marksPoll) bool { return p.at <= clk })
			if len(polls) > 0 {
				clk = polls[len(polls)-1].at
			}
		}
		n := 1 + rng.IntN(8)
		if rng.IntN(10) == 0 {
			n = 20 + rng.IntN(60) // a backlog
		}
		n = min(n, len(all)-i)
		batch := make([]rx.Packet, n)
		for j := range batch {
			d := all[i+j]
			batch[j] = rx.Packet{Line: rx.Line(d.line), Data: d.data, RxTime: d.at}
		}
		i += n
		last = batch[n-1].RxTime
		clk = max(clk, last)
		s.batches = append(s.batches, batch)
		s.polls = append(s.polls, polls)
	}
	return s
}

// marksRun records what a Replayer's Arbiter delivered.
type marksRun struct {
	r   *Replayer
	got []uint64 // the tracking timestamps of the messages applied, in order
}

func newMarksRun(cfg Config) *marksRun {
	m := &marksRun{}
	m.r = NewReplayer(cfg, func(msg itch.Msg) {
		m.got = append(m.got, binary.BigEndian.Uint64(msg[3:11]))
	}, func(uint16) {}, func() {})
	return m
}

func (m *marksRun) result() string {
	st := m.r.Stats()
	return fmt.Sprintf("delivered %d, gaps %d (%d missing), held max %d", st.Delivered, st.Gaps, st.GapMessages, st.HeldMax)
}

// TestReplayMarksArbitrateAsLive drives an Arbiter as the receive loop does
// (Offer per datagram of a batch, Tick per empty poll), writes the same
// batches to a capture file with their empty polls (Capture.Put), and
// replays the file with its batch marks (Replayer.OfferMarked): the replay
// delivers exactly what the live Arbiter delivered and declares the same
// gaps, for every script. Without the marks (Offer: empty polls modelled by
// ReplayPollGap) it does not, for some (logged).
func TestReplayMarksArbitrateAsLive(t *testing.T) {
	cfg := Config{Session: marksSession, Arbiter: ArbiterConfig{Hold: time.Millisecond, Grace: 200 * time.Microsecond}}
	replayMarksAsLive(t, cfg, false)
}

// TestReplayFailedReceivesAsLive is TestReplayMarksArbitrateAsLive with
// receive calls that fail between batches (Advance, and Capture.Failed as
// the receive loop calls it), some runs longer than LineTimeout: replayed
// by the file's marks and marker frames (Replayer.Failed), every script
// delivers and declares missing what the live Arbiter did.
func TestReplayFailedReceivesAsLive(t *testing.T) {
	cfg := Config{Session: marksSession, Arbiter: ArbiterConfig{Hold: time.Millisecond, Grace: 200 * time.Microsecond, LineTimeout: 3 * time.Millisecond}}
	if runs := replayMarksAsLive(t, cfg, true); runs == 0 {
		t.Fatal("no run of failed receive calls replayed")
	}
}

var marksSession = moldudp64.NewSession("MARKS00001")

// replayMarksAsLive runs the scripts of TestReplayMarksArbitrateAsLive
// (with failed receive calls: failures) live and through a capture file,
// and returns how many runs of failed receive calls the replays read.
func replayMarksAsLive(t *testing.T, cfg Config, failures bool) int {
	lines := []rx.LineConfig{
		{Group: netip.MustParseAddr("239.1.1.1"), Port: 26400},
		{Group: netip.MustParseAddr("239.1.1.2"), Port: 26400},
	}
	cfg.Receive.Lines = lines
	modelDiffers, runs := 0, 0
	const seeds = 40
	for seed := uint64(1); seed <= seeds; seed++ {
		s := newMarksScript(seed, cfg.Session, failures)

		live := newMarksRun(cfg)
		path := filepath.Join(t.TempDir(), fmt.Sprintf("marks-%d.pcap", seed))
		c, err := capture.Open(capture.Config{Path: path, Lines: lines, Log: zerolog.Nop(), Buffer: capture.MinBuffer})
		if err != nil {
			t.Fatal(err)
		}
		for i, batch := range s.batches {
			var drained int64 // as the receive loop keeps it
			for _, p := range s.polls[i] {
				if p.failed {
					live.r.arb.Advance(p.at)
					c.Failed(p.at, drained)
					continue
				}
				live.r.arb.Tick(p.at)
				drained = p.at
			}
			for _, p := range batch {
				live.r.arb.Offer(int(p.Line), p.Data, p.RxTime)
				live.r.last = p.RxTime
			}
			c.Put(batch, drained)
		}
		live.r.Finish()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}

		marked, model := newMarksRun(cfg), newMarksRun(cfg)
		frames, failed := replayMarks(t, path, lines, marked.r, model.r)
		if frames == 0 {
			t.Fatalf("seed %d: the capture holds no datagram", seed)
		}
		runs += failed
		if live.result() != marked.result() || !slices.Equal(live.got, marked.got) {
			t.Errorf("seed %d: replayed with its marks: %s; live: %s (messages equal: %v)",
				seed, marked.result(), live.result(), slices.Equal(live.got, marked.got))
		}
		if live.result() != model.result() || !slices.Equal(live.got, model.got) {
			modelDiffers++
			t.Logf("seed %d: modelled (ReplayPollGap): %s; live: %s", seed, model.result(), live.result())
		}
	}
	t.Logf("%d of %d scripts replayed unlike the live run without the marks; %d runs of failed receive calls", modelDiffers, seeds, runs)
	return runs
}

// replayMarks reads a capture and offers each datagram to marked with its
// batch mark and to model without it, and each run of failed receive
// calls to marked; it returns how many datagrams and runs it read.
func replayMarks(t *testing.T, path string, lines []rx.LineConfig, marked, model *Replayer) (int, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Sigfigs() != capture.FileMark {
		t.Fatalf("capture header sigfigs %#x, want FileMark %#x", rd.Sigfigs(), capture.FileMark)
	}
	rd.ReturnMarkers()
	n, failed := 0, 0
	for {
		fr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if fr.Marker {
			if _, end := capture.End(fr.Payload); end {
				continue // the file's end: the stop
			}
			first, last, drained, ok := capture.Failed(fr.SrcMAC, fr.Payload, fr.Time)
			if !ok {
				t.Fatalf("frame %d: a marker frame % x from % x that is no run of failed receive calls", fr.Index, fr.Payload, fr.SrcMAC)
			}
			marked.Failed(first, last, drained)
			failed++
			continue
		}
		line := slices.IndexFunc(lines, func(l rx.LineConfig) bool { return fr.Dst == netip.AddrPortFrom(l.Group, l.Port) })
		drained, ok := capture.Mark(fr.SrcMAC, fr.Time)
		if line < 0 || !ok {
			t.Fatalf("frame %d: line %d, mark % x (marked %v)", fr.Index, line, fr.SrcMAC, ok)
		}
		marked.OfferMarked(line, bytes.Clone(fr.Payload), fr.Time, drained)
		model.Offer(line, bytes.Clone(fr.Payload), fr.Time)
		n++
	}
	marked.Finish()
	model.Finish()
	return n, failed
}

// TestReplayFreezeAtGapDeclaredByPoll: the handler's arbiter declared a
// hole at an empty poll, long after the datagrams around it were read
// (spilled during the snapshot before, delivered when it loaded), froze
// for a snapshot there, and loaded one past the hole. The capture holds
// no datagram between the freeze and the load, and records no empty
// poll there: the replay froze at once, the snapshot resumed past the
// hole, and the gap the handler declared was not (TestCaptureReplaysLive
// Books/snapshot-gap, 1 run in 6: 'replay --feed misses 136 messages (3
// gaps), the live handler declared 183 missing').
func TestReplayFreezeAtGapDeclaredByPoll(t *testing.T) {
	cfg, msg, pkt := freezeGapFixture(t)
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC).UnixNano()
	ms := int64(time.Millisecond)
	for _, tc := range []struct {
		name  string
		after func(r *Replayer, at int64) // what follows the freeze
	}{
		{"snapshot", func(r *Replayer, at int64) {
			snap := append([]byte{0, byte(len(msg(9)))}, msg(9)...)
			r.LoadSnapshot(at+ms, snap, 10)
		}},
		{"resumed", func(r *Replayer, at int64) { r.Resume(at + ms) }},
		{"poll", func(r *Replayer, at int64) { r.OfferMarked(0, pkt(4), at+2*ms, at+ms) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReplayer(cfg, func(itch.Msg) {}, func(uint16) {}, func() {})
			for line := range 2 {
				r.OfferMarked(line, pkt(1), t0+int64(line), 0)
			}
			for line := range 2 { // 2 lost on both lines
				r.OfferMarked(line, pkt(3), t0+10+int64(line), 0)
			}
			at := t0 + 5*ms // the empty poll that declared 2 missing, past Hold
			r.Freeze(at, 3, true)
			tc.after(r, at)
			r.Finish()
			if st := r.Stats(); st.Gaps != 1 || st.GapMessages != 1 {
				t.Errorf("gaps %d (%d missing), want 1 (1 missing): the hole the handler declared as it froze", st.Gaps, st.GapMessages)
			}
		})
	}
}

// TestReplayFreezeAtGapAfterFailedRun: receive calls failed (their stamps
// the wall clock's), then a batch of datagrams queued before them (their
// stamps older) declared a hole, and the handler froze there. The capture
// writes the run of failures before that batch, after the freeze's mark:
// the replay froze at the run's first failure, past the freeze's time,
// before the batch declared the hole, and the snapshot loaded next
// resumed past it with nothing declared (TestReplayRecoveryAsLive: 42 of
// 200 scripts).
func TestReplayFreezeAtGapAfterFailedRun(t *testing.T) {
	cfg, msg, pkt := freezeGapFixture(t)
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC).UnixNano()
	ms := int64(time.Millisecond)
	r := NewReplayer(cfg, func(itch.Msg) {}, func(uint16) {}, func() {})
	for line := range 2 {
		r.OfferMarked(line, pkt(1), t0+int64(line), 0)
	}
	for line := range 2 { // 2 lost on both lines
		r.OfferMarked(line, pkt(3), t0+10+int64(line), 0)
	}
	at := t0 + 5*ms // the batch's stamps: 2 declared missing, past Hold
	r.Freeze(at, 3, true)
	r.Failed(at+ms, at+ms+int64(100*time.Microsecond), 0) // the calls that failed before the batch
	for line := range 2 {
		r.OfferMarked(line, pkt(4), at+int64(line), 0)
	}
	snap := append([]byte{0, byte(len(msg(9)))}, msg(9)...)
	r.LoadSnapshot(at+2*ms, snap, 10)
	r.Finish()
	if st := r.Stats(); st.Gaps != 1 || st.GapMessages != 1 {
		t.Errorf("gaps %d (%d missing), want 1 (1 missing): the hole the handler declared as it froze", st.Gaps, st.GapMessages)
	}
}

// freezeGapFixture returns the feed of TestReplayFreezeAtGapDeclaredByPoll
// (two lines) and makers of its messages and packets: one message a
// packet, its tracking timestamp its sequence number.
func freezeGapFixture(t *testing.T) (Config, func(uint64) []byte, func(uint64) []byte) {
	cfg := Config{Session: marksSession, Arbiter: ArbiterConfig{Hold: time.Millisecond, Grace: 200 * time.Microsecond}}
	cfg.Receive.Lines = []rx.LineConfig{
		{Group: netip.MustParseAddr("239.1.1.1"), Port: 26400},
		{Group: netip.MustParseAddr("239.1.1.2"), Port: 26400},
	}
	msg := func(seq uint64) []byte {
		m := make([]byte, itch.Length(itch.TypeSystemEvent))
		m[0] = itch.TypeSystemEvent
		binary.BigEndian.PutUint64(m[3:11], seq)
		m[11] = 'Q'
		return m
	}
	pkt := func(seq uint64) []byte {
		b := moldudp64.NewBuilder(cfg.Session, seq, 1400)
		if err := b.Add(msg(seq)); err != nil {
			t.Fatal(err)
		}
		return slices.Clone(b.Flush())
	}
	return cfg, msg, pkt
}

// TestReplayFreezeAtSecondGapOfFailedRun: a run of failed receive calls
// declared a hole at one call (line B dead by LineTimeout) and, the
// message after it delivered, the next hole at a later call (line A
// dead), where the handler froze for a snapshot; the capture holds the
// run's first and last call, and the freeze's next sequence number. The
// replay's Arbiter declares both holes at the last call: it froze at the
// first, the message between them not delivered, and the snapshot resumed
// past the second with it not declared (TestReplayRecoveryAsLive).
func TestReplayFreezeAtSecondGapOfFailedRun(t *testing.T) {
	cfg, msg, pkt := freezeGapFixture(t)
	cfg.Arbiter.LineTimeout = 3 * time.Millisecond
	var got []uint64
	r := NewReplayer(cfg, func(m itch.Msg) { got = append(got, binary.BigEndian.Uint64(m[3:11])) }, func(uint16) {}, func() {})
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC).UnixNano()
	us := int64(time.Microsecond)
	for _, p := range []struct {
		line int
		seq  uint64
		at   int64
	}{{0, 1, t0}, {1, 1, t0 + 1}, {0, 3, t0 + 10}, {1, 3, t0 + 11}, {0, 5, t0 + 500*us}} { // 2 and 4 lost on both lines
		r.OfferMarked(p.line, pkt(p.seq), p.at, 0)
	}
	// Live: calls failed at f, f+2.7ms (2 declared, B dead by the lines'
	// clock; 3 delivered; A alive) and f+3.2ms (A dead: 4 declared, and
	// the freeze there, next 5).
	f := t0 + 1000*us
	r.Freeze(t0+4200*us, 5, true)
	r.Failed(f, f+3200*us, 0)
	snap := append([]byte{0, byte(len(msg(99)))}, msg(99)...)
	r.LoadSnapshot(f+4000*us, snap, 5)
	r.Finish()
	if st := r.Stats(); st.Gaps != 2 || st.GapMessages != 2 || !slices.Equal(got, []uint64{1, 3, 99, 5}) {
		t.Errorf("gaps %d (%d missing), applied %v; want 2 (2 missing), [1 3 99 5]", st.Gaps, st.GapMessages, got)
	}
}

// TestReplayResumeBeforeFreezeAtGap: the handler, frozen for a snapshot,
// ticked at an empty poll (nothing declared, delivery frozen), resumed
// delivery there without a snapshot, and the next batch declared a hole,
// where it froze again. The capture holds the resume, then the freeze,
// then the batch marked with the empty poll: the replay resumed at the
// freeze's mark, before ticking at the empty poll, which then declared
// the hole unfrozen and delivered what the handler held for the next
// snapshot (TestReplayRecoveryAsLive: 35 of 200 scripts without failed
// receive calls).
func TestReplayResumeBeforeFreezeAtGap(t *testing.T) {
	cfg, msg, pkt := freezeGapFixture(t)
	var got []uint64
	r := NewReplayer(cfg, func(m itch.Msg) { got = append(got, binary.BigEndian.Uint64(m[3:11])) }, func(uint16) {}, func() {})
	t0 := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC).UnixNano()
	ms := int64(time.Millisecond)
	for line := range 2 {
		r.OfferMarked(line, pkt(1), t0+int64(line), 0)
	}
	for line := range 2 { // 2 lost on both lines
		r.OfferMarked(line, pkt(3), t0+10+int64(line), 0)
	}
	r.Freeze(t0+20, 2, false) // between batches
	poll := t0 + 2*ms         // the empty poll, then the resume
	r.Resume(poll)
	r.Freeze(poll+ms/10, 3, true)              // 2 declared by the batch's stamps
	r.OfferMarked(0, pkt(4), poll+ms/10, poll) // the batch's mark: the empty poll
	r.OfferMarked(1, pkt(4), poll+ms/10+1, 0)
	snap := append([]byte{0, byte(len(msg(99)))}, msg(99)...)
	r.LoadSnapshot(poll+ms, snap, 10)
	r.Finish()
	if st := r.Stats(); st.Gaps != 1 || st.GapMessages != 1 || !slices.Equal(got, []uint64{1, 99}) {
		t.Errorf("gaps %d (%d missing), applied %v; want 1 (1 missing), [1 99]", st.Gaps, st.GapMessages, got)
	}
}
