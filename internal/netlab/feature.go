package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// TB is the part of testing.TB that SkipOrFail needs.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// KernelVersion returns the running kernel's major and minor version.
func KernelVersion() (major, minor int, release string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, 0, ""
	}
	release = unix.ByteSliceToString(u.Release[:])
	fmt.Sscanf(release, "%d.%d", &major, &minor)
	return major, minor, release
}

// SkipOrFail is for a test whose feature is unavailable (err). It skips,
// naming the feature, only when the feature may truly be missing: not
// root, or a kernel older than major.minor. As root on a kernel that has
// the feature, the failure is a real one and the test fails: a green suite
// must not hide a broken backend.
func SkipOrFail(t TB, feature string, major, minor int, err error) {
	t.Helper()
	kmaj, kmin, rel := KernelVersion()
	newEnough := kmaj > major || (kmaj == major && kmin >= minor)
	if os.Geteuid() == 0 && newEnough {
		t.Fatalf("%s should work as root on kernel %s (needs %d.%d): %v", feature, rel, major, minor, err)
	}
	who := "not root"
	if os.Geteuid() == 0 {
		who = "root"
	}
	t.Skipf("%s unavailable (%s, kernel %s, needs %d.%d): %v", feature, who, strings.TrimSpace(rel), major, minor, err)
}

// LabT is the part of testing.TB that ForTest needs.
type LabT interface {
	TB
	Errorf(format string, args ...any)
	Cleanup(func())
}

// ForTest makes a lab for one test and closes it at the test's cleanup,
// failing the test if closing fails. It skips the test when this machine
// cannot create network namespaces (ErrNotSupported: not root, or no
// iproute2) and fails it on any other error.
func ForTest(t LabT, o Options) *Lab {
	t.Helper()
	lab, err := New(o)
	if errors.Is(err, ErrNotSupported) {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	if err != nil {
		t.Fatalf("make lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return lab
}

// Namespace adds a network namespace for one test, with only lo, up, and
// returns its name (prefix, this process's pid and a counter); it is
// deleted at the test's cleanup, or by the next New should this process be
// killed first. Sockets a test opens there (through Do) stay off the
// host's interfaces and ports. It skips the test when this machine cannot
// create network namespaces (not root, or no iproute2) and fails it on any
// other error.
func Namespace(t LabT, prefix string) string {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("a network namespace of the test's own: iproute2 'ip' not found: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skipf("a network namespace of the test's own needs root (CAP_SYS_ADMIN)")
	}
	sweep()
	ns := fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), counter.Add(1))
	if err := ip("netns", "add", ns); err != nil {
		t.Fatalf("%v", err)
	}
	own(ns)
	t.Cleanup(func() {
		if err := ip("netns", "del", ns); err != nil {
			t.Errorf("%v", err)
		}
		os.Remove(filepath.Join(ownerDir, ns))
	})
	if err := ip("-n", ns, "link", "set", "lo", "up"); err != nil {
		t.Fatalf("%v", err)
	}
	return ns
}
