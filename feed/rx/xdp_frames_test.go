package rx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// xdpFrame builds an Ethernet frame: VLAN tags (TPIDs), IPv4 with optBytes
// of options, UDP to dst with payload; fix may then damage it.
func xdpFrame(src, dst netip.AddrPort, tpids []uint16, optBytes int, payload []byte) []byte {
	b := []byte{0x01, 0x00, 0x5e, 0x36, 0x0c, 0x6f, 0x02, 0, 0, 0, 0, 1}
	for _, tp := range tpids {
		b = binary.BigEndian.AppendUint16(b, tp)
		b = binary.BigEndian.AppendUint16(b, 100)
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	ip := len(b)
	udpLen := 8 + len(payload)
	b = append(b, 0x40|byte(5+optBytes/4), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(20+optBytes+udpLen))
	b = append(b, 0, 0, 0, 0, 1, 17, 0, 0)
	s, d := src.Addr().As4(), dst.Addr().As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	b = append(b, make([]byte, optBytes)...) // option 0 = end of options list
	// IPv4 header checksum, so that frames the kernel gets are valid.
	var sum uint32
	for i := ip; i < ip+20+optBytes; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[ip+10:], ^uint16(sum))
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	b = binary.BigEndian.AppendUint16(b, uint16(udpLen))
	b = append(b, 0, 0)
	return append(b, payload...)
}

// xdpRawSender sends hand-built frames on the lab's source interface
// through an AF_PACKET socket.
type xdpRawSender struct {
	fd int
	sa unix.SockaddrLinklayer
}

func xdpNewRawSender(t *testing.T, lab *netlab.Lab) *xdpRawSender {
	t.Helper()
	s := &xdpRawSender{fd: -1}
	err := lab.Do(lab.Src, func() error {
		ifi, err := net.InterfaceByName(lab.SrcIf)
		if err != nil {
			return err
		}
		s.sa = unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		s.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

func (s *xdpRawSender) send(t *testing.T, frame []byte) {
	t.Helper()
	copy(s.sa.Addr[:], frame[:6])
	if err := unix.Sendto(s.fd, frame, 0, &s.sa); err != nil {
		t.Fatalf("send %d-byte raw frame: %v", len(frame), err)
	}
	time.Sleep(200 * time.Microsecond)
}

// TestXDPRawFrames puts hand-built frames on the wire: line datagrams with
// priority tags (VLAN ID 0) and IPv4 options must arrive; tagged with VLAN
// 100, which the kernel would give a VLAN device, they must not (passed,
// xdp_vlan_other); truncated and inconsistent ones must be counted as
// malformed by the program and never reach (or upset) the receiver.
func TestXDPRawFrames(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) {
			r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, XDPMode: mode})
			defer r.Close()
			snd := xdpNewRawSender(t, lab)
			src := netip.AddrPortFrom(lab.SrcIP, 40001)
			line := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
			good := func(i int, tpids []uint16, opts int) []byte {
				return xdpFrame(src, line, tpids, opts, []byte(fmt.Sprintf("good %d", i)))
			}
			cut := func(b []byte, n int) []byte { return b[:len(b)-n] }
			setU16 := func(b []byte, off int, v uint16) []byte {
				b = bytes.Clone(b)
				binary.BigEndian.PutUint16(b[off:], v)
				return b
			}
			// untag sets the VLAN IDs of the frame's tags to 0.
			untag := func(b []byte, tags int) []byte {
				for i := range tags {
					b = setU16(b, 14+4*i, 0)
				}
				return b
			}
			frames := []struct {
				frame     []byte
				good      bool
				malformed bool
				tagged    bool
			}{
				{good(0, nil, 0), true, false, false},
				{untag(good(1, []uint16{0x8100}, 0), 1), true, false, false},
				{untag(good(2, []uint16{0x88a8, 0x8100}, 0), 2), true, false, false},
				{good(3, nil, 12), true, false, false},
				{untag(good(4, []uint16{0x8100}, 40), 1), true, false, false},
				{good(80, []uint16{0x8100}, 0), false, false, true},
				{good(81, []uint16{0x88a8, 0x8100}, 0), false, false, true},
				{good(82, []uint16{0x8100}, 40), false, false, true},
				{xdpFrame(src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort+7), nil, 0, []byte("other port")), false, false, false},
				{good(90, nil, 0)[:14+19], false, true, false},                       // truncated IPv4 header
				{good(91, nil, 0)[:14+20+5], false, true, false},                     // truncated UDP header
				{good(92, []uint16{0x8100}, 0)[:16], false, true, false},             // truncated VLAN tag
				{cut(good(93, nil, 8), 2), false, true, false},                       // frame shorter than IPv4 total length
				{setU16(good(94, nil, 0), 14+20+4, 200), false, true, false},         // UDP length beyond the packet
				{setU16(good(95, nil, 0), 14+20+4, 7), false, true, false},           // UDP length below its header
				{setU16(good(96, nil, 0), 14, 0x4300|uint16(0)), false, true, false}, // IHL 3
				{good(5, nil, 0), true, false, false},
			}
			wantGood, wantBad, wantTagged := 0, uint64(0), uint64(0)
			for _, f := range frames {
				snd.send(t, f.frame)
				if f.good {
					wantGood++
				}
				if f.malformed {
					wantBad++
				}
				if f.tagged {
					wantTagged++
				}
			}
			got := xdpCollect(t, r, wantGood)
			i := 0
			for _, f := range frames {
				if !f.good {
					continue
				}
				dg := f.frame[len(f.frame)-len(got[i].Data):]
				if !bytes.Equal(got[i].Data, dg) || got[i].Src != src {
					t.Errorf("datagram %d: %q from %v, want %q from %v", i, got[i].Data, got[i].Src, dg, src)
				}
				i++
			}
			// The malformed frames were sent before the last good one and
			// are counted on arrival, by the program: it passes them to
			// the kernel, which drops them as it does under the socket
			// backends, so they are not the receiver's Malformed
			// (TestMalformedOtherTraffic).
			st := r.Stats()
			if st.Extra.Get("xdp_malformed") != wantBad || st.Malformed != 0 {
				t.Errorf("malformed: program %d, stats %d; want %d, 0", st.Extra.Get("xdp_malformed"), st.Malformed, wantBad)
			}
			if st.Extra.Get("xdp_redirected") != uint64(wantGood) {
				t.Errorf("program redirected %d, want %d", st.Extra.Get("xdp_redirected"), wantGood)
			}
			if st.Extra.Get("xdp_vlan_other") != wantTagged {
				t.Errorf("xdp_vlan_other %d, want %d: the line's frames tagged with VLAN 100", st.Extra.Get("xdp_vlan_other"), wantTagged)
			}
			if k, err := r.Receive(make([]Packet, 4)); k != 0 || err != nil {
				t.Errorf("extra Receive = %d, %v", k, err)
			}
		})
	}
}

// TestMalformedOtherTraffic: malformed frames of other traffic on the line's
// interface (another group, another port, a unicast address) are not the
// feed's, and no backend counts them in Stats.Malformed
// (receive_malformed_total): the kernel drops them before a socket sees
// them, and under AF_XDP the program passes them to the kernel. The AF_XDP
// program's per-interface count of them stays visible as Extra
// "xdp_malformed". The line's datagrams around them arrive.
func TestMalformedOtherTraffic(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	line := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	setU16 := func(b []byte, off int, v uint16) []byte {
		binary.BigEndian.PutUint16(b[off:], v)
		return b
	}
	otherGroup := netip.AddrPortFrom(netip.MustParseAddr("233.54.12.99"), xdpTestPort)
	otherPort := netip.AddrPortFrom(xdpTestGroup, xdpTestPort+1)
	unicast := netip.AddrPortFrom(lab.DstIP, 5353)
	bad := [][]byte{
		xdpFrame(src, otherGroup, nil, 0, []byte("other group"))[:14+19],                        // truncated IPv4 header
		setU16(xdpFrame(src, otherPort, nil, 0, []byte("other port")), 14+20+4, 200),            // UDP length beyond the packet
		xdpFrame(src, otherPort, []uint16{0x8100}, 0, []byte("other port, tagged"))[:14+4+20+5], // truncated UDP header
		setU16(xdpFrame(src, unicast, nil, 0, []byte("unicast")), 14, 0x4300),                   // IHL 3
	}
	for _, backend := range []string{BackendXDP, BackendUring, BackendSocket} {
		t.Run(backend, func(t *testing.T) {
			cfg := Config{PollTimeout: 20 * time.Millisecond, Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}}
			var r Receiver
			if backend == BackendXDP {
				r = xdpOpen(t, lab, cfg)
			} else {
				cfg.Backend = backend
				var err error
				if r, err = openIn(t, lab, cfg); err != nil {
					t.Fatal(err)
				}
			}
			defer r.Close()
			snd := xdpNewRawSender(t, lab)
			snd.send(t, xdpFrame(src, line, nil, 0, []byte("line 0")))
			for _, f := range bad {
				snd.send(t, bytes.Clone(f))
			}
			snd.send(t, xdpFrame(src, line, nil, 0, []byte("line 1")))
			got := xdpCollect(t, r, 2)
			if string(got[0].Data) != "line 0" || string(got[1].Data) != "line 1" {
				t.Errorf("received %q, %q; want the line's two datagrams", got[0].Data, got[1].Data)
			}
			st := r.Stats()
			if st.Malformed != 0 {
				t.Errorf("%s: Malformed %d after %d malformed frames of other traffic, want 0: they are not the feed's (stats %+v)", backend, st.Malformed, len(bad), st)
			}
			if backend == BackendXDP && st.Extra.Get("xdp_malformed") != uint64(len(bad)) {
				t.Errorf("xdp_malformed %d, want %d: the program's per-interface count", st.Extra.Get("xdp_malformed"), len(bad))
			}
		})
	}
}

// TestXDPVLANSubinterface runs real traffic over an 802.1Q subinterface:
// the sender's VLAN device puts the tag in the frame (tx VLAN offload off),
// the program on the receiver's parent interface parses past it.
func TestXDPVLANSubinterface(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	srcV, dstV := lab.SrcIf+".100", lab.DstIf+".100"
	type step struct {
		ns   string
		args []string
	}
	steps := []step{
		{lab.Src, []string{"link", "add", "link", lab.SrcIf, "name", srcV, "type", "vlan", "id", "100"}},
		{lab.Dst, []string{"link", "add", "link", lab.DstIf, "name", dstV, "type", "vlan", "id", "100"}},
		{lab.Src, []string{"addr", "add", "10.99.100.1/24", "dev", srcV}},
		{lab.Dst, []string{"addr", "add", "10.99.100.2/24", "dev", dstV}},
		{lab.Src, []string{"link", "set", srcV, "up"}},
		{lab.Dst, []string{"link", "set", dstV, "up"}},
		{lab.Src, []string{"route", "add", xdpTestGroup.String() + "/32", "dev", srcV}},
	}
	for i, s := range steps {
		out, err := lab.Exec(s.ns, "ip", s.args...)
		if i == 0 && err != nil && bytes.Contains(out, []byte("Unknown device type")) {
			t.Skipf("kernel has no 802.1Q VLAN devices (CONFIG_VLAN_8021Q): %s; TestXDPRawFrames covers tagged frames", bytes.TrimSpace(out))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if out, err := lab.Exec(lab.Src, "ethtool", "-K", lab.SrcIf, "txvlan", "off"); err != nil {
		t.Fatalf("turn off tx VLAN offload: %v: %s", err, out)
	}
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	const n = 300
	errc := snd.sendPaced(n, xdpPayload)
	got := xdpCollect(t, r, n)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddr("10.99.100.1")
	for i, p := range got {
		if !bytes.Equal(p.Data, xdpPayload(i)) || p.Src.Addr() != want {
			t.Fatalf("datagram %d: %d bytes from %v", i, len(p.Data), p.Src)
		}
	}
}

// TestXDPMultiQueue binds two rx queues sharing one UMEM.
func TestXDPMultiQueue(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{RxQueues: 2})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, Queues: []int{0, 1}})
	defer r.Close()
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	const n = 500
	errc := snd.sendPaced(n, xdpPayload)
	got := xdpCollect(t, r, n)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// One flow hashes to one queue, so order holds.
	for i, p := range got {
		if !bytes.Equal(p.Data, xdpPayload(i)) {
			t.Fatalf("datagram %d differs", i)
		}
	}
}

func TestXDPOpenErrors(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	cases := []struct {
		name string
		cfg  Config
	}{
		{"missing interface", Config{Lines: []LineConfig{{Interface: "nonexistent0", Group: xdpTestGroup, Port: 1}}}},
		{"ipv6 group", Config{Lines: []LineConfig{{Interface: lab.DstIf, Group: netip.MustParseAddr("ff02::1"), Port: 1}}}},
		{"bad zero-copy mode", Config{ZeroCopy: "maybe"}},
		{"bad xdp mode", Config{XDPMode: "offload"}},
		{"queue beyond the device", Config{Queues: []int{1}}},
		{"two lines on one group and port", Config{Lines: []LineConfig{
			{Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort},
			{Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort},
		}}},
	}
	fds := xdpKernelFDs(t)
	defer xdpCheckFDs(t, fds)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Lines == nil {
				tc.cfg.Lines = []LineConfig{{Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}
			}
			tc.cfg.Backend = BackendXDP
			err := lab.Do(lab.Dst, func() error {
				r, err := Open(tc.cfg)
				if err == nil {
					r.Close()
					return errors.New("opened")
				}
				t.Logf("%v", err)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	// veth has no zero-copy: requiring it is ErrNotSupported, so auto falls back.
	err := lab.Do(lab.Dst, func() error {
		r, err := Open(Config{Backend: BackendXDP, ZeroCopy: "on",
			Lines: []LineConfig{{Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}})
		if err == nil {
			r.Close()
			return errors.New("veth accepted zero-copy")
		}
		if !errors.Is(err, ErrNotSupported) || !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("zero-copy on veth: %w; want ErrNotSupported wrapping EOPNOTSUPP", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
