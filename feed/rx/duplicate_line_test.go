package rx

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestDuplicateLineRefused: two lines with the same interface, group and
// port and no source filter telling them apart are one line configured
// twice. Every line socket would get every datagram, so each would arrive
// twice, once as line A and once as line B, and the arbiter would take one
// real line for two redundant ones. Every backend refuses the
// configuration (AF_XDP always did: its program keys lines by group and
// port); lines told apart by their sources are two lines.
func TestDuplicateLineRefused(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fd"})
	a := labLines(lab)[0]
	b := a
	b.Name = "B"
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			r, err := openIn(t, lab, Config{Backend: backend, Lines: []LineConfig{a, b}, PollTimeout: 20 * time.Millisecond})
			if err == nil {
				defer r.Close()
				fd := lab.UDPSocket(t, lab.Src)
				time.Sleep(20 * time.Millisecond) // joined
				if err := <-netlab.SendPaced(fd, netip.AddrPortFrom(a.Group, a.Port), 1, 0, func(int) []byte { return []byte("once") }); err != nil {
					t.Fatal(err)
				}
				t.Fatalf("opened with line A twice; one datagram sent, received %d", drainUntilIdle(t, r))
			}
			if !strings.Contains(err.Error(), "both use") {
				t.Fatalf("error %q does not say the lines are the same", err)
			}
		})
	}
	t.Run("sources tell them apart", func(t *testing.T) {
		a, b := a, b
		a.Source, b.Source = netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.3")
		for _, backend := range []string{BackendSocket, BackendUring} {
			r, err := openIn(t, lab, Config{Backend: backend, Lines: []LineConfig{a, b}, PollTimeout: 20 * time.Millisecond})
			if err != nil {
				t.Fatalf("%s: %v", backend, err)
			}
			r.Close()
		}
	})
}
