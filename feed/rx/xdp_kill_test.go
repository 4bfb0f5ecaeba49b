package rx

import (
	"bufio"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// xdpKillChild is the environment variable that makes the test binary the
// child of TestXDPRestartAfterKill: "namespace interface mode".
const xdpKillChild = "RX_TEST_XDP_KILLED_CHILD"

// TestXDPRestartAfterKill: a handler killed with SIGKILL (a crash, the OOM
// killer, systemd's final kill) runs no Close. What it attached must not
// outlive it: the program is attached through a bpf_link, which the
// kernel detaches when the process's last descriptor of it closes, and
// the AF_XDP socket's queue is freed (asynchronously: xsk.Open retries
// EBUSY). The next start on the interface, in either mode, must find no
// program attached, open, and receive. A program attached through
// netlink instead would stay on the interface after the kill, and the
// next start would fail (TestXDPInterfaceHeld).
func TestXDPRestartAfterKill(t *testing.T) {
	if env := os.Getenv(xdpKillChild); env != "" {
		xdpKilledChild(t, env)
		return
	}
	lab := xdpNewLab(t, netlab.Options{Prefix: "helper166"})
	for _, mode := range []string{"native", "generic"} {
		t.Run(mode, func(t *testing.T) {
			child := exec.Command(os.Args[0], "-test.run=^TestXDPRestartAfterKill$")
			child.Env = append(os.Environ(), xdpKillChild+"="+lab.Dst+" "+lab.DstIf+" "+mode)
			out, err := child.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			child.Stderr = os.Stderr
			if err := deathsig.Start(child); err != nil {
				t.Fatal(err)
			}
			defer child.Wait()
			defer child.Process.Kill()
			lines := bufio.NewScanner(out)
			for lines.Scan() && !strings.HasPrefix(lines.Text(), "xdp open") {
			}
			if !strings.HasPrefix(lines.Text(), "xdp open") {
				t.Fatalf("the child did not open the xdp backend (%v)", lines.Err())
			}
			if held := xdpAttachedIn(t, lab); held == "" {
				t.Fatal("the child's program is not attached")
			}
			if err := child.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			child.Wait()
			if held := xdpAttachedIn(t, lab); held != "" {
				t.Fatalf("after the kill the interface still has %s attached", held)
			}
			r := xdpOpen(t, lab, Config{PollTimeout: 20 * time.Millisecond, XDPMode: mode})
			defer r.Close()
			snd := xdpNewSender(t, lab, lab.Src, netip.AddrPortFrom(xdpTestGroup, xdpTestPort))
			if err := <-snd.sendPaced(1, xdpPayload); err != nil {
				t.Fatal(err)
			}
			r.Release([]Packet{xdpReceiveOne(t, r)})
		})
	}
}

// xdpAttachedIn describes the XDP programs attached to the lab's
// receiving interface ("" for none).
func xdpAttachedIn(t *testing.T, lab *netlab.Lab) string {
	t.Helper()
	var held string
	if err := lab.Do(lab.Dst, func() error {
		ifi, err := LookupInterface(lab.DstIf)
		if err == nil {
			held = xdpAttachedPrograms(ifi.Index)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return held
}

// xdpKilledChild opens the xdp backend as env says, says so on stdout and
// waits to be killed (at most a minute).
func xdpKilledChild(t *testing.T, env string) {
	f := strings.Fields(env)
	if len(f) != 3 {
		t.Fatalf("%s=%q: want namespace, interface and mode", xdpKillChild, env)
	}
	err := netlab.Do(f[0], func() error {
		_, err := Open(Config{Backend: BackendXDP, XDPMode: f[2], PollTimeout: 20 * time.Millisecond,
			Lines: []LineConfig{{Name: "A", Interface: f[1], Group: xdpTestGroup, Port: xdpTestPort}}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("xdp open\n")
	time.Sleep(time.Minute)
}
