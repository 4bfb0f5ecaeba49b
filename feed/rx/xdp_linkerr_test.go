package rx

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestXDPLinkSocketErrorCleared: a socket error pending on the link
// notifications' socket (rtnetlink's ENOBUFS, set when a notification is
// lost; without a notification queued when the kernel failed to copy one
// to it) makes poll(2) return POLLERR alone for it, at once, until a read
// takes the error. Receive must read it then as for POLLIN (linkEvents),
// or every wait of the receive thread returns at once for the rest of the
// process: the thread spins through its idle time. The error is played
// with a connected UDP socket refused by the port it sends to (POLLERR
// without POLLIN, as rtnetlink's), put in the link socket's place.
func TestXDPLinkSocketErrorCleared(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h197"})
	r := xdpOpen(t, lab, Config{PollTimeout: 50 * time.Millisecond})
	defer r.Close()
	x := r.(*xdpRx)
	if x.linkPfd < 0 {
		t.Skip("no rtnetlink link notifications")
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A port of the loopback no socket has: the ICMP port unreachable
	// sets the socket's error.
	probe, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	lo := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	if err := unix.Bind(probe, lo); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(probe)
	unix.Close(probe) // its port is free now
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, []byte("x")); err != nil {
		t.Fatal(err)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 5000); n != 1 || err != nil || pfd[0].Revents != unix.POLLERR {
		t.Fatalf("the refused UDP socket: poll %d %v revents %#x, want POLLERR alone", n, err, pfd[0].Revents)
	}
	// In the link socket's place (Close closes it).
	unix.Close(x.linkFD)
	x.linkFD = fd
	x.pfds[x.linkPfd].Fd = int32(fd)
	pkts := make([]Packet, 8)
	if n, err := r.Receive(pkts); n != 0 || err != nil {
		t.Fatalf("Receive: %d, %v; want 0, nil", n, err)
	}
	if e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || e != 0 {
		t.Fatalf("after a Receive, the link socket's error is still pending (SO_ERROR %v, %v): every poll of the receive thread returns at once", unix.Errno(e), err)
	}
}
