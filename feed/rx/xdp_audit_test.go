package rx

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

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
