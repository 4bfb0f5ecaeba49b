package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/demo"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestReplayCaptureFragmented: a capture whose datagrams arrived as IPv4
// fragments (a sender over a smaller MTU) replays to the books of the
// capture of the whole datagrams, as the socket backends receive them
// (the kernel reassembles them); before, replay skipped every fragment
// ('IPv4 fragment'). The report counts the datagrams reassembled and
// their frames, and one datagram missing a fragment as frames skipped
// (IPv4 fragment incomplete), as the kernel loses it.
func TestReplayCaptureFragmented(t *testing.T) {
	b := generatedDay(t, itchgen.Config{Messages: 2_000, Symbols: 20, Seed: 7}, true)
	frag, reassembled, fragments := fragmentCapture(t, b, 10)
	dir := t.TempDir()
	run := func(name string, file []byte) replayReport {
		in := filepath.Join(dir, name)
		if err := os.WriteFile(in, file, 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if err := replay([]string{"--json", "--quiet", "--settle", "0", in}, &stdout, &stderr); err != nil {
			t.Fatalf("replay %s: %v\n%s", name, err, stderr.String())
		}
		var rep replayReport
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("report: %v\n%s", err, stdout.String())
		}
		return rep
	}
	whole, got := run("whole.pcap", b), run("fragmented.pcap", frag)
	if got.InputReassembled != uint64(reassembled) || got.InputFragments != uint64(fragments) || got.InputSkippedBy["IPv4 fragment incomplete"] == 0 {
		t.Errorf("reassembled %d from %d fragments, skipped %v; want %d from %d, and the incomplete one's",
			got.InputReassembled, got.InputFragments, got.InputSkippedBy, reassembled, fragments)
	}
	// The one datagram lost is a gap; every other message as in the
	// capture of whole datagrams.
	if got.InputGaps != 1 || got.Messages+got.InputMissing != whole.Messages || whole.InputGaps != 0 {
		t.Errorf("fragmented: %d messages, %d gaps (%d missing); whole: %d messages, %d gaps", got.Messages, got.InputGaps, got.InputMissing, whole.Messages, whole.InputGaps)
	}
	var text bytes.Buffer
	if err := replay([]string{"--quiet", "--settle", "0", filepath.Join(dir, "fragmented.pcap")}, &text, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "datagrams reassembled from") {
		t.Errorf("text report says nothing of the reassembly:\n%s", text.String())
	}
	// inspect counts them too.
	var insp bytes.Buffer
	if err := inspect([]string{"--json", filepath.Join(dir, "fragmented.pcap")}, &insp); err != nil {
		t.Fatal(err)
	}
	var ir inspectReport
	if err := json.Unmarshal(insp.Bytes(), &ir); err != nil {
		t.Fatalf("inspect report: %v\n%s", err, insp.String())
	}
	if ir.Capture == nil || ir.Capture.Reassembled != uint64(reassembled) || ir.Capture.Fragments != uint64(fragments) {
		t.Errorf("inspect: %+v; want %d datagrams reassembled from %d fragments", ir.Capture, reassembled, fragments)
	}
}

// fragmentCapture returns pcap file b (little-endian, Ethernet) with each
// frame's IPv4 datagram cut into 64-byte fragments (netlab.Fragments), in
// order, and how many datagrams were fragmented and the fragments they
// took; one datagram after the first lose fragmented misses its middle
// fragment, counted in neither (it cannot be reassembled).
func fragmentCapture(t *testing.T, b []byte, lose int) (frag []byte, reassembled, fragments int) {
	t.Helper()
	frag = append([]byte(nil), b[:24]...)
	lost := false
	for off := 24; off < len(b); {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		frame := b[off+16 : off+16+incl]
		pieces := netlab.Fragments(frame, 14, 64)
		if len(pieces) > 2 && !lost && reassembled >= lose {
			lost = true // its middle fragment never came
			pieces = append(pieces[:1], pieces[2:]...)
			fragments -= len(pieces)
			reassembled--
		}
		if len(pieces) > 1 {
			reassembled++
			fragments += len(pieces)
		}
		for _, p := range pieces {
			rec := append([]byte(nil), b[off:off+16]...)
			binary.LittleEndian.PutUint32(rec[8:], uint32(len(p)))
			binary.LittleEndian.PutUint32(rec[12:], uint32(len(p)))
			frag = append(append(frag, rec...), p...)
		}
		off += 16 + incl
	}
	if reassembled == 0 || !lost {
		t.Fatalf("no datagram over 64 bytes after the first %d: nothing fragmented (%d, %v, %d bytes)", lose, reassembled, lost, len(b))
	}
	return frag, reassembled, fragments
}

// TestReplayFeedCaptureFragmented: replay --feed of a capture of two
// lines whose datagrams arrived as IPv4 fragments, one datagram missing
// its middle fragment (the other line's copy whole), reports the
// datagrams reassembled and the frames they took (the arbitrated
// section's reassembled, fragments_reassembled) and the incomplete one's
// frames skipped, and delivers every message of the day, as the capture
// of the whole datagrams does.
func TestReplayFeedCaptureFragmented(t *testing.T) {
	day, dir, capPath := laggingDay(t, 5_000, 17, func(*demo.Day) int { return -1 }, time.Millisecond)
	b, err := os.ReadFile(capPath)
	if err != nil {
		t.Fatal(err)
	}
	frag, reassembled, fragments := fragmentCapture(t, b, 10)
	fragPath := filepath.Join(dir, "fragmented.pcap")
	if err := os.WriteFile(fragPath, frag, 0o644); err != nil {
		t.Fatal(err)
	}
	feed := writeDemoFeed(t, dir, day, "")
	whole, got := replayFeedJSON(t, feed, capPath), replayFeedJSON(t, feed, fragPath)
	w, a := whole.Arbitrated, got.Arbitrated
	if w == nil || a == nil {
		t.Fatalf("replay --feed: no arbitrated section (whole %+v, fragmented %+v)", w, a)
	}
	if w.Reassembled != 0 || w.Fragments != 0 {
		t.Errorf("the whole capture: %d datagrams reassembled from %d fragments; want none", w.Reassembled, w.Fragments)
	}
	if a.Reassembled != uint64(reassembled) || a.Fragments != uint64(fragments) || a.SkippedBy[pcap.Fragment.String()] == 0 {
		t.Errorf("reassembled %d from %d fragments, skipped %v; want %d from %d, and the incomplete one's frames",
			a.Reassembled, a.Fragments, a.SkippedBy, reassembled, fragments)
	}
	if a.Delivered != day.Messages || w.Delivered != day.Messages || got.InputMissing != 0 {
		t.Errorf("delivered %d (whole: %d), %d missing; want the day's %d, none missing (the other line's copy)", a.Delivered, w.Delivered, got.InputMissing, day.Messages)
	}
}
