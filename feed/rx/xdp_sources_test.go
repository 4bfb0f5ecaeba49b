package rx

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestXDPMartianSources puts line datagrams from sources the kernel never
// takes a datagram from on the wire, between good ones: 0.0.0.0, two
// multicast addresses, the limited broadcast 255.255.255.255 and loopback
// (the receiver's rp_filter off, so that only the source's class
// decides). The kernel drops them in its input route; the socket backend
// therefore delivers the good ones only. The AF_XDP backend, native and
// generic, must deliver the same, and count the others in xdp_bad_source
// (and Malformed, as a failed checksum is), with one warning.
func TestXDPMartianSources(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h144"})
	setRPFilter(t, lab, "0", "all", "default", lab.DstIf)
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	var frames [][]byte
	for _, s := range []struct{ payload, src string }{
		{"good", lab.SrcIP.String()},
		{"zero", "0.0.0.0"},
		{"multicast", "224.1.2.3"},
		{"multicast 239", "239.255.0.1"},
		{"broadcast", "255.255.255.255"},
		{"loopback", "127.0.0.1"},
		{"loopback 127/8", "127.9.9.9"},
		{"end", lab.SrcIP.String()},
	} {
		f := xdpFrame(netip.AddrPortFrom(netip.MustParseAddr(s.src), 40001), dst, nil, 0, []byte(s.payload))
		xdpSeal(f, 14, true)
		frames = append(frames, f)
	}
	want := []string{"good", "end"}
	const bad = 6
	for _, backend := range []string{BackendSocket, "xdp native", "xdp generic"} {
		t.Run(backend, func(t *testing.T) {
			var logs bytes.Buffer
			cfg := Config{PollTimeout: 20 * time.Millisecond, Log: zerolog.New(&logs),
				Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}}
			r, got := receiveRawFrames(t, lab, backend, cfg, frames)
			defer r.Close()
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Errorf("received %q, want %q", got, want)
			}
			st := r.Stats()
			if backend == BackendSocket {
				return
			}
			if b := st.Extra.Get("xdp_bad_source"); b != bad || st.Malformed != bad || st.Dropped != 0 {
				t.Errorf("xdp_bad_source %d, Malformed %d, Dropped %d; want %d, %d, 0", b, st.Malformed, st.Dropped, bad, bad)
			}
			if n := strings.Count(logs.String(), "a source the kernel drops"); n != 1 || !strings.Contains(logs.String(), `"source":"0.0.0.0:40001"`) {
				t.Errorf("%d source warnings, want 1 naming 0.0.0.0:40001:\n%s", n, logs.String())
			}
		})
	}
}
