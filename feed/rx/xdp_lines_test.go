package rx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestXDPSameGroupOnTwoInterfaces: lines A and B use the same group and
// port on two interfaces (Open accepts that: only a pair repeated on one
// interface is refused). A datagram arriving on B's interface must be
// delivered as line B, not as the first line with that group and port.
func TestXDPSameGroupOnTwoInterfaces(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, time.Now().UnixNano()%1000)
	srcB, dstB := "xq"+id, "xp"+id
	for _, args := range [][]string{
		{"-n", lab.Src, "link", "add", srcB, "type", "veth", "peer", "name", dstB, "netns", lab.Dst},
		{"-n", lab.Src, "link", "set", srcB, "up"},
		{"-n", lab.Dst, "link", "set", dstB, "up"},
		{"-n", lab.Dst, "addr", "add", "10.98.0.2/24", "dev", dstB},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, Lines: []LineConfig{
		{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort},
		{Name: "B", Interface: dstB, Group: xdpTestGroup, Port: xdpTestPort},
	}})
	defer r.Close()
	if got, want := umemBytes(r), XDPLockedBytes(Config{Lines: []LineConfig{{Interface: lab.DstIf}, {Interface: dstB}}}); got != want {
		t.Errorf("two interfaces: UMEMs of %d bytes, XDPLockedBytes %d", got, want)
	}

	// Raw frames on srcB, the far end of line B's interface.
	var fd int
	var sa unix.SockaddrLinklayer
	err := lab.Do(lab.Src, func() error {
		ifi, err := net.InterfaceByName(srcB)
		if err != nil {
			return err
		}
		sa = unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	src := netip.AddrPortFrom(netip.MustParseAddr("10.98.0.1"), 40001)
	frame := xdpFrame(src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort), nil, 0, []byte("on B"))
	copy(sa.Addr[:], frame[:6])
	if err := unix.Sendto(fd, frame, 0, &sa); err != nil {
		t.Fatal(err)
	}
	got := xdpCollect(t, r, 1)
	if got[0].Line != LineB || string(got[0].Data) != "on B" {
		t.Fatalf("datagram %q sent on line B's interface delivered as line %s", got[0].Data, got[0].Line)
	}
}

// TestXDPNoSocketDelivered: line frames arriving on an rx queue without
// an AF_XDP socket are passed to the kernel, which delivers them to the
// line's kernel socket (xdp_kernel.go): before, no socket was bound to
// the line there and they were lost (counted in Stats.Dropped). Every one
// must now be delivered, counted in xdp_kernel_delivered, none dropped.
func TestXDPNoSocketDelivered(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h225ns", RxQueues: 2})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, Queues: []int{0}})
	defer r.Close()
	snd := xdpNewRawSender(t, lab)
	line := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	// Flows hash over the sender's two tx queues, hence the receiver's two
	// rx queues: some land on queue 1, which has no socket.
	for i := range 64 {
		snd.send(t, xdpFrame(netip.AddrPortFrom(lab.SrcIP, uint16(40000+i)), line, nil, 0, []byte("x")))
	}
	got := xdpCollect(t, r, 64)
	drainUntilIdle(t, r)
	st := r.Stats()
	ns := st.Extra.Get("xdp_no_socket")
	if ns == 0 {
		t.Skipf("every flow hashed to queue 0; stats %+v", st)
	}
	if len(got) != 64 || st.Packets[LineA] != 64 || st.Extra.Get("xdp_kernel_delivered") != ns || st.Dropped != 0 {
		t.Fatalf("%d line frames on a queue without a socket: delivered %d of 64 (Packets %d), xdp_kernel_delivered %d, Stats.Dropped %d; want all, %d, 0",
			ns, len(got), st.Packets[LineA], st.Extra.Get("xdp_kernel_delivered"), st.Dropped, ns)
	}
}

// TestXDPFragmentedLineDatagram: a line datagram larger than the MTU
// arrives as IPv4 fragments. The program passes fragments to the kernel,
// which reassembles them and delivers the datagram to the line's kernel
// socket (xdp_kernel.go): the receiver must deliver it, as the socket
// backends do (before, no socket was bound to the line there: it was
// lost, counted in Stats.Dropped), with the kernel's receive time.
func TestXDPFragmentedLineDatagram(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h225fr"})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	big := make([]byte, 1800) // over the 1472 bytes a 1500-byte MTU carries
	for i := range big {
		big[i] = byte(i)
	}
	before := time.Now().UnixNano()
	errc := snd.sendPaced(2, func(i int) []byte {
		if i == 0 {
			return big
		}
		return []byte("marker")
	})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	got := xdpCollect(t, r, 2)
	var whole *Packet
	for i := range got {
		if bytes.Equal(got[i].Data, big) {
			whole = &got[i]
		}
	}
	st := r.Stats()
	if whole == nil || whole.Line != LineA || st.Extra.Get("xdp_fragmented") != 1 || st.Extra.Get("xdp_kernel_delivered") != 1 || st.Dropped != 0 {
		t.Fatalf("the %d-byte fragmented datagram delivered: %v; xdp_fragmented %d, xdp_kernel_delivered %d, Stats.Dropped %d; want it delivered on line A, 1, 1, 0",
			len(big), whole != nil, st.Extra.Get("xdp_fragmented"), st.Extra.Get("xdp_kernel_delivered"), st.Dropped)
	}
	if whole.RxTime < before || whole.RxTime > time.Now().UnixNano() {
		t.Errorf("the reassembled datagram's receive time %d is not the kernel's, between %d and now", whole.RxTime, before)
	}
}

// TestXDPLockedBytes: XDPLockedBytes, which `feedhandler check` compares
// with RLIMIT_MEMLOCK, is what the backend registers: one UMEM per
// interface, a ring of 4 KiB frames per queue, ring_size rounded up to a
// power of two.
func TestXDPLockedBytes(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{RxQueues: 2})
	for _, cfg := range []Config{
		{Queues: []int{0, 1}, RingSize: 100},
		{RingSize: 512},
		{Lines: []LineConfig{
			{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort},
			{Name: "B", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort + 1},
		}},
	} {
		cfg.PollTimeout = 20 * time.Millisecond
		r := xdpOpen(t, lab, cfg)
		got := umemBytes(r)
		r.Close()
		if cfg.Lines == nil {
			cfg.Lines = []LineConfig{{Name: "A", Interface: lab.DstIf}}
		}
		if want := XDPLockedBytes(cfg); got != want {
			t.Errorf("queues %v, ring_size %d, %d line(s): UMEMs of %d bytes, XDPLockedBytes %d", cfg.Queues, cfg.RingSize, len(cfg.Lines), got, want)
		}
	}
}

// umemBytes sums the UMEMs r registered.
func umemBytes(r Receiver) int64 {
	var n int64
	for _, x := range r.(*xdpRx).ifaces {
		n += int64(x.umem.Frames()) * int64(x.umem.FrameSize())
	}
	return n
}

// TestXDPNoSocketLogged: line frames on an rx queue without a socket (the
// NIC spreading the feed over queues receive.queues does not bind, as
// after channels are added while running) are lost to the line for as
// long as it lasts, and before were only counted: the backend must say so
// in the log, once, naming the interface and what to do.
func TestXDPNoSocketLogged(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "helper166", RxQueues: 2})
	var logs bytes.Buffer
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, Queues: []int{0}, Log: zerolog.New(zerolog.SyncWriter(&logs))})
	defer r.Close()
	snd := xdpNewRawSender(t, lab)
	line := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	for round := range 2 {
		// Flows hash over the sender's two tx queues, hence the
		// receiver's two rx queues: some land on queue 1.
		for i := range 64 {
			snd.send(t, xdpFrame(netip.AddrPortFrom(lab.SrcIP, uint16(40000+i)), line, nil, 0, []byte("x")))
		}
		drainUntilIdle(t, r)
		if st := r.Stats(); st.Extra.Get("xdp_redirected")+st.Extra.Get("xdp_no_socket") != uint64(64*(round+1)) {
			t.Fatalf("round %d: the program saw %d+%d frames, want %d", round, st.Extra.Get("xdp_redirected"), st.Extra.Get("xdp_no_socket"), 64*(round+1))
		}
	}
	if r.Stats().Extra.Get("xdp_no_socket") == 0 {
		t.Skip("every flow hashed to queue 0")
	}
	if n := strings.Count(logs.String(), "without an AF_XDP socket"); n != 1 || !strings.Contains(logs.String(), lab.DstIf) {
		t.Errorf("frames on a queue without a socket logged %d times, want once naming %s:\n%s", n, lab.DstIf, logs.String())
	}
}

// TestXDPFragmentedSourceLine: a line with a source has its kernel socket
// joined to that source alone (MCAST_JOIN_SOURCE_GROUP): the program
// passes the frames of the line's group and port from other sources to
// the kernel, which must not deliver them to the socket (a plain join
// would, to be counted in source_filtered, and their flood dropped by a
// full buffer into receive_dropped_total). A fragmented datagram from the
// line's source is delivered, one from another source is not.
func TestXDPFragmentedSourceLine(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h225sl"})
	setRPFilter(t, lab, "0", "all", "default", lab.DstIf)
	cfg := Config{PollTimeout: 20 * time.Millisecond,
		Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort, Source: lab.SrcIP}}}
	cfg.XDPMode = "native"
	r := xdpOpen(t, lab, cfg)
	defer r.Close()
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	fragmented := func(from netip.Addr, name string, id uint16) [][]byte {
		p := []byte(name)
		for len(p) < 100 {
			p = append(p, '.')
		}
		f := xdpFrame(netip.AddrPortFrom(from, 40001), dst, nil, 0, p)
		binary.BigEndian.PutUint16(f[14+4:], id)
		xdpSeal(f, 14, true)
		return netlab.Fragments(f, 14, 56)
	}
	other := netip.MustParseAddr("10.77.0.9")
	frames := append(fragmented(other, "from another source", 0x7701), fragmented(lab.SrcIP, "from the source", 0x7702)...)
	end := xdpFrame(netip.AddrPortFrom(lab.SrcIP, 40001), dst, nil, 0, []byte("end"))
	xdpSeal(end, 14, true)
	raw := xdpNewRawSender(t, lab)
	for _, f := range append(frames, end) {
		raw.send(t, f)
	}
	got := receiveUntilEnd(t, r)
	drainEach(t, r, func(p *Packet) { got = append(got, string(p.Data)) })
	st := r.Stats()
	if len(got) != 2 || !strings.HasPrefix(got[1], "from the source") || st.Extra.Get("xdp_kernel_delivered") != 1 || st.Extra.Get("source_filtered") != 0 {
		t.Fatalf("received %q; xdp_kernel_delivered %d, source_filtered %d; want end and the source's fragmented datagram, 1, 0",
			got, st.Extra.Get("xdp_kernel_delivered"), st.Extra.Get("source_filtered"))
	}
}

// TestXDPKernelSocketsWhileBusy: a receiver whose rings never run empty
// (a backlog, read one packet a batch) still reads the kernel sockets,
// every busyCheckBatches batches: a fragmented line datagram queued
// before 200 ring frames comes within the first busyCheckBatches+1
// packets, not after the whole backlog.
func TestXDPKernelSocketsWhileBusy(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h225bz"})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, BatchSize: 1})
	defer r.Close()
	dst := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	src := netip.AddrPortFrom(lab.SrcIP, 40001)
	big := xdpFrame(src, dst, nil, 0, append([]byte("fragmented "), make([]byte, 100)...))
	xdpSeal(big, 14, true)
	frames := netlab.Fragments(big, 14, 56)
	const backlog = 200
	for i := range backlog {
		f := xdpFrame(src, dst, nil, 0, fmt.Appendf(nil, "ring %d", i))
		xdpSeal(f, 14, true)
		frames = append(frames, f)
	}
	raw := xdpNewRawSender(t, lab)
	for _, f := range frames {
		raw.send(t, f)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		st := r.Stats()
		if st.Extra.Get("xdp_redirected") == backlog && st.Extra.Get("xdp_fragmented") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the program saw %d of %d ring frames, %d of 1 fragmented", st.Extra.Get("xdp_redirected"), backlog, st.Extra.Get("xdp_fragmented"))
		}
		time.Sleep(time.Millisecond)
	}
	at := -1
	n := 0
	drainEach(t, r, func(p *Packet) {
		if bytes.HasPrefix(p.Data, []byte("fragmented ")) {
			at = n
		}
		n++
	})
	if n != backlog+1 || at < 0 || at > busyCheckBatches {
		t.Fatalf("received %d of %d packets, the fragmented datagram at %d; want it within the first %d", n, backlog+1, at, busyCheckBatches+1)
	}
}
