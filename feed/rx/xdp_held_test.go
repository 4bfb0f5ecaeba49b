package rx

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
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
		ip := func(args ...string) {
			t.Helper()
			if out, err := exec.Command("ip", append([]string{"-n", lab.Dst, "link", "set", "dev", lab.DstIf}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("ip link set %v: %v\n%s", args, err, out)
			}
		}
		ip(tc.ip, "obj", "../../bpf/steer_bpfel.o", "sec", "xdp")
		check("a program attached by ip link ("+tc.ip+")", second("auto", 0), "in "+tc.mode+" mode")
		ip(tc.ip, "off")
		if err := second("auto", 0); err != nil {
			t.Errorf("after ip link set %s off: %v", tc.ip, err)
		}
	}
}
