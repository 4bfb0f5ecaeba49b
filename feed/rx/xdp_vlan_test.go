package rx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// xdpVLANLab is a lab whose receiving veth has two 802.1Q VLAN devices, of
// VLAN 100 and 200, as a port trunking a production and a test network
// that use the same groups.
//
// On a kernel without 802.1Q VLAN devices (CONFIG_VLAN_8021Q unset, as on
// the lab machines) none can be made: two veth pairs inside the receiving
// namespace stand in for them, and the receiver's device resolver
// (xdpResolve) is told that they are VLAN 100 and 200 of the lab's veth.
// Everything else is real: the program runs on the veth, the tagged frames
// come over the wire, the lines join their groups on the stand-ins. Only
// the rtnetlink reading of a real VLAN device is then not exercised
// (TestResolveXDPDevice covers its parsing).
type xdpVLANLab struct {
	*netlab.Lab
	v100, v200 string // the VLAN devices (or their stand-ins) in the receiving namespace
	played     bool   // stand-ins: the kernel has no VLAN devices
}

func xdpNewVLANLab(t *testing.T) *xdpVLANLab { t.Helper(); return xdpNewVLANLabNamed(t, "xv") }

// xdpNewVLANLabNamed is xdpNewVLANLab in a lab of prefix.
func xdpNewVLANLabNamed(t *testing.T, prefix string) *xdpVLANLab {
	t.Helper()
	lab := xdpNewLab(t, netlab.Options{Prefix: prefix})
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	l := &xdpVLANLab{Lab: lab, v100: "xa" + id, v200: "xb" + id}
	out, err := exec.Command("ip", "-n", lab.Dst, "link", "add", "link", lab.DstIf, "name", l.v100, "type", "vlan", "id", "100").CombinedOutput()
	switch {
	case err != nil && bytes.Contains(out, []byte("Unknown device type")):
		t.Logf("kernel has no 802.1Q VLAN devices (CONFIG_VLAN_8021Q): %s; veth pairs play %s and %s", bytes.TrimSpace(out), l.v100, l.v200)
		l.played = true
		for _, name := range []string{l.v100, l.v200} {
			ip(t, "-n", lab.Dst, "link", "add", name, "type", "veth", "peer", "name", name+"p")
			ip(t, "-n", lab.Dst, "link", "set", name+"p", "up")
		}
		vlans := map[string]uint16{l.v100: 100, l.v200: 200}
		old := xdpResolve
		xdpResolve = func(name string) (XDPDevice, error) {
			vlan, ok := vlans[name]
			if !ok {
				return old(name)
			}
			ifi, err := LookupInterface(lab.DstIf)
			if err != nil {
				return XDPDevice{}, err
			}
			return XDPDevice{Name: lab.DstIf, Index: ifi.Index, VLAN: vlan}, nil
		}
		t.Cleanup(func() { xdpResolve = old })
	case err != nil:
		t.Fatalf("ip link add %s type vlan: %v: %s", l.v100, err, out)
	default:
		ip(t, "-n", lab.Dst, "link", "add", "link", lab.DstIf, "name", l.v200, "type", "vlan", "id", "200")
	}
	ip(t, "-n", lab.Dst, "addr", "add", "10.97.100.2/24", "dev", l.v100)
	ip(t, "-n", lab.Dst, "addr", "add", "10.97.200.2/24", "dev", l.v200)
	ip(t, "-n", lab.Dst, "link", "set", l.v100, "up")
	ip(t, "-n", lab.Dst, "link", "set", l.v200, "up")
	return l
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// xdpTag inserts an 802.1Q tag of VLAN vid after frame's MAC addresses.
func xdpTag(frame []byte, vid uint16) []byte {
	b := slices.Clone(frame[:12])
	b = binary.BigEndian.AppendUint16(b, 0x8100)
	b = binary.BigEndian.AppendUint16(b, vid)
	return append(b, frame[12:]...)
}

// xdpVLANFrame is a datagram to the line's group and port with payload
// p, untagged (vid 0) or on VLAN vid.
func xdpVLANFrame(src netip.AddrPort, vid uint16, p string) []byte {
	f := xdpFrame(src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort), nil, 0, []byte(p))
	if vid == 0 {
		return f
	}
	return xdpTag(f, vid)
}

// xdpByLine receives until n datagrams came and returns their payloads by
// line, sorted.
func xdpByLine(t *testing.T, r Receiver, n int) map[Line][]string {
	t.Helper()
	got := map[Line][]string{}
	for _, p := range xdpCollect(t, r, n) {
		got[p.Line] = append(got[p.Line], string(p.Data))
	}
	for _, v := range got {
		slices.Sort(v)
	}
	return got
}

// xdpPayloads are the sorted payloads "prefix 0" to "prefix n-1" of each
// prefix.
func xdpPayloads(n int, prefixes ...string) []string {
	var out []string
	for _, prefix := range prefixes {
		for i := range n {
			out = append(out, fmt.Sprintf("%s %d", prefix, i))
		}
	}
	slices.Sort(out)
	return out
}

// xdpPacketTap is a packet socket on the lab's receiving veth: it sees the
// frames the program passes to the kernel, never those it redirects.
type xdpPacketTap struct{ fd int }

func xdpTap(t *testing.T, lab *netlab.Lab) *xdpPacketTap {
	t.Helper()
	tap := &xdpPacketTap{fd: -1}
	all := xdpHtons(unix.ETH_P_ALL)
	err := lab.Do(lab.Dst, func() error {
		ifi, err := LookupInterface(lab.DstIf)
		if err != nil {
			return err
		}
		if tap.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(all)); err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(10 * time.Second))
		if err := unix.SetsockoptTimeval(tap.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(tap.fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(tap.fd) })
	return tap
}

func xdpHtons(v uint16) uint16 { return v<<8 | v>>8 }

// until returns the sorted payloads to the line's group and port that the
// kernel got before the one that reads end.
func (tap *xdpPacketTap) until(t *testing.T, end string) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 2048)
	for range 10000 {
		k, _, err := unix.Recvfrom(tap.fd, buf, 0)
		if err != nil {
			t.Fatalf("packet socket: %v after %q", err, got)
		}
		d, class := bpf.ParseFrame(buf[:k])
		if class != bpf.ClassUDP || d.Dst != netip.AddrPortFrom(xdpTestGroup, xdpTestPort) {
			continue
		}
		if string(d.Payload) == end {
			slices.Sort(got)
			return got
		}
		got = append(got, string(d.Payload))
	}
	t.Fatalf("packet socket: no %q in 10000 frames", end)
	return nil
}

// TestXDPVLANLines: the sender puts the same group and port on the wire
// untagged ("u i"), on VLAN 100 ("a i") and on VLAN 200 ("b i"). A line on
// the VLAN 100 device (interface: eth0.100) must get exactly VLAN 100's
// datagrams through AF_XDP, as the socket backends would through the
// kernel, with the program on the veth itself (native mode is possible
// there); the rest goes to the kernel (a packet socket on the veth counts
// it: all of VLAN 200 and the untagged, nothing of VLAN 100). A line on
// the veth itself gets the untagged datagrams only, alone or next to a
// VLAN 100 line: VLAN 200's, which the kernel would give a VLAN 200 device
// (or drop), go to the kernel, counted in xdp_vlan_other. In native and
// generic mode.
func TestXDPVLANLines(t *testing.T) {
	lab := xdpNewVLANLab(t)
	const n = 20
	snd := xdpNewRawSender(t, lab.Lab)
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	sendAll := func() {
		for i := range n {
			snd.send(t, xdpVLANFrame(src, 0, fmt.Sprint("u ", i)))
			snd.send(t, xdpVLANFrame(src, 100, fmt.Sprint("a ", i)))
			snd.send(t, xdpVLANFrame(src, 200, fmt.Sprint("b ", i)))
		}
	}
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode+"/vlan line", func(t *testing.T) {
			tap := xdpTap(t, lab.Lab)
			r := xdpOpen(t, lab.Lab, Config{PollTimeout: 20 * time.Millisecond, XDPMode: mode, Lines: []LineConfig{
				{Name: "A", Interface: lab.v100, Group: xdpTestGroup, Port: xdpTestPort},
			}})
			defer r.Close()
			if b := r.Backend(); !strings.Contains(b, lab.DstIf+" "+mode) || !strings.Contains(b, "vlans 100") {
				t.Errorf("backend %q: want the program on %s in %s mode, with VLAN 100", b, lab.DstIf, mode)
			}
			sendAll()
			// Markers after everything, one per path: when one arrives,
			// everything sent before it has (one veth queue, in order).
			snd.send(t, xdpVLANFrame(src, 100, "a end"))
			snd.send(t, xdpVLANFrame(src, 200, "b end"))
			got := xdpByLine(t, r, n+1)
			if want := append(xdpPayloads(n, "a"), "a end"); !slices.Equal(got[LineA], want) || len(got) != 1 {
				t.Errorf("AF_XDP delivered %v, want VLAN 100's datagrams only, as line A", got)
			}
			if kernel, want := tap.until(t, "b end"), xdpPayloads(n, "b", "u"); !slices.Equal(kernel, want) {
				t.Errorf("the kernel got %q, want %q", kernel, want)
			}
			st := r.Stats()
			if g := st.Extra.Get("xdp_redirected"); g != n+1 {
				t.Errorf("xdp_redirected %d, want %d", g, n+1)
			}
			if g := st.Extra.Get("xdp_vlan_other"); g != n+1 {
				t.Errorf("xdp_vlan_other %d, want %d (VLAN 200's, to the kernel)", g, n+1)
			}
			if g := st.Extra.Get("xdp_vlan_untagged"); g != n {
				t.Errorf("xdp_vlan_untagged %d, want %d (the untagged, to the kernel)", g, n)
			}
			if st.Unmatched != 0 || st.Dropped != 0 {
				t.Errorf("unmatched %d, dropped %d; want 0", st.Unmatched, st.Dropped)
			}
		})
		t.Run(mode+"/device and vlan line", func(t *testing.T) {
			r := xdpOpen(t, lab.Lab, Config{PollTimeout: 20 * time.Millisecond, XDPMode: mode, Lines: []LineConfig{
				{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort},
				{Name: "B", Interface: lab.v100, Group: xdpTestGroup, Port: xdpTestPort},
			}})
			defer r.Close()
			sendAll()
			snd.send(t, xdpVLANFrame(src, 0, "u end"))
			got := xdpByLine(t, r, 2*n+1)
			if !slices.Equal(got[LineA], append(xdpPayloads(n, "u"), "u end")) || !slices.Equal(got[LineB], xdpPayloads(n, "a")) || len(got) != 2 {
				t.Errorf("delivered %v; want VLAN 100's as line B, the untagged as line A", got)
			}
			st := r.Stats()
			if st.Extra.Get("xdp_redirected") != 2*n+1 || st.Unmatched != 0 || st.Extra.Get("xdp_vlan_other") != n {
				t.Errorf("stats %+v: want %d redirected, none unmatched, %d vlan_other (VLAN 200's)", st, 2*n+1, n)
			}
		})
		t.Run(mode+"/device line", func(t *testing.T) {
			r := xdpOpen(t, lab.Lab, Config{PollTimeout: 20 * time.Millisecond, XDPMode: mode})
			defer r.Close()
			sendAll()
			snd.send(t, xdpVLANFrame(src, 0, "u end"))
			got := xdpByLine(t, r, n+1)
			if !slices.Equal(got[LineA], append(xdpPayloads(n, "u"), "u end")) || len(got) != 1 {
				t.Errorf("delivered %v; want the untagged datagrams as line A", got)
			}
			if st := r.Stats(); st.Extra.Get("xdp_vlan_other") != 2*n || st.Extra.Get("xdp_redirected") != n+1 {
				t.Errorf("xdp_vlan_other %d, xdp_redirected %d; want %d (VLAN 100's and 200's, to the kernel), %d",
					st.Extra.Get("xdp_vlan_other"), st.Extra.Get("xdp_redirected"), 2*n, n+1)
			}
		})
	}
}

// xdpPushVLAN attaches to the egress of the lab's sending veth a tc
// program that tags every frame with VLAN vid (bpf_skb_vlan_push): the
// kernel keeps the tag out of band, in the skb, unless the veth has
// tx-vlan-offload off, when it writes it into the frame. Out of band, the
// receiving veth's XDP program sees the frame untagged, as behind a NIC
// that strips tags (rx-vlan-offload).
func xdpPushVLAN(t *testing.T, lab *netlab.Lab, vid uint16) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "GPL",
		Instructions: asm.Instructions{
			// r1 is the skb already.
			asm.Mov.Imm(asm.R2, int32(xdpHtons(0x8100))),
			asm.Mov.Imm(asm.R3, int32(vid)),
			asm.FnSkbVlanPush.Call(),
			asm.Mov.Imm(asm.R0, 0), // TCX_PASS
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load tc program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	err = lab.Do(lab.Src, func() error {
		ifi, err := LookupInterface(lab.SrcIf)
		if err != nil {
			return err
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifi.Index, Program: prog, Attach: ebpf.AttachTCXEgress})
		if err != nil {
			return fmt.Errorf("attach tcx egress: %w", err)
		}
		t.Cleanup(func() { l.Close() })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestXDPVLANTagOutOfBand: a VLAN 100 line whose frames arrive with the
// tag out of band (what a NIC with rx-vlan-offload on that strips the tag
// before XDP does) cannot be told by its tag: the program passes them to
// the kernel and counts them in xdp_vlan_untagged, the sign docs/TUNING.md
// tells operators to look for, and nothing is delivered as a wrong line.
// With the tag in the frame (tx-vlan-offload off at the sender: an
// rx-vlan-offload off NIC) the line gets them.
func TestXDPVLANTagOutOfBand(t *testing.T) {
	lab := xdpNewVLANLab(t)
	xdpPushVLAN(t, lab.Lab, 100)
	snd := xdpNewSender(t, lab.Lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	ethtool := func(onOff string) {
		t.Helper()
		if out, err := lab.Exec(lab.Src, "ethtool", "-K", lab.SrcIf, "txvlan", onOff); err != nil {
			t.Fatalf("ethtool -K %s txvlan %s: %v: %s", lab.SrcIf, onOff, err, out)
		}
	}
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) {
			r := xdpOpen(t, lab.Lab, Config{PollTimeout: 20 * time.Millisecond, XDPMode: mode, Lines: []LineConfig{
				{Name: "A", Interface: lab.v100, Group: xdpTestGroup, Port: xdpTestPort},
			}})
			defer r.Close()

			ethtool("on")
			const n = 5
			if err := <-snd.sendPaced(n, func(int) []byte { return []byte("out of band") }); err != nil {
				t.Fatal(err)
			}
			pkts := make([]Packet, 8)
			for range 500 { // bounded: 500 polls of 20 ms at most
				if r.Stats().Extra.Get("xdp_vlan_untagged") >= n {
					break
				}
				if k, err := r.Receive(pkts); err != nil || k != 0 {
					t.Fatalf("receive: %d datagrams (%q), %v; want none while the tag is out of band", k, pkts[0].Data, err)
				}
			}
			if st := r.Stats(); st.Extra.Get("xdp_vlan_untagged") != n || st.Extra.Get("xdp_redirected") != 0 {
				t.Fatalf("tag out of band: stats %+v; want %d xdp_vlan_untagged, none redirected", st, n)
			}

			ethtool("off")
			defer ethtool("on")
			if err := <-snd.sendPaced(n, func(int) []byte { return []byte("in the frame") }); err != nil {
				t.Fatal(err)
			}
			for _, p := range xdpCollect(t, r, n) {
				if p.Line != LineA || string(p.Data) != "in the frame" {
					t.Fatalf("line %s got %q, want only the datagrams tagged in the frame", p.Line, p.Data)
				}
			}
		})
	}
}

// TestResolveXDPDevice: a line's interface resolves to itself, or for an
// 802.1Q VLAN device to its lower device and VLAN ID; QinQ (a VLAN device
// on a VLAN device), 802.1ad, VLAN 0 and a lower device in another
// namespace are refused with ErrNotSupported, so auto mode falls back to
// io_uring, which receives on them through the kernel. The rtnetlink
// answers are read for real for the lab's devices (VLAN devices when the
// kernel has them) and built by hand for the rest.
func TestResolveXDPDevice(t *testing.T) {
	links := map[int]ifLink{
		2: {name: "eth0", kind: ""},
		3: {name: "eth0.100", kind: "vlan", lower: 2, vlanID: 100, vlanProto: unix.ETH_P_8021Q},
		4: {name: "eth0.100.7", kind: "vlan", lower: 3, vlanID: 7, vlanProto: unix.ETH_P_8021Q},
		5: {name: "eth0.ad", kind: "vlan", lower: 2, vlanID: 300, vlanProto: unix.ETH_P_8021AD},
		6: {name: "eth0.0", kind: "vlan", lower: 2, vlanID: 0, vlanProto: unix.ETH_P_8021Q},
		7: {name: "peer.100", kind: "vlan", lower: 9, lowerNetns: true, vlanID: 100, vlanProto: unix.ETH_P_8021Q},
		8: {name: "veth0", kind: "veth", lower: 9},
	}
	read := func(i int) (ifLink, error) {
		l, ok := links[i]
		if !ok {
			return ifLink{}, unix.ENODEV
		}
		return l, nil
	}
	for i, want := range map[int]XDPDevice{
		2: {Name: "eth0", Index: 2},
		3: {Name: "eth0", Index: 2, VLAN: 100},
		8: {Name: "veth0", Index: 8},
	} {
		if got, err := resolveXDPDevice(links[i].name, i, read); err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", links[i].name, got, err, want)
		}
	}
	for _, i := range []int{4, 5, 6, 7} {
		if _, err := resolveXDPDevice(links[i].name, i, read); !errors.Is(err, ErrNotSupported) {
			t.Errorf("%s: %v, want ErrNotSupported", links[i].name, err)
		}
	}
	if _, err := resolveXDPDevice("eth0.100.7", 4, read); err == nil || !strings.Contains(err.Error(), "QinQ") {
		t.Errorf("QinQ: %v, want an error naming QinQ", err)
	}

	lab := xdpNewVLANLab(t)
	err := lab.Do(lab.Dst, func() error {
		want := map[string]XDPDevice{lab.DstIf: {Name: lab.DstIf}}
		if !lab.played {
			want[lab.v100] = XDPDevice{Name: lab.DstIf, VLAN: 100}
			want[lab.v200] = XDPDevice{Name: lab.DstIf, VLAN: 200}
		}
		for name, w := range want {
			d, err := ResolveXDPDevice(name)
			if err != nil {
				return err
			}
			if d.Name != w.Name || d.VLAN != w.VLAN || d.Index == 0 {
				t.Errorf("%s: %+v, want device %s, VLAN %d", name, d, w.Name, w.VLAN)
			}
		}
		if _, err := ResolveXDPDevice("nosuch0"); !errors.Is(err, ErrNoInterface) {
			t.Errorf("nosuch0: %v, want ErrNoInterface", err)
		}
		if on, err := VLANOffload(lab.DstIf); err != nil || !on {
			t.Errorf("VLANOffload(%s) = %v, %v; a veth has rx-vlan-offload on", lab.DstIf, on, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// veth toggles the feature (ethtool -K IF rxvlan off): the check
	// reads the device's features as they are now.
	if _, err := lab.Exec(lab.Dst, "ethtool", "-K", lab.DstIf, "rxvlan", "off"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Do(lab.Dst, func() error {
		if on, err := VLANOffload(lab.DstIf); err != nil || on {
			t.Errorf("VLANOffload(%s) = %v, %v after ethtool -K %s rxvlan off", lab.DstIf, on, err, lab.DstIf)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestParseLink reads an RTM_NEWLINK answer for a VLAN device as the
// kernel encodes it (IFLA_LINKINFO nesting IFLA_INFO_KIND "vlan" and
// IFLA_INFO_DATA with IFLA_VLAN_ID and the big-endian IFLA_VLAN_PROTOCOL),
// with XDP programs attached in two modes (IFLA_XDP).
func TestParseLink(t *testing.T) {
	attr := func(typ uint16, val []byte) []byte {
		b := binary.NativeEndian.AppendUint16(nil, uint16(unix.NLA_HDRLEN+len(val)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, val...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	data := slices.Concat(
		attr(unix.IFLA_VLAN_ID, binary.NativeEndian.AppendUint16(nil, 100)),
		attr(unix.IFLA_VLAN_PROTOCOL, binary.BigEndian.AppendUint16(nil, unix.ETH_P_8021Q)))
	msg := slices.Concat(
		attr(unix.IFLA_IFNAME, []byte("eth0.100\x00")),
		attr(unix.IFLA_LINK, binary.NativeEndian.AppendUint32(nil, 2)),
		attr(unix.IFLA_LINKINFO|unix.NLA_F_NESTED, slices.Concat(
			attr(unix.IFLA_INFO_KIND, []byte("vlan\x00")),
			attr(unix.IFLA_INFO_DATA|unix.NLA_F_NESTED, data))),
		attr(unix.IFLA_XDP|unix.NLA_F_NESTED, slices.Concat(
			attr(unix.IFLA_XDP_ATTACHED, []byte{4}), // several: native and generic
			attr(unix.IFLA_XDP_DRV_PROG_ID, binary.NativeEndian.AppendUint32(nil, 7)),
			attr(unix.IFLA_XDP_SKB_PROG_ID, binary.NativeEndian.AppendUint32(nil, 8)))))
	l, err := parseLink(msg)
	want := ifLink{name: "eth0.100", kind: "vlan", lower: 2, vlanID: 100, vlanProto: unix.ETH_P_8021Q,
		xdpAttached: 4, xdpDrvProg: 7, xdpSkbProg: 8}
	if err != nil || l != want {
		t.Fatalf("parseLink = %+v, %v; want %+v", l, err, want)
	}
	for n := range len(msg) {
		parseLink(msg[:n]) // a cut answer is an error or less, never a panic
	}
}

// TestXDPVLANFragments: a VLAN line's fragmented datagrams take the
// kernel path as a line on the device itself does: the program passes
// the tagged fragments, the kernel reassembles the datagram on the VLAN
// device and delivers it to the line's spare socket, joined there
// (xdp_kernel_delivered); those of the line's group and port on another
// VLAN or untagged are not the line's and stay the kernel's.
func TestXDPVLANFragments(t *testing.T) {
	lab := xdpNewVLANLabNamed(t, "h231v")
	if lab.played {
		t.Skip("kernel has no 802.1Q VLAN devices: no VLAN device to reassemble on")
	}
	snd := xdpNewRawSender(t, lab.Lab)
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	id := uint16(0x2310)
	fragmented := func(src netip.AddrPort, vid uint16, name string) {
		p := []byte(name)
		for len(p) < 1800 {
			p = append(p, byte('a'+len(p)%26))
		}
		f := xdpFrame(src, dst, nil, 0, p)
		binary.BigEndian.PutUint16(f[14+4:], id)
		id++
		xdpSeal(f, 14, true)
		for _, piece := range netlab.Fragments(f, 14, 1480) {
			if vid != 0 {
				piece = xdpTag(piece, vid)
			}
			snd.send(t, piece)
		}
	}
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) {
			r := xdpOpen(t, lab.Lab, Config{PollTimeout: 20 * time.Millisecond, XDPMode: mode, Lines: []LineConfig{
				{Name: "A", Interface: lab.v100, Group: xdpTestGroup, Port: xdpTestPort},
			}})
			defer r.Close()
			fragmented(netip.MustParseAddrPort("10.97.200.1:40001"), 200, "vlan 200 ")
			fragmented(netip.AddrPortFrom(lab.SrcIP, 40001), 0, "untagged ")
			fragmented(netip.MustParseAddrPort("10.97.100.1:40001"), 100, "vlan 100 ")
			snd.send(t, xdpVLANFrame(netip.MustParseAddrPort("10.97.100.1:40001"), 100, "end"))
			got := receiveUntilEnd(t, r)
			drainEach(t, r, func(p *Packet) { got = append(got, string(p.Data)) })
			if !slices.Contains(got, "end") || len(got) != 2 || !slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, "vlan 100 ") && len(p) == 1800 }) {
				t.Errorf("%s: received %v; want VLAN 100's fragmented datagram, whole, and the end", mode, brief(got))
			}
			st := r.Stats()
			if st.Extra.Get("xdp_fragmented") != 1 || st.Extra.Get("xdp_kernel_delivered") != 1 || st.Dropped != 0 {
				t.Errorf("%s: xdp_fragmented %d, xdp_kernel_delivered %d, Stats.Dropped %d; want 1, 1, 0",
					mode, st.Extra.Get("xdp_fragmented"), st.Extra.Get("xdp_kernel_delivered"), st.Dropped)
			}
		})
	}
}
