package rx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/xdptest"
)

// TestXDPInterfaceHeld: a second xdp backend on an interface whose rx
// queue it does not share with a first one, or an interface with a
// program a tool attached through netlink, cannot attach its program.
// Whatever mode each asks for, the error must wrap ErrXDPInUse (which
// feedhandler run explains: another handler holds the interface) and name
// the program attached. Before, the kernel's refusal of a program in the
// other mode, EEXIST, came alone: the second handler's default (native,
// else generic) against a first attached natively failed with 'attach
// xdp program to ifindex 2 (generic): ... create link: file exists'.
func TestXDPInterfaceHeld(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "helper166", RxQueues: 2})
	second := func(mode string, queue int) error {
		return lab.Do(lab.Dst, func() error {
			r, err := Open(Config{Backend: BackendXDP, XDPMode: mode, Queues: []int{queue}, PollTimeout: 20 * time.Millisecond,
				Lines: []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort + 1}}})
			if err == nil {
				r.Close()
			}
			return err
		})
	}
	check := func(what string, err error, want string) {
		t.Helper()
		if !errors.Is(err, ErrXDPInUse) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want ErrXDPInUse naming %s", what, err, want)
		}
	}
	for _, first := range []string{"native", "generic"} {
		r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, XDPMode: first, Queues: []int{0}})
		info, err := r.(*xdpRx).ifaces[0].prog.XDP().Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		want := fmt.Sprintf("program %d \"xdp_steer\" in %s mode", id, first)
		for _, mode := range []string{"auto", "native", "generic"} {
			check(fmt.Sprintf("first %s, second %s", first, mode), second(mode, 1), want)
		}
		r.Close()
	}

	// A program attached through netlink, as ip link or a loader that is
	// no longer running leaves it: no process holds it.
	for _, tc := range []struct{ ip, mode string }{{"xdpdrv", "native"}, {"xdpgeneric", "generic"}} {
		off := xdptest.AttachWithIP(t, lab.Dst, lab.DstIf, tc.ip)
		check("a program attached by ip link ("+tc.ip+")", second("auto", 0), "in "+tc.mode+" mode")
		off()
		if err := second("auto", 0); err != nil {
			t.Errorf("after ip link set %s off: %v", tc.ip, err)
		}
	}
}

// TestSocketBackendsUnderXDPHandler: a socket or io_uring backend opened
// on an interface where another handler receives the same group and port
// with AF_XDP receives none of its datagrams (the other's program
// redirects them before the kernel) and, before, said nothing: the line
// just stayed dead. It must warn at open, naming the line and the
// program; a line of another port, which the program passes to the
// kernel, is received and not warned of.
func TestSocketBackendsUnderXDPHandler(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "helper166"})
	x := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond})
	defer x.Close()
	info, err := x.(*xdpRx).ifaces[0].prog.XDP().Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	for _, backend := range []string{BackendSocket, BackendUring} {
		t.Run(backend, func(t *testing.T) {
			var logs bytes.Buffer
			r := openBackend(t, lab, backend, Config{PollTimeout: 20 * time.Millisecond, Log: zerolog.New(&logs),
				Lines: []LineConfig{
					{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort},
					{Name: "B", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort + 1},
				}})
			defer r.Close()
			want := fmt.Sprintf("line A receives nothing here: program %d \\\"xdp_steer\\\" in ", id) // JSON
			if n := strings.Count(logs.String(), "receives nothing here"); n != 1 || !strings.Contains(logs.String(), want) {
				t.Errorf("%d warnings of a line steered away, want one: %q...:\n%s", n, want, logs.String())
			}
			// What it says: line A gets nothing, line B everything.
			for i, port := range []uint16{xdpTestPort, xdpTestPort + 1} {
				snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, port))
				if err := <-snd.sendPaced(5, xdpPayload); err != nil {
					t.Fatal(err)
				}
				var got [2]int
				drainEach(t, r, func(p *Packet) { got[p.Line]++ })
				if want := [2]int{0, 5 * i}; got != want {
					t.Errorf("sent 5 to line %s: received %v by line, want %v", Line(i), got, want)
				}
			}
		})
	}
}

// TestXDPWarnsOfStarvedSockets: the xdp backend opened while another
// socket of the host is bound to a line's group and port (a handler on
// the socket or io_uring backend that started first) takes that socket's
// datagrams away, and before said nothing: it must warn at open, naming
// the line; its own spare sockets, bound to every line, do not count.
func TestXDPWarnsOfStarvedSockets(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "helper166"})
	lines := []LineConfig{
		{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort},
		{Name: "B", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort + 1},
	}
	first := openBackend(t, lab, BackendSocket, Config{PollTimeout: 20 * time.Millisecond, Lines: lines[:1]})
	defer first.Close()
	var logs bytes.Buffer
	r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, Lines: lines, Log: zerolog.New(&logs)})
	defer r.Close()
	want := fmt.Sprintf("1 other socket(s) of this host are bound to %v:%d", xdpTestGroup, xdpTestPort)
	if n := strings.Count(logs.String(), "other socket(s) of this host"); n != 1 || !strings.Contains(logs.String(), want) {
		t.Errorf("%d warnings of sockets starved, want one, %q...:\n%s", n, want, logs.String())
	}
}

// TestUDPSocketsOn reads /proc/net/udp as the kernel writes it: the
// address as one native-order word of its network-order bytes, the port
// in hex, the inode in the tenth field.
func TestUDPSocketsOn(t *testing.T) {
	word := func(a netip.Addr) string {
		b := a.As4()
		return fmt.Sprintf("%08X", binary.NativeEndian.Uint32(b[:]))
	}
	dst := netip.AddrPortFrom(xdpTestGroup, 26477)
	row := func(addr string, port uint16, ino int) string {
		return fmt.Sprintf("  1: %s:%04X 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 %d 2 0000000000000000 0\n", addr, port, ino)
	}
	table := "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
		row(word(dst.Addr()), 26477, 10) + // the group and port
		row("00000000", 26477, 11) + // the port on any address
		row(word(dst.Addr()), 26478, 12) + // another port
		row(word(netip.MustParseAddr("233.54.12.112")), 26477, 13) + // another group
		row(word(dst.Addr()), 26477, 14) // own
	if n := udpSocketsOn([]byte(table), dst, map[uint64]bool{14: true}); n != 2 {
		t.Errorf("udpSocketsOn = %d, want 2 (inodes 10 and 11)", n)
	}
}
