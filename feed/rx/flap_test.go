package rx

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/tshark"
)

// TestLinkFlap takes the receiving interface down and up again while a
// receiver of each backend is open. The kernel drops the interface's routes
// (the 224.0.0.0/4 route too) and stops its IGMP state; once the link is up
// it reports both lines' groups again (seen on the wire by tshark on the
// sender's side: a switch relearns the joins), and the receiver gets every
// packet sent after the flap, with no error and nothing reopened
// (docs/OPERATIONS.md, "Link flaps").
func TestLinkFlap(t *testing.T) {
	tshark.New(t) // skips without tshark
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			r := openBackend(t, lab, backend, Config{Lines: labLines(lab), PollTimeout: 50 * time.Millisecond})
			defer r.Close()
			senders := labSenders(t, lab, labLines(lab), 10000)

			capture := exec.Command("ip", "netns", "exec", lab.Src, "tshark", "-i", lab.SrcIf, "-a", "duration:3", "-f", "igmp",
				"-T", "fields", "-e", "igmp.maddr")
			var out bytes.Buffer
			capture.Stdout = &out
			stderr, err := capture.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := capture.Start(); err != nil {
				t.Fatal(err)
			}
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
					capture.Wait()
					t.Fatal("tshark ended without capturing")
				}
			case <-time.After(30 * time.Second):
				capture.Process.Kill()
				capture.Wait()
				t.Fatal("tshark did not start capturing in 30 s")
			}
			for _, state := range []string{"down", "up"} {
				if _, err := lab.Exec(lab.Dst, "ip", "link", "set", "dev", lab.DstIf, state); err != nil {
					t.Fatal(err)
				}
			}
			if err := capture.Wait(); err != nil {
				t.Fatalf("tshark: %v", err)
			}
			for _, g := range []string{groupA.String(), groupB.String()} {
				if !strings.Contains(out.String(), g) {
					t.Errorf("no IGMP report of %s after the link came up; captured:\n%s", g, out.String())
				}
			}
			sendAfter(t, senders, 200)
			expectLines(t, r, senders, 200)
		})
	}
}
