package rx

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestXDPFrameLimit: on a link whose MTU lets frames exceed a UMEM frame's
// room (xdpFrameSize less the kernel's 256-byte XDP headroom: 3840 bytes),
// the AF_XDP backend says so at open, naming the limit, and a line
// datagram of 3798 bytes (a 3840-byte frame, no VLAN tag) arrives while
// one of 3799 bytes is dropped by the kernel and counted once in Dropped
// (xsk_rx_dropped). The auto mode runs generic here: native XDP on veth
// refuses a 9000-byte MTU.
func TestXDPFrameLimit(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "h144", MTU: 9000})
	var logs bytes.Buffer
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, Log: zerolog.New(&logs)})
	defer r.Close()
	sent := [][]byte{[]byte("m0"), bytes.Repeat([]byte{'a'}, 3798), bytes.Repeat([]byte{'b'}, 3799), []byte("end")}
	s := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	time.Sleep(20 * time.Millisecond) // joined
	if err := <-netlab.SendPaced(s.fd, s.to, len(sent), 0, func(i int) []byte { return sent[i] }); err != nil {
		t.Fatal(err)
	}
	var got []int
	pkts := make([]Packet, 4)
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 || got[len(got)-1] != 3; {
		if time.Now().After(deadline) {
			break
		}
		n, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts[:n] {
			got = append(got, len(p.Data))
		}
		r.Release(pkts[:n])
	}
	if want := []int{2, 3798, 3}; len(got) != 3 || got[1] != want[1] {
		t.Errorf("received datagrams of %v bytes, want %v", got, want)
	}
	if st := r.Stats(); st.Dropped != 1 || st.Extra.Get("xsk_rx_dropped") != 1 {
		t.Errorf("Dropped %d, xsk_rx_dropped %d; want 1, 1", st.Dropped, st.Extra.Get("xsk_rx_dropped"))
	}
	if l := logs.String(); !strings.Contains(l, "MTU 9000") || !strings.Contains(l, "frames over 3840 bytes") || !strings.Contains(l, "over 3798 bytes") {
		t.Errorf("no warning naming the MTU, the 3840-byte frame limit and the 3798-byte datagram limit:\n%s", l)
	}
}
