package netlab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/deathsig"
)

func TestLabUnicastRoundTrip(t *testing.T) {
	lab, err := New(Options{})
	if errors.Is(err, ErrNotSupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()

	var conn *net.UDPConn
	if err := lab.Do(lab.Dst, func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: lab.DstIP.AsSlice(), Port: 31337})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := lab.Do(lab.Src, func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: lab.DstIP.AsSlice(), Port: 31337})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hello"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, src, err := conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "hello" || !src.IP.Equal(lab.SrcIP.AsSlice()) {
		t.Fatalf("got %q from %v", buf[:n], src)
	}
	if err := lab.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + lab.Dst); err == nil {
		t.Fatalf("namespace %s left behind", lab.Dst)
	}
}

// TestSweepRemovesOrphans: a namespace whose recorded owner process is gone
// is deleted by the next New.
func TestSweepRemovesOrphans(t *testing.T) {
	lab, err := New(Options{Prefix: "fho"})
	if errors.Is(err, ErrNotSupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	// Pretend a dead process made lab.Src.
	if err := os.WriteFile("/run/fhnetlab/"+lab.Src, []byte("999999999"), 0o644); err != nil {
		t.Fatal(err)
	}
	other, err := New(Options{Prefix: "fho"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := os.Stat("/run/netns/" + lab.Src); err == nil {
		t.Fatalf("orphaned namespace %s not swept", lab.Src)
	}
	if _, err := os.Stat("/run/netns/" + lab.Dst); err != nil {
		t.Fatalf("live namespace %s was swept: %v", lab.Dst, err)
	}
}

// TestNamespaceNamesApart: two processes' labs never share a namespace
// name, however their pids and counters run together. Before, pid 1234's
// lab 56 and pid 12345's lab 6 were both fhs123456 (pid%100000, then the
// counter), and pids 100000 apart had the same names throughout.
func TestNamespaceNamesApart(t *testing.T) {
	for _, c := range []struct {
		pidA, pidB int
		nA, nB     uint32
	}{
		{1234, 12345, 56, 6},
		{4321, 104321, 1, 1},
	} {
		srcA, dstA := namespaceNames("fh", c.pidA, c.nA)
		srcB, dstB := namespaceNames("fh", c.pidB, c.nB)
		if srcA == srcB || dstA == dstB || srcA == dstA {
			t.Errorf("pid %d lab %d: %s, %s; pid %d lab %d: %s, %s: want four names", c.pidA, c.nA, srcA, dstA, c.pidB, c.nB, srcB, dstB)
		}
	}
}

// TestDoEarlyErrorKeepsThread: Do's early errors (here the namespace does
// not exist: opening /run/netns/NAME fails) leave its thread as it was, in
// this process's namespace, so the thread goes back to the runtime's pool;
// only a thread that may be left in the wrong namespace (the switch back
// failed) ends with its goroutine. A thread that ended is gone from
// /proc/self/task (the runtime never ends an idle one).
func TestDoEarlyErrorKeepsThread(t *testing.T) {
	const calls = 50
	missing := fmt.Sprintf("fhnone%d", os.Getpid())
	if err := Do(missing, func() error { return nil }); err == nil {
		t.Fatalf("Do in %s, which does not exist: no error", missing)
	}
	before := threads(t)
	for range calls {
		if err := Do(missing, func() error { t.Error("fn ran"); return nil }); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Do in %s: %v, want it not found", missing, err)
		}
	}
	after := threads(t)
	var gone []string
	for tid := range before {
		if !after[tid] {
			gone = append(gone, tid)
		}
	}
	if len(gone) > 0 {
		t.Fatalf("%d failed Do calls ended %d of the %d threads there were before (%s): their threads were thrown away, not put back",
			calls, len(gone), len(before), strings.Join(gone, ", "))
	}
}

// threads returns the ids of this process's threads.
func threads(t *testing.T) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	tids := map[string]bool{}
	for _, e := range ents {
		tids[e.Name()] = true
	}
	return tids
}

const sweepEnv = "NETLAB_TEST_SWEEP"

// TestSweepChild is the child of TestSweepInPidNamespace: it sweeps.
func TestSweepChild(t *testing.T) {
	if os.Getenv(sweepEnv) != "1" {
		t.Skip("the child of TestSweepInPidNamespace")
	}
	sweep()
}

// TestSweepInPidNamespace: a process in a pid namespace of its own (a
// test's child run so) does not see the owners' pids, would take every
// lab for gone and delete every live lab's namespaces; its sweep deletes
// nothing.
func TestSweepInPidNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a pid namespace (unshare --pid) needs root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skipf("unshare (util-linux) not found: %v", err)
	}
	// A record of this live process's for a namespace that is not made:
	// sweep removes the record when it takes the owner for gone.
	ns := fmt.Sprintf("fhsweeppidns%d", os.Getpid())
	own(ns)
	record := filepath.Join(ownerDir, ns)
	t.Cleanup(func() { os.Remove(record) })
	if _, err := os.Stat(record); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--pid", "--fork", os.Args[0], "-test.run=^TestSweepChild$", "-test.v")
	cmd.Env = append(os.Environ(), sweepEnv+"=1")
	if out, err := deathsig.CombinedOutput(cmd); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat(record); err != nil {
		t.Errorf("%s, this live process's, after the sweep of a child in a pid namespace of its own: %v", record, err)
	}
}
