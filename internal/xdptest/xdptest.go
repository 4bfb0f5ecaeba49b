// Package xdptest attaches the steering program to an interface as a tool
// that has since exited leaves it: through netlink (ip link), held by the
// interface alone, no process holding a file descriptor or a link of it.
package xdptest

import (
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
)

// AttachWithIP loads the steering program as the handler does (without
// its timestamp metadata where the kernel refuses bpf_xdp_adjust_meta to
// XDP programs, which `ip link set ... obj` of the committed object would
// have the verifier refuse whole) and attaches it to dev in namespace ns
// with `ip link set dev DEV MODE pinned PATH`, MODE xdpdrv or xdpgeneric,
// through a bpffs mounted for the call. It returns a function that takes
// it off again (`MODE off`).
func AttachWithIP(t testing.TB, ns, dev, mode string) (off func()) {
	t.Helper()
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns, "link", "set", "dev", dev}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip link set %v: %v\n%s", args, err, out)
		}
	}
	p, err := bpf.Load()
	if err != nil {
		t.Fatalf("load the steering program: %v", err)
	}
	defer p.Close()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	pin := filepath.Join(dir, "xdp_steer")
	if err := p.XDP().Pin(pin); err != nil {
		t.Fatalf("pin the steering program: %v", err)
	}
	ip(mode, "pinned", pin)
	if err := p.XDP().Unpin(); err != nil {
		t.Fatalf("unpin the steering program: %v", err)
	}
	return func() { t.Helper(); ip(mode, "off") }
}
