package rx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/pcaptest"
)

// TestReplayDecodesAsLive puts line datagrams the kernel takes and ones it
// drops on the wire (martian sources, IPv4 options it refuses, a failed
// UDP checksum, TTL 0 and 1, which it delivers: it checks the TTL only
// when it forwards; and IPv4 fragments: in order, reversed, a datagram
// over the MTU, a duplicate fragment, which it reassembles, overlapping
// ones, a missing one, a reassembled datagram whose UDP checksum fails
// and fragments from a martian source, which it drops, and a datagram
// whose source sent 64 fragments between two of its own, whose first it
// drops: net.ipv4.ipfrag_max_dist) and receives them
// with every backend; a replay of a capture of them (pcap.Reader, what
// feedhandler replay reads a capture with) must take exactly the
// payloads each backend delivered, so that a capture replays to the live
// books whatever the backend. AF_XDP gets the datagrams the kernel
// reassembles through its kernel sockets (xdp_kernel.go), in batches of
// their own: it may deliver one after a later frame of the rings, so its
// payloads are compared in order apart from those. The receiver's
// rp_filter is off, as in TestXDPMartianSources, so that only the
// source's class decides.
func TestReplayDecodesAsLive(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h225"})
	setRPFilter(t, lab, "0", "all", "default", lab.DstIf)
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	for i, backend := range []string{BackendSocket, BackendUring, "xdp native", "xdp generic"} {
		t.Run(backend, func(t *testing.T) {
			// Identifications of their own: the kernel keeps a
			// datagram's fragments 30 s, and would add the next
			// backend's to an incomplete one of the last.
			frames := asLiveFrames(src, dst, uint16(i+1)<<8)
			replayed := replayFrames(t, frames)
			cfg := Config{PollTimeout: 20 * time.Millisecond,
				Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}}
			var r Receiver
			if backend == BackendSocket || backend == BackendUring {
				r = openBackend(t, lab, backend, cfg)
			} else {
				cfg.XDPMode = backend[len("xdp "):]
				r = xdpOpen(t, lab, cfg)
			}
			defer r.Close()
			raw := xdpNewRawSender(t, lab)
			for _, f := range frames {
				raw.send(t, f)
			}
			got := receiveUntilEnd(t, r) // 5 s at most: a frame the kernel delivered may come after the end
			if !slices.Contains(got, "end") {
				t.Fatalf("%s: no end in 5 s: %v", backend, brief(got))
			}
			drainEach(t, r, func(p *Packet) { got = append(got, string(p.Data)) })
			want := replayed
			if backend != BackendSocket && backend != BackendUring {
				got, want = kernelLast(got), kernelLast(want)
			}
			if fmt.Sprint(brief(got)) != fmt.Sprint(brief(want)) || fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Errorf("%s received %v,\nreplay takes %v", backend, brief(got), brief(want))
			}
			if !bytes.Contains([]byte(fmt.Sprint(got)), []byte("ttl 0")) {
				t.Errorf("%s did not deliver the datagram of TTL 0: %q", backend, got)
			}
			if !bytes.Contains([]byte(fmt.Sprint(got)), []byte("frag big")) {
				t.Errorf("%s did not deliver the fragmented datagram over the MTU: %v", backend, brief(got))
			}
		})
	}
}

// asLiveFrames builds TestReplayDecodesAsLive's frames from src to dst,
// its fragmented datagrams' identifications from id on. The last reads
// "end".
func asLiveFrames(src, dst netip.AddrPort, id uint16) [][]byte {
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

	// Fragmented datagrams: 100 bytes of UDP payload but the one over
	// the MTU, each under an identification of its own.
	datagram := func(name string, size int, from netip.AddrPort) []byte {
		p := []byte(name + " ")
		for len(p) < size {
			p = append(p, byte('a'+len(p)%26))
		}
		f := xdpFrame(from, dst, nil, 0, p)
		binary.BigEndian.PutUint16(f[14+4:], id)
		id++
		xdpSeal(f, 14, true)
		return f
	}
	frags := func(f []byte, sizes ...int) [][]byte { return netlab.Fragments(f, 14, sizes...) }
	frames = append(frames, frags(datagram("frag in order", 100, src), 48, 48)...)
	rev := frags(datagram("frag reversed", 100, src), 32, 32, 32)
	frames = append(frames, rev[3], rev[1], rev[0], rev[2])
	frames = append(frames, frags(datagram("frag big", 1800, src), 1480)...)
	dup := frags(datagram("frag duplicate", 100, src), 56)
	frames = append(frames, dup[0], dup[0], dup[1])
	over := datagram("frag overlap", 100, src)
	frames = append(frames, frags(over, 56)[0], frags(over, 48)[1], frags(over, 56)[1])
	missing := frags(datagram("frag missing", 100, src), 32, 32)
	frames = append(frames, missing[0], missing[2])
	badSum := frags(datagram("frag bad udp checksum", 100, src), 56)
	badSum[1][len(badSum[1])-1] ^= 0x20
	frames = append(frames, badSum...)
	frames = append(frames, frags(datagram("frag from 127.0.0.1", 100, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 40001)), 56)...)
	// A datagram whose two fragments have 63 others of their source
	// between them is reassembled; with 64 between, the kernel drops the
	// first (net.ipv4.ipfrag_max_dist) and holds the second alone.
	for _, between := range []int{63, 64} {
		name := fmt.Sprintf("frag %d between", between)
		pair := frags(datagram(name, 100, src), 56)
		eights := make([]int, between)
		for i := range eights[:between-1] {
			eights[i] = 8
		}
		eights[between-1] = 1480
		frames = append(frames, pair[0])
		frames = append(frames, frags(datagram(name+" them", 600, src), eights...)...)
		frames = append(frames, pair[1])
	}

	opts, _ := ipOptionFrames(src, dst) // the last reads "end"
	return append(frames, opts...)
}

// replayFrames returns the payloads a replay of a capture of frames
// takes: those pcap.Reader returns.
func replayFrames(t *testing.T, frames [][]byte) []string {
	t.Helper()
	dgs, _, err := pcaptest.ReadAsCapture(frames, func(i int) int64 { return int64(i) * int64(time.Millisecond) })
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dgs {
		out = append(out, string(d.Payload))
	}
	return out
}

// kernelLast returns payloads with the fragmented datagrams ("frag ...")
// moved to the end, in their order: those AF_XDP reads through its
// kernel sockets.
func kernelLast(payloads []string) []string {
	var rings, kernel []string
	for _, p := range payloads {
		if strings.HasPrefix(p, "frag ") {
			kernel = append(kernel, p)
		} else {
			rings = append(rings, p)
		}
	}
	return append(rings, kernel...)
}

// brief shortens payloads to their first words and lengths.
func brief(payloads []string) []string {
	out := make([]string, len(payloads))
	for i, p := range payloads {
		out[i] = fmt.Sprintf("%.24q(%d)", p, len(p))
	}
	return out
}
