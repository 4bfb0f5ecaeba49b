package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// xdpMD is struct xdp_md, the context BPF_PROG_TEST_RUN takes and returns
// for XDP: on input Data is the length of the metadata at the start of
// RunOptions.Data (0 here) and DataEnd the whole length; on output Data is
// the length of the metadata in front of the frame in DataOut.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// xskForMap returns an AF_XDP socket for the XSKMAP: a redirect to it
// succeeds in a test run, which never delivers the frame, so it need not be
// bound.
func xskForMap(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		netlab.SkipOrFail(t, "AF_XDP", 5, 11, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// runMeta runs the program on frame with a context, so that the kernel
// returns the metadata the program put in front of the frame.
func runMeta(t *testing.T, p *Program, frame []byte) (verdict uint32, meta, data []byte) {
	t.Helper()
	in := xdpMD{DataEnd: uint32(len(frame))}
	var out xdpMD
	buf := make([]byte, len(frame)+64)
	opts := &ebpf.RunOptions{Data: frame, DataOut: buf, Context: in, ContextOut: &out}
	ret, err := p.XDP().Run(opts)
	if err != nil {
		t.Fatalf("run program with xdp_md context: %v", err)
	}
	if out.Data > out.DataEnd || int(out.DataEnd) > len(opts.DataOut) {
		t.Fatalf("context out %+v for %d bytes out", out, len(opts.DataOut))
	}
	return ret, opts.DataOut[:out.Data], opts.DataOut[out.Data:out.DataEnd]
}

// TestProgramMeta: a redirected line frame carries MetaLen bytes of
// metadata with the magic word and a CLOCK_TAI time taken while the program
// ran; frames the program does not redirect carry none.
func TestProgramMeta(t *testing.T) {
	p := loadForTest(t)
	if errors.Is(ProbeMeta(), ErrNoMetaHelper) {
		_, _, release := netlab.KernelVersion()
		t.Skipf("kernel %s: %v, so no frame carries metadata (TestProgramNoMeta checks the program without it)", release, p.NoMeta())
	}
	checkMeta(t, p, true)
}

// TestProgramNoMeta: loaded without metadata (as on a kernel without
// bpf_xdp_adjust_meta), the program redirects line frames as before, with
// no metadata in front, and counts each in NoMeta.
func TestProgramNoMeta(t *testing.T) {
	p := loadWithForTest(t, LoadOptions{NoMeta: true})
	if p.NoMeta() == nil {
		t.Fatal("NoMeta() = nil for a program loaded with LoadOptions.NoMeta")
	}
	checkMeta(t, p, false)
}

// checkMeta sends p a line frame and another frame, without and then with
// a socket, and checks verdicts, metadata (if wantMeta) and counters.
func checkMeta(t *testing.T, p *Program, wantMeta bool) {
	t.Helper()
	if err := p.SetLine(testGroup, 26400, 0, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	line := frameSpec{src: netip.AddrPortFrom(testSource, 40000), dst: netip.AddrPortFrom(testGroup, 26400),
		payload: []byte("payload"), vlans: []uint16{0x8100}, vids: []uint16{0}}.bytes()
	other := frameSpec{src: netip.AddrPortFrom(testSource, 40000), dst: netip.AddrPortFrom(testGroup, 26401),
		payload: []byte("payload")}.bytes()

	// No socket: the line frame goes to the kernel, without metadata.
	if v, meta, data := runMeta(t, p, line); v != VerdictPass || len(meta) != 0 || !bytes.Equal(data, line) {
		t.Errorf("no socket: verdict %d, %d bytes of metadata, frame intact %v; want XDP_PASS, 0, true", v, len(meta), bytes.Equal(data, line))
	}
	if err := p.SetSocket(0, xskForMap(t)); err != nil {
		t.Fatal(err)
	}
	if v, meta, _ := runMeta(t, p, other); v != VerdictPass || len(meta) != 0 {
		t.Errorf("other frame: verdict %d, %d bytes of metadata; want XDP_PASS, 0", v, len(meta))
	}

	var before, after unix.Timespec
	unix.ClockGettime(unix.CLOCK_TAI, &before)
	v, meta, data := runMeta(t, p, line)
	unix.ClockGettime(unix.CLOCK_TAI, &after)
	if v != VerdictRedirect {
		t.Fatalf("line frame with a socket: verdict %d, want XDP_REDIRECT", v)
	}
	if !bytes.Equal(data, line) {
		t.Errorf("frame changed by the program")
	}
	if !wantMeta {
		if len(meta) != 0 {
			t.Errorf("%d bytes of metadata (% x), want none", len(meta), meta)
		}
		if c := counters(t, p); c.Redirected != 1 || c.NoMeta != 1 || c.NoSocket != 1 || c.Passed != 1 {
			t.Errorf("counters %+v, want 1 redirected without metadata, 1 without socket, 1 passed", c)
		}
		return
	}
	if len(meta) != MetaLen {
		t.Fatalf("%d bytes of metadata (% x), want %d", len(meta), meta, MetaLen)
	}
	if m := binary.NativeEndian.Uint32(meta); m != MetaMagic {
		t.Errorf("magic %#x, want %#x", m, MetaMagic)
	}
	tai, ok := ParseMeta(meta)
	if !ok || tai < before.Nano() || tai > after.Nano() {
		t.Errorf("ParseMeta = %d, %v; want a time in [%d, %d]", tai, ok, before.Nano(), after.Nano())
	}
	if c := counters(t, p); c.Redirected != 1 || c.NoMeta != 0 || c.NoSocket != 1 || c.Passed != 1 {
		t.Errorf("counters %+v, want 1 redirected with metadata, 1 without socket, 1 passed", c)
	}
}

func TestParseMeta(t *testing.T) {
	var b [16]byte
	binary.NativeEndian.PutUint32(b[4:], MetaMagic)
	ts := int64(1790000000123456789)
	binary.NativeEndian.PutUint32(b[8:], uint32(uint64(ts)&0xffffffff))
	binary.NativeEndian.PutUint32(b[12:], uint32(uint64(ts)>>32))
	if got, ok := ParseMeta(b[:]); !ok || got != ts {
		t.Errorf("ParseMeta = %d, %v; want %d, true", got, ok, ts)
	}
	if _, ok := ParseMeta(b[5:]); ok {
		t.Error("ParseMeta accepted 11 bytes")
	}
	ClearMeta(b[:])
	if _, ok := ParseMeta(b[:]); ok {
		t.Error("ParseMeta accepted cleared metadata")
	}
	if a, exact := race.AllocsPerRun(t, 100, func() {
		ParseMeta(b[:])
		ClearMeta(b[:])
	}); exact && a != 0 {
		t.Errorf("ParseMeta+ClearMeta allocate %v times", a)
	}
}

func TestTAIOffset(t *testing.T) {
	off, err := TAIOffset()
	if err != nil {
		t.Fatal(err)
	}
	if off%int64(time.Second) != 0 || off < 0 || off > 100*int64(time.Second) {
		t.Errorf("TAI offset %v: want whole seconds in [0, 100s]", time.Duration(off))
	}
	t.Logf("CLOCK_TAI - CLOCK_REALTIME = %v", time.Duration(off))
	if a, exact := race.AllocsPerRun(t, 100, func() {
		if _, err := TAIOffset(); err != nil {
			panic(err)
		}
	}); exact && a != 0 {
		t.Errorf("TAIOffset allocates %v times", a)
	}
}

// TestProbeMetaAgrees: ProbeMeta, on which LoadWith leaves the metadata
// out and TestProgramMeta skips, says what the verifier does with the
// steering program itself: loaded with stamp_meta 1 (the call walked), it
// loads where ProbeMeta finds the helper, and is refused naming
// bpf_xdp_adjust_meta where ProbeMeta says the kernel refuses it. A probe
// answering "missing" on a kernel that has the helper would leave every
// frame unstamped there and TestProgramMeta skipped.
func TestProbeMetaAgrees(t *testing.T) {
	probe := ProbeMeta()
	if probe != nil && !errors.Is(probe, ErrNoMetaHelper) {
		if errors.Is(probe, ErrNotSupported) {
			netlab.SkipOrFail(t, "loading XDP programs", 5, 11, probe)
		}
		t.Fatal(probe)
	}
	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	var objs steerObjects
	err = spec.LoadAndAssign(&objs, nil)
	if err == nil {
		objs.Close()
	}
	var ve *ebpf.VerifierError
	_, _, release := netlab.KernelVersion()
	switch {
	case probe == nil && err != nil:
		t.Fatalf("kernel %s: ProbeMeta found bpf_xdp_adjust_meta, the program calling it is refused: %v", release, err)
	case probe != nil && err == nil:
		t.Fatalf("kernel %s: ProbeMeta: %v, yet the program calling bpf_xdp_adjust_meta loads", release, probe)
	case probe != nil && (!errors.As(err, &ve) || !strings.Contains(fmt.Sprintf("%+v", ve), "bpf_xdp_adjust_meta")):
		t.Fatalf("kernel %s: ProbeMeta: %v; the program calling bpf_xdp_adjust_meta is refused for another reason: %v", release, probe, err)
	}
	t.Logf("kernel %s: ProbeMeta %v; the program with the call: %v", release, probe, err)
}
