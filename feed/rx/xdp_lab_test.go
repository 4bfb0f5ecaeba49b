package rx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
)

var (
	xdpTestGroup = netip.MustParseAddr("233.54.12.111")
	xdpTestPort  = uint16(26477)
)

func xdpNewLab(t *testing.T, o netlab.Options) *netlab.Lab {
	t.Helper()
	if o.Prefix == "" {
		o.Prefix = "xr"
	}
	return netlab.ForTest(t, o)
}

// xdpOpen opens the xdp backend inside the lab's receiving namespace.
func xdpOpen(t *testing.T, lab *netlab.Lab, cfg Config) Receiver {
	t.Helper()
	if cfg.Lines == nil {
		cfg.Lines = []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}
	}
	cfg.Backend = BackendXDP
	var r Receiver
	err := lab.Do(lab.Dst, func() error {
		var err error
		r, err = Open(cfg)
		return err
	})
	if errors.Is(err, ErrNotSupported) {
		netlab.SkipOrFail(t, "XDP/AF_XDP", 5, 11, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// xdpSender is a plain UDP socket in namespace ns, sending to to.
type xdpSender struct {
	fd int
	to netip.AddrPort
}

func xdpNewSender(t *testing.T, lab *netlab.Lab, ns string, to netip.AddrPort) *xdpSender {
	t.Helper()
	return &xdpSender{fd: lab.UDPSocket(t, ns), to: to}
}

func (s *xdpSender) port(t *testing.T) uint16 {
	sa, err := unix.Getsockname(s.fd)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(sa.(*unix.SockaddrInet4).Port)
}

// sendPaced sends payload(i) for i in [0, n) from a goroutine, pausing
// every 32 datagrams because the veth ring drops bursts.
func (s *xdpSender) sendPaced(n int, payload func(i int) []byte) <-chan error {
	return netlab.SendPaced(s.fd, s.to, n, 500*time.Microsecond, payload)
}

// xdpPayload is datagram i: its index, then a pattern, of a length that
// varies from 8 to 1400 bytes.
func xdpPayload(i int) []byte {
	n := 8 + (i*397)%1393
	b := make([]byte, n)
	binary.BigEndian.PutUint64(b, uint64(i))
	for j := 8; j < n; j++ {
		b[j] = byte(i + j)
	}
	return b
}

// xdpCollect receives n datagrams (copied out) within a bounded time.
func xdpCollect(t *testing.T, r Receiver, n int) []Packet {
	t.Helper()
	var out []Packet
	pkts := make([]Packet, 32)
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d datagrams before the deadline; stats %+v", len(out), n, r.Stats())
		}
		k, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts[:k] {
			p.Data = bytes.Clone(p.Data)
			out = append(out, p)
		}
		r.Release(pkts[:k])
	}
	return out
}

// xdpKernelFDs lists the open sockets and BPF objects by fd number.
func xdpKernelFDs(t *testing.T) map[string]string {
	t.Helper()
	fds := map[string]string{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && (strings.HasPrefix(l, "socket:") || strings.HasPrefix(l, "anon_inode:bpf") ||
			strings.HasPrefix(l, "anon_inode:[eventfd]")) {
			fds[e.Name()] = l
		}
	}
	return fds
}

// xdpCheckFDs fails t for every socket, BPF object or eventfd open now that
// was not open in before.
func xdpCheckFDs(t *testing.T, before map[string]string) {
	t.Helper()
	for fd, what := range xdpKernelFDs(t) {
		if _, ok := before[fd]; !ok {
			t.Errorf("fd %s (%s) leaked", fd, what)
		}
	}
}

// TestXDPReceive sends 2000 datagrams of varied sizes through the lab and
// checks that the xdp backend delivers all of them, in order, byte for
// byte, with line, source and time; then closes and reopens on the same
// queue, and checks that nothing leaked.
func TestXDPReceive(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	fds, goroutines := xdpKernelFDs(t), runtime.NumGoroutine()

	for round := range 2 {
		r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
		t.Logf("round %d: backend %s", round, r.Backend())
		const n = 2000
		start := time.Now().UnixNano()
		errc := snd.sendPaced(n, xdpPayload)
		got := xdpCollect(t, r, n)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		src := netip.AddrPortFrom(lab.SrcIP, snd.port(t))
		for i, p := range got {
			if want := xdpPayload(i); !bytes.Equal(p.Data, want) {
				t.Fatalf("datagram %d: got %d bytes (index %d), want %d bytes", i, len(p.Data),
					binary.BigEndian.Uint64(p.Data), len(want))
			}
			if p.Line != LineA || p.Src != src || p.RxTime < start {
				t.Fatalf("datagram %d: line %v, source %v, time %d (start %d), want line A from %v", i, p.Line, p.Src, p.RxTime, start, src)
			}
		}
		st := r.Stats()
		t.Logf("round %d: stats %+v", round, st)
		if st.Packets[0] != n || st.Malformed != 0 {
			t.Errorf("stats count %d packets, %d malformed; want %d, 0", st.Packets[0], st.Malformed, n)
		}
		if st.Extra.Get("xdp_redirected") != n {
			t.Errorf("program redirected %d frames, want %d", st.Extra.Get("xdp_redirected"), n)
		}
		// Nothing more arrives: Receive times out empty.
		if k, err := r.Receive(make([]Packet, 8)); k != 0 || err != nil {
			t.Errorf("idle Receive = %d, %v; want 0, nil", k, err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if k, err := r.Receive(make([]Packet, 8)); k != 0 || !errors.Is(err, ErrClosed) {
			t.Errorf("Receive after Close = %d, %v; want ErrClosed", k, err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	xdpCheckFDs(t, fds)
	// Goroutines the sender and Do started have finished by now; give the
	// scheduler a bounded moment.
	for i := 0; i < 100 && runtime.NumGoroutine() > goroutines; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if now := runtime.NumGoroutine(); now > goroutines {
		t.Errorf("%d goroutines after close, %d before", now, goroutines)
	}
}

// TestXDPCloseWakesReceive: Close from another goroutine ends a Receive
// blocked in poll with ErrClosed.
func TestXDPCloseWakesReceive(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: time.Minute})
	errc := make(chan error, 1)
	go func() {
		_, err := r.Receive(make([]Packet, 8))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	closeWakes(t, r, errc)
}

// closeWakes closes r and checks that the Receive blocked in it (which sends
// its error on errc) ends with ErrClosed.
func closeWakes(t *testing.T, r Receiver, errc <-chan error) {
	t.Helper()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked Receive returned %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake a blocked Receive")
	}
}

// TestXDPWaitKeepsTheWorldMoving: with KeepP the receive thread sleeps in
// ppoll keeping its P (pollKeepP), yet a stop of the world (a garbage
// collection) does not wait for its sleep: the preemption signal ends the
// sleep (EINTR), and Receive goes on waiting. The slice that otherwise
// bounds a sleep is lifted to 20 s: the collections finish with no
// slice run out and at least one sleep ended by the signal, while Receive
// is still blocked; Close ends it. Without the signal the collections
// would wait out the slice (and a slice would have run out).
func TestXDPWaitKeepsTheWorldMoving(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("GOMAXPROCS 1: the backend waits through the runtime, not keeping its P")
	}
	defer func(s time.Duration) { xdpPollSlice = s }(xdpPollSlice)
	xdpPollSlice = 20 * time.Second
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: time.Hour, KeepP: true})
	x := r.(*xdpRx)
	if !x.keepP {
		t.Fatal("KeepP not taken")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // as the handler's receive thread
		_, err := r.Receive(make([]Packet, 8))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // into its sleep
	for range 3 {
		runtime.GC()
	}
	if intr, slices := x.keepPIntr.Load(), x.keepPSlices.Load(); intr == 0 || slices != 0 {
		t.Fatalf("during the collections: %d sleeps ended by a signal, %d slices ran out; want some, none", intr, slices)
	}
	select {
	case err := <-errc:
		t.Fatalf("Receive returned (%v) during the collections, not at Close", err)
	default:
	}
	closeWakes(t, r, errc)
}

// TestXDPPassesOtherTraffic: with the backend attached, a UDP socket on
// another port (unicast, so ARP must resolve through the program too) and a
// socket on the line's group but another port still get their datagrams
// from the kernel.
func TestXDPPassesOtherTraffic(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
	defer r.Close()

	var unicastFD, groupFD int
	err := lab.Do(lab.Dst, func() error {
		var err error
		if unicastFD, err = xdpBoundSocket(netip.AddrPortFrom(lab.DstIP, 27000)); err != nil {
			return err
		}
		if groupFD, err = xdpBoundSocket(netip.AddrPortFrom(xdpTestGroup, xdpTestPort+1)); err != nil {
			return err
		}
		ifi, err := net.InterfaceByName(lab.DstIf)
		if err != nil {
			return err
		}
		mreq := &unix.IPMreqn{Multiaddr: xdpTestGroup.As4(), Ifindex: int32(ifi.Index)}
		return unix.SetsockoptIPMreqn(groupFD, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(unicastFD)
	defer unix.Close(groupFD)

	toUnicast := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(lab.DstIP, 27000))
	toOtherPort := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort+1))
	toLine := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	for _, s := range []*xdpSender{toUnicast, toOtherPort, toLine} {
		if err := <-s.sendPaced(1, func(int) []byte { return []byte("hello") }); err != nil {
			t.Fatal(err)
		}
	}
	for _, fd := range []int{unicastFD, groupFD} {
		if err := xdpReadOne(fd, "hello"); err != nil {
			t.Fatal(err)
		}
	}
	got := xdpCollect(t, r, 1)
	if string(got[0].Data) != "hello" {
		t.Fatalf("line datagram %q", got[0].Data)
	}
	st := r.Stats()
	if st.Extra.Get("xdp_passed") < 3 { // at least the ARP request, the unicast and the other-port datagram
		t.Errorf("program passed %d frames, want at least 3", st.Extra.Get("xdp_passed"))
	}
	if st.Extra.Get("xdp_redirected") != 1 {
		t.Errorf("program redirected %d frames, want 1", st.Extra.Get("xdp_redirected"))
	}
}

func xdpBoundSocket(at netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: at.Addr().As4(), Port: int(at.Port())}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func xdpReadOne(fd int, want string) error {
	buf := make([]byte, 64)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("kernel socket did not get its datagram: %w", err)
	}
	if string(buf[:n]) != want {
		return fmt.Errorf("kernel socket got %q, want %q", buf[:n], want)
	}
	return nil
}

// TestXDPReceiveAllocs: Receive plus Release allocate nothing in steady
// state. The datagrams are queued on the rx ring before measuring, so that
// no sender runs while allocations are counted.
func TestXDPReceiveAllocs(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, BatchSize: 4})
	defer r.Close()
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	const runs, batch = 200, 4
	const n = (runs + 10) * batch
	if err := <-snd.sendPaced(n, xdpPayload); err != nil {
		t.Fatal(err)
	}
	for i := 0; r.Stats().Extra.Get("xdp_redirected") < n; i++ {
		if i == 500 {
			t.Fatalf("only %d of %d datagrams redirected", r.Stats().Extra.Get("xdp_redirected"), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	pkts := make([]Packet, batch)
	got := 0
	allocs, exact := race.AllocsPerRun(t, runs, func() {
		k, err := r.Receive(pkts)
		if err != nil {
			panic(err)
		}
		got += k
		r.Release(pkts[:k])
	})
	if exact && allocs != 0 {
		t.Errorf("Receive+Release allocate %v times per batch", allocs)
	}
	if want := (runs + 1) * batch; got != want {
		t.Errorf("received %d datagrams in %d batches of %d, want %d", got, runs+1, batch, want)
	}
}

// TestXDPBusyPoll receives with busy polling instead of poll(2), reading
// Stats concurrently.
func TestXDPBusyPoll(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, BusyPoll: true})
	defer r.Close()
	if !strings.Contains(r.Backend(), "busy poll") {
		t.Errorf("backend %q does not say busy poll", r.Backend())
	}
	stop := make(chan struct{})
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				r.Stats()
			}
		}
	}()
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	const n = 500
	errc := snd.sendPaced(n, xdpPayload)
	got := xdpCollect(t, r, n)
	close(stop)
	<-statsDone
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i, p := range got {
		if !bytes.Equal(p.Data, xdpPayload(i)) {
			t.Fatalf("datagram %d differs", i)
		}
	}
}

// TestXDPJoinsGroup: while the receiver is open the host is a member of the
// line's group on the line's interface (so it answers IGMP queries and
// switches forward the feed); after Close it no longer is.
func TestXDPJoinsGroup(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	member := func() bool {
		var ok bool
		err := lab.Do(lab.Dst, func() error {
			b, err := os.ReadFile("/proc/thread-self/net/igmp")
			if err != nil {
				return err
			}
			ok = xdpIGMPMember(string(b), lab.DstIf, xdpTestGroup)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if member() {
		t.Fatal("member of the group before opening")
	}
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
	if !member() {
		t.Error("not a member of the line's group while open")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if member() {
		t.Error("still a member of the group after Close")
	}
}

// xdpIGMPMember reports whether /proc/net/igmp lists group under ifname.
// The file has a line per interface ("idx name : count querier") followed
// by indented lines per group, the group in hex as stored in memory.
func xdpIGMPMember(igmp, ifname string, group netip.Addr) bool {
	g := group.As4()
	hex := fmt.Sprintf("%08X", binary.NativeEndian.Uint32(g[:]))
	in := false
	for _, l := range strings.Split(igmp, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, " ") {
			in = len(f) >= 2 && strings.TrimSuffix(f[1], ":") == ifname // a 10-character name runs into the colon
			continue
		}
		if in && f[0] == hex {
			return true
		}
	}
	return false
}

// TestXDPDoubleRelease: releasing a batch twice, or releasing zero Packets,
// must not hand a frame to the kernel twice (which would let two datagrams
// share one buffer).
func TestXDPDoubleRelease(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, RingSize: 64})
	defer r.Close()
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	const n = 400 // several times the 64 frames
	errc := snd.sendPaced(n, xdpPayload)
	pkts := make([]Packet, 16)
	got := 0
	seen := make([]bool, n)
	deadline := time.Now().Add(20 * time.Second)
	for got+int(r.Stats().Dropped) < n && time.Now().Before(deadline) {
		k, err := r.Receive(pkts)
		if err != nil {
			t.Fatal(err)
		}
		// A frame handed out twice (the bug a double release could cause)
		// shows as a datagram whose bytes do not match its own index, or
		// as an index seen twice.
		for _, p := range pkts[:k] {
			if len(p.Data) < 8 {
				t.Fatalf("datagram of %d bytes", len(p.Data))
			}
			idx := int(binary.BigEndian.Uint64(p.Data))
			if idx >= n || !bytes.Equal(p.Data, xdpPayload(idx)) {
				t.Fatalf("datagram %d corrupted", idx)
			}
			if seen[idx] {
				t.Fatalf("datagram %d received twice", idx)
			}
			seen[idx] = true
		}
		got += k
		r.Release(pkts[:k])
		r.Release(pkts[:k])
		r.Release(make([]Packet, 4))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Under load the 64-frame ring may overflow; the kernel counts that.
	// What must hold is that nothing vanished without being counted.
	if st := r.Stats(); got+int(st.Dropped) != n {
		t.Fatalf("received %d + dropped %d of %d; stats %+v", got, st.Dropped, n, st)
	}
	if st := r.Stats(); st.Extra.Get("xsk_rx_invalid_descs") != 0 {
		t.Errorf("kernel saw %d invalid fill descriptors", st.Extra.Get("xsk_rx_invalid_descs"))
	}
}
