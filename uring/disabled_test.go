package uring

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/seccomptest"
)

// TestSetupRefusedSaysWhy: io_uring_setup refused with EPERM says why and
// what to do: here a seccomp filter on a thread of the test's own (the
// host's kernel.io_uring_disabled is global: setting it would refuse
// io_uring to every other test of the host meanwhile). Before, the error
// was 'io_uring_setup: io_uring feature not supported: operation not
// permitted', naming neither the setting nor the filter.
func TestSetupRefusedSaysWhy(t *testing.T) {
	mode, _, ok := Disabled()
	if ok && mode != 0 {
		t.Skipf("kernel.io_uring_disabled is %d here: the test meets a refusal by a seccomp filter", mode)
	}
	err := setupRefusedWith(unix.EPERM)
	if err == nil || !errors.Is(err, unix.EPERM) {
		t.Fatalf("Setup under a filter refusing io_uring_setup: %v, want EPERM", err)
	}
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "a seccomp filter (a container runtime's default profile, systemd's SystemCallFilter=) or a security module refuses io_uring_setup") {
		t.Errorf("Setup refused: %v; want ErrNotSupported saying a seccomp filter or a security module refuses it", err)
	}
	// Other threads are not filtered.
	r, err := Setup(Params{Entries: 4})
	if err != nil {
		t.Fatalf("Setup without the filter: %v", err)
	}
	r.Close()
}

// TestRefusedWhy: what RefusedWhy says for each value of the sysctls,
// read from files standing in for them.
func TestRefusedWhy(t *testing.T) {
	dir := t.TempDir()
	oldD, oldG := disabledPath, groupPath
	t.Cleanup(func() { disabledPath, groupPath = oldD, oldG })
	disabledPath, groupPath = filepath.Join(dir, "io_uring_disabled"), filepath.Join(dir, "io_uring_group")
	member := os.Getegid()
	for _, tc := range []struct {
		disabled, group string // "": no such file
		want            string
	}{
		{"2", "-1", "kernel.io_uring_disabled is 2: io_uring is off for every process; sysctl -w kernel.io_uring_disabled=0"},
		{"1", "-1", "kernel.io_uring_disabled is 1 and kernel.io_uring_group -1: only processes with cap_sys_admin may use io_uring"},
		{"1", "4242", "kernel.io_uring_disabled is 1: only processes with cap_sys_admin or in group 4242 (kernel.io_uring_group) may use io_uring, and this one is in neither; add the handler's user to group 4242"},
		// In the group, yet refused: not the setting.
		{"1", strconv.Itoa(member), "kernel.io_uring_disabled is 1 and this process is in group " + strconv.Itoa(member) + " (kernel.io_uring_group), so a seccomp filter"},
		{"0", "-1", "kernel.io_uring_disabled is 0, so a seccomp filter"},
		{"", "", "a seccomp filter (a container runtime's default profile"},
	} {
		os.Remove(disabledPath)
		os.Remove(groupPath)
		if tc.disabled != "" {
			if err := os.WriteFile(disabledPath, []byte(tc.disabled+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(groupPath, []byte(tc.group+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := RefusedWhy(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("io_uring_disabled %q, io_uring_group %q: %q, want it to start %q", tc.disabled, tc.group, got, tc.want)
		}
	}
}

// TestSetupRefusedOtherErrno: io_uring_setup refused with EACCES (a
// security module: SELinux's io_uring class, checked at io_uring_setup
// since Linux 6.15, or a BPF LSM program) or ENOSYS (a kernel without io_uring, or a
// seccomp filter answering as if it had none: Nix's build sandbox) is a
// missing feature as EPERM is, said with why, so that auto falls back to
// the sockets. Before, EACCES came back as a bare errno ('io_uring_setup:
// permission denied'), not ErrNotSupported: auto failed the start instead
// of falling back, and ENOSYS named no cause.
func TestSetupRefusedOtherErrno(t *testing.T) {
	for _, tc := range []struct {
		errno unix.Errno
		why   string
	}{
		{unix.EACCES, "a security module refuses io_uring_setup to this process (SELinux's io_uring class, checked at io_uring_setup since Linux 6.15, or a BPF LSM program)"},
		{unix.ENOSYS, "this kernel has no io_uring (built without CONFIG_IO_URING), or a seccomp filter answers ENOSYS as if it had none"},
	} {
		err := setupRefusedWith(tc.errno)
		if !errors.Is(err, tc.errno) {
			t.Fatalf("Setup under a filter refusing io_uring_setup with %v: %v", tc.errno, err)
		}
		if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Setup refused with %v: %v; want ErrNotSupported saying %q", tc.errno, err, tc.why)
		}
	}
}

// setupRefusedWith is Setup's error on a thread of its own under a seccomp
// filter refusing io_uring_setup with errno.
func setupRefusedWith(errno unix.Errno) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with its filter
		if err := seccomptest.RefuseIOUringSetup(errno, false); err != nil {
			errc <- err
			return
		}
		r, err := Setup(Params{Entries: 4})
		if err == nil {
			r.Close()
		}
		errc <- err
	}()
	return <-errc
}
