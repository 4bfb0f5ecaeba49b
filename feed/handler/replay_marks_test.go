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

// captureFrames reads the frames of the capture at path, its marker
// frames too, each payload its own.
func captureFrames(t *testing.T, path string) []pcap.Frame {
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
	var frames []pcap.Frame
	for {
		fr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		fr.Payload = bytes.Clone(fr.Payload)
		frames = append(frames, fr)
	}
}

// replayMarks reads a capture and offers each datagram to marked with its
// batch mark and to model without it, and each run of failed receive
// calls to marked; it returns how many datagrams and runs it read.
func replayMarks(t *testing.T, path string, lines []rx.LineConfig, marked, model *Replayer) (int, int) {
	t.Helper()
	n, failed := 0, 0
	for _, fr := range captureFrames(t, path) {
		if fr.Marker {
			if _, end := capture.End(fr.Payload); end {
				continue // the file's end: the stop
			}
			if _, _, _, begin := capture.Begin(fr.Payload); begin {
				continue // the file's start: its place in the capture
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
			r.Freeze(at, 3, true, 0)
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
// resumed past it with nothing declared (TestReplayRecoveryAsLive's
// model with failed receive calls: 52 of 200 scripts).
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
	r.Freeze(at, 3, true, 0)
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
	r.Freeze(t0+4200*us, 5, true, 0)
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
	r.Freeze(t0+20, 2, false, 0) // between batches
	poll := t0 + 2*ms            // the empty poll, then the resume
	r.Resume(poll)
	r.Freeze(poll+ms/10, 3, true, 0)           // 2 declared by the batch's stamps
	r.OfferMarked(0, pkt(4), poll+ms/10, poll) // the batch's mark: the empty poll
	r.OfferMarked(1, pkt(4), poll+ms/10+1, 0)
	snap := append([]byte{0, byte(len(msg(99)))}, msg(99)...)
	r.LoadSnapshot(poll+ms, snap, 10)
	r.Finish()
	if st := r.Stats(); st.Gaps != 1 || st.GapMessages != 1 || !slices.Equal(got, []uint64{1, 99}) {
		t.Errorf("gaps %d (%d missing), applied %v; want 1 (1 missing), [1 99]", st.Gaps, st.GapMessages, got)
	}
}

// recoveryLive drives an Arbiter as the receive loop and its recovery do
// (recovery*.go), and records the same to a capture as they do: a freeze
// for a snapshot where the arbiter declares a gap (recovery.gap,
// startSnapshot at the gap) or between rounds (poll), a snapshot loaded
// (Handler.rebuild, then capture.SnapshotMessages and Snapshot, then
// Arbiter.Unfreeze at its sequence number) or delivery resumed without
// one (Unfreeze(0), then capture.Resumed), ranges re-requested
// (MissingFunc) whose answers come at later rounds (OfferRecovered, then
// capture.Recovered) and which are given up (Abandon, then
// capture.GaveUp). The decisions are random, drawn from rng.
type recoveryLive struct {
	t      *testing.T
	rng    *rand.Rand
	sess   moldudp64.Session
	arb    *Arbiter
	c      *capture.Capture
	got    []uint64 // as marksRun's: the tracking timestamps applied, snapshots' too
	last   int64    // as the Replayer's last
	frozen bool
	// The range re-requested (Count 0: none) and how much of it the
	// answers sent so far held.
	req      moldudp64.Range
	answered uint64
	quiet    bool // no recovery step (the end)
	// What it models besides freezes at gaps, loads and resumes:
	// re-requests (rerequest), freezes between rounds (pollFreeze).
	rerequest, pollFreeze bool
	declined              int64 // a gap declared at declined froze nothing: nor does another then
	drained               int64 // the receive loop's empty poll since the batch before (Handler.drainedAt)
	stats                 struct{ gapFreezes, pollFreezes, loads, resumes, answers, gaveUp, requests uint64 }
}

// snapStamp marks a snapshot's message in got: the sequence number it
// resumes at, above every line message's stamp.
const snapStamp = 1 << 40

func (l *recoveryLive) deliver(p *moldudp64.Packet, skip int, _ int64) {
	it := p.Iter()
	it.Skip(skip)
	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
		l.got = append(l.got, binary.BigEndian.Uint64(msg[3:11]))
	}
}

// gap is the live arbiter's GapFunc: recovery.gap freezes for a snapshot
// at the gap (startSnapshot(now, true)) when no fetch is under way and
// its backoff allows; modelled as half the time.
func (l *recoveryLive) gap(_ moldudp64.Range, now int64) {
	if l.quiet || l.frozen || now == l.declined {
		return
	}
	if l.rng.IntN(2) == 0 {
		// Not now (snapAt ahead): nor at another gap declared at now.
		l.declined = now
		return
	}
	l.freeze(now, true)
	l.stats.gapFreezes++
}

func (l *recoveryLive) freeze(now int64, atGap bool) {
	// startSnapshot: the re-request in progress is cancelled (the client
	// passes on no answer to it after).
	l.req, l.answered = moldudp64.Range{}, 0
	from := l.arb.Next()
	l.arb.Freeze()
	l.c.Freeze(now, from, atGap, l.drained)
	l.frozen = true
}

// missing is the live arbiter's MissingFunc: recovery.missing re-requests
// a range when no snapshot is fetched (a third of the time here). The
// client's answers come at later rounds (poll); the capture notes the
// range re-requested (recovery.want: capture.Rerequested).
func (l *recoveryLive) missing(rg moldudp64.Range, now int64) bool {
	if l.quiet || l.frozen || !l.rerequest || l.rng.IntN(3) != 0 {
		return false
	}
	l.req, l.answered = rg, 0
	l.stats.requests++
	l.c.Rerequested(now, rg.First, rg.Count) // recovery.want
	return true
}

// answer builds a re-request answer of count messages from seq (the
// lines' messages, as newMarksScript makes them).
func (l *recoveryLive) answer(seq uint64, count int) []byte {
	b := moldudp64.NewBuilder(l.sess, seq, 1400)
	for i := range count {
		m := make([]byte, itch.Length(itch.TypeSystemEvent))
		m[0] = itch.TypeSystemEvent
		binary.BigEndian.PutUint64(m[3:11], seq+uint64(i))
		m[11] = 'Q'
		if err := b.Add(m); err != nil {
			l.t.Fatal(err)
		}
	}
	return slices.Clone(b.Flush())
}

// poll is recovery.poll at the end of a round at now: the client's
// answers or its giving up, then a fetch's end (a snapshot loaded, or
// delivery resumed without one) or a fetch started between rounds.
func (l *recoveryLive) poll(now int64) {
	if l.quiet {
		return
	}
	if l.req.Count > 0 && l.answered < l.req.Count {
		switch k := l.rng.IntN(6); {
		case k < 3: // an answer
			n := 1 + l.rng.IntN(int(min(l.req.Count-l.answered, 8)))
			raw := l.answer(l.req.First+l.answered, n)
			p, err := moldudp64.Parse(raw)
			if err != nil {
				l.t.Fatal(err)
			}
			l.answered += uint64(n)
			l.arb.OfferRecovered(raw, p, now)
			l.c.Recovered(raw, now, l.drained)
			l.last = max(l.last, now)
			l.stats.answers++
		case k == 5: // the servers failed the rest (or all of it): given up
			l.req = moldudp64.Range{}
			if _, busy := l.arb.Recovering(); busy {
				l.arb.Abandon(now)
				l.c.GaveUp(now, l.drained)
				l.stats.gaveUp++
			}
		}
	}
	if _, busy := l.arb.Recovering(); !busy && l.answered >= l.req.Count {
		l.req, l.answered = moldudp64.Range{}, 0
	}
	if l.frozen {
		switch l.rng.IntN(4) {
		case 0:
			l.load(now)
		case 1:
			l.arb.Unfreeze(0)
			l.c.Resumed(now)
			l.frozen = false
			l.stats.resumes++
		}
		return
	}
	if l.pollFreeze && l.rng.IntN(25) == 0 {
		// Between rounds (wantSnap, its backoff over).
		l.freeze(now, false)
		l.stats.pollFreezes++
	}
}

// load loads a snapshot at now, its sequence number behind where delivery
// froze, there, inside the spill or at the lines' highest (loadSnapshot
// waits for the lines to reach one ahead of them, or refuses it).
func (l *recoveryLive) load(now int64) {
	a := l.arb
	from, high := a.next, max(a.next, a.maxHigh())
	var next uint64
	switch l.rng.IntN(4) {
	case 0:
		next = max(from-min(from, uint64(1+l.rng.IntN(6))), 1)
	case 1:
		next = from
	case 2:
		next = high
	default:
		lo := from
		if a.pend.n > 0 {
			lo = a.pend.front().seq
		}
		next = lo
		if high > lo {
			next += uint64(l.rng.IntN(int(high - lo + 1)))
		}
	}
	next = max(next, 1)
	m := make([]byte, itch.Length(itch.TypeSystemEvent))
	m[0] = itch.TypeSystemEvent
	binary.BigEndian.PutUint64(m[3:11], snapStamp|next)
	m[11] = 'Q'
	msgs := append([]byte{0, byte(len(m))}, m...)
	l.got = append(l.got, snapStamp|next) // Handler.rebuild
	l.c.SnapshotMessages(msgs, now)
	l.c.Snapshot(now, next, 1)
	a.Unfreeze(next)
	l.frozen = false
	l.stats.loads++
}

// TestReplayRecoveryAsLive is TestReplayMarksArbitrateAsLive with the
// handler's recovery (recoveryLive): delivery frozen for a snapshot at
// gaps and between rounds, a snapshot loaded behind where it froze,
// there, inside the spill or at the lines' highest, or delivery resumed
// without one, ranges re-requested, answered in part, in whole, late or
// never, and given up, recorded to a capture as the handler records
// them. The capture replayed as replay --feed replays it
// (replayRecovery) delivers what the live Arbiter delivered, the
// snapshots' messages where it loaded them, and declares the same gaps,
// for every script, with runs of failed receive calls (some past
// LineTimeout) among its empty polls.
func TestReplayRecoveryAsLive(t *testing.T) {
	cfg := Config{Session: marksSession, Arbiter: ArbiterConfig{Hold: time.Millisecond, Grace: 200 * time.Microsecond, LineTimeout: 3 * time.Millisecond, MaxPending: 64, Spill: 96}}
	lines := []rx.LineConfig{
		{Group: netip.MustParseAddr("239.1.1.1"), Port: 26400},
		{Group: netip.MustParseAddr("239.1.1.2"), Port: 26400},
	}
	cfg.Receive.Lines = lines
	const seeds = 200
	var gapFreezes, pollFreezes, loads, resumes, requests, answers, gaveUp uint64
	failed := 0
	for seed := uint64(1); seed <= seeds; seed++ {
		s := newMarksScript(seed, cfg.Session, true)
		path := filepath.Join(t.TempDir(), fmt.Sprintf("recovery-%d.pcap", seed))
		live := runRecoveryLive(t, cfg, s, seed, path)
		st := live.stats
		gapFreezes, pollFreezes, loads, resumes = gapFreezes+st.gapFreezes, pollFreezes+st.pollFreezes, loads+st.loads, resumes+st.resumes
		requests, answers, gaveUp = requests+st.requests, answers+st.answers, gaveUp+st.gaveUp

		rep := newMarksRun(cfg)
		replayRecovery(t, path, lines, rep.r)
		if want := recoveryResult(live.arb.Stats); want != rep.result() || !slices.Equal(live.got, rep.got) {
			if failed++; failed <= 5 {
				i := 0
				for i < min(len(live.got), len(rep.got)) && live.got[i] == rep.got[i] {
					i++
				}
				t.Errorf("seed %d: replayed: %s; live: %s; applied from #%d: live %v, replayed %v",
					seed, rep.result(), want, i, live.got[i:min(len(live.got), i+4)], rep.got[i:min(len(rep.got), i+4)])
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d scripts replayed unlike the live run", failed, seeds)
	}
	t.Logf("freezes at gaps %d, between rounds %d; loads %d, resumes %d; re-requests %d, answers %d, given up %d",
		gapFreezes, pollFreezes, loads, resumes, requests, answers, gaveUp)
	if gapFreezes == 0 || pollFreezes == 0 || loads == 0 || resumes == 0 || requests == 0 || answers == 0 || gaveUp == 0 {
		t.Error("a recovery step never taken: the differential does not cover it")
	}
}

func recoveryResult(st ArbiterStats) string {
	return fmt.Sprintf("delivered %d, gaps %d (%d missing), held max %d", st.Delivered, st.Gaps, st.GapMessages, st.HeldMax)
}

// runRecoveryLive runs script s through a live Arbiter with recoveryLive,
// capturing to path, as the receive loop does (receive.go receiveLoop):
// per empty poll Tick, per failed call Advance and capture.Failed, per
// batch Offer each datagram then capture.Put; recovery.poll after every
// round.
func runRecoveryLive(t *testing.T, cfg Config, s marksScript, seed uint64, path string) *recoveryLive {
	t.Helper()
	c, err := capture.Open(capture.Config{Path: path, Lines: cfg.Receive.Lines, Log: zerolog.Nop(), Buffer: capture.MinBuffer})
	if err != nil {
		t.Fatal(err)
	}
	ac := cfg.Arbiter
	ac.Session = cfg.Session
	ac.Lines = len(cfg.Receive.Lines)
	l := &recoveryLive{t: t, rng: rand.New(rand.NewPCG(seed, 0x7265636f)), sess: cfg.Session, c: c, rerequest: true, pollFreeze: true}
	l.arb = NewArbiter(ac, l.deliver, l.gap)
	l.arb.SetMissing(l.missing)
	var clk int64 // the loop's clock: each round's time is past the one before
	for i, batch := range s.batches {
		l.drained = 0
		for _, p := range s.polls[i] {
			if p.at <= clk {
				continue
			}
			clk = p.at
			if p.failed {
				l.arb.Advance(p.at)
				c.Failed(p.at, l.drained)
			} else {
				l.arb.Tick(p.at)
				l.drained = p.at
			}
			l.poll(p.at)
		}
		for _, p := range batch {
			l.arb.Offer(int(p.Line), p.Data, p.RxTime)
			l.last = p.RxTime
			clk = max(clk, p.RxTime)
		}
		c.Put(batch, l.drained)
		l.drained = 0
		clk++ // the batch's end, read after its stamps
		l.poll(clk)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Replayer.Finish's: whatever is held is delivered or declared.
	l.quiet = true
	hold := int64(max(l.arb.cfg.Grace, l.arb.cfg.Hold, l.arb.cfg.LineTimeout)) + int64(time.Second)
	l.arb.Abandon(l.last + hold)
	l.arb.Tick(l.last + hold)
	return l
}

// replayRecovery replays the capture at path into r as replay --feed does
// (cmd/feedhandler/replay_feed.go: arbitrated): the ranges its answers
// hold read ahead (SetAnswered), then every frame in order.
func replayRecovery(t *testing.T, path string, lines []rx.LineConfig, r *Replayer) {
	t.Helper()
	frames := captureFrames(t, path)
	answered := map[uint64]uint64{} // first sequence number: end, of each answer
	requests := false
	for _, fr := range frames {
		if _, _, ok := capture.Rerequest(fr.Payload); ok && fr.Marker {
			requests = true
		}
		if !fr.Marker && capture.Answer(fr.SrcMAC) {
			p, err := moldudp64.Parse(fr.Payload)
			if err != nil {
				t.Fatal(err)
			}
			answered[p.Seq] = max(answered[p.Seq], p.Next())
		}
	}
	r.SetAnswered(func(s moldudp64.Session, rg moldudp64.Range) bool {
		for first, end := range answered {
			if first <= rg.First && rg.First < end {
				return true
			}
		}
		return false
	})
	if requests {
		r.FollowRerequests()
	}
	var snapMsgs []byte
	frozen := false

	for _, fr := range frames {
		if fr.Marker {
			switch {
			case func() bool { _, ok := capture.End(fr.Payload); return ok }():
			case func() bool { _, _, _, ok := capture.Begin(fr.Payload); return ok }():
			case capture.GaveUp(fr.Payload):
				r.GaveUp(fr.Time, capture.Drained(fr.SrcMAC, fr.Time))
			case func() bool { _, _, ok := capture.Rerequest(fr.Payload); return ok }():
				first, count, _ := capture.Rerequest(fr.Payload)
				r.Rerequested(moldudp64.Range{First: first, Count: count})
			case capture.Resumed(fr.Payload):
				frozen = false
				r.Resume(fr.Time)
			default:
				if first, last, drained, ok := capture.Failed(fr.SrcMAC, fr.Payload, fr.Time); ok {
					r.Failed(first, last, drained)
				} else if from, atGap, ok := capture.Frozen(fr.Payload); ok {
					frozen, snapMsgs = true, nil
					r.Freeze(fr.Time, from, atGap, capture.Drained(fr.SrcMAC, fr.Time))
				} else if msgs, ok := capture.SnapshotMessages(fr.Payload); ok {
					snapMsgs = append(snapMsgs, msgs...)
				} else if next, _, ok := capture.Snapshot(fr.Payload); ok {
					if !frozen {
						t.Fatalf("frame %d: a snapshot loaded with no freeze before it", fr.Index)
					}
					r.LoadSnapshot(fr.Time, snapMsgs, next)
					frozen, snapMsgs = false, nil
				} else {
					t.Fatalf("frame %d: marker frame % x", fr.Index, fr.Payload)
				}
			}
			continue
		}
		if capture.Answer(fr.SrcMAC) {
			r.Recovered(fr.Payload, fr.Time, capture.Drained(fr.SrcMAC, fr.Time))
			continue
		}
		line := slices.IndexFunc(lines, func(l rx.LineConfig) bool { return fr.Dst == netip.AddrPortFrom(l.Group, l.Port) })
		drained, ok := capture.Mark(fr.SrcMAC, fr.Time)
		if line < 0 || !ok {
			t.Fatalf("frame %d: line %d, mark % x (marked %v)", fr.Index, line, fr.SrcMAC, ok)
		}
		r.OfferMarked(line, fr.Payload, fr.Time, drained)
	}
	r.Finish()
}
