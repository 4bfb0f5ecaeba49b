package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestReplayFeedCapturePiped: replay --feed reads a handler's capture
// twice, its re-request answers ahead (readAnswers) and then the whole, so
// a capture piped in (a FIFO, /dev/stdin, <(zcat cap.pcap.gz)) had its
// rest taken by the read ahead from the replay's reader, which held only
// its first MiB (or, under a MiB, the read ahead waited for ever for
// another writer of the FIFO). It is refused instead, saying to give a
// file.
func TestReplayFeedCapturePiped(t *testing.T) {
	day, dir, capPath := dayDir(t, 60_000, 23)
	captureDay(t, capPath, day)
	b, err := os.ReadFile(capPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2<<20 {
		t.Fatalf("the capture is %d bytes: want more than the input reader's MiB", len(b))
	}
	feed := writeDemoFeed(t, dir, day, "")
	fifo, wrote := writeFIFO(t, b)
	var report strings.Builder
	err = replay([]string{"--quiet", "--json", "--settle", "0", "--feed", feed, fifo}, &report, io.Discard)
	wrote() // the replay has closed its end: the write cut short
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("replay --feed of a handler's capture through a FIFO: %v; want it refused (the capture is read twice)\nreport: %.600s", err, report.String())
	}
}
