package rx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// xdpSeal recomputes the IPv4 header checksum of the frame whose IPv4
// header starts at ipOff and, with udpSum, the UDP checksum over the UDP
// length's bytes (else it leaves none: 0).
func xdpSeal(frame []byte, ipOff int, udpSum bool) {
	sum := func(b []byte, acc uint32) uint32 {
		for i := 0; i+1 < len(b); i += 2 {
			acc += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			acc += uint32(b[len(b)-1]) << 8
		}
		for acc > 0xffff {
			acc = acc&0xffff + acc>>16
		}
		return acc
	}
	ip := frame[ipOff:]
	ihl := int(ip[0]&0x0f) * 4
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum(ip[:ihl], 0)))
	udp := ip[ihl:]
	ulen := int(binary.BigEndian.Uint16(udp[4:]))
	binary.BigEndian.PutUint16(udp[6:], 0)
	if !udpSum {
		return
	}
	s := ^uint16(sum(udp[:ulen], sum(ip[12:20], 17+uint32(ulen))))
	if s == 0 {
		s = 0xffff // a computed 0 is sent as all ones (RFC 768)
	}
	binary.BigEndian.PutUint16(udp[6:], s)
}

// TestXDPOddFramesAsKernel puts well-formed but unusual line frames on the
// wire: Ethernet padding after a short datagram (with and without a UDP
// checksum), a UDP length shorter than the IPv4 payload, 40 bytes of NOP
// options, the DF flag, an 802.1Q priority tag (VLAN 0), a full 1514-byte
// frame and a frame to the receiver's unicast MAC. The AF_XDP backend, in
// native and in generic mode, with checksums verified, must deliver exactly
// the payloads the kernel delivers to the socket backend, and count no
// loss and nothing malformed.
func TestXDPOddFramesAsKernel(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "xo"})
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	dstMAC := xdpLabMAC(t, lab)
	sealed := func(f []byte, ipOff int, udpSum bool) []byte {
		xdpSeal(f, ipOff, udpSum)
		return f
	}
	pad := func(f []byte) []byte { return append(f, bytes.Repeat([]byte{0xaa}, 60-len(f))...) }
	var frames [][]byte
	var want []string
	add := func(payload string, f []byte) {
		frames = append(frames, f)
		want = append(want, payload)
	}
	add("pad", sealed(pad(xdpFrame(src, dst, nil, 0, []byte("pad"))), 14, true))
	add("pad0", sealed(pad(xdpFrame(src, dst, nil, 0, []byte("pad0"))), 14, false))
	short := xdpFrame(src, dst, nil, 0, []byte("udpshort----"))
	binary.BigEndian.PutUint16(short[14+20+4:], 8+8) // the IPv4 payload goes on 4 bytes
	add("udpshort", sealed(short, 14, true))
	nops := xdpFrame(src, dst, nil, 40, []byte("nop options"))
	copy(nops[14+20:14+60], bytes.Repeat([]byte{1}, 40))
	add("nop options", sealed(nops, 14, true))
	df := xdpFrame(src, dst, nil, 0, []byte("dont fragment"))
	df[14+6] = 0x40
	add("dont fragment", sealed(df, 14, true))
	prio := xdpFrame(src, dst, []uint16{0x8100}, 0, []byte("priority tag"))
	binary.BigEndian.PutUint16(prio[14:], 5<<13) // priority 5, VLAN 0
	add("priority tag", sealed(prio, 18, true))
	full := bytes.Repeat([]byte{'f'}, 1500-20-8)
	copy(full, "full frame")
	add(string(full), sealed(xdpFrame(src, dst, nil, 0, full), 14, true))
	ucast := xdpFrame(src, dst, nil, 0, []byte("unicast mac"))
	copy(ucast, dstMAC)
	add("unicast mac", sealed(ucast, 14, true))
	add("end", sealed(xdpFrame(src, dst, nil, 0, []byte("end")), 14, true))

	receiveAsKernel(t, lab, frames, want, func(t *testing.T, backend string, st Stats) {
		if backend != BackendSocket && st.Extra.Get("xdp_redirected") != uint64(len(frames)) {
			t.Errorf("xdp_redirected %d, want %d", st.Extra.Get("xdp_redirected"), len(frames))
		}
	})
}

// xdpLabMAC returns the MAC address of lab's receiving interface.
func xdpLabMAC(t *testing.T, lab *netlab.Lab) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := lab.Do(lab.Dst, func() error {
		ifi, err := net.InterfaceByName(lab.DstIf)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

// receiveAsKernel puts frames on the wire for line A on lab's receiving
// interface, once for the socket backend and once for AF_XDP in native and
// in generic mode: each must deliver the payloads want, the last "end",
// with nothing malformed or dropped; check then looks at the backend's
// stats.
func receiveAsKernel(t *testing.T, lab *netlab.Lab, frames [][]byte, want []string, check func(t *testing.T, backend string, st Stats)) {
	t.Helper()
	for _, backend := range []string{BackendSocket, "xdp native", "xdp generic"} {
		t.Run(backend, func(t *testing.T) {
			cfg := Config{PollTimeout: 20 * time.Millisecond,
				Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}}
			r, got := receiveRawFrames(t, lab, backend, cfg, frames)
			defer r.Close()
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Errorf("received %.40q,\nwant %.40q", got, want)
			}
			st := r.Stats()
			if st.Malformed != 0 || st.Dropped != 0 {
				t.Errorf("Malformed %d, Dropped %d; want 0 and 0; stats %+v", st.Malformed, st.Dropped, st)
			}
			check(t, backend, st)
		})
	}
}

// receiveRawFrames opens backend (BackendSocket, "xdp native" or "xdp
// generic") on lab's line with cfg, puts frames on the wire from the
// sender's side, and returns the receiver and the payloads it delivered,
// until one reads "end" (the last frame's) or 5 s have passed.
func receiveRawFrames(t *testing.T, lab *netlab.Lab, backend string, cfg Config, frames [][]byte) (Receiver, []string) {
	t.Helper()
	var r Receiver
	if backend == BackendSocket {
		r = openBackend(t, lab, backend, cfg)
	} else {
		cfg.XDPMode = backend[len("xdp "):]
		r = xdpOpen(t, lab, cfg)
	}
	raw := xdpNewRawSender(t, lab)
	for _, f := range frames {
		raw.send(t, f)
	}
	return r, receiveUntilEnd(t, r)
}

// receiveUntilEnd returns the payloads r delivers until one reads "end"
// or 5 s have passed. A receive error closes r and fails t.
func receiveUntilEnd(t *testing.T, r Receiver) []string {
	t.Helper()
	var got []string
	pkts := make([]Packet, 8)
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 || got[len(got)-1] != "end"; {
		if time.Now().After(deadline) {
			break
		}
		n, err := r.Receive(pkts)
		if err != nil {
			r.Close()
			t.Fatal(err)
		}
		for _, p := range pkts[:n] {
			got = append(got, string(p.Data))
		}
		r.Release(pkts[:n])
	}
	return got
}
