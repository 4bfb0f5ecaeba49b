package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/handler"
)

// TestLinkFlapOneLine sets line A's own link down for 200 ms while the
// sender keeps sending, then up again, once per receive backend (AF_XDP
// in native and generic mode, io_uring, recvmmsg) and pipeline mode. Line
// B, on a link of its own, carries the feed alone meanwhile: no gap, the
// books equal the reference. Line A receives again by itself, the XDP
// program is still attached, line A's group still joined on the interface
// (IGMP), nothing is returned as a receive error, and with line_timeout
// shorter than the flap the log says that line A went silent while B
// delivered, and that it receives again. (TestLinkFlap flaps the link both
// lines share.)
func TestLinkFlapOneLine(t *testing.T) { forEachMode(t, testLinkFlapOneLine) }

func testLinkFlapOneLine(t *testing.T, mode handler.Mode) {
	needLab(t)
	d := testDay(t)
	for _, backend := range []struct{ name, rx, xdpMode string }{
		{"xdp-native", "xdp", "native"},
		{"xdp-generic", "xdp", "generic"},
		{"uring", "uring", ""},
		{"socket", "socket", ""},
	} {
		t.Run(backend.name, func(t *testing.T) {
			var logs bytes.Buffer // read once the handler stopped
			flap := &Flap{AtSeq: d.Messages / 4, Down: 200 * time.Millisecond, LineA: true}
			res := run(t, mode, Options{Backend: backend.rx, Rate: 10000, Recovery: &Recovery{Rerequest: true}, Flap: flap,
				Configure: func(c *handler.Config) {
					c.Receive.XDPMode = backend.xdpMode
					c.Arbiter.LineTimeout = 50 * time.Millisecond
					c.Log = zerolog.New(zerolog.SyncWriter(&logs))
				}})
			if !strings.HasPrefix(res.Backend, backend.rx) || !strings.Contains(res.Backend, backend.xdpMode) {
				t.Errorf("backend %q, want %s %s", res.Backend, backend.rx, backend.xdpMode)
			}
			t.Logf("link down at sequence number %d, up at %d, of %d; lines then %d and %d packets, at the end %d and %d",
				flap.DownSeq, flap.UpSeq, d.Messages, flap.Lines[0].Packets, flap.Lines[1].Packets,
				res.Stats.Arbiter.Lines[0].Packets, res.Stats.Arbiter.Lines[1].Packets)
			if flap.UpSeq >= d.Messages {
				t.Fatalf("the link came up at sequence number %d, after the day's last message (%d): the machine held the flap back", flap.UpSeq, d.Messages)
			}
			if a := res.Stats.Arbiter.Lines[0].Packets; a <= flap.Lines[0].Packets {
				t.Errorf("line A received nothing after its link came up: %d packets then, %d at the end", flap.Lines[0].Packets, a)
			}
			// Line B's sender is a process of its own: on a loaded machine
			// it may have sent the whole day before line A's came up
			// (seen in .ci/run with other work on both cores); then B
			// has nothing more to bring, and its whole day is the check.
			bAll := res.Stats.Arbiter.Lines[1].Messages >= d.Messages
			if b := res.Stats.Arbiter.Lines[1].Packets; flap.Lines[1].Packets == 0 || b <= flap.Lines[1].Packets && !bAll {
				t.Errorf("line B, on its own link, received %d packets before line A's link came up and %d in all (%d of the day's %d messages)",
					flap.Lines[1].Packets, b, res.Stats.Arbiter.Lines[1].Messages, d.Messages)
			}
			if backend.rx == "xdp" && !strings.Contains(flap.Link, "xdp") {
				t.Errorf("no XDP program on the interface after the flap:\n%s", flap.Link)
			}
			if !Joined(flap.Groups, GroupA.Addr().String()) {
				t.Errorf("line A's group %s not joined on the interface after the flap:\n%s", GroupA.Addr(), flap.Groups)
			}
			if res.Stats.ReceiveErrors != 0 {
				t.Errorf("%d receive errors", res.Stats.ReceiveErrors)
			}
			// Nothing to re-request, unless the receiver itself lost
			// packets of both lines (a machine too loaded for the lab).
			if n := res.Stats.Recovery.Rerequest.Requests; n != 0 && res.Stats.Receive.Dropped == 0 {
				t.Errorf("%d re-requests while line B carried the feed, none lost by the receiver", n)
			}
			checkIdentical(t, res)
			for _, want := range []string{`"line":"A","line_timeout":50,`, `"line":"A","silent_for":`} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log lacks %s:\n%s", want, logs.String())
				}
			}
		})
	}
}
