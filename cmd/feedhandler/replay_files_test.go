package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/demo"
)

// replayFiles replays capPaths with --feed feed, JSON and text, and
// returns the JSON report, the text one and the replay's error (the same
// for both).
func replayFiles(t *testing.T, feed string, capPaths ...string) (replayReport, string, error) {
	t.Helper()
	args := append([]string{"--quiet", "--settle", "0", "--feed", feed}, capPaths...)
	var js, text bytes.Buffer
	err := replay(append([]string{"--json"}, args...), &js, io.Discard)
	var rep replayReport
	if jerr := json.Unmarshal(js.Bytes(), &rep); jerr != nil {
		t.Fatalf("replay --json %v: %v (%v)", capPaths, jerr, err)
	}
	if terr := replay(args, &text, io.Discard); (terr == nil) != (err == nil) {
		t.Fatalf("replay %v: %v as JSON, %v as text", capPaths, err, terr)
	}
	return rep, text.String(), err
}

// TestReplayFeedFileMissing: a capture's files given to replay --feed
// with one missing from the middle (a cleanup took it, a copy left it
// out), out of order, or followed by another run's file that ended in
// the next file too, are refused where the next file starts, saying which
// files and, for a hole, the name of the file before the next (the
// missing one, when one is): each file's begin frame says its place in
// its capture. Before, the replay went on across the hole (1 gap of 16301
// messages, nothing to say why) and into another run's file as if it
// were the next.
func TestReplayFeedFileMissing(t *testing.T) {
	day, dir, names := rotatedDay(t)
	if len(names) < 3 {
		t.Fatalf("files %v: want 3 or more", names)
	}
	feed := writeDemoFeed(t, dir, day, "")
	_, text, err := replayFiles(t, feed, names[0], names[2])
	if err == nil || !strings.Contains(err.Error(), "1 file(s) of the capture missing between "+names[0]+" (its file 1) and "+names[2]+" (its file 3, the file before it named "+filepath.Base(names[1])+")") {
		t.Errorf("replay --feed of files 1 and 3 of %d: %v; want refused, a file missing between them, named", len(names), err)
	}
	if !strings.Contains(text, "stopped       replay "+names[2]) {
		t.Errorf("replay --feed of files 1 and 3: the text report does not say it stopped at the third:\n%s", text)
	}
	_, _, err = replayFiles(t, feed, names[1], names[0])
	if err == nil || !strings.Contains(err.Error(), names[0]+" is the capture's file 1 and "+names[1]+" its file 2: out of order") {
		t.Errorf("replay --feed of files 2 then 1: %v; want refused, out of order", err)
	}
	other, _, otherNames := rotatedDay(t) // another run's capture of the same day
	_ = other
	_, _, err = replayFiles(t, feed, names[0], otherNames[1])
	if err == nil || !strings.Contains(err.Error(), otherNames[1]+" is another capture's file (its file 2), not the continuation of "+names[0]) {
		t.Errorf("replay --feed of file 1 then another capture's file 2: %v; want refused, another capture's", err)
	}
	rep, _, err := replayFiles(t, feed, names...)
	if a := rep.Arbitrated; err != nil || a == nil || a.CaptureStart != captureFirst || a.FilesBefore != 0 || rep.InputMissing != 0 {
		t.Errorf("replay --feed of all %d files: %v, report %+v, %d missing; want the capture's first file first, nothing missing", len(names), err, a, rep.InputMissing)
	}
}

// TestReplayFeedLoneLaterFile: a capture's file after its first,
// replayed alone, says so (JSON capture_start continued, how many files
// came before it and the name of the one just before; the text's
// "capture start" line): its books lack what the files before held, its
// start a gap. Before, its report was that of a late join's, nothing
// saying that files of the capture were not given.
func TestReplayFeedLoneLaterFile(t *testing.T) {
	day, dir, names := rotatedDay(t)
	feed := writeDemoFeed(t, dir, day, "")
	rep, text, err := replayFiles(t, feed, names[1])
	if err != nil {
		t.Fatal(err)
	}
	if a := rep.Arbitrated; a == nil || a.CaptureStart != captureContinued || a.FilesBefore != 1 || a.PreviousFile != filepath.Base(names[0]) {
		t.Errorf("replay --feed of the second of %d files alone: report %+v; want capture_start %q, 1 file before, named %s", len(names), a, captureContinued, filepath.Base(names[0]))
	}
	if want := "capture start " + names[1] + " is the capture's file 2, not its first"; !strings.Contains(text, want) {
		t.Errorf("replay --feed of the second file alone: the text report does not say %q:\n%s", want, text)
	}
	rep, text, err = replayFiles(t, feed, names[0])
	if a := rep.Arbitrated; err != nil || a == nil || a.CaptureStart != captureFirst || strings.Contains(text, "capture start") {
		t.Errorf("replay --feed of the first file alone: %v, report %+v; want capture_start %q, no capture start line:\n%s", err, a, captureFirst, text)
	}
}

// TestReplayFeedFilesWithoutBegin: the files of a capture written before
// begin frames (here the handler's with them cut out) replay as before:
// nothing to check (a file missing goes unnoticed but for its gap), no
// capture_start.
func TestReplayFeedFilesWithoutBegin(t *testing.T) {
	day, dir, names := rotatedDay(t)
	for _, name := range names {
		stripBegin(t, name)
	}
	feed := writeDemoFeed(t, dir, day, "")
	rep, _, err := replayFiles(t, feed, names...)
	if a := rep.Arbitrated; err != nil || a == nil || a.CaptureStart != "" || rep.InputMissing != 0 || a.Delivered != day.Messages || a.Skipped != 0 {
		t.Errorf("replay --feed of %d files without begin frames: %v, report %+v, %d missing; want the day delivered, no capture_start, nothing skipped", len(names), err, a, rep.InputMissing)
	}
	rep, _, err = replayFiles(t, feed, names[0], names[2])
	if a := rep.Arbitrated; err != nil || a == nil || rep.InputGaps != 1 {
		t.Errorf("replay --feed of files 1 and 3 without begin frames: %v, report %+v, %d gaps; want replayed as before, a gap where file 2 was", err, a, rep.InputGaps)
	}
}

// stripBegin cuts the begin frame, the first record after the pcap
// header, out of the capture file path: as an older handler wrote it.
func stripBegin(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const hdr = 24
	end := hdr + 16 + int(binary.LittleEndian.Uint32(b[hdr+8:]))
	if !bytes.Equal(b[hdr+16+14:hdr+16+18], []byte("FHRB")) {
		t.Fatalf("%s: the first record is no begin frame", path)
	}
	if err := os.WriteFile(path, append(b[:hdr:hdr], b[end:]...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReplayFeedFilesReplayed: replay --feed of a capture's files says
// which it replayed (JSON files_replayed, the text's files line), apart
// from those given (files): a replay refused at a file (one missing
// before it) replayed those before it only. The report listed every file
// given as replayed ("files A, C, D (pcap), replayed as one capture"),
// the replay having stopped before C.
func TestReplayFeedFilesReplayed(t *testing.T) {
	day, dir, names := rotatedDay(t)
	if len(names) < 4 {
		t.Fatalf("files %v: want 4 or more", names)
	}
	feed := writeDemoFeed(t, dir, day, "")
	rep, text, err := replayFiles(t, feed, names[0], names[2], names[3])
	if err == nil || !slices.Equal(rep.Files, []string{names[0], names[2], names[3]}) || !slices.Equal(rep.FilesReplayed, names[:1]) {
		t.Errorf("replay --feed of files 1, 3 and 4: %v, files %q, replayed %q; want refused at the third, the first alone replayed", err, rep.Files, rep.FilesReplayed)
	}
	if want := "files         " + names[0] + " (pcap), replayed as one capture; not replayed: " + names[2] + ", " + names[3] + "\n"; !strings.Contains(text, want) {
		t.Errorf("replay --feed of files 1, 3 and 4: the text report does not say %q:\n%s", want, text)
	}
	rep, _, err = replayFiles(t, feed, names...)
	if err != nil || !slices.Equal(rep.FilesReplayed, names) {
		t.Errorf("replay --feed of the %d files: %v, replayed %q; want all of them", len(names), err, rep.FilesReplayed)
	}
}

// TestReplayFeedRerequestAcrossFiles: packet j of a day is lost on both
// lines; the handler held packet j+1, re-requested j (its FHRQ frame),
// and the capture rotated before the answer came: the re-request at the
// end of the first file, its answer in the second (the rotation's wait
// for the range given up at twice rotate_size, a third line's traffic
// filling the file: TestReplayFeedLoneFileAfterRerequest has it kept;
// or, after, the rotation came between the packet held and the
// re-request, which is in the second file, before or after its first
// packet). The capture's files in order replay to the day's books,
// nothing missing (the live handler's). The second file alone
// starts inside the re-request, which it says again after its begin frame
// (or holds): its replay holds for the range and applies the answer as
// the handler did; its books are those of the day's messages from packet
// j on, less packet j+1's (held by the handler before the file), and its
// gaps the file's start and j+1. Before, the second file alone had the
// range in its start gap, the answer late, packet j's messages missing
// from its books.
func TestReplayFeedRerequestAcrossFiles(t *testing.T) {
	// Where the handler re-requested: before the rotation, right after
	// it, or after the next packet (held too, in the second file).
	for _, at := range []string{"before", "after", "after-next-packet"} {
		t.Run("rerequest_"+at+"_rotation", func(t *testing.T) { replayRerequestAcrossFiles(t, at) })
	}
}

func replayRerequestAcrossFiles(t *testing.T, at string) {
	day, dir, _ := dayDir(t, 8_000, 31)
	c, t0 := rotatingDemoCapture(t, dir, true)
	ts := func(i int) int64 { return t0 + int64(i)*int64(100*time.Microsecond) }
	parse := func(i int) *moldudp64.Packet {
		p, err := moldudp64.Parse(day.Packets[i])
		if err != nil || p.Messages() == 0 {
			t.Fatalf("packet %d: %v, %d messages: want a packet of messages", i, err, p.Messages())
		}
		return &p
	}
	j := len(day.Packets) / 2
	put := func(i int) {
		c.Put([]rx.Packet{{Line: rx.LineA, Data: day.Packets[i], RxTime: ts(i)}, {Line: rx.LineB, Data: day.Packets[i], RxTime: ts(i) + 1000}}, ts(i)-1)
	}
	for i := range day.Packets {
		switch {
		case i == j:
			continue // lost on both lines
		case i == j+20:
			c.Recovered(day.Packets[j], ts(i)-500, ts(i)-1) // answered 2 ms after
		}
		put(i)
		if i == j+2 && at == "after-next-packet" {
			c.Rerequested(ts(i)+500, parse(j).Seq, uint64(parse(j).Messages()))
		}
		if i%200 == 0 {
			time.Sleep(time.Millisecond) // the writer keeps up: nothing dropped
		}
		if i != j+1 {
			continue
		}
		// Packet j+1 held, the range before it re-requested; then the
		// file rotates (traffic of no line of the feed's, to twice
		// rotate_size when the range is open) before the answer.
		if at == "before" {
			c.Rerequested(ts(i)+500, parse(j).Seq, uint64(parse(j).Messages()))
		}
		other := make([]rx.Packet, 16)
		for n := 0; c.Stats().Files < 2; n++ {
			if n == 20_000 {
				t.Fatalf("no rotation: %+v", c.Stats())
			}
			for k := range other {
				other[k] = rx.Packet{Line: 2, Data: bytes.Repeat([]byte{'x'}, 1400), RxTime: ts(i) + 600}
			}
			c.Put(other, 0)
			time.Sleep(time.Millisecond)
		}
		if at == "after" {
			c.Rerequested(ts(i)+500, parse(j).Seq, uint64(parse(j).Messages()))
		}
	}
	names := replayBothFilesWhole(t, c, dir, day, "the second from between the re-request and its answer")

	// The second file alone, against a capture of what the handler
	// delivered from its start: packet j (the answer) and those after
	// j+1.
	rep, got, _ := replayDayBooks(t, dir, day, names[1])
	refRep, wantAlone := referenceBooks(t, day, ts, j, j+1)
	missing := parse(j).Seq - 1 + uint64(parse(j+1).Messages())
	if a := rep.Arbitrated; a == nil || a.CaptureStart != captureContinued || a.LiveRecovery.Answers != 1 || rep.InputGaps != 2 || rep.InputMissing != missing || a.Delivered != day.Messages-missing {
		t.Errorf("replay --feed of the second file alone: %d gaps, %d missing, report %+v; want its start and packet j+1 missing (2 gaps, %d messages), the answer applied (%d delivered)", rep.InputGaps, rep.InputMissing, a, missing, day.Messages-missing)
	}
	if refRep.InputMissing != missing || !bytes.Equal(got, wantAlone) {
		t.Errorf("replay --feed of the second file alone: books not those of the day's messages from packet %d on less packet %d's (reference: %d missing):\ngot:  %.300s\nwant: %.300s", j, j+1, refRep.InputMissing, got, wantAlone)
	}
	// The same with the session chosen by confirmation (no feed.session).
	feed := noSessionFeed(t, t.TempDir(), day)
	rep, _, err := replayFiles(t, feed, names[1])
	if a := rep.Arbitrated; err != nil || a == nil || rep.InputGaps != 2 || rep.InputMissing != missing || a.Delivered != day.Messages-missing {
		t.Errorf("replay --feed of the second file alone, no feed.session: %v, %d gaps, %d missing, report %+v; want 2 gaps, %d missing, %d delivered", err, rep.InputGaps, rep.InputMissing, a, missing, day.Messages-missing)
	}
}

// TestReplayFeedLoneFileAfterRerequest: packet j of a day is lost on both
// lines just before the capture's file reaches rotate_size; the handler
// re-requested it (its FHRQ frame) and held the packets after it until
// the answer came, the file past rotate_size by then. The rotation waits
// for the range to be filled, so that the range's frame, the packets held
// behind it and the answer are in the first file, and the second file,
// replayed alone, starts where the handler held nothing: one gap (its
// start), its books those of the day's packets from its first on (a
// capture of them alone), as the handler's. The files in order replay to
// the day's books. The second file was opened as soon as the first
// reached rotate_size: it started inside the range (said again), and the
// packets the handler held behind it, in the first file, were a gap of
// its replay alone.
func TestReplayFeedLoneFileAfterRerequest(t *testing.T) {
	day, dir, _ := dayDir(t, 25_000, 37)
	c, t0 := rotatingDemoCapture(t, dir, false)
	ts := func(i int) int64 { return t0 + int64(i)*int64(100*time.Microsecond) }
	put := func(i int) {
		c.Put([]rx.Packet{{Line: rx.LineA, Data: day.Packets[i], RxTime: ts(i)}, {Line: rx.LineB, Data: day.Packets[i], RxTime: ts(i) + 1000}}, ts(i)-1)
		if i%200 == 0 {
			time.Sleep(time.Millisecond) // the writer keeps up: nothing dropped
		}
	}
	var written, put2 int64 // the file's bytes, as far as the frames put go; the datagrams put
	wait := func() {        // until the writer wrote what was put (its quiet flush)
		t.Helper()
		for n := 0; c.Stats().Packets != uint64(put2); n++ {
			if n == 5000 {
				t.Fatalf("datagrams not written: %+v, want %d", c.Stats(), put2)
			}
			time.Sleep(time.Millisecond)
		}
	}
	i := 0
	for ; written < capture.MinRotate-200<<10; i++ { // short of rotate_size
		put(i)
		written += 2 * int64(16+14+20+8+len(day.Packets[i]))
		put2 += 2
	}
	j := i // lost on both lines
	p, err := moldudp64.Parse(day.Packets[j])
	if err != nil || j+200 > len(day.Packets) {
		t.Fatalf("packet %d of %d: %v: want one with 200 after it", j, len(day.Packets), err)
	}
	for i = j + 1; written < capture.MinRotate+200<<10; i++ { // held behind the range: past rotate_size
		put(i)
		if i == j+1 {
			c.Rerequested(ts(i)+500, p.Seq, uint64(p.Messages()))
		}
		written += 2 * int64(16+14+20+8+len(day.Packets[i]))
		put2 += 2
	}
	wait()                                          // a flush past rotate_size, the range open
	c.Recovered(day.Packets[j], ts(i)-500, ts(i)-1) // the answer
	put2++
	wait() // a flush after the answer: the next file starts at packet i
	first := i
	for ; i < len(day.Packets); i++ {
		put(i)
	}
	names := replayBothFilesWhole(t, c, dir, day, "the second from after the answer")

	// The second file alone, against a capture of the day's packets from
	// its first on.
	rep, got, _ := replayDayBooks(t, dir, day, names[1])
	refRep, wantAlone := referenceBooks(t, day, ts, first, -1)
	fp, err := moldudp64.Parse(day.Packets[first])
	if err != nil {
		t.Fatal(err)
	}
	missing := fp.Seq - 1
	if a := rep.Arbitrated; a == nil || a.CaptureStart != captureContinued || rep.InputGaps != 1 || rep.InputMissing != missing || a.Delivered != day.Messages-missing {
		t.Errorf("replay --feed of the second file alone: %d gaps, %d missing, report %+v; want its start alone missing (1 gap, %d messages), %d delivered", rep.InputGaps, rep.InputMissing, a, missing, day.Messages-missing)
	}
	if refRep.InputMissing != missing || !bytes.Equal(got, wantAlone) {
		t.Errorf("replay --feed of the second file alone: books not those of the day's packets from %d on (reference: %d missing):\ngot:  %.300s\nwant: %.300s", first, refRep.InputMissing, got, wantAlone)
	}
}

// replayBothFilesWhole closes c, a capture of day (a packet re-requested
// and answered) in dir/lines-*.pcap, checks that it wrote 2 files
// (second: where the second starts) and nothing dropped, and replays them
// in order with --feed: the answer replayed, nothing missing, the day's
// books. It returns the files.
func replayBothFilesWhole(t *testing.T, c *capture.Capture, dir string, day *demo.Day, second string) []string {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "lines-*.pcap"))
	if len(names) != 2 || c.Stats().Dropped != 0 {
		t.Fatalf("files %v, stats %+v: want 2, %s, nothing dropped", names, c.Stats(), second)
	}
	rep, got, want := replayDayBooks(t, dir, day, names...)
	if a := rep.Arbitrated; a == nil || a.LiveRecovery.Answers != 1 || rep.InputGaps != 0 || rep.InputMissing != 0 || a.Delivered != day.Messages || !bytes.Equal(got, want) {
		t.Errorf("replay --feed of both files: %d gaps, %d missing, report %+v, the day's books %v; want the answer replayed, nothing missing, the day's books", rep.InputGaps, rep.InputMissing, a, bytes.Equal(got, want))
	}
	return names
}

// referenceBooks captures day's packets from the from-th on but skip (-1:
// none) on both lines, received at ts, in a file of its own, and returns
// its replay's report and books: what the handler delivered from there.
func referenceBooks(t *testing.T, day *demo.Day, ts func(int) int64, from, skip int) (replayReport, []byte) {
	t.Helper()
	refDir := t.TempDir()
	refPath := filepath.Join(refDir, "ref.pcap")
	ref, _ := demoCapture(t, refPath)
	for i := from; i < len(day.Packets); i++ {
		if i != skip {
			ref.Put([]rx.Packet{{Line: rx.LineA, Data: day.Packets[i], RxTime: ts(i)}, {Line: rx.LineB, Data: day.Packets[i], RxTime: ts(i) + 1000}}, ts(i)-1)
		}
	}
	if err := ref.Close(); err != nil {
		t.Fatal(err)
	}
	rep, books, _ := replayDayBooks(t, refDir, day, refPath)
	return rep, books
}
