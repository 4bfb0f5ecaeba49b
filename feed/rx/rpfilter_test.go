package rx

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestReversePathWarning: with a strict reverse path filter on the
// receiver (rp_filter 1) and no route back to line A's configured source,
// the kernel drops A's datagrams before any socket: the socket backend
// receives nothing from that source, AF_XDP (native) takes them before the
// check. Both warn at open, once, naming line A and the remedy; line B,
// whose source is on the link, is not named. CheckReversePath (for
// feedhandler check) says the same of line A alone.
func TestReversePathWarning(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h144"})
	setRPFilter(t, lab, "1", "all", lab.DstIf)
	foreign := netip.MustParseAddr("198.51.100.7")
	groupB := netip.MustParseAddr("233.54.12.112")
	lines := []LineConfig{
		{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort, Source: foreign},
		{Name: "B", Interface: lab.DstIf, Group: groupB, Port: xdpTestPort, Source: lab.SrcIP},
	}
	frame := func(src netip.Addr, payload string) []byte {
		f := xdpFrame(netip.AddrPortFrom(src, 40001), netip.AddrPortFrom(xdpTestGroup, xdpTestPort), nil, 0, []byte(payload))
		xdpSeal(f, 14, true)
		return f
	}
	for _, c := range []struct {
		backend string
		want    []string
	}{
		{BackendSocket, nil},
		{BackendXDP, []string{"from the foreign source"}},
	} {
		t.Run(c.backend, func(t *testing.T) {
			var logs bytes.Buffer
			cfg := Config{PollTimeout: 20 * time.Millisecond, Log: zerolog.New(&logs), Lines: lines}
			var r Receiver
			if c.backend == BackendXDP {
				cfg.XDPMode = "native"
				r = xdpOpen(t, lab, cfg)
			} else {
				r = openBackend(t, lab, c.backend, cfg)
			}
			defer r.Close()
			raw := xdpNewRawSender(t, lab)
			raw.send(t, frame(foreign, "from the foreign source"))
			var got []string
			pkts := make([]Packet, 8)
			for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
				n, err := r.Receive(pkts)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range pkts[:n] {
					got = append(got, string(p.Data))
				}
				r.Release(pkts[:n])
			}
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Errorf("received %q, want %q", got, c.want)
			}
			l := logs.String()
			if n := strings.Count(l, "the kernel drops datagrams from"); n != 1 || !strings.Contains(l, `"line":"A"`) ||
				!strings.Contains(l, "rp_filter=2") || !strings.Contains(l, "net.ipv4.conf.all.rp_filter no higher") ||
				strings.Contains(l, `"line":"B"`) {
				t.Errorf("%d reverse path warnings, want 1 naming line A (not B) and the remedy:\n%s", n, l)
			}
		})
	}
	// CheckReversePath (feedhandler check) asks the same with no backend
	// open, joining the groups for the question.
	var errs []error
	if err := lab.Do(lab.Dst, func() error { errs = CheckReversePath(lines); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "line A: the kernel drops datagrams from 198.51.100.7 to 233.54.12.111 arriving on "+lab.DstIf) ||
		!strings.Contains(errs[0].Error(), "rp_filter 1") {
		t.Errorf("CheckReversePath: %v; want one error, line A's, saying rp_filter 1", errs)
	}
	// The interface's rp_filter alone set to 0 does not help while
	// conf.all stays 1 (the larger applies), which is why the remedy names
	// conf.all too.
	if err := lab.Do(lab.Dst, func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+lab.DstIf+"/rp_filter", []byte("0"), 0); err != nil {
			return err
		}
		errs = CheckReversePath(lines)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "rp_filter 1") {
		t.Errorf("CheckReversePath with %s's rp_filter 0 and conf.all 1: %v; want line A's error still, rp_filter 1", lab.DstIf, errs)
	}
}

// TestSysctlConfKeyDottedName: the reverse path warning's remedy names the
// interface's sysctl key as sysctl(8) takes it. A dot separates a key's
// parts, so for an interface named with a dot (a VLAN, eth0.100) the
// remedy must say net.ipv4.conf.eth0/100.rp_filter: sysctl given
// net.ipv4.conf.eth0.100.rp_filter looks for conf/eth0/100 and fails.
// Checked with the real sysctl on a veth interface named so, in a
// network namespace of the test's own.
func TestSysctlConfKeyDottedName(t *testing.T) {
	if _, err := exec.LookPath("sysctl"); err != nil {
		t.Fatal("sysctl not installed (Debian package procps; .ci/setup test installs it)")
	}
	ns := fmt.Sprintf("fhsysctl%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	const name = "fhv.100"
	if out, err := exec.Command("ip", "-n", ns, "link", "add", name, "type", "veth", "peer", "name", "fhv.101").CombinedOutput(); err != nil {
		t.Fatalf("ip link add %s type veth: %v\n%s", name, err, out)
	}
	key := "net.ipv4.conf." + sysctlConfKey(name) + ".rp_filter"
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-w", key+"=2").CombinedOutput(); err != nil {
		t.Fatalf("the remedy's key: sysctl -w %s=2: %v\n%s", key, err, out)
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv4/conf/"+name+"/rp_filter").Output()
	if err != nil || strings.TrimSpace(string(out)) != "2" {
		t.Fatalf("after sysctl -w %s=2: conf/%s/rp_filter %q (%v), want 2", key, name, out, err)
	}
}
