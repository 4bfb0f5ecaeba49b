package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

func loadForTest(t testing.TB) *Program {
	t.Helper()
	p, err := Load()
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

func counters(t testing.TB, p *Program) Counters {
	t.Helper()
	c, err := p.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sub(a, b Counters) Counters {
	return Counters{a.Redirected - b.Redirected, a.Passed - b.Passed, a.Malformed - b.Malformed, a.NoSocket - b.NoSocket, a.NoMeta - b.NoMeta, a.Fragmented - b.Fragmented}
}

// TestProgramFrames runs every frame of the shared table through the loaded
// program (BPF_PROG_TEST_RUN) and checks verdict and counters. No socket is
// in the XSKMAP, so line frames fall back to XDP_PASS and count as NoSocket.
func TestProgramFrames(t *testing.T) {
	p := loadForTest(t)
	if err := p.SetLine(testGroup, 26400, 0, netip.Addr{}); err != nil {
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
	if a := testing.AllocsPerRun(1000, func() {
		d, _ := ParseFrame(frame)
		n += len(d.Payload)
	}); a != 0 {
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
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if c, err = p.Counters(); err != nil {
			panic(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Counters: %v allocations per call, want 0", allocs)
	}
	var per []steerCounters
	if err := p.objs.Stats.Lookup(uint32(0), &per); err != nil {
		t.Fatal(err)
	}
	var want Counters
	for _, v := range per {
		want = Counters{want.Redirected + v.Redirected, want.Passed + v.Passed, want.Malformed + v.Malformed,
			want.NoSocket + v.NoSocket, want.NoMeta + v.NoMeta, want.Fragmented + v.Fragmented}
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
