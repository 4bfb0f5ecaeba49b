package rx

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestDuplicateLineRefused: two lines with the same interface, group and
// port and no source filter telling them apart are one line configured
// twice. Every line socket would get every datagram, so each would arrive
// twice, once as line A and once as line B, and the arbiter would take one
// real line for two redundant ones. Every backend refuses the
// configuration (AF_XDP always did: its program keys lines by group and
// port); lines told apart by their sources are two lines.
func TestDuplicateLineRefused(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fd"})
	a := labLines(lab)[0]
	b := a
	b.Name = "B"
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			r, err := openIn(t, lab, Config{Backend: backend, Lines: []LineConfig{a, b}, PollTimeout: 20 * time.Millisecond})
			if err == nil {
				defer r.Close()
				fd := lab.UDPSocket(t, lab.Src)
				time.Sleep(20 * time.Millisecond) // joined
				if err := <-netlab.SendPaced(fd, netip.AddrPortFrom(a.Group, a.Port), 1, 0, func(int) []byte { return []byte("once") }); err != nil {
					t.Fatal(err)
				}
				t.Fatalf("opened with line A twice; one datagram sent, received %d", drainUntilIdle(t, r))
			}
			if !strings.Contains(err.Error(), "both use") {
				t.Fatalf("error %q does not say the lines are the same", err)
			}
		})
	}
	t.Run("sources tell them apart", func(t *testing.T) { sourcesApart(t, lab, a, b) })
}

// TestSameGroupTwoInterfaces: two lines on the same group and port, each
// on its own interface (as redundant A and B feeds often are), are two
// lines, not one configured twice: every backend opens them, and each
// datagram arrives once, on the line of the interface it came in on (a
// socket joined on one interface gets nothing of the other's, with
// IP_MULTICAST_ALL off).
func TestSameGroupTwoInterfaces(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "fg"})
	srcB, dstB, err := lab.AddPair("10.98.0.1/24", "10.98.0.2/24")
	if err != nil {
		t.Fatal(err)
	}
	a := labLines(lab)[0]
	b := a
	b.Name, b.Interface = "B", dstB
	senders := make([]int, 2)
	for i, ifname := range []string{lab.SrcIf, srcB} {
		fd := lab.UDPSocket(t, lab.Src)
		if err := lab.Do(lab.Src, func() error {
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				return err
			}
			return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)})
		}); err != nil {
			t.Fatal(err)
		}
		senders[i] = fd
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			r, err := openIn(t, lab, Config{Backend: backend, Lines: []LineConfig{a, b}, PollTimeout: 20 * time.Millisecond})
			if err != nil {
				t.Fatalf("lines on %s and %s: %v", a.Interface, b.Interface, err)
			}
			defer r.Close()
			checkOncePerLine(t, r, senders, netip.AddrPortFrom(a.Group, a.Port))
		})
	}
}

// sourcesApart: lines a and b on the same interface, group and port, told
// apart by their sources (the lab's sender and a second address of its
// interface), are two lines. The socket and io_uring backends open them
// and each datagram arrives once, on its source's line; the AF_XDP
// program keys a line by group and port, so that backend cannot tell them
// apart and says so as a missing feature (ErrNotSupported), on which the
// auto chain, the default, falls back and opens them. Before, AF_XDP
// refused them as a configuration error and auto returned it: the default
// backend refused a configuration the others serve.
func sourcesApart(t *testing.T, lab *netlab.Lab, a, b LineConfig) {
	if _, err := lab.Exec(lab.Src, "ip", "addr", "add", "10.99.0.3/24", "dev", lab.SrcIf); err != nil {
		t.Fatal(err)
	}
	a.Source, b.Source = netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.3")
	senders := make([]int, 2)
	for i, src := range []netip.Addr{a.Source, b.Source} {
		senders[i] = lab.UDPSocket(t, lab.Src)
		if err := unix.Bind(senders[i], &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, backend := range append([]string{BackendAuto}, backends...) {
		t.Run(backend, func(t *testing.T) {
			r, err := openIn(t, lab, Config{Backend: backend, Lines: []LineConfig{a, b}, PollTimeout: 20 * time.Millisecond})
			if backend == BackendXDP {
				if err == nil {
					r.Close()
				}
				if !errors.Is(err, ErrNotSupported) {
					t.Fatalf("xdp: %v, want ErrNotSupported (its program keys lines by group and port)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", backend, err)
			}
			defer r.Close()
			checkOncePerLine(t, r, senders, netip.AddrPortFrom(a.Group, a.Port))
		})
	}
}

// checkOncePerLine sends n datagrams from each of senders (line A's, then
// line B's) to dst and checks that each line received its sender's, once
// each, in order.
func checkOncePerLine(t *testing.T, r Receiver, senders []int, dst netip.AddrPort) {
	t.Helper()
	const n = 64
	time.Sleep(20 * time.Millisecond) // joined
	for i, fd := range senders {
		if err := <-netlab.SendPaced(fd, dst, n, time.Millisecond, func(k int) []byte {
			return fmt.Appendf(nil, "%c%03d", 'A'+i, k)
		}); err != nil {
			t.Fatal(err)
		}
	}
	var got [2][]string
	drainEach(t, r, func(p *Packet) {
		if p.Line < 2 {
			got[p.Line] = append(got[p.Line], string(p.Data))
		}
	})
	for line := range got {
		if len(got[line]) != n {
			t.Errorf("line %s: %d datagrams, want %d (its sender's, once each): %q", Line(line), len(got[line]), n, got[line])
			continue
		}
		for k, d := range got[line] {
			if want := fmt.Sprintf("%c%03d", 'A'+line, k); d != want {
				t.Errorf("line %s: datagram %d is %q, want %q", Line(line), k, d, want)
				break
			}
		}
	}
}

// TestSameGroupVLANDevices: lines of the same group and port on two VLAN
// devices of one interface, or on the interface and one of its VLAN
// devices, are two lines: no backend refuses them as one configured
// twice. (Where the kernel has no VLAN devices, veth pairs stand in, and
// the AF_XDP resolver is told they are VLANs 100 and 200: see
// xdpNewVLANLab. Delivery per VLAN is TestXDPVLANLines'.)
func TestSameGroupVLANDevices(t *testing.T) {
	lab := xdpNewVLANLab(t)
	for _, ifaces := range [][2]string{{lab.v100, lab.v200}, {lab.DstIf, lab.v100}} {
		for _, backend := range backends {
			t.Run(backend+"/"+ifaces[0]+"+"+ifaces[1], func(t *testing.T) {
				lines := []LineConfig{
					{Name: "A", Interface: ifaces[0], Group: xdpTestGroup, Port: xdpTestPort},
					{Name: "B", Interface: ifaces[1], Group: xdpTestGroup, Port: xdpTestPort},
				}
				r, err := openIn(t, lab.Lab, Config{Backend: backend, Lines: lines, PollTimeout: 20 * time.Millisecond})
				if err != nil {
					t.Fatalf("lines on %s and %s: %v", ifaces[0], ifaces[1], err)
				}
				r.Close()
			})
		}
	}
}
