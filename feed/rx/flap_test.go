package rx

import (
	"bufio"
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/tshark"
)

// TestLinkFlap takes the receiving interface down and up again while a
// receiver of each backend is open. While it is down, Receive waits and
// returns nothing, without an error. Once it is up the kernel reports both
// lines' groups again (IGMP reports seen by tshark on the sender's side,
// stamped after the link came up: a switch relearns the joins), and the
// receiver gets every packet sent after the flap, nothing reopened
// (docs/OPERATIONS.md, "Link flaps").
func TestLinkFlap(t *testing.T) {
	tshark.New(t) // skips without tshark
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			r := openBackend(t, lab, backend, Config{Lines: labLines(lab), PollTimeout: 50 * time.Millisecond})
			defer r.Close()
			senders := labSenders(t, lab, labLines(lab), 10000)
			capture, reports := captureIGMP(t, lab)

			if err := lab.SetLink(lab.Dst, lab.DstIf, false); err != nil {
				t.Fatal(err)
			}
			pkts := make([]Packet, 64)
			for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
				n, err := r.Receive(pkts)
				if err != nil || n != 0 {
					t.Fatalf("Receive while the link is down: %d packets, error %v", n, err)
				}
			}
			up := time.Now()
			if err := lab.SetLink(lab.Dst, lab.DstIf, true); err != nil {
				t.Fatal(err)
			}
			if err := capture.Wait(); err != nil {
				t.Fatalf("tshark: %v", err)
			}
			for _, g := range []string{groupA.String(), groupB.String()} {
				if !reportedAfter(reports.String(), g, up) {
					t.Errorf("no IGMP report of %s after the link came up (%v); captured (epoch, groups):\n%s", g, up, reports.String())
				}
			}
			sendAfter(t, senders, 200)
			expectLines(t, r, senders, 200)
		})
	}
}

// captureIGMP runs tshark in the lab's sending namespace for 3 s, capturing
// the IGMP reports that reach it (their epoch time and groups, one a line,
// into the returned buffer once the command is waited for); it returns once
// tshark is capturing. The test's cleanup kills it if it was not waited for.
func captureIGMP(t *testing.T, lab *netlab.Lab) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	capture := exec.Command("ip", "netns", "exec", lab.Src, "tshark", "-i", lab.SrcIf, "-a", "duration:3", "-f", "igmp",
		"-T", "fields", "-e", "frame.time_epoch", "-e", "igmp.maddr")
	out := new(bytes.Buffer)
	capture.Stdout = out
	stderr, err := capture.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := deathsig.Start(capture); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if capture.ProcessState == nil {
			capture.Process.Kill()
			capture.Wait()
		}
	})
	started := make(chan bool, 1)
	go func() {
		s := bufio.NewScanner(stderr)
		ok := false
		for s.Scan() {
			if !ok && strings.HasPrefix(s.Text(), "Capturing on") {
				ok = true
				started <- true
			}
		}
		if !ok {
			started <- false
		}
	}()
	select {
	case ok := <-started:
		if !ok {
			t.Fatal("tshark ended without capturing")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tshark did not start capturing in 30 s")
	}
	return capture, out
}

// reportedAfter reports whether tshark's lines (epoch seconds, groups)
// hold a report of group stamped at or after at.
func reportedAfter(lines, group string, at time.Time) bool {
	for _, l := range strings.Split(lines, "\n") {
		epoch, groups, ok := strings.Cut(l, "\t")
		if !ok || !strings.Contains(groups, group) {
			continue
		}
		if s, err := strconv.ParseFloat(epoch, 64); err == nil && s >= float64(at.UnixNano())/1e9 {
			return true
		}
	}
	return false
}
