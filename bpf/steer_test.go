package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

func loadForTest(t testing.TB) *Program { return loadWithForTest(t, LoadOptions{}) }

func loadWithForTest(t testing.TB, o LoadOptions) *Program {
	t.Helper()
	p, err := LoadWith(o)
	if errors.Is(err, ErrNotSupported) {
		netlab.SkipOrFail(t, "loading XDP programs", 5, 11, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func run(t testing.TB, p *Program, frame []byte) uint32 {
	t.Helper()
	ret, err := p.XDP().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("run program on %d-byte frame: %v", len(frame), err)
	}
	return ret
}

// runDelta runs frame through p and returns what that added to its
// counters.
func runDelta(t testing.TB, p *Program, frame []byte) Counters {
	t.Helper()
	before := counters(t, p)
	run(t, p, frame)
	return sub(counters(t, p), before)
}

func counters(t testing.TB, p *Program) Counters {
	t.Helper()
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sub(a, b Counters) Counters {
	return Counters{a.Redirected - b.Redirected, a.Passed - b.Passed, a.Malformed - b.Malformed, a.NoSocket - b.NoSocket, a.NoMeta - b.NoMeta, a.Fragmented - b.Fragmented,
		a.VLANOther - b.VLANOther, a.VLANUntagged - b.VLANUntagged, a.OtherHost - b.OtherHost}
}

// TestProgramFrames runs every frame of the shared table through the loaded
// program (BPF_PROG_TEST_RUN) and checks verdict and counters. No socket is
// in the XSKMAP, so line frames fall back to XDP_PASS and count as NoSocket.
// A frame of the line tagged with a VLAN ID other than 0 is the kernel's
// (a VLAN device's, or dropped): passed, VLANOther. So is one to another
// host's unicast MAC address (the interface's is SetMAC's): OtherHost.
func TestProgramFrames(t *testing.T) {
	p := loadForTest(t)
	if err := p.SetLine(testGroup, 26400, 0, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetMAC(testMAC); err != nil {
		t.Fatal(err)
	}
	var total Counters
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			before := counters(t, p)
			ret := run(t, p, tc.frame)
			if ret != VerdictPass {
				t.Errorf("verdict %d, want XDP_PASS (%d)", ret, VerdictPass)
			}
			d := sub(counters(t, p), before)
			var want Counters
			switch {
			case tc.class == ClassMalformed:
				want.Malformed = 1
			case tc.otherHost:
				want.OtherHost = 1
			case tc.tagged:
				want.VLANOther = 1
			case lineFirstFragment(tc.frame, netip.AddrPortFrom(testGroup, 26400)):
				want.Fragmented = 1
			case tc.line:
				want.NoSocket = 1
			default:
				want.Passed = 1
			}
			if d != want {
				t.Errorf("counter delta %+v, want %+v", d, want)
			}
			total.Malformed += want.Malformed
			total.NoSocket += want.NoSocket
			total.Passed += want.Passed
			total.Fragmented += want.Fragmented
			total.VLANOther += want.VLANOther
			total.OtherHost += want.OtherHost
		})
	}
	if got := counters(t, p); got != total {
		t.Errorf("total counters %+v, want %+v", got, total)
	}
}

func TestParseFrame(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			d, class := ParseFrame(tc.frame)
			if class != tc.class {
				t.Fatalf("class %v, want %v", class, tc.class)
			}
			if class != ClassUDP {
				return
			}
			if d.Src != netip.AddrPortFrom(testSource, 40000) {
				t.Errorf("source %v", d.Src)
			}
			if tc.line != (d.Dst == netip.AddrPortFrom(testGroup, 26400)) {
				t.Errorf("destination %v, line %v", d.Dst, tc.line)
			}
			if d.Tagged != tc.tagged {
				t.Errorf("Tagged %v, want %v", d.Tagged, tc.tagged)
			}
			if len(d.Payload) > 0 && !bytes.Contains(tc.frame, d.Payload) {
				t.Errorf("payload %q not in frame", d.Payload)
			}
		})
	}
}

func TestParseFrameAllocs(t *testing.T) {
	frame := frameSpec{src: netip.AddrPortFrom(testSource, 1), dst: netip.AddrPortFrom(testGroup, 2),
		payload: make([]byte, 100), vlans: []uint16{0x8100}, ipOptions: 4}.bytes()
	var n int
	if a, exact := race.AllocsPerRun(t, 1000, func() {
		d, _ := ParseFrame(frame)
		n += len(d.Payload)
	}); exact && a != 0 {
		t.Fatalf("ParseFrame allocates %v times per call", a)
	}
}

func TestProgramSourceFilter(t *testing.T) {
	p := loadForTest(t)
	if err := p.SetLine(testGroup, 26400, 1, testSource); err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(testGroup, 26400)
	good := frameSpec{src: netip.AddrPortFrom(testSource, 5), dst: dst, payload: []byte("x")}.bytes()
	bad := frameSpec{src: netip.AddrPortFrom(netip.MustParseAddr("10.99.0.3"), 5), dst: dst, payload: []byte("x")}.bytes()
	run(t, p, good)
	run(t, p, bad)
	if c := counters(t, p); c != (Counters{NoSocket: 1, Passed: 1}) {
		t.Fatalf("counters %+v, want one line frame and one passed", c)
	}
	if err := p.DeleteLine(testGroup, 26400); err != nil {
		t.Fatal(err)
	}
	run(t, p, good)
	if c := counters(t, p); c != (Counters{NoSocket: 1, Passed: 2}) {
		t.Fatalf("counters after DeleteLine %+v", c)
	}
}

func TestSetLineErrors(t *testing.T) {
	p := loadForTest(t)
	if err := p.SetLine(netip.MustParseAddr("ff02::1"), 1, 0, netip.Addr{}); err == nil {
		t.Error("SetLine accepted an IPv6 group")
	}
	if err := p.SetSocket(MaxQueues, 3); err == nil {
		t.Error("SetSocket accepted an out-of-range queue")
	}
	if err := p.DeleteSocket(0); err != nil {
		t.Errorf("DeleteSocket of an empty slot: %v", err)
	}
}

// TestCountersAllocs: Counters (read every 20 ms by the AF_XDP receiver's
// Stats) allocates nothing, and its raw per-CPU read sums to what
// cilium/ebpf's Map.Lookup reads.
func TestCountersAllocs(t *testing.T) {
	p := loadForTest(t)
	for range 3 {
		run(t, p, make([]byte, 60)) // not IPv4: passed
	}
	var c Counters
	allocs, exact := race.AllocsPerRun(t, 100, func() {
		var err error
		if c, err = p.Counters(); err != nil {
			panic(err)
		}
	})
	if exact && allocs != 0 {
		t.Errorf("Counters: %v allocations per call, want 0", allocs)
	}
	var per []steerCounters
	if err := p.objs.Stats.Lookup(uint32(0), &per); err != nil {
		t.Fatal(err)
	}
	var want Counters
	for _, v := range per {
		want = Counters{want.Redirected + v.Redirected, want.Passed + v.Passed, want.Malformed + v.Malformed,
			want.NoSocket + v.NoSocket, want.NoMeta + v.NoMeta, want.Fragmented + v.Fragmented,
			want.VLANOther + v.VlanOther, want.VLANUntagged + v.VlanUntagged, want.OtherHost + v.OtherHost}
	}
	if c != want || c.Passed+c.Malformed != 3 {
		t.Errorf("Counters = %+v, cilium/ebpf Lookup sums to %+v; want 3 frames counted", c, want)
	}
}

// lineFirstFragment reports whether frame is the first fragment (MF set,
// offset 0) of an IPv4 UDP datagram to line whose UDP header is in the
// frame: the program counts it as Fragmented.
func lineFirstFragment(frame []byte, line netip.AddrPort) bool {
	off := 14
	if len(frame) < off {
		return false
	}
	proto := binary.BigEndian.Uint16(frame[12:])
	for range 2 {
		if (proto != 0x8100 && proto != 0x88a8) || len(frame) < off+4 {
			break
		}
		proto = binary.BigEndian.Uint16(frame[off+2:])
		off += 4
	}
	if proto != 0x0800 || len(frame) < off+20 {
		return false
	}
	ip := frame[off:]
	ihl := int(ip[0]&0x0f) * 4
	fo := binary.BigEndian.Uint16(ip[6:])
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != 17 || fo&0x2000 == 0 || fo&0x1fff != 0 || len(ip) < ihl+8 {
		return false
	}
	totLen := int(binary.BigEndian.Uint16(ip[2:]))
	if totLen < ihl || totLen > len(ip) {
		return false
	}
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(ip[ihl+2:]))
	return dst == line
}

// TestParseFrameVLAN: Datagram.VLAN is the ID of a single 802.1Q tag, the
// one a VLAN device would take the frame on, and 0 otherwise.
func TestParseFrameVLAN(t *testing.T) {
	src, dst := netip.AddrPortFrom(testSource, 1), netip.AddrPortFrom(testGroup, 26400)
	for _, tc := range []struct {
		name  string
		vlans []uint16
		vids  []uint16
		want  uint16
	}{
		{"untagged", nil, nil, 0},
		{"802.1Q", []uint16{0x8100}, []uint16{100}, 100},
		{"802.1Q max id", []uint16{0x8100}, []uint16{4095}, 4095},
		{"priority tag", []uint16{0x8100}, []uint16{0}, 0},
		{"802.1ad", []uint16{0x88a8}, []uint16{100}, 0},
		{"qinq", []uint16{0x88a8, 0x8100}, []uint16{10, 100}, 0},
		{"two 802.1Q", []uint16{0x8100, 0x8100}, []uint16{100, 100}, 0},
	} {
		d, class := ParseFrame(frameSpec{src: src, dst: dst, vlans: tc.vlans, vids: tc.vids}.bytes())
		if class != ClassUDP || d.VLAN != tc.want {
			t.Errorf("%s: class %v, VLAN %d; want udp, %d", tc.name, class, d.VLAN, tc.want)
		}
	}
}

// TestProgramVLANLines: lines on VLANs (SetVLANLine) next to a line on
// the interface. Each frame must end where the kernel's VLAN devices
// would put it: a single 802.1Q tag of a VLAN line's ID goes to that line,
// a frame without a tag or with a priority tag to the interface's line of
// the pair, any other tag to the kernel (VLANOther), and a pair only VLAN
// lines use is passed and counted as VLANOther or VLANUntagged. The
// verdicts agree with ParseFrame's Datagram.VLAN (the receiver's matcher).
func TestProgramVLANLines(t *testing.T) {
	p := loadWithForTest(t, LoadOptions{VLANLines: true})
	shared := netip.AddrPortFrom(testGroup, 26400) // interface line and VLAN 100 line
	only := netip.AddrPortFrom(testGroup, 26401)   // VLAN 200 line only
	filtered := netip.AddrPortFrom(testGroup, 26402)
	other := netip.MustParseAddr("10.99.0.3")
	for _, err := range []error{
		p.SetLine(shared.Addr(), shared.Port(), 0, netip.Addr{}),
		p.SetVLANLine(100, shared.Addr(), shared.Port(), 1, netip.Addr{}),
		p.SetVLANLine(200, only.Addr(), only.Port(), 2, netip.Addr{}),
		// A VLAN line with a source filter decides alone: a frame of
		// another source does not fall back to the interface's line.
		p.SetLine(filtered.Addr(), filtered.Port(), 3, netip.Addr{}),
		p.SetVLANLine(100, filtered.Addr(), filtered.Port(), 4, other),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	src := netip.AddrPortFrom(testSource, 40000)
	line := Counters{NoSocket: 1}
	for _, tc := range []struct {
		name  string
		dst   netip.AddrPort
		vlans []uint16
		vids  []uint16
		want  Counters
	}{
		{"shared untagged", shared, nil, nil, line},
		{"shared vlan 100", shared, []uint16{0x8100}, []uint16{100}, line},
		{"shared priority tag", shared, []uint16{0x8100}, []uint16{0}, line},
		{"shared vlan 200", shared, []uint16{0x8100}, []uint16{200}, Counters{VLANOther: 1}},
		{"shared 802.1ad 100", shared, []uint16{0x88a8}, []uint16{100}, Counters{VLANOther: 1}},
		{"shared qinq", shared, []uint16{0x88a8, 0x8100}, []uint16{10, 100}, Counters{VLANOther: 1}},
		{"only vlan 200", only, []uint16{0x8100}, []uint16{200}, line},
		{"only vlan 100", only, []uint16{0x8100}, []uint16{100}, Counters{VLANOther: 1}},
		{"only priority tag", only, []uint16{0x8100}, []uint16{0}, Counters{VLANOther: 1}},
		{"only 802.1ad 200", only, []uint16{0x88a8}, []uint16{200}, Counters{VLANOther: 1}},
		{"only qinq inner 200", only, []uint16{0x88a8, 0x8100}, []uint16{10, 200}, Counters{VLANOther: 1}},
		{"only untagged", only, nil, nil, Counters{VLANUntagged: 1}},
		{"filtered vlan 100", filtered, []uint16{0x8100}, []uint16{100}, Counters{Passed: 1}},
		{"filtered vlan 101", filtered, []uint16{0x8100}, []uint16{101}, Counters{VLANOther: 1}},
		{"filtered untagged", filtered, nil, nil, line},
	} {
		frame := frameSpec{src: src, dst: tc.dst, payload: []byte("x"), vlans: tc.vlans, vids: tc.vids}.bytes()
		before := counters(t, p)
		if ret := run(t, p, frame); ret != VerdictPass {
			t.Errorf("%s: verdict %d, want XDP_PASS (no socket)", tc.name, ret)
		}
		if d := sub(counters(t, p), before); d != tc.want {
			t.Errorf("%s: counter delta %+v, want %+v", tc.name, d, tc.want)
		}
	}

	// Deleting the VLAN lines leaves the program as it was without them:
	// the pair only they used is gone, the interface's lines stay.
	for _, err := range []error{
		p.DeleteVLANLine(100, shared.Addr(), shared.Port()),
		p.DeleteVLANLine(200, only.Addr(), only.Port()),
		p.DeleteVLANLine(100, filtered.Addr(), filtered.Port()),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		dst  netip.AddrPort
		want Counters
	}{{shared, Counters{VLANOther: 1}}, {only, Counters{Passed: 1}}, {filtered, Counters{VLANOther: 1}}} {
		frame := frameSpec{src: src, dst: tc.dst, vlans: []uint16{0x8100}, vids: []uint16{100}}.bytes()
		before := counters(t, p)
		run(t, p, frame)
		if d := sub(counters(t, p), before); d != tc.want {
			t.Errorf("%v on vlan 100 after delete: counter delta %+v, want %+v", tc.dst, d, tc.want)
		}
	}
}

// TestVLANLineMarker: the interface's line of a pair that VLAN lines use
// is replaced by the marker when deleted, and set again over it.
func TestVLANLineMarker(t *testing.T) {
	p := loadWithForTest(t, LoadOptions{VLANLines: true})
	src := netip.AddrPortFrom(testSource, 40000)
	dst := netip.AddrPortFrom(testGroup, 26400)
	untagged := frameSpec{src: src, dst: dst}.bytes()
	step := func(name string, want Counters) {
		t.Helper()
		if d := runDelta(t, p, untagged); d != want {
			t.Errorf("%s: counter delta %+v, want %+v", name, d, want)
		}
	}
	if err := p.SetVLANLine(100, dst.Addr(), dst.Port(), 1, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	step("vlan line only", Counters{VLANUntagged: 1})
	if err := p.SetLine(dst.Addr(), dst.Port(), 0, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	step("interface line set", Counters{NoSocket: 1})
	if err := p.DeleteLine(dst.Addr(), dst.Port()); err != nil {
		t.Fatal(err)
	}
	step("interface line deleted", Counters{VLANUntagged: 1})
	if err := p.DeleteLine(dst.Addr(), dst.Port()); err == nil {
		t.Error("DeleteLine of a line deleted already: no error")
	}
	for _, vlan := range []uint16{0, MaxVLAN + 1} {
		if err := p.SetVLANLine(vlan, dst.Addr(), dst.Port(), 1, netip.Addr{}); err == nil {
			t.Errorf("SetVLANLine accepted vlan %d", vlan)
		}
	}
	if err := p.SetLine(dst.Addr(), dst.Port(), lineVLANOnly, netip.Addr{}); err == nil {
		t.Error("SetLine accepted the reserved line number")
	}
	if err := loadForTest(t).SetVLANLine(100, dst.Addr(), dst.Port(), 1, netip.Addr{}); err == nil {
		t.Error("SetVLANLine on a program loaded without VLAN lines: no error")
	}
}

// frameVLAN returns the VLAN ID of frame's tag when it has a single 802.1Q
// tag (else 0), and how many tags it has (up to the two the program reads).
func frameVLAN(frame []byte) (vlan uint16, tags int) {
	off := 12
	for tags < 2 && len(frame) >= off+6 {
		tpid := binary.BigEndian.Uint16(frame[off:])
		if tpid != 0x8100 && tpid != 0x88a8 {
			break
		}
		tags++
		off += 4
	}
	if tags == 1 && binary.BigEndian.Uint16(frame[12:]) == 0x8100 {
		vlan = binary.BigEndian.Uint16(frame[14:]) & 0x0fff
	}
	return vlan, tags
}

// frameTagged reports whether one of frame's tags (up to the two the
// program reads) has a VLAN ID other than 0.
func frameTagged(frame []byte) bool {
	for off := 12; off <= 16 && len(frame) >= off+4; off += 4 {
		tpid := binary.BigEndian.Uint16(frame[off:])
		if tpid != 0x8100 && tpid != 0x88a8 {
			break
		}
		if binary.BigEndian.Uint16(frame[off+2:])&0x0fff != 0 {
			return true
		}
	}
	return false
}

// frameOtherHost reports whether frame is to another host's unicast MAC
// address: neither multicast nor broadcast (the group bit), nor testMAC.
func frameOtherHost(frame []byte) bool {
	return len(frame) >= 6 && frame[0]&1 == 0 && !bytes.Equal(frame[:6], testMAC)
}

// TestClassifyMissingHelper: the verifier's refusal of a helper the kernel
// lacks, or lacks for XDP programs, is a missing feature (ErrNotSupported,
// which the auto chain falls back on), told only by its log: the errno is
// EINVAL. Before, it was returned as it came, and a kernel without a helper
// the program calls (bpf_ktime_get_tai_ns before 6.1) failed the xdp
// backend and the whole auto chain.
func TestClassifyMissingHelper(t *testing.T) {
	load := func(insns asm.Instructions) error {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: insns})
		if err == nil {
			p.Close()
			return errors.New("loaded")
		}
		return err
	}
	for _, tc := range []struct {
		name  string
		insns asm.Instructions
	}{
		{"helper of another program type", asm.Instructions{asm.FnSkbStoreBytes.Call(), asm.Mov.Imm(asm.R0, 2), asm.Return()}},
		{"helper no kernel has", asm.Instructions{asm.BuiltinFunc(1 << 20).Call(), asm.Mov.Imm(asm.R0, 2), asm.Return()}},
	} {
		err := load(tc.insns)
		var ve *ebpf.VerifierError
		if errors.Is(err, unix.EPERM) {
			netlab.SkipOrFail(t, "loading XDP programs", 5, 11, err)
		}
		if !errors.As(err, &ve) {
			t.Fatalf("%s: %v, want a verifier error", tc.name, err)
		}
		if !errors.Is(classify(err), ErrNotSupported) {
			t.Errorf("%s: %v: not classified as not supported", tc.name, err)
		}
	}
}

// TestSteers: Steers, asked of a loaded program by its ID as of another
// process's, agrees with the program's own lookup: a line on the
// interface takes untagged frames, a VLAN line its own VLAN's, and a pair
// only VLAN lines use (the marker) takes no untagged frame.
func TestSteers(t *testing.T) {
	p := loadWithForTest(t, LoadOptions{VLANLines: true})
	plain := netip.AddrPortFrom(testGroup, 26400)
	only := netip.AddrPortFrom(testGroup, 26401) // VLAN 200 only
	if err := p.SetLine(plain.Addr(), plain.Port(), 0, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetVLANLine(200, only.Addr(), only.Port(), 1, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	info, err := p.XDP().Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	for _, tc := range []struct {
		dst  netip.AddrPort
		vlan uint16
		want bool
	}{
		{plain, 0, true}, {plain, 100, false}, {only, 0, false}, {only, 200, true}, {only, 100, false},
		{netip.AddrPortFrom(testGroup, 26402), 0, false},
	} {
		ours, steered, err := Steers(uint32(id), tc.dst.Addr(), tc.dst.Port(), tc.vlan)
		if err != nil || !ours || steered != tc.want {
			t.Errorf("Steers(%v on vlan %d) = %v, %v, %v; want true, %v, nil", tc.dst, tc.vlan, ours, steered, err, tc.want)
		}
	}
}

// TestSetMAC: a line frame to a unicast MAC address is the line's only when
// the address is the interface's, as SetMAC last set it.
func TestSetMAC(t *testing.T) {
	p := loadForTest(t)
	if err := p.SetLine(testGroup, 26400, 0, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	frame := frameSpec{src: netip.AddrPortFrom(testSource, 1), dst: netip.AddrPortFrom(testGroup, 26400), dstMAC: testMAC}.bytes()
	for _, tc := range []struct {
		set  []byte // SetMAC's address before the frame, nil: none
		want Counters
	}{{nil, Counters{OtherHost: 1}}, {testMAC, Counters{NoSocket: 1}}, {otherMAC, Counters{OtherHost: 1}}} {
		if tc.set != nil {
			if err := p.SetMAC(tc.set); err != nil {
				t.Fatal(err)
			}
		}
		if d := runDelta(t, p, frame); d != tc.want {
			t.Errorf("frame to %x, the interface's address %x: counter delta %+v, want %+v", frame[:6], tc.set, d, tc.want)
		}
	}
	if err := p.SetMAC(testMAC[:5]); err == nil {
		t.Error("SetMAC took a 5-byte address")
	}
}

// TestSetMACNeverTorn changes the interface's address back and forth
// (SetMAC) while the program runs on frames to the two addresses that mix
// one's first four bytes with the other's last two: no state SetMAC sets
// takes either, so a frame to them taken as the interface's saw half of
// one address and half of the other (the two halves written apart).
func TestSetMACNeverTorn(t *testing.T) {
	p := loadForTest(t)
	if err := p.SetLine(testGroup, 26400, 0, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	a := []byte{0x02, 0, 0, 0x0a, 0, 0x0a}
	b := []byte{0x02, 0, 0, 0x0b, 0, 0x0b}
	mixed := [][]byte{{0x02, 0, 0, 0x0a, 0, 0x0b}, {0x02, 0, 0, 0x0b, 0, 0x0a}}
	var frames [][]byte
	for _, mac := range mixed {
		frames = append(frames, frameSpec{src: netip.AddrPortFrom(testSource, 1), dst: netip.AddrPortFrom(testGroup, 26400), dstMAC: mac}.bytes())
	}
	stop := make(chan struct{})
	done := make(chan error)
	changes := 0
	go func() {
		for {
			for _, mac := range [][]byte{a, b} {
				if err := p.SetMAC(mac); err != nil {
					done <- err
					return
				}
				changes++
			}
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
		}
	}()
	before := counters(t, p)
	runs := 0
	for range 50 {
		for _, f := range frames {
			if _, err := p.XDP().Run(&ebpf.RunOptions{Data: f, Repeat: 5000}); err != nil {
				close(stop)
				<-done
				t.Fatal(err)
			}
			runs += 5000
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d := sub(counters(t, p), before)
	if d.NoSocket != 0 {
		t.Errorf("%d of %d frames to an address SetMAC never set (half %x, half %x) were taken as the interface's, over %d changes: %+v", d.NoSocket, runs, a, b, changes, d)
	}
}
