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

// ipOptionFrames are line datagrams (from src to dst) with IPv4 options,
// each payload naming its options, and the payloads the kernel delivers
// to a socket (measured on Linux 6.18, the socket backend's run of
// TestXDPIPOptions): options it takes (NOPs, a router alert, a record
// route or timestamp with room or full, an unknown option, anything after
// an end of list), and options it drops in ip_options_compile (a length
// past the header or below 2, pointers out of place, a timestamp whose
// overflow count is full, a CIPSO option on a host without CIPSO) or in
// ip_rcv_options (a source route: never taken to a multicast group,
// accept_source_route off).
func ipOptionFrames(src, dst netip.AddrPort) (frames [][]byte, want []string) {
	add := func(payload string, delivered bool, opts ...byte) {
		for len(opts)%4 != 0 {
			opts = append(opts, 0) // end of options list
		}
		f := xdpFrame(src, dst, nil, len(opts), []byte(payload))
		copy(f[14+20:], opts)
		xdpSeal(f, 14, true)
		frames = append(frames, f)
		if delivered {
			want = append(want, payload)
		}
	}
	add("first", true)
	add("nops", true, 1, 1, 1, 1)
	add("router alert", true, 148, 4, 0, 0)
	add("record route with room", true, 7, 7, 4, 0, 0, 0, 0)
	add("record route full", true, 7, 7, 8, 10, 99, 0, 1)
	add("timestamp with room", true, 68, 8, 5, 0, 0, 0, 0, 0)
	add("unknown option", true, 30, 4, 0, 0)
	add("garbage after end of list", true, 0, 0xff, 0xff, 0xff)
	add("length past the header", false, 148, 40, 0, 0)
	add("length 1", false, 30, 1, 0, 0)
	add("length 0", false, 30, 0, 0, 0)
	add("router alert short", false, 148, 2)
	add("record route pointer 3", false, 7, 7, 3, 0, 0, 0, 0)
	add("record route no room", false, 7, 6, 4, 0, 0, 0)
	add("two record routes", false, 7, 3, 4, 7, 3, 4)
	add("timestamp pointer 4", false, 68, 8, 4, 0, 0, 0, 0, 0)
	add("timestamp overflow full", false, 68, 8, 9, 0xf0, 0, 0, 0, 0)
	add("prespecified timestamp overflow full", true, 68, 12, 13, 0xf3, 10, 99, 0, 1, 0, 0, 0, 0)
	add("timestamp with address no room", false, 68, 8, 5, 1, 0, 0, 0, 0)
	add("loose source route", false, 131, 7, 4, 10, 99, 0, 2)
	add("strict source route", false, 137, 7, 4, 10, 99, 0, 2)
	add("cipso", false, 134, 6, 0, 0, 0, 1)
	add("cipso well-formed", false, 134, 10, 0, 0, 0, 1, 1, 4, 0, 0)
	add("end", true)
	return frames, want
}

// TestXDPIPOptions puts line datagrams with IPv4 options on the wire
// (ipOptionFrames). The socket backend gets what the kernel takes; the
// AF_XDP backend, native and generic, must deliver the same and count the
// rest in xdp_bad_ip_options (and Malformed), with one warning.
func TestXDPIPOptions(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h144"})
	frames, want := ipOptionFrames(netip.AddrPortFrom(lab.SrcIP, 40001), netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	bad := uint64(len(frames) - len(want))
	for _, backend := range []string{BackendSocket, "xdp native", "xdp generic"} {
		t.Run(backend, func(t *testing.T) {
			var logs bytes.Buffer
			cfg := Config{PollTimeout: 20 * time.Millisecond, Log: zerolog.New(&logs),
				Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}}
			r, got := receiveRawFrames(t, lab, backend, cfg, frames)
			defer r.Close()
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("received %q,\nwant %q", got, want)
			}
			if backend == BackendSocket {
				return
			}
			st := r.Stats()
			if b := st.Extra.Get("xdp_bad_ip_options"); b != bad || st.Malformed != bad || st.Dropped != 0 {
				t.Errorf("xdp_bad_ip_options %d, Malformed %d, Dropped %d; want %d, %d, 0", b, st.Malformed, st.Dropped, bad, bad)
			}
			if n := strings.Count(logs.String(), "IPv4 options the kernel refuses"); n != 1 {
				t.Errorf("%d options warnings, want 1:\n%s", n, logs.String())
			}
		})
	}
}
