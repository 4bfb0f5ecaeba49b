package preflight

import (
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/xdptest"
)

// TestXDPProgramAttached: an XDP program already on a line's interface
// (another feed handler with AF_XDP, or one a tool left through netlink)
// keeps the xdp backend from attaching its own, and the start fails
// (rx.ErrXDPInUse); check says so before the start does, naming the
// program, as a FAIL under xdp and auto alike (auto does not fall back on
// it). Before, check had nothing to say of it; then it said it as a
// warning, exit 0 for a start that failed.
func TestXDPProgramAttached(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "pfxdp"})
	run := func(receive string) []string {
		t.Helper()
		var got []string
		if err := lab.Do(lab.Dst, func() error {
			got = topic(Run(feedConfig(t, lab.DstIf, receive), Host{}), "xdp")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := run("receive: {backend: xdp}\n"); got != nil {
		t.Fatalf("no program attached: %q, want nothing", got)
	}
	defer xdptest.AttachWithIP(t, lab.Dst, lab.DstIf, "xdpgeneric")()
	for _, receive := range []string{"receive: {backend: xdp}\n", ""} {
		got := run(receive)
		if len(got) != 1 || !strings.Contains(got[0], `"xdp_steer" in generic mode is attached`) || !strings.HasPrefix(got[0], "FAIL") {
			t.Errorf("%q, a program attached by ip link: %q, want one FAIL naming it", receive, got)
		}
	}
}
