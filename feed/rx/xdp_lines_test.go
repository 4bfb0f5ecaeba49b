package rx

import (
	"bytes"
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

// TestXDPNoSocketCountedAsDropped: line frames arriving on an rx queue
// without an AF_XDP socket are passed to the kernel, where no socket is
// bound to the line (the join sockets are unbound): they are lost to the
// receiver, so Stats.Dropped (receive_dropped_total, the drop alert) must
// count them, not only Extra's xdp_no_socket.
func TestXDPNoSocketCountedAsDropped(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{RxQueues: 2})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, Queues: []int{0}})
	defer r.Close()
	snd := xdpNewRawSender(t, lab)
	line := netip.AddrPortFrom(xdpTestGroup, xdpTestPort)
	// Flows hash over the sender's two tx queues, hence the receiver's two
	// rx queues: some land on queue 1, which has no socket.
	for i := range 64 {
		snd.send(t, xdpFrame(netip.AddrPortFrom(lab.SrcIP, uint16(40000+i)), line, nil, 0, []byte("x")))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		k, err := r.Receive(make([]Packet, 64))
		if err != nil {
			t.Fatal(err)
		}
		st := r.Stats()
		got := st.Extra.Get("xdp_redirected") + st.Extra.Get("xdp_no_socket")
		if got == 64 && k == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("program saw %d of 64 frames; stats %+v", got, st)
		}
	}
	st := r.Stats()
	ns := st.Extra.Get("xdp_no_socket")
	if ns == 0 {
		t.Skipf("every flow hashed to queue 0; stats %+v", st)
	}
	if st.Dropped < ns {
		t.Fatalf("%d line frames lost on a queue without a socket, Stats.Dropped = %d", ns, st.Dropped)
	}
}

// TestXDPFragmentedLineDatagram: a line datagram larger than the MTU
// arrives as IPv4 fragments. The program passes fragments to the kernel,
// which reassembles them but has no socket bound to the line (the join
// sockets are unbound): the datagram is lost to the receiver. It must at
// least be counted in Stats.Dropped (the socket backends receive it).
func TestXDPFragmentedLineDatagram(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{})
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
	defer r.Close()
	snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
	big := make([]byte, 1800) // over the 1472 bytes a 1500-byte MTU carries
	for i := range big {
		big[i] = byte(i)
	}
	errc := snd.sendPaced(2, func(i int) []byte {
		if i == 0 {
			return big
		}
		return []byte("marker")
	})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	got := xdpCollect(t, r, 1)
	if len(got[0].Data) == len(big) {
		return // delivered
	}
	time.Sleep(50 * time.Millisecond)
	if st := r.Stats(); st.Dropped == 0 {
		t.Fatalf("received %q; the %d-byte fragmented datagram was neither delivered nor counted in Stats.Dropped; stats %+v", got[0].Data, len(big), st)
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
