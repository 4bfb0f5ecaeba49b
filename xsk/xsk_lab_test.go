package xsk_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
	"github.com/marketfeed/feedhandler/xsk"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

var (
	group = netip.MustParseAddr("233.54.12.111")
	port  = uint16(26477)
)

// sender is a plain UDP socket in the lab's source namespace.
type sender struct{ fd int }

func newSender(t *testing.T, lab *netlab.Lab) *sender {
	t.Helper()
	return &sender{fd: lab.UDPSocket(t, lab.Src)}
}

// sendPaced sends n datagrams from a goroutine, pausing every 32 so that
// the veth ring does not drop bursts; the returned channel yields the
// sender's error.
func (s *sender) sendPaced(to netip.AddrPort, n int, payload func(i int) []byte) <-chan error {
	return netlab.SendPaced(s.fd, to, n, time.Millisecond, payload)
}

// steer is the XDP program attached in the lab's receiving namespace.
type steer struct {
	prog    *bpf.Program
	link    link.Link
	ifindex int
}

func attach(t *testing.T, lab *netlab.Lab, mode bpf.Mode) *steer {
	t.Helper()
	st := &steer{}
	err := lab.Do(lab.Dst, func() error {
		ifi, err := net.InterfaceByName(lab.DstIf)
		if err != nil {
			return err
		}
		st.ifindex = ifi.Index
		if st.prog, err = bpf.Load(); err != nil {
			return err
		}
		if err := st.prog.SetLine(group, port, 0, netip.Addr{}); err != nil {
			return err
		}
		st.link, err = st.prog.Attach(ifi.Index, mode)
		return err
	})
	if errors.Is(err, bpf.ErrNotSupported) {
		netlab.SkipOrFail(t, "XDP program load/attach", 5, 11, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.link.Close()
		st.prog.Close()
	})
	return st
}

func openSocket(t *testing.T, lab *netlab.Lab, cfg xsk.Config) *xsk.Socket {
	t.Helper()
	var s *xsk.Socket
	err := lab.Do(lab.Dst, func() error {
		var err error
		s, err = xsk.Open(cfg)
		return err
	})
	if errors.Is(err, xsk.ErrNotSupported) {
		netlab.SkipOrFail(t, "AF_XDP socket", 5, 11, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// receive collects n payloads for the test line from s, failing after a
// bounded time.
func receive(t *testing.T, s *xsk.Socket, n int) [][]byte {
	t.Helper()
	var out [][]byte
	descs := make([]xsk.Desc, 64)
	addrs := make([]uint64, 0, 64)
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n {
		if time.Now().After(deadline) {
			st, _ := s.Statistics()
			t.Fatalf("received %d of %d datagrams before the deadline; xsk statistics %+v", len(out), n, st)
		}
		if _, err := s.Wait(50 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		k := s.Receive(descs)
		addrs = addrs[:0]
		for _, d := range descs[:k] {
			dg, class := bpf.ParseFrame(s.Data(d))
			if class != bpf.ClassUDP || dg.Dst != netip.AddrPortFrom(group, port) {
				t.Errorf("unexpected frame redirected: class %v, destination %v", class, dg.Dst)
			} else {
				out = append(out, append([]byte(nil), dg.Payload...))
			}
			addrs = append(addrs, d.Addr)
		}
		if s.Fill(addrs) != len(addrs) {
			t.Fatal("fill ring refused frames the socket owns")
		}
	}
	return out
}

func TestSocketReceive(t *testing.T) {
	for _, mode := range []bpf.Mode{bpf.ModeNative, bpf.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{Prefix: "xk"})
			st := attach(t, lab, mode)
			// More frames than the test sends: a receive loop starved
			// until the sender is done still finds them all (see
			// TestSharedUMEM).
			s := openSocket(t, lab, xsk.Config{Ifindex: st.ifindex, Queue: 0, FillSize: 512, RxSize: 512, FrameSize: 2048})
			defer s.Close()
			if s.ZeroCopy() {
				t.Log("veth bound in zero-copy mode")
			} else {
				t.Log("veth refused zero-copy, bound in copy mode")
			}
			if err := st.prog.SetSocket(0, s.FD()); err != nil {
				t.Fatal(err)
			}
			snd := newSender(t, lab)
			const n = 300
			errc := snd.sendPaced(netip.AddrPortFrom(group, port), n, func(i int) []byte {
				return []byte(fmt.Sprintf("datagram %04d", i))
			})
			got := receive(t, s, n)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			for i, p := range got {
				if want := fmt.Sprintf("datagram %04d", i); string(p) != want {
					t.Fatalf("datagram %d is %q, want %q", i, p, want)
				}
			}
			c, err := st.prog.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if c.Redirected != n {
				t.Errorf("program redirected %d frames, want %d (%+v)", c.Redirected, n, c)
			}
			stats, err := s.Statistics()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("xsk statistics %+v, program counters %+v", stats, c)
			if stats.RxInvalidDescs != 0 {
				t.Errorf("kernel saw %d invalid fill descriptors", stats.RxInvalidDescs)
			}
		})
	}
}

// TestZeroCopyRefused: veth has no zero-copy, so requiring it must fail with
// EOPNOTSUPP and the automatic mode must bind in copy mode.
func TestZeroCopyNegotiation(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "xz"})
	st := attach(t, lab, bpf.ModeNative)
	err := lab.Do(lab.Dst, func() error {
		s, err := xsk.Open(xsk.Config{Ifindex: st.ifindex, ZeroCopy: xsk.ZeroCopyOn, FillSize: 64, RxSize: 64})
		if err == nil {
			s.Close()
			return errors.New("veth accepted XDP_ZEROCOPY")
		}
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("zero-copy bind on veth: %w, want EOPNOTSUPP", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := openSocket(t, lab, xsk.Config{Ifindex: st.ifindex, FillSize: 64, RxSize: 64})
	defer s.Close()
	if s.ZeroCopy() {
		t.Fatal("automatic mode reports zero-copy on veth")
	}
}

// TestRebindAfterClose closes and reopens a socket on the same queue
// several times: bind must ride out the kernel's asynchronous teardown
// (EBUSY), and no fd may leak.
func TestRebindAfterClose(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "xr"})
	st := attach(t, lab, bpf.ModeNative)
	before := netlab.KernelFDs()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	for i := range 5 {
		s := openSocket(t, lab, xsk.Config{Ifindex: st.ifindex, FillSize: 64, RxSize: 64, Log: log})
		if err := st.prog.SetSocket(0, s.FD()); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
	}
	for fd, what := range netlab.KernelFDs() {
		if _, ok := before[fd]; !ok {
			t.Errorf("fd %s (%s) leaked", fd, what)
		}
	}
}

// TestStatistics overflows the rx ring (nobody reads) and the fill ring
// (frames not given back), and checks that the kernel's counters say so.
func TestStatistics(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "xt"})
	st := attach(t, lab, bpf.ModeNative)
	s := openSocket(t, lab, xsk.Config{Ifindex: st.ifindex, FillSize: 128, RxSize: 32, FrameSize: 2048})
	defer s.Close()
	if err := st.prog.SetSocket(0, s.FD()); err != nil {
		t.Fatal(err)
	}
	snd := newSender(t, lab)
	to := netip.AddrPortFrom(group, port)
	// 100 datagrams: 32 fill the rx ring, the rest find it full.
	if err := <-snd.sendPaced(to, 100, func(int) []byte { return []byte("x") }); err != nil {
		t.Fatal(err)
	}
	stats := waitStats(t, s, func(st xsk.Statistics) bool { return st.RxRingFull+st.RxDropped >= 100-32 })
	t.Logf("rx ring full: %+v", stats)
	if stats.RxRingFull == 0 {
		t.Errorf("rx ring overflowed but RxRingFull is 0: %+v", stats)
	}
	// Read everything without returning frames: 128-32 frames remain on
	// the fill ring, so of 200 more datagrams at most 96 fit.
	drainNoFill := func() int {
		descs := make([]xsk.Desc, 64)
		total := 0
		for {
			n := s.Receive(descs)
			if n == 0 {
				return total
			}
			total += n
		}
	}
	got := drainNoFill()
	for i := 0; i < 4; i++ {
		if err := <-snd.sendPaced(to, 50, func(int) []byte { return []byte("y") }); err != nil {
			t.Fatal(err)
		}
		got += drainNoFill()
	}
	stats = waitStats(t, s, func(st xsk.Statistics) bool { return st.FillRingEmptyDescs > 0 })
	got += drainNoFill()
	t.Logf("fill ring empty: %+v after %d frames read", stats, got)
	if got != 128 {
		t.Errorf("read %d frames without refilling, want exactly the 128 owned", got)
	}
}

func waitStats(t *testing.T, s *xsk.Socket, ok func(xsk.Statistics) bool) xsk.Statistics {
	t.Helper()
	for i := 0; ; i++ {
		st, err := s.Statistics()
		if err != nil {
			t.Fatal(err)
		}
		if ok(st) {
			return st
		}
		if i == 300 {
			t.Fatalf("statistics never reached the expected state: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSharedUMEM binds two queues of a two-queue veth to one UMEM and
// receives a flow that lands on either of them.
func TestSharedUMEM(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "xu", RxQueues: 2})
	st := attach(t, lab, bpf.ModeNative)
	var u *xsk.UMEM
	err := lab.Do(lab.Dst, func() error {
		var err error
		// Each socket's fill ring holds more frames than the test sends
		// (n below): a receive loop the machine starves until the sender
		// is done still finds every packet in its rx ring. With 256 a
		// socket, a loop starved for 9 ms (two busy loops on 2 CPUs, 6
		// of 20 runs) let 256 packets fill the rx ring, and the last 12
		// met an empty fill ring (FillRingEmptyDescs 12).
		u, err = xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, Frames: 1024})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var socks []*xsk.Socket
	for q := range 2 {
		s := openSocket(t, lab, xsk.Config{Ifindex: st.ifindex, Queue: q, UMEM: u, FillSize: 512, RxSize: 512})
		socks = append(socks, s)
		if err := st.prog.SetSocket(q, s.FD()); err != nil {
			t.Fatal(err)
		}
	}
	if u.Free() != 0 {
		t.Errorf("%d UMEM frames left after two sockets took 512 each", u.Free())
	}
	if err := u.Close(); err == nil {
		t.Error("UMEM closed while sockets use it")
	}
	snd := newSender(t, lab)
	const n = 300
	errc := snd.sendPaced(netip.AddrPortFrom(group, port), n, func(i int) []byte { return []byte(fmt.Sprintf("shared %04d", i)) })
	descs := make([]xsk.Desc, 32)
	addrs := make([]uint64, 32)
	got := 0
	perQueue := [2]int{}
	deadline := time.Now().Add(10 * time.Second)
	for got < n && time.Now().Before(deadline) {
		for q, s := range socks {
			k := s.Receive(descs)
			for i, d := range descs[:k] {
				dg, _ := bpf.ParseFrame(s.Data(d))
				if want := fmt.Sprintf("shared %04d", got); string(dg.Payload) != want {
					t.Fatalf("queue %d: %q, want %q", q, dg.Payload, want)
				}
				addrs[i] = d.Addr
				got++
			}
			perQueue[q] += k
			s.Fill(addrs[:k])
		}
		if got < n {
			socks[0].Wait(5 * time.Millisecond)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("received %d of %d", got, n)
	}
	t.Logf("frames per queue: %v", perQueue)
	for _, s := range socks {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBusyPoll receives with SO_PREFER_BUSY_POLL and friends set, driving
// the queue with Wakeup instead of blocking in poll.
func TestBusyPoll(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "xb"})
	st := attach(t, lab, bpf.ModeNative)
	s := openSocket(t, lab, xsk.Config{Ifindex: st.ifindex, FillSize: 256, RxSize: 256, BusyPoll: true})
	defer s.Close()
	if !s.BusyPoll() {
		t.Fatal("busy polling not enabled")
	}
	if err := st.prog.SetSocket(0, s.FD()); err != nil {
		t.Fatal(err)
	}
	snd := newSender(t, lab)
	const n = 200
	errc := snd.sendPaced(netip.AddrPortFrom(group, port), n, func(i int) []byte { return []byte{byte(i)} })
	descs := make([]xsk.Desc, 32)
	addrs := make([]uint64, 32)
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < n && time.Now().Before(deadline) {
		if err := s.Wakeup(); err != nil {
			t.Fatal(err)
		}
		k := s.Receive(descs)
		for i, d := range descs[:k] {
			dg, _ := bpf.ParseFrame(s.Data(d))
			if len(dg.Payload) != 1 || dg.Payload[0] != byte(got) {
				t.Fatalf("datagram %d: %v", got, dg.Payload)
			}
			addrs[i] = d.Addr
			got++
		}
		s.Fill(addrs[:k])
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("received %d of %d", got, n)
	}
}

// TestProgramRedirect: with a bound socket in the XSKMAP, the program's
// verdict for a line frame is XDP_REDIRECT (BPF_PROG_TEST_RUN runs on
// queue 0), and XDP_PASS again once the socket is removed.
func TestProgramRedirect(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "xp"})
	st := attach(t, lab, bpf.ModeNative)
	s := openSocket(t, lab, xsk.Config{Ifindex: st.ifindex, FillSize: 64, RxSize: 64})
	defer s.Close()
	if err := st.prog.SetSocket(0, s.FD()); err != nil {
		t.Fatal(err)
	}
	frame := udpFrame(netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), 1), netip.AddrPortFrom(group, port), []byte("payload"))
	run := func() uint32 {
		ret, err := st.prog.XDP().Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		return ret
	}
	if v := run(); v != bpf.VerdictRedirect {
		t.Errorf("verdict with a socket %d, want XDP_REDIRECT", v)
	}
	if err := st.prog.DeleteSocket(0); err != nil {
		t.Fatal(err)
	}
	if v := run(); v != bpf.VerdictPass {
		t.Errorf("verdict without a socket %d, want XDP_PASS", v)
	}
	c, err := st.prog.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Redirected != 1 || c.NoSocket != 1 {
		t.Errorf("counters %+v, want one redirected and one without socket", c)
	}
}

// udpFrame builds an untagged Ethernet/IPv4/UDP frame.
func udpFrame(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 14+20+8, 14+20+8+len(payload))
	b[12], b[13] = 0x08, 0x00
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
	ip[8], ip[9] = 64, 17
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// TestTransmit sends a UDP datagram from the UMEM through the tx ring to a
// kernel socket on the other end of the veth, and gets the frame back on
// the completion ring.
func TestTransmit(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "xx"})
	var srcMAC, dstMAC net.HardwareAddr
	var ifindex, rxFD int
	err := lab.Do(lab.Src, func() error {
		ifi, err := net.InterfaceByName(lab.SrcIf)
		if err != nil {
			return err
		}
		dstMAC = ifi.HardwareAddr
		rxFD, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(5 * time.Second))
		if err := unix.SetsockoptTimeval(rxFD, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(rxFD, &unix.SockaddrInet4{Addr: lab.SrcIP.As4(), Port: 28000})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rxFD)
	err = lab.Do(lab.Dst, func() error {
		ifi, err := net.InterfaceByName(lab.DstIf)
		if err != nil {
			return err
		}
		srcMAC, ifindex = ifi.HardwareAddr, ifi.Index
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := openSocket(t, lab, xsk.Config{Ifindex: ifindex, FillSize: 64, RxSize: 64, TxSize: 64, TxFrames: 4})
	defer s.Close()

	frame := udpFrame(netip.AddrPortFrom(lab.DstIP, 28001), netip.AddrPortFrom(lab.SrcIP, 28000), []byte("sent from the umem"))
	copy(frame[0:6], dstMAC)
	copy(frame[6:12], srcMAC)
	ipChecksum(frame[14:34])
	addr := s.TxFrame(0)
	copy(s.UMEM().Data(addr, uint32(len(frame))), frame)
	n, err := s.Transmit([]xsk.Desc{{Addr: addr, Len: uint32(len(frame))}})
	if err != nil || n != 1 {
		t.Fatalf("Transmit = %d, %v", n, err)
	}
	buf := make([]byte, 64)
	k, from, err := unix.Recvfrom(rxFD, buf, 0)
	if err != nil {
		t.Fatalf("kernel socket got nothing: %v", err)
	}
	if string(buf[:k]) != "sent from the umem" || from.(*unix.SockaddrInet4).Port != 28001 {
		t.Fatalf("kernel socket got %q from %+v", buf[:k], from)
	}
	done := make([]uint64, 4)
	for i := 0; ; i++ {
		if c := s.Completed(done); c == 1 {
			if done[0] != addr {
				t.Fatalf("completed %#x, want %#x", done[0], addr)
			}
			break
		}
		if i == 100 {
			t.Fatal("transmitted frame never completed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ipChecksum(h []byte) {
	binary.BigEndian.PutUint16(h[10:], 0)
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
}

// TestBindRetriesWhileQueueBusy: a second socket on a queue that is still
// bound gets EBUSY; Open keeps retrying until the first socket closes, and
// gives up with EBUSY after BindTimeout when it never does.
func TestBindRetriesWhileQueueBusy(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "xe"})
	st := attach(t, lab, bpf.ModeNative)
	cfg := xsk.Config{Ifindex: st.ifindex, FillSize: 64, RxSize: 64, BindTimeout: 100 * time.Millisecond}
	first := openSocket(t, lab, cfg)
	err := lab.Do(lab.Dst, func() error {
		s, err := xsk.Open(cfg)
		if err == nil {
			s.Close()
			return errors.New("two sockets bound to one queue")
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("second bind: %w, want EBUSY", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() {
		time.Sleep(100 * time.Millisecond)
		closed <- first.Close()
	}()
	cfg.BindTimeout = 5 * time.Second
	second := openSocket(t, lab, cfg)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSocketAllocs: Wait, Receive, Data, Meta and Fill allocate nothing.
func TestSocketAllocs(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "xa"})
	st := attach(t, lab, bpf.ModeNative)
	s := openSocket(t, lab, xsk.Config{Ifindex: st.ifindex, FillSize: 512, RxSize: 512})
	defer s.Close()
	if err := st.prog.SetSocket(0, s.FD()); err != nil {
		t.Fatal(err)
	}
	snd := newSender(t, lab)
	const runs, batch = 100, 4
	if err := <-snd.sendPaced(netip.AddrPortFrom(group, port), (runs+1)*batch, func(int) []byte { return []byte("abc") }); err != nil {
		t.Fatal(err)
	}
	waitCounters := func() {
		for i := 0; i < 500; i++ {
			if c, _ := st.prog.Counters(); c.Redirected >= (runs+1)*batch {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("datagrams not redirected")
	}
	waitCounters()
	descs := make([]xsk.Desc, batch)
	addrs := make([]uint64, batch)
	got := 0
	a, exact := race.AllocsPerRun(t, runs, func() {
		if _, err := s.Wait(0); err != nil {
			panic(err)
		}
		n := s.Receive(descs)
		for i, d := range descs[:n] {
			got += len(s.Data(d)) + len(s.Meta(d, bpf.MetaLen))
			addrs[i] = d.Addr
		}
		s.Fill(addrs[:n])
	})
	if exact && a != 0 {
		t.Errorf("receive loop allocates %v times per batch", a)
	}
	if got == 0 {
		t.Error("nothing received")
	}
}
