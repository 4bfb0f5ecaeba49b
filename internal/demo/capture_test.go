package demo

import (
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/marketfeed/feedhandler/feed/capture"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// TestCaptureRerequestAnswers drops packets on both lines, which the
// handler repairs by re-request, with capture.path set: the capture holds
// the answers the handler received (capture.Answer: no line's datagrams),
// covering every range dropped, and ends with the end's marker frame. A
// replay of the lines alone misses what they repaired; the answers in the
// file let it say so (replay --feed's live_recovery).
func TestCaptureRerequestAnswers(t *testing.T) {
	needLab(t)
	d := testDay(t)
	drop, want := dropOnBoth(d)
	dir := t.TempDir()
	res := run(t, handler.ModeRunToCompletion, Options{Backend: "socket", Drop: drop, Recovery: &Recovery{Rerequest: true},
		Configure: func(c *handler.Config) { c.CapturePath = filepath.Join(dir, "lines.pcap") }})
	checkRecovered(t, res, len(want))
	names, _ := filepath.Glob(filepath.Join(dir, "lines-*.pcap"))
	if len(names) != 1 {
		t.Fatalf("capture files %v, want one", names)
	}
	in, err := input.Open(names[0])
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var answers, lines uint64
	covered := make(map[uint64]bool)
	ended := false
	for {
		fr, err := in.NextDatagram()
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ended = false
		switch {
		case fr.Marker:
			_, ended = capture.End(fr.Payload)
		case capture.Answer(fr.SrcMAC):
			p, err := moldudp64.Parse(fr.Payload)
			if err != nil || p.Session != d.Session {
				t.Fatalf("frame %d: an answer of session %v (%v), want %v", fr.Index, p.Session, err, d.Session)
			}
			answers++
			for s := p.Seq; s < p.Next(); s++ {
				covered[s] = true
			}
		default:
			lines++
		}
	}
	t.Logf("capture: %d line datagrams, %d re-request answers, covering %d sequence numbers", lines, answers, len(covered))
	if !ended {
		t.Error("the capture does not end with the end's marker frame")
	}
	for _, rg := range want {
		for s := rg.First; s < rg.End(); s++ {
			if !covered[s] {
				t.Fatalf("sequence number %d, dropped on both lines (range %+v) and re-requested, is in no answer in the capture (%d answers)", s, rg, answers)
			}
		}
	}
}
