package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/demo"
)

// liveAndRotated runs script twice, into a capture of one file (what the
// handler received, which replays to its books and gaps:
// TestCaptureReplaysLiveBooks) and into one of files of
// capture.MinRotate, and returns the first's path and the second's files
// in the order written, having checked that they are 2 or more and that
// neither capture dropped anything.
func liveAndRotated(t *testing.T, script func(c *capture.Capture, t0 int64)) (string, []string) {
	t.Helper()
	liveDir, dir := t.TempDir(), t.TempDir()
	live := filepath.Join(liveDir, "live.pcap")
	lc, t0 := demoCapture(t, live)
	script(lc, t0)
	rc, _ := rotatingDemoCapture(t, dir, false)
	script(rc, t0)
	for _, c := range []*capture.Capture{lc, rc} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if c.Stats().Dropped != 0 {
			t.Fatalf("stats %+v: want nothing dropped", c.Stats())
		}
	}
	names, _ := filepath.Glob(filepath.Join(dir, "lines-*.pcap"))
	if len(names) < 2 {
		t.Fatalf("files %v: want 2 or more", names)
	}
	return live, names
}

// putBoth puts data on both lines, received at ts on A and 1 µs later on
// B, after an empty poll just before ts; every 200th, a pause lets the
// writer keep up (nothing dropped).
func putBoth(c *capture.Capture, i int, data []byte, ts int64) {
	c.Put([]rx.Packet{{Line: rx.LineA, Data: data, RxTime: ts}, {Line: rx.LineB, Data: data, RxTime: ts + 1000}}, ts-1)
	if i%200 == 0 {
		time.Sleep(time.Millisecond)
	}
}

// restated returns, for each of a capture's files, the ranges it says
// again at its start (capture.RerequestAgain), as "first+count".
func restated(t *testing.T, names []string) [][]uint64 {
	t.Helper()
	var out [][]uint64
	for _, name := range names {
		var again []uint64
		eachFrame(t, name, func(fr *pcap.Frame) bool {
			if _, _, ok := capture.RerequestAgain(fr.Payload); ok && fr.Marker {
				lo, count, _ := capture.Rerequest(fr.Payload)
				again = append(again, lo, count)
			}
			return true
		})
		out = append(out, again)
	}
	return out
}

// eachFrame hands fn the frames of the capture file name in order, until
// it returns false or the file ends.
func eachFrame(t *testing.T, name string, fn func(fr *pcap.Frame) bool) {
	t.Helper()
	in, err := input.OpenOptions(name, input.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for {
		fr, err := in.NextDatagram()
		if errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !fn(&fr) {
			return
		}
	}
}

// firstSeq returns the sequence number of the first line datagram of
// the capture file name.
func firstSeq(t *testing.T, name string) uint64 {
	t.Helper()
	seq, _ := firstLine(t, name)
	return seq
}

// firstLine returns the sequence number and receive time of the first
// line A datagram of the capture file name.
func firstLine(t *testing.T, name string) (seq uint64, at int64) {
	t.Helper()
	eachFrame(t, name, func(fr *pcap.Frame) bool {
		if fr.Marker || capture.Answer(fr.SrcMAC) || fr.Dst != demo.GroupA {
			return true
		}
		if p, err := moldudp64.Parse(fr.Payload); err == nil && p.Messages() > 0 {
			seq, at = p.Seq, fr.Time
			return false
		}
		return true
	})
	if seq == 0 {
		t.Fatalf("%s: no line datagram", name)
	}
	return seq, at
}

// lostPair returns packets j and j+1 of day, which a test loses on both
// lines, having checked that they bring messages.
func lostPair(t *testing.T, day *demo.Day, j int) (p0, p1 moldudp64.Packet) {
	t.Helper()
	p0, err0 := moldudp64.Parse(day.Packets[j])
	p1, err1 := moldudp64.Parse(day.Packets[j+1])
	if err := errors.Join(err0, err1); err != nil || p0.Messages() == 0 || p1.Messages() == 0 {
		t.Fatalf("packets %d and %d: %v: want packets of messages", j, j+1, err)
	}
	return p0, p1
}

// noneSaidAgain checks that no file of a capture says a range
// re-requested again at its start (why: where it ended).
func noneSaidAgain(t *testing.T, names []string, why string) {
	t.Helper()
	if got := restated(t, names); slices.ContainsFunc(got, func(r []uint64) bool { return len(r) != 0 }) {
		t.Errorf("the files' ranges said again %v: want none (%s)", got, why)
	}
}

// putRerequested is putBoth of day's packet i, data, at ts, with the
// range of packets j and j+1 (p0, p1), lost on both lines, re-requested
// after packet j+2.
func putRerequested(c *capture.Capture, i int, data []byte, ts int64, j int, p0, p1 moldudp64.Packet) {
	putBoth(c, i, data, ts)
	if i == j+2 {
		c.Rerequested(ts+500, p0.Seq, p1.Next()-p0.Seq)
	}
}

// liveInOrder replays with --feed feed the one-file capture live and
// the rotated capture's files names in order, checks that they replay
// alike (sameReplay), and returns the one-file capture's report and
// whether its books are day's.
func liveInOrder(t *testing.T, feed, live string, names []string, day *demo.Day) (replayReport, bool) {
	t.Helper()
	liveRep, liveBooks := replayBooks(t, "--feed", feed, live)
	var want bytes.Buffer
	if err := day.Books.WriteJSON(&want, 10); err != nil {
		t.Fatal(err)
	}
	rep, books := replayBooks(t, append([]string{"--feed", feed}, names...)...)
	if d := sameReplay(rep, liveRep, books, liveBooks); d != "" {
		t.Errorf("replay --feed of the %d files in order: %s (the one-file capture's)", len(names), d)
	}
	return liveRep, bytes.Equal(liveBooks, want.Bytes())
}

// sameReplay reports how two replays' books and gaps differ ("" when
// they do not).
func sameReplay(got, want replayReport, gotBooks, wantBooks []byte) string {
	a, b := got.Arbitrated, want.Arbitrated
	switch {
	case a == nil || b == nil:
		return "no arbitrated report"
	case got.InputGaps != want.InputGaps || got.InputMissing != want.InputMissing || a.Delivered != b.Delivered || a.Resets != b.Resets:
		return fmt.Sprintf("%d gaps, %d missing, %d delivered, %d resets; want %d, %d, %d, %d",
			got.InputGaps, got.InputMissing, a.Delivered, a.Resets, want.InputGaps, want.InputMissing, b.Delivered, b.Resets)
	case !bytes.Equal(gotBooks, wantBooks):
		return "other books"
	}
	return ""
}

// TestReplayFeedSessionChangeWithRerequestOpen: the lines' session OLD
// lost a packet on both lines, which the handler re-requested (never
// answered); OLD fell silent and the lines changed session, the handler
// dropping the range with OLD (its capture's Discarded frame). The
// rotated capture's files replay in order as the one-file capture of the
// same run (the live books and gaps: the new session's day), and the
// file after the first alone to the new session's messages from its
// first datagram on, one gap (its start). No file says OLD's range
// again: before, the capture kept the range open, its rotation held to
// twice rotate_size, and every file after the first started with a range
// of the old session said again.
func TestReplayFeedSessionChangeWithRerequestOpen(t *testing.T) {
	day, dir, _ := dayDir(t, 60_000, 41)
	oldSession := moldudp64.NewSession("OLDSESS001")
	var old [][]byte
	for _, p := range day.Packets[:40] {
		q := append([]byte(nil), p...)
		copy(q, oldSession[:])
		old = append(old, q)
	}
	lost, err := moldudp64.Parse(old[20])
	if err != nil {
		t.Fatal(err)
	}
	live, names := liveAndRotated(t, func(c *capture.Capture, t0 int64) {
		ts := func(i int) int64 { return t0 + int64(i)*int64(100*time.Microsecond) }
		for i := range old {
			if i == 20 {
				continue // lost on both lines
			}
			putBoth(c, i, old[i], ts(i))
			if i == 21 {
				c.Rerequested(ts(i)+500, lost.Seq, uint64(lost.Messages()))
			}
		}
		t1 := ts(len(old)) + int64(2*time.Second) // OLD silent past line_timeout
		for i, p := range day.Packets {
			at := t1 + int64(i)*int64(100*time.Microsecond)
			if i == 3 {
				c.Discarded(at - 2) // the new session confirmed by its 4th packet: the range dropped
			}
			putBoth(c, i, p, at)
		}
	})
	noneSaidAgain(t, names, "OLD's range dropped at the session change")
	feed := noSessionFeed(t, dir, day)
	liveRep, dayBooks := liveInOrder(t, feed, live, names, day)
	if a := liveRep.Arbitrated; a == nil || a.Resets != 1 || !dayBooks {
		t.Fatalf("replay --feed of the one-file capture: report %+v, the day's books %v; want a session change, the new session's day", a, dayBooks)
	}
	loneSecond(t, feed, names, day)
}

// loneSecond replays the second of a capture's files of day alone, with
// --feed feed, and checks that it delivered the day's messages from its
// first line datagram up to the next file's, one gap (its start), as the
// handler delivered them (nothing held there).
func loneSecond(t *testing.T, feed string, names []string, day *demo.Day) {
	t.Helper()
	rep, _ := replayBooks(t, "--feed", feed, names[1])
	first, end := firstSeq(t, names[1]), day.Messages+1
	if len(names) > 2 {
		end = firstSeq(t, names[2])
	}
	if a := rep.Arbitrated; a == nil || a.CaptureStart != captureContinued || rep.InputGaps != 1 || rep.InputMissing != first-1 || a.Delivered != end-first {
		t.Errorf("replay --feed of the second file alone: %d gaps, %d missing, report %+v; want its start alone missing (1 gap, %d messages), %d delivered", rep.InputGaps, rep.InputMissing, a, first-1, end-first)
	}
}

// TestReplayFeedRerequestAnsweredOutOfOrder: packets j and j+1 of a day
// are lost on both lines; the handler re-requested both (one FHRQ frame)
// and the answers came out of order, j+1's first (held by the arbiter),
// then j's, which filled the range. The rotated capture's files replay in
// order as the one-file capture of the same run (the live books and
// gaps: the day's, nothing missing), and the file after the first alone
// to the day's messages from its first datagram on, one gap (its start).
// Before, the capture counted j+1's answer as nothing (it did not bring
// the range's first number not yet filled): the range stayed open, the
// rotation held to twice rotate_size, and the second file began with
// j+1's numbers said again, which its replay alone held for and never
// got.
func TestReplayFeedRerequestAnsweredOutOfOrder(t *testing.T) {
	day, dir, _ := dayDir(t, 60_000, 43)
	j := len(day.Packets) / 10
	p0, p1 := lostPair(t, day, j)
	live, names := liveAndRotated(t, func(c *capture.Capture, t0 int64) {
		ts := func(i int) int64 { return t0 + int64(i)*int64(100*time.Microsecond) }
		for i, p := range day.Packets {
			switch i {
			case j, j + 1:
				continue // lost on both lines
			case j + 5:
				c.Recovered(day.Packets[j+1], ts(i)-500, ts(i)-1) // held: the range's first numbers not yet here
			case j + 6:
				c.Recovered(day.Packets[j], ts(i)-500, ts(i)-1) // fills the range
			}
			putRerequested(c, i, p, ts(i), j, p0, p1)
		}
	})
	noneSaidAgain(t, names, "the range filled before the first file's end")
	feed := writeDemoFeed(t, dir, day, "")
	liveRep, dayBooks := liveInOrder(t, feed, live, names, day)
	if a := liveRep.Arbitrated; a == nil || liveRep.InputGaps != 0 || a.LiveRecovery.Answers != 2 || !dayBooks {
		t.Fatalf("replay --feed of the one-file capture: %d gaps, report %+v, the day's books %v; want both answers applied, no gap, the day's books", liveRep.InputGaps, a, dayBooks)
	}
	loneSecond(t, feed, names, day)
}

// TestReplayFeedHeldRestartAcrossFiles: with arbitration.sequence_restart
// hold, the lines went back to sequence number 1 (the day sent again from
// its start) after its first 60%: the handler held at the next number it
// had not delivered (N), dropping what came behind it, until the lines
// brought N again. The rotated capture's files replay in order as the
// one-file capture of the same run (the live books and gaps: the day's),
// and a file that starts during the hold, alone, starts there too (its
// HeldBehind frame): one gap, before N, and the messages from N up to the
// next file's. Before, that file alone followed the numbers the lines
// went back to from its start and applied what the handler dropped. A
// stray sender's datagram (another session) just before the hold is not
// the hold's session: before, the FHRH frame named it (the session of
// the line datagram before the hold), and the file alone, its replay's
// arbiter never following that session, did not hold either.
func TestReplayFeedHeldRestartAcrossFiles(t *testing.T) {
	day, dir, _ := dayDir(t, 60_000, 47)
	k := len(day.Packets) * 6 / 10
	pk, err := moldudp64.Parse(day.Packets[k])
	if err != nil {
		t.Fatal(err)
	}
	stray := append([]byte(nil), day.Packets[k]...)
	copy(stray, "STRAY00001")
	n := pk.Seq // the handler's next when the lines went back
	const lineTimeout = 100 * time.Millisecond
	var heldAt int64
	live, names := liveAndRotated(t, func(c *capture.Capture, t0 int64) {
		ts := func(i int) int64 { return t0 + int64(i)*int64(100*time.Microsecond) }
		for i := range k {
			putBoth(c, i, day.Packets[i], ts(i))
		}
		r0 := ts(k) + int64(2*time.Millisecond)
		for i, p := range day.Packets { // again from the start, 2 ms apart
			at := r0 + int64(i)*int64(2*time.Millisecond)
			if i == int(lineTimeout/(2*time.Millisecond))+1 {
				// A stray sender's datagram, another session's, just
				// before: the hold is of the session the arbiter follows.
				c.Put([]rx.Packet{{Line: rx.LineA, Data: stray, RxTime: at - 3}}, 0)
				c.Behind(at-2, n, day.Session) // every line behind for line_timeout: held
				heldAt = at
			}
			putBoth(c, i, p, at)
		}
	})
	feed := writeDemoFeed(t, dir, day, "arbitration: {sequence_restart: hold, line_timeout: 100ms}\n")
	liveRep, dayBooks := liveInOrder(t, feed, live, names, day)
	if a := liveRep.Arbitrated; a == nil || liveRep.InputGaps != 0 || a.Delivered != day.Messages || !dayBooks {
		t.Fatalf("replay --feed of the one-file capture: %d gaps, report %+v, the day's books %v; want the restart held, no gap, the day's books", liveRep.InputGaps, a, dayBooks)
	}
	held := 0
	for f := 1; f < len(names); f++ {
		seq, at := firstLine(t, names[f])
		if at <= heldAt || seq >= n {
			continue // not held at its start
		}
		held++
		end := day.Messages + 1
		if f+1 < len(names) {
			end = max(n, firstSeq(t, names[f+1]))
		}
		rep, _ := replayBooks(t, "--feed", feed, names[f])
		if a := rep.Arbitrated; a == nil || a.CaptureStart != captureContinued || rep.InputGaps != 1 || rep.InputMissing != n-1 || a.Delivered != end-n {
			t.Errorf("replay --feed of file %d alone (its first datagram %d, the handler held at %d): %d gaps, %d missing, report %+v; want held at %d as the handler (1 gap, %d missing), %d delivered", f+1, seq, n, rep.InputGaps, rep.InputMissing, a, n, n-1, end-n)
		}
	}
	if held == 0 {
		t.Fatalf("no file of %d starts during the hold", len(names))
	}
}

// answersAndRequests returns, for each of a capture's files, how many
// re-request answers it holds and how many ranges re-requested there
// (FHRQ frames not said again).
func answersAndRequests(t *testing.T, names []string) (answers, requests []int) {
	t.Helper()
	for _, name := range names {
		var a, q int
		eachFrame(t, name, func(fr *pcap.Frame) bool {
			if _, _, ok := capture.Rerequest(fr.Payload); ok && fr.Marker {
				if _, _, again := capture.RerequestAgain(fr.Payload); !again {
					q++
				}
			} else if !fr.Marker && capture.Answer(fr.SrcMAC) {
				a++
			}
			return true
		})
		answers, requests = append(answers, a), append(requests, q)
	}
	return answers, requests
}

// waitFlushed waits (bounded) until capture c has written n more bytes
// than before, having let it flush what it buffered first.
func waitFlushed(t *testing.T, c *capture.Capture, put func()) {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // what is buffered flushed (capture flushes every 200 ms)
	before := c.Stats().Bytes
	put()
	for range 500 {
		if c.Stats().Bytes > before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("capture stats %+v: nothing written in 5 s", c.Stats())
}

// TestReplayFeedRerequestAnswerDropped: with arbitration.max_pending 500
// (the spill, no recovery.spill of its own), packets j and j+1 of a day
// are lost on both lines, re-requested (one FHRQ frame), and the lines
// bring the 500 packets after them, which fill the spill. The answer for
// j+1 comes first: the arbiter has no room to hold it and drops it
// (RecoveredDropped); j's fills the range up to j+1, still missing, and
// the handler holds the 500 until j+1's answer asked again comes. The
// capture's view is the arbiter's: the file holding the range's FHRQ
// frame holds the three answers (the rotation, due, waits for the
// range's end), its replay alone has no gap (as live, nothing missing up
// to its end), the files in order replay as the one-file capture of the
// same run, and the second alone from its first datagram on. Before,
// the capture counted the dropped answer filled: the range closed at
// j's answer, the file rotated there while the handler held behind it,
// and the first file alone had j+1 missing, the answer asked again in
// the next file.
func TestReplayFeedRerequestAnswerDropped(t *testing.T) {
	day, dir, _ := dayDir(t, 60_000, 53)
	const j, spill = 20, 500
	p0, p1 := lostPair(t, day, j)
	live, names := liveAndRotated(t, func(c *capture.Capture, t0 int64) {
		ts := func(i int) int64 { return t0 + int64(i)*int64(100*time.Microsecond) }
		for i := range j + 2 + spill {
			if i == j || i == j+1 {
				continue // lost on both lines
			}
			putRerequested(c, i, day.Packets[i], ts(i), j, p0, p1)
		}
		at := ts(j + 2 + spill)
		waitFlushed(t, c, func() {
			c.RecoveredDropped(day.Packets[j+1], at, at-1) // the spill full: dropped, still missing
			c.Recovered(day.Packets[j], at+100, 0)         // fills up to j+1
		})
		c.Recovered(day.Packets[j+1], at+int64(time.Millisecond), at+int64(time.Millisecond)-1) // asked again: fills the range
		for i := j + 2 + spill; i < len(day.Packets); i++ {
			putBoth(c, i, day.Packets[i], ts(i)+int64(2*time.Millisecond))
		}
	})
	answers, requests := answersAndRequests(t, names)
	if requests[0] != 1 || answers[0] != 3 {
		t.Errorf("files' answers %v and ranges re-requested %v: want the first file to hold the range and its 3 answers", answers, requests)
	}
	feed := writeDemoFeed(t, dir, day, "arbitration: {max_pending: 500}\n")
	liveRep, dayBooks := liveInOrder(t, feed, live, names, day)
	if a := liveRep.Arbitrated; a == nil || liveRep.InputGaps != 0 || a.LiveRecovery.Answers != 3 || !dayBooks {
		t.Fatalf("replay --feed of the one-file capture: %d gaps, report %+v, the day's books %v; want the answers applied, no gap, the day's books", liveRep.InputGaps, a, dayBooks)
	}
	rep, _ := replayBooks(t, "--feed", feed, names[0])
	_, end0 := lineSpan(t, names[0])
	if a := rep.Arbitrated; a == nil || rep.InputGaps != 0 || a.Delivered != end0-1 {
		t.Errorf("replay --feed of the first file alone: %d gaps, %d missing, report %+v; want no gap, %d delivered (as live, up to its end)", rep.InputGaps, rep.InputMissing, a, end0-1)
	}
	loneSecondSpan(t, feed, names)
}

// loneSecondSpan is loneSecond by the second file's line datagrams of
// either line, from its first to its last (a rotation may come between
// a batch's two copies).
func loneSecondSpan(t *testing.T, feed string, names []string) {
	t.Helper()
	rep, _ := replayBooks(t, "--feed", feed, names[1])
	first, end := lineSpan(t, names[1])
	if a := rep.Arbitrated; a == nil || a.CaptureStart != captureContinued || rep.InputGaps != 1 || rep.InputMissing != first-1 || a.Delivered != end-first {
		t.Errorf("replay --feed of the second file alone: %d gaps, %d missing, report %+v; want its start alone missing (1 gap, %d messages), %d delivered", rep.InputGaps, rep.InputMissing, a, first-1, end-first)
	}
}

// lineSpan returns the first sequence number of the capture file name's
// line datagrams (either line's) and the one after the last they bring.
func lineSpan(t *testing.T, name string) (first, end uint64) {
	t.Helper()
	eachFrame(t, name, func(fr *pcap.Frame) bool {
		if fr.Marker || capture.Answer(fr.SrcMAC) || fr.Dst != demo.GroupA && fr.Dst != demo.GroupB {
			return true
		}
		if p, err := moldudp64.Parse(fr.Payload); err == nil && p.Messages() > 0 {
			if first == 0 {
				first = p.Seq
			}
			end = max(end, p.Next())
		}
		return true
	})
	return first, end
}

// TestReplayFeedRerequestSpillOverflow: with arbitration.max_pending 500
// (the spill), packets j and j+1 of a day are lost on both lines and
// re-requested (one FHRQ frame), never answered; the lines bring 501
// packets after them, the last with the spill full: the handler's
// arbiter gives the range up itself (declared missing, what it held
// delivered), neither its answers nor the client's giving up ending it
// (Capture.Declared). The capture's range ends there too: no file says it
// again, the files in order replay as the one-file capture of the same
// run (the range a gap, as live) and the second alone from its first
// datagram on. Before, the capture kept the range open: the rotation
// held to twice rotate_size and the next file began with the range said
// again, which its replay alone held for and never got (2 gaps for 1).
func TestReplayFeedRerequestSpillOverflow(t *testing.T) {
	day, dir, _ := dayDir(t, 60_000, 59)
	const j, spill = 20, 500
	p0, p1 := lostPair(t, day, j)
	live, names := liveAndRotated(t, func(c *capture.Capture, t0 int64) {
		for i, p := range day.Packets {
			at := t0 + int64(i)*int64(100*time.Microsecond)
			if i == j+2+spill {
				c.Declared(at - 1) // the spill full: the arbiter gives the range up
			} else if i == j || i == j+1 {
				continue // lost on both lines
			}
			putRerequested(c, i, p, at, j, p0, p1)
		}
	})
	noneSaidAgain(t, names, "the range declared missing in the first file")
	feed := writeDemoFeed(t, dir, day, "arbitration: {max_pending: 500}\n")
	liveRep, _ := liveInOrder(t, feed, live, names, day)
	if a := liveRep.Arbitrated; a == nil || liveRep.InputGaps != 1 || liveRep.InputMissing != p1.Next()-p0.Seq || a.Delivered != day.Messages-liveRep.InputMissing {
		t.Fatalf("replay --feed of the one-file capture: %d gaps, %d missing, report %+v; want the range alone missing (%d messages)", liveRep.InputGaps, liveRep.InputMissing, a, p1.Next()-p0.Seq)
	}
	loneSecondSpan(t, feed, names)
}

// startsWith returns, for each of a capture's files, which of the hold
// behind the lines (H: capture.HeldBehind) and the range re-requested
// (Q: capture.RerequestAgain) it says again at its start.
func startsWith(t *testing.T, names []string) []string {
	t.Helper()
	var out []string
	for _, name := range names {
		var said []byte
		eachFrame(t, name, func(fr *pcap.Frame) bool {
			if !fr.Marker {
				return true
			}
			if _, _, ok := capture.HeldBehind(fr.Payload); ok {
				said = append(said, 'H')
			} else if _, _, ok := capture.RerequestAgain(fr.Payload); ok {
				said = append(said, 'Q')
			}
			return true
		})
		out = append(out, string(said))
	}
	return out
}

// TestReplayFeedHeldAndRerequestAcrossFiles: with
// arbitration.sequence_restart hold, packets j and j+1 of a day are lost
// on both lines and re-requested (one FHRQ frame), the lines bring 48
// packets more (held behind the range), then go back to sequence number
// 1 (the day sent again): the handler holds behind them at j, the range
// open. j's answer comes a while later (the range open from j+1 on, the
// hold still at j: no line brought numbers past it), j+1's only when the
// lines are back near j. The rotation, held for the range, goes on at
// twice rotate_size: the files opened meanwhile start with both said
// again (the hold's FHRH, then the range's FHRQ), at j, or, after j's
// answer, the hold at j and the range at j+1. Each, alone, replays as
// the handler ran: its start a gap up to where the handler's arbiter was
// then (one), and what it delivered in the file's time, up to the file's
// last datagram; the files in order as the one-file capture of the same
// run (the day's books, no gap).
func TestReplayFeedHeldAndRerequestAcrossFiles(t *testing.T) {
	day, dir, _ := dayDir(t, 120_000, 61)
	const j, k, partialAt, answerAt = 1550, 1600, 600, 1400
	if len(day.Packets) < k+100 {
		t.Fatalf("%d packets: want more than %d", len(day.Packets), k+100)
	}
	p0, p1 := lostPair(t, day, j)
	pk, err := moldudp64.Parse(day.Packets[k])
	if err != nil {
		t.Fatal(err)
	}
	const lineTimeout = 100 * time.Millisecond
	var partial, answered int64
	live, names := liveAndRotated(t, func(c *capture.Capture, t0 int64) {
		ts := func(i int) int64 { return t0 + int64(i)*int64(100*time.Microsecond) }
		for i := range k {
			if i == j || i == j+1 {
				continue // lost on both lines
			}
			putRerequested(c, i, day.Packets[i], ts(i), j, p0, p1)
		}
		r0 := ts(k) + int64(2*time.Millisecond)
		for i, p := range day.Packets { // again from the start, 2 ms apart
			at := r0 + int64(i)*int64(2*time.Millisecond)
			switch i {
			case int(lineTimeout/(2*time.Millisecond)) + 1:
				c.Behind(at-2, p0.Seq, day.Session) // every line behind for line_timeout: held at j
			case partialAt:
				partial = at - 500
				c.Recovered(day.Packets[j], partial, 0) // j delivered, the range open at j+1
			case answerAt:
				answered = at - 500
				c.Recovered(day.Packets[j+1], answered, 0) // the range filled: j+1 to k delivered
			}
			putBoth(c, i, p, at)
		}
	})
	feed := writeDemoFeed(t, dir, day, "arbitration: {sequence_restart: hold, line_timeout: 100ms}\n")
	liveRep, dayBooks := liveInOrder(t, feed, live, names, day)
	if a := liveRep.Arbitrated; a == nil || liveRep.InputGaps != 0 || a.Delivered != day.Messages || !dayBooks {
		t.Fatalf("replay --feed of the one-file capture: %d gaps, report %+v, the day's books %v; want the range filled, the restart held, no gap, the day's books", liveRep.InputGaps, liveRep.Arbitrated, dayBooks)
	}
	// nextAt is the handler's next sequence number at t, up to a file's
	// line datagrams' end (lastEnd) once the range was filled.
	nextAt := func(t, lastEnd int64) uint64 {
		switch {
		case t < partial:
			return p0.Seq
		case t < answered:
			return p1.Seq
		}
		return max(uint64(lastEnd), pk.Seq)
	}
	said := startsWith(t, names)
	var kinds []uint64
	for f := 1; f < len(names); f++ {
		if said[f] != "HQ" && said[f] != "QH" { // the order is the writer's (HQ): a replay takes both
			continue
		}
		_, lastEnd := lineSpan(t, names[f])
		_, firstAt := firstLine(t, names[f])
		start, end := nextAt(firstAt, 0), nextAt(lastAt(t, names[f]), int64(lastEnd))
		kinds = append(kinds, start)
		rep, _ := replayBooks(t, "--feed", feed, names[f])
		if a := rep.Arbitrated; a == nil || a.CaptureStart != captureContinued || rep.InputGaps != 1 || rep.InputMissing != start-1 || a.Delivered != end-start {
			t.Errorf("replay --feed of file %d alone (starts %q): %d gaps, %d missing, report %+v; want it to start at %d as the handler (1 gap, %d missing), %d delivered", f+1, said[f], rep.InputGaps, rep.InputMissing, a, start, start-1, end-start)
		}
	}
	if !slices.Contains(kinds, p0.Seq) || !slices.Contains(kinds, p1.Seq) {
		t.Fatalf("files' starts %q, those saying both at %v: want one at j (%d), one at j+1 (%d)", said, kinds, p0.Seq, p1.Seq)
	}
}

// lastAt returns the receive time of the last frame of the capture file
// name that is not a marker.
func lastAt(t *testing.T, name string) int64 {
	t.Helper()
	var last int64
	eachFrame(t, name, func(fr *pcap.Frame) bool {
		if !fr.Marker {
			last = fr.Time
		}
		return true
	})
	return last
}
