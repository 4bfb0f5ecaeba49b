package netlab

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// UDPSocket opens a UDP socket in the lab's namespace ns, with multicast
// TTL 1 so that its datagrams stay in the lab, and closes it at the test's
// cleanup.
func (l *Lab) UDPSocket(t LabT, ns string) int {
	t.Helper()
	fd, err := l.OpenUDPSocket(ns)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// OpenUDPSocket is UDPSocket for a caller outside a test (a lab tool),
// which closes the socket itself.
func (l *Lab) OpenUDPSocket(ns string) (int, error) {
	fd := -1
	err := l.Do(ns, func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 1)
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("open UDP socket in %s: %w", ns, err)
	}
	return fd, nil
}

// SendPaced sends payload(i) for i in [0, n) from socket fd to to, from a
// goroutine, sleeping pause after every 32 datagrams (a veth ring drops
// bursts); the channel yields the first error, or nil once all are sent.
func SendPaced(fd int, to netip.AddrPort, n int, pause time.Duration, payload func(i int) []byte) <-chan error {
	errc := make(chan error, 1)
	sa := &unix.SockaddrInet4{Addr: to.Addr().As4(), Port: int(to.Port())}
	go func() {
		for i := range n {
			if err := unix.Sendto(fd, payload(i), 0, sa); err != nil {
				errc <- fmt.Errorf("send datagram %d to %v: %w", i, to, err)
				return
			}
			if i%32 == 31 {
				time.Sleep(pause)
			}
		}
		errc <- nil
	}()
	return errc
}

// BoundUDPSocket is UDPSocket bound to the address of ns's end of the veth
// (SrcIP in Src, DstIP in Dst) on a port the kernel picks, returned with
// that address and port: a unicast server or client of the lab.
func (l *Lab) BoundUDPSocket(t LabT, ns string) (int, netip.AddrPort) {
	t.Helper()
	fd := l.UDPSocket(t, ns)
	ip := l.DstIP
	if ns == l.Src {
		ip = l.SrcIP
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: ip.As4()}); err != nil {
		t.Fatalf("bind UDP socket in %s to %v: %v", ns, ip, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return fd, netip.AddrPortFrom(ip, uint16(sa.(*unix.SockaddrInet4).Port))
}

// Recv reads the next datagram of socket fd into buf, waiting for it up to
// 5 s (a read every millisecond), and returns its length and source; it
// fails the test when none comes.
func Recv(t LabT, fd int, buf []byte) (int, netip.AddrPort) {
	t.Helper()
	for i := 0; ; i++ {
		n, from, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if sa, ok := from.(*unix.SockaddrInet4); err == nil && ok {
			return n, netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		}
		if i == 5000 {
			t.Fatalf("no datagram on socket %d in 5s: %v", fd, err)
		}
		time.Sleep(time.Millisecond)
	}
}
