package rx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
)

// TestXDPForeignFramesAsKernel puts on the wire frames to the line's group
// and port that the kernel gives no socket of the line's interface, among
// ones it does: tagged with VLAN 100 (802.1Q or 802.1ad), double-tagged
// (QinQ, with a priority tag outside or inside), next to frames with
// priority tags only (VLAN ID 0, which the kernel treats as untagged). The
// lab's kernel has no VLAN devices, so it drops every frame with a VLAN ID;
// with one, the frame would go to the VLAN device, not to the line. The
// AF_XDP backend, in native and generic mode, must deliver exactly the
// payloads the socket backend gets, and count each frame it leaves to the
// kernel in xdp_vlan_other.
func TestXDPForeignFramesAsKernel(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "xf"})
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	// tagged is a sealed frame with payload p and tags (TPID, VLAN ID) in
	// that order, outermost first.
	tagged := func(p string, tags ...[2]uint16) []byte {
		tpids := make([]uint16, len(tags))
		for i, tg := range tags {
			tpids[i] = tg[0]
		}
		f := xdpFrame(src, dst, tpids, 0, []byte(p))
		for i, tg := range tags {
			binary.BigEndian.PutUint16(f[14+4*i:], 3<<13|tg[1]) // priority 3
		}
		xdpSeal(f, 14+4*len(tags), true)
		return f
	}
	q := func(vid uint16) [2]uint16 { return [2]uint16{0x8100, vid} }
	ad := func(vid uint16) [2]uint16 { return [2]uint16{0x88a8, vid} }
	var frames [][]byte
	var want []string
	var foreign uint64
	add := func(deliver bool, p string, tags ...[2]uint16) {
		frames = append(frames, tagged(p, tags...))
		if deliver {
			want = append(want, p)
		} else {
			foreign++
		}
	}
	add(true, "untagged")
	add(true, "priority tag", q(0))
	add(true, "802.1ad priority tag", ad(0))
	add(true, "two priority tags", ad(0), q(0))
	add(false, "vlan 100", q(100))
	add(false, "vlan 4095", q(4095))
	add(false, "802.1ad 100", ad(100))
	add(false, "qinq 10/100", ad(10), q(100))
	add(false, "qinq 0/100", ad(0), q(100))
	add(false, "qinq 100/0", ad(100), q(0))
	add(true, "end")

	receiveAsKernel(t, lab, frames, want, leftToKernel(len(want), "xdp_vlan_other", foreign))
}

// leftToKernel is a check for receiveAsKernel: the line's datagrams all
// matched; AF_XDP redirected the delivered ones and counted the others in
// counter.
func leftToKernel(delivered int, counter string, left uint64) func(t *testing.T, backend string, st Stats) {
	return func(t *testing.T, backend string, st Stats) {
		if st.Unmatched != 0 {
			t.Errorf("Unmatched %d, want 0", st.Unmatched)
		}
		if backend == BackendSocket {
			return
		}
		if g := st.Extra.Get("xdp_redirected"); g != uint64(delivered) {
			t.Errorf("xdp_redirected %d, want %d", g, delivered)
		}
		if g := st.Extra.Get(counter); g != left {
			t.Errorf("%s %d, want %d: the frames left to the kernel", counter, g, left)
		}
	}
}

// TestXDPMatchAsProgram: the receive thread's matcher (xdpRx.match) takes
// exactly the frames the steering program steers, for lines of the
// interface alone and next to a VLAN line: each frame goes through the
// loaded program (BPF_PROG_TEST_RUN, a socket in the XSKMAP) and through
// bpf.ParseFrame and match.
func TestXDPMatchAsProgram(t *testing.T) {
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	src := netip.AddrPortFrom(netip.MustParseAddr("10.99.0.1"), 40001)
	frame := func(tags ...[2]uint16) []byte {
		tpids := make([]uint16, len(tags))
		for i, tg := range tags {
			tpids[i] = tg[0]
		}
		f := xdpFrame(src, dst, tpids, 0, []byte("x"))
		for i, tg := range tags {
			binary.BigEndian.PutUint16(f[14+4*i:], tg[1])
		}
		return f
	}
	q := func(vid uint16) [2]uint16 { return [2]uint16{0x8100, vid} }
	ad := func(vid uint16) [2]uint16 { return [2]uint16{0x88a8, vid} }
	frames := map[string][]byte{
		"untagged": frame(), "priority": frame(q(0)), "802.1ad priority": frame(ad(0)),
		"vlan 100": frame(q(100)), "vlan 200": frame(q(200)), "802.1ad 100": frame(ad(100)),
		"qinq 10/100": frame(ad(10), q(100)), "qinq 0/0": frame(ad(0), q(0)), "qinq 0/100": frame(ad(0), q(100)),
	}
	for _, vlanLine := range []bool{false, true} {
		p, err := bpf.LoadWith(bpf.LoadOptions{VLANLines: vlanLine})
		if errors.Is(err, bpf.ErrNotSupported) {
			netlab.SkipOrFail(t, "loading XDP programs", 5, 11, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		iface := &xdpIface{vlans: vlanLine}
		r := &xdpRx{lines: []xdpLine{{iface: iface, dst: dst, line: 0}}}
		if err := p.SetLine(dst.Addr(), dst.Port(), 0, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		if vlanLine {
			r.lines = append(r.lines, xdpLine{iface: iface, vlan: 100, dst: dst, line: 1})
			if err := p.SetVLANLine(100, dst.Addr(), dst.Port(), 1, netip.Addr{}); err != nil {
				t.Fatal(err)
			}
		}
		fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if err := p.SetSocket(0, fd); err != nil {
			t.Fatal(err)
		}
		for name, f := range frames {
			ret, err := p.XDP().Run(&ebpf.RunOptions{Data: f})
			if err != nil {
				t.Fatal(err)
			}
			dg, class := bpf.ParseFrame(f)
			line, ok := r.match(iface, dg)
			if class != bpf.ClassUDP || ok != (ret == bpf.VerdictRedirect) {
				t.Errorf("vlan line %v, %s: program verdict %d, match %v (line %v)", vlanLine, name, ret, ok, line)
			}
		}
	}
}

// TestXDPOtherHostAsKernel puts on the wire frames to the line's group and
// port with every kind of destination MAC address: the group's, another
// group's, broadcast, the receiver's own, and other hosts' unicast
// addresses (with a priority tag, with IPv4 options), which a NIC in
// promiscuous mode (tcpdump, a bridge) hands up and the kernel drops
// (PACKET_OTHERHOST). The AF_XDP backend, in native and generic mode, must
// deliver exactly the payloads the socket backend gets, and count each
// frame to another host in xdp_other_host.
func TestXDPOtherHostAsKernel(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "xh"})
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	own := xdpLabMAC(t, lab)
	other := net.HardwareAddr{0x02, 0x5a, 0, 0, 0, 0x99}
	var frames [][]byte
	var want []string
	var otherHost uint64
	// add puts a sealed frame with payload p to mac (nil: the group's),
	// with a priority tag (prio) and options bytes of IPv4 options.
	add := func(deliver bool, p string, mac net.HardwareAddr, prio bool, options int) {
		var tpids []uint16
		ipOff := 14
		if prio {
			tpids, ipOff = []uint16{0x8100}, 18
		}
		f := xdpFrame(src, dst, tpids, options, []byte(p))
		if prio {
			binary.BigEndian.PutUint16(f[14:], 5<<13) // VLAN 0
		}
		if options > 0 {
			f[ipOff+20] = 1 // NOPs, then the end of the list
		}
		if mac != nil {
			copy(f, mac)
		}
		xdpSeal(f, ipOff, true)
		frames = append(frames, f)
		if deliver {
			want = append(want, p)
		} else {
			otherHost++
		}
	}
	add(true, "group mac", nil, false, 0)
	add(true, "another group's mac", net.HardwareAddr{0x01, 0x00, 0x5e, 0x01, 0x02, 0x03}, false, 0)
	add(true, "broadcast", net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false, 0)
	add(true, "own mac", own, false, 0)
	add(true, "own mac, priority tag", own, true, 0)
	add(false, "another host", other, false, 0)
	add(false, "another host, priority tag", other, true, 0)
	add(false, "another host, ip options", other, false, 8)
	add(false, "zero mac", make(net.HardwareAddr, 6), false, 0)
	add(true, "end", nil, false, 0)

	receiveAsKernel(t, lab, frames, want, leftToKernel(len(want), "xdp_other_host", otherHost))
}

// TestXDPFollowsMAC changes the receiving interface's MAC address while
// the AF_XDP backend runs (ip link set dev ... address: an operator, a
// bond's failover, a VM's migration), then puts on the wire line frames
// sent to the new unicast address: to a unicast line, and to a multicast
// line's group (a switch converting multicast to unicast). In native and
// generic mode they must be delivered to their lines, none counted in
// xdp_other_host; frames to the old address, which the kernel now drops
// (PACKET_OTHERHOST), are another host's and counted there. The change is
// logged once. Until the backend has read the new address (with its
// periodic checks, once a poll timeout) line frames to it are another
// host's: a probe to the unicast line, sent again until one arrives
// (bounded), waits for that.
func TestXDPFollowsMAC(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "m181"})
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	group := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	unicast := netip.AddrPortFrom(lab.DstIP, xdpTestPort+1)
	frame := func(mac net.HardwareAddr, dst netip.AddrPort, p string) []byte {
		f := xdpFrame(src, dst, nil, 0, []byte(p))
		copy(f, mac)
		xdpSeal(f, 14, true)
		return f
	}
	newMACs := []net.HardwareAddr{{0x02, 0x18, 0x01, 0, 0, 0x01}, {0x02, 0x18, 0x01, 0, 0, 0x02}}
	for i, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) {
			old, mac := xdpLabMAC(t, lab), newMACs[i]
			var logs bytes.Buffer
			r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, XDPMode: mode,
				Log: zerolog.New(zerolog.SyncWriter(&logs)),
				Lines: []LineConfig{
					{Name: "A", Interface: lab.DstIf, Group: group.Addr(), Port: group.Port()},
					{Name: "B", Interface: lab.DstIf, Group: unicast.Addr(), Port: unicast.Port()},
				}})
			defer r.Close()
			raw := xdpNewRawSender(t, lab)
			if _, err := lab.Exec(lab.Dst, "ip", "link", "set", "dev", lab.DstIf, "address", mac.String()); err != nil {
				t.Fatal(err)
			}

			pkts := make([]Packet, 8)
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				raw.send(t, frame(mac, unicast, "probe"))
				n, err := r.Receive(pkts)
				if err != nil {
					t.Fatal(err)
				}
				r.Release(pkts[:n])
				if n > 0 {
					break
				}
			}

			before := r.Stats().Extra.Get("xdp_other_host")
			var want []string
			for j := range 4 {
				raw.send(t, frame(mac, group, fmt.Sprintf("A %d", j)))
				raw.send(t, frame(mac, unicast, fmt.Sprintf("B %d", j)))
				raw.send(t, frame(old, unicast, "to the old address"))
				want = append(want, fmt.Sprintf("A %d", j), fmt.Sprintf("B %d", j))
			}
			raw.send(t, frame(mac, group, "end"))
			want = append(want, "end")
			// Without a probe sent again just as the last arrived.
			got := slices.DeleteFunc(receiveUntilEnd(t, r), func(s string) bool { return s == "probe" })
			otherHost := r.Stats().Extra.Get("xdp_other_host") - before
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Errorf("after the MAC address changed from %v to %v: received %q,\nwant %q", old, mac, got, want)
			}
			if otherHost != 4 {
				t.Errorf("xdp_other_host counted %d frames, want 4 (those to the old address %v, none to the new %v)", otherHost, old, mac)
			}
			if n := strings.Count(logs.String(), "MAC address changed"); n != 1 {
				t.Errorf("the change was logged %d times, want once; log:\n%s", n, logs.String())
			}
			// Receive runs it once a poll timeout: with the address
			// unchanged it allocates nothing.
			if a, exact := race.AllocsPerRun(t, 20, r.(*xdpRx).followMACs); exact && a != 0 {
				t.Errorf("followMACs allocates %v times with the address unchanged", a)
			}
		})
	}
}

// TestXDPFollowsMACAtOnce: the interface's new MAC address reaches the
// program when the kernel announces it (an rtnetlink link notification
// wakes the receive thread), not with the checks a poll timeout later: a
// poll timeout of a minute here, so that only the notification can make
// a frame to the new address arrive. Probes to a unicast line, sent to the
// new address every 5 ms after the change, must arrive within the test's
// bound, few of them counted in xdp_other_host (sent before the thread
// woke). Before, every line frame to the new address counted there for up
// to a poll timeout (the handler's default: 5 ms; the package's: 100 ms)
// and was lost to its line: a gap for recovery. A busy-polling receiver
// never waits in poll(2): it reads the notifications every
// busyCheckBatches passes (before, it never read them, and took the
// change with its checks a poll timeout later: "none of N line frames
// sent to the new address in 20 s arrived").
func TestXDPFollowsMACAtOnce(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "m191"})
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	unicast := netip.AddrPortFrom(lab.DstIP, xdpTestPort+1)
	newMACs := []net.HardwareAddr{{0x02, 0x19, 0x01, 0, 0, 0x01}, {0x02, 0x19, 0x01, 0, 0, 0x02}, {0x02, 0x19, 0x01, 0, 0, 0x03}}
	for i, tc := range []struct {
		name, mode string
		busyPoll   bool
	}{{"native", "native", false}, {"generic", "generic", false}, {"busy poll", "native", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			r := xdpOpen(t, lab, Config{PollTimeout: time.Minute, XDPMode: tc.mode, BusyPoll: tc.busyPoll,
				Log:   zerolog.New(zerolog.SyncWriter(&logs)),
				Lines: []LineConfig{{Name: "B", Interface: lab.DstIf, Group: unicast.Addr(), Port: unicast.Port()}}})
			defer r.Close()
			// The start's checks are done: the next in a minute.
			r.(*xdpRx).checkedAt = time.Now()
			got := make(chan string, 4096)
			done := make(chan struct{})
			go func() {
				defer close(done)
				pkts := make([]Packet, 8)
				for {
					n, err := r.Receive(pkts)
					for _, p := range pkts[:n] {
						select {
						case got <- string(p.Data):
						default:
						}
					}
					r.Release(pkts[:n])
					if err != nil {
						return
					}
				}
			}()
			raw := xdpNewRawSender(t, lab)
			mac := newMACs[i]
			probe := xdpFrame(src, unicast, nil, 0, []byte("probe"))
			copy(probe, mac)
			xdpSeal(probe, 14, true)
			if _, err := lab.Exec(lab.Dst, "ip", "link", "set", "dev", lab.DstIf, "address", mac.String()); err != nil {
				t.Fatal(err)
			}
			sent, arrived := 0, false
			for deadline := time.Now().Add(20 * time.Second); !arrived && time.Now().Before(deadline); {
				raw.send(t, probe)
				sent++
				select {
				case <-got:
					arrived = true
				case <-time.After(5 * time.Millisecond):
				}
			}
			other := r.Stats().Extra.Get("xdp_other_host")
			r.Close()
			<-done
			if !arrived {
				t.Fatalf("none of %d line frames sent to the new address %v in 20 s arrived (poll timeout 1m); %d counted in xdp_other_host", sent, mac, other)
			}
			t.Logf("%d probes sent, %d counted in xdp_other_host before the program had the new address", sent, other)
			if n := strings.Count(logs.String(), "MAC address changed"); n != 1 {
				t.Errorf("the change was logged %d times, want once; log:\n%s", n, logs.String())
			}
		})
	}
}

// TestXDPFollowsMACWhileBusy: a receiver that never waits, each Receive
// returning the next of a backlog of line frames, takes the interface's
// new MAC address within busyCheckBatches batches, from the link
// notification it reads itself (poll(2), which would say it is there, is
// not called): a frame to the new address sent after 3*busyCheckBatches
// such batches is the line's. The poll timeout is a minute, so the checks
// the receiver runs once a poll timeout cannot be what followed it.
// Before, it took the change only with those checks, or once it waited:
// "the probe to the new address ... counted in xdp_other_host".
func TestXDPFollowsMACWhileBusy(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h203"})
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	unicast := netip.AddrPortFrom(lab.DstIP, xdpTestPort+1)
	group := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	r := xdpOpen(t, lab, Config{PollTimeout: time.Minute, Lines: []LineConfig{
		{Name: "A", Interface: lab.DstIf, Group: group.Addr(), Port: group.Port()},
		{Name: "B", Interface: lab.DstIf, Group: unicast.Addr(), Port: unicast.Port()}}})
	defer r.Close()
	x := r.(*xdpRx)
	x.checkedAt = time.Now() // the start's checks are done: the next in a minute
	raw := xdpNewRawSender(t, lab)
	// The backlog: line A's frames, none read yet (the rx ring holds them).
	const backlog = 4 * busyCheckBatches
	redirected := func() uint64 { return r.Stats().Extra.Get("xdp_redirected") }
	base := redirected()
	for i := range backlog {
		f := xdpFrame(src, group, nil, 0, []byte(fmt.Sprintf("a %d", i)))
		xdpSeal(f, 14, true)
		raw.send(t, f)
	}
	waitCounter := func(what string, ok func() bool) {
		t.Helper()
		for i := 0; !ok(); i++ {
			if i == 2000 {
				t.Fatalf("timed out waiting for %s; stats %+v", what, r.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCounter("the backlog to be redirected", func() bool { return redirected()-base >= backlog })
	mac := net.HardwareAddr{0x02, 0x20, 0x03, 0, 0, 0x01}
	if _, err := lab.Exec(lab.Dst, "ip", "link", "set", "dev", lab.DstIf, "address", mac.String()); err != nil {
		t.Fatal(err)
	}
	pkts := make([]Packet, 1)
	for i := range 3 * busyCheckBatches {
		n, err := r.Receive(pkts)
		if err != nil || n != 1 || string(pkts[0].Data) != fmt.Sprintf("a %d", i) {
			t.Fatalf("Receive %d of the backlog: %d packets (%q), %v", i, n, pkts[0].Data, err)
		}
		r.Release(pkts[:n])
	}
	other := r.Stats().Extra.Get("xdp_other_host")
	probe := xdpFrame(src, unicast, nil, 0, []byte("probe"))
	copy(probe, mac)
	xdpSeal(probe, 14, true)
	before := redirected()
	raw.send(t, probe)
	waitCounter("the probe to reach the program", func() bool {
		return redirected() > before || r.Stats().Extra.Get("xdp_other_host") > other
	})
	if n := r.Stats().Extra.Get("xdp_other_host") - other; n != 0 {
		t.Fatalf("the probe to the new address %v, sent after %d batches returned without waiting, counted in xdp_other_host: the receiver has not followed the change", mac, 3*busyCheckBatches)
	}
	for range backlog - 3*busyCheckBatches + 1 {
		n, err := r.Receive(pkts)
		if err != nil || n != 1 {
			t.Fatalf("Receive: %d packets, %v", n, err)
		}
		last := string(pkts[0].Data)
		r.Release(pkts[:n])
		if last == "probe" {
			return
		}
	}
	t.Fatal("the probe, redirected, was not received after the backlog")
}
