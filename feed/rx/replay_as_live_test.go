package rx

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestReplayDecodesAsLive puts line datagrams the kernel takes and ones it
// drops on the wire (martian sources, IPv4 options it refuses, a failed
// UDP checksum, TTL 0 and 1, which it delivers: it checks the TTL only
// when it forwards) and receives them with every backend; a replay of a
// capture of them (pcap.DecodeFrame, what feedhandler replay reads a
// capture's frames with) must take exactly the payloads each backend
// delivered, so that a capture replays to the live books whatever the
// backend. The receiver's rp_filter is off, as in TestXDPMartianSources,
// so that only the source's class decides.
func TestReplayDecodesAsLive(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h215"})
	setRPFilter(t, lab, "0", "all", "default", lab.DstIf)
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	var frames [][]byte
	sealed := func(payload string, from netip.AddrPort, edit func(f []byte)) {
		f := xdpFrame(from, dst, nil, 0, []byte(payload))
		if edit != nil {
			edit(f)
		}
		xdpSeal(f, 14, true)
		frames = append(frames, f)
	}
	sealed("good", src, nil)
	for _, s := range []string{"0.0.0.0", "224.1.2.3", "239.255.0.1", "255.255.255.255", "127.0.0.1", "127.9.9.9"} {
		sealed("from "+s, netip.AddrPortFrom(netip.MustParseAddr(s), 40001), nil)
	}
	sealed("ttl 0", src, func(f []byte) { f[14+8] = 0 })
	sealed("ttl 1", src, func(f []byte) { f[14+8] = 1 })
	bad := xdpFrame(src, dst, nil, 0, []byte("bad udp checksum"))
	xdpSeal(bad, 14, true)
	bad[len(bad)-1] ^= 0x20
	frames = append(frames, bad)
	opts, _ := ipOptionFrames(src, dst) // the last reads "end"
	frames = append(frames, opts...)

	var replayed []string
	for _, f := range frames {
		if u, why := pcap.DecodeFrame(f, pcap.LinkEthernet); why == pcap.OK {
			replayed = append(replayed, string(u.Payload))
		}
	}
	for _, backend := range []string{BackendSocket, BackendUring, "xdp native", "xdp generic"} {
		t.Run(backend, func(t *testing.T) {
			cfg := Config{PollTimeout: 20 * time.Millisecond,
				Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}}
			var r Receiver
			var got []string
			if backend == BackendUring {
				r = openBackend(t, lab, backend, cfg)
				raw := xdpNewRawSender(t, lab)
				for _, f := range frames {
					raw.send(t, f)
				}
				got = receiveUntilEnd(t, r)
			} else {
				r, got = receiveRawFrames(t, lab, backend, cfg, frames)
			}
			defer r.Close()
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", replayed) {
				t.Errorf("%s received %q,\nreplay takes %q", backend, got, replayed)
			}
			if !bytes.Contains([]byte(fmt.Sprint(got)), []byte("ttl 0")) {
				t.Errorf("%s did not deliver the datagram of TTL 0: %q", backend, got)
			}
		})
	}
}
