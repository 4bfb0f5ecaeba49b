package uring

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/privilege"
)

// The sysctls that decide who may create a ring (Linux 6.6+): 0, anyone;
// 1, processes with cap_sys_admin or in the group io_uring_group (-1:
// none); 2, no one. Variables for tests.
var (
	disabledPath = "/proc/sys/kernel/io_uring_disabled"
	groupPath    = "/proc/sys/kernel/io_uring_group"
)

// Disabled reads kernel.io_uring_disabled and kernel.io_uring_group; ok is
// false on a kernel without them (before 6.6).
func Disabled() (mode, group int, ok bool) {
	m, ok := readSysctlInt(disabledPath)
	if !ok {
		return 0, 0, false
	}
	g, gok := readSysctlInt(groupPath)
	if !gok {
		g = -1
	}
	return m, g, true
}

func readSysctlInt(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return n, err == nil
}

// setupRefused is io_uring_setup's refusal, said with why. EPERM: the
// kernel's io_uring_disabled setting, or, with it at 0, a seccomp filter
// or a security module (RefusedWhy). EACCES: a security module, whose
// io_uring_setup hook (Linux 6.15+) SELinux answers with EACCES. ENOSYS: a
// kernel without io_uring, or a seccomp filter that answers as one (Nix's
// build sandbox does). Each is a feature this host lacks, ErrNotSupported,
// so that auto falls back to the sockets and says why.
func setupRefused(errno unix.Errno) error {
	why := RefusedWhy()
	switch errno {
	case unix.EACCES:
		why = "a security module refuses io_uring_setup to this process (SELinux's io_uring class, checked at io_uring_setup since Linux 6.15, or a BPF LSM program); allow it in the policy, or use receive.backend socket"
	case unix.ENOSYS:
		why = "this kernel has no io_uring (built without CONFIG_IO_URING), or a seccomp filter answers ENOSYS as if it had none (a build sandbox, systemd's SystemCallErrorNumber=ENOSYS); use receive.backend socket"
	}
	return fmt.Errorf("%w: %w (%s)", ErrNotSupported, errno, why)
}

// RefusedWhy says why io_uring_setup is refused with EPERM here, from
// kernel.io_uring_disabled and kernel.io_uring_group, with the remedy.
func RefusedWhy() string {
	mode, group, ok := Disabled()
	switch {
	case ok && mode == 2:
		return "kernel.io_uring_disabled is 2: io_uring is off for every process; sysctl -w kernel.io_uring_disabled=0 turns it on, or use receive.backend socket"
	case ok && mode == 1 && group < 0:
		return "kernel.io_uring_disabled is 1 and kernel.io_uring_group -1: only processes with cap_sys_admin may use io_uring; set kernel.io_uring_group to a group the handler's user is in (SupplementaryGroups= in the unit) or kernel.io_uring_disabled to 0, or use receive.backend socket"
	case ok && mode == 1 && privilege.InGroup(group):
		return fmt.Sprintf("kernel.io_uring_disabled is 1 and this process is in group %d (kernel.io_uring_group), so a seccomp filter (a container runtime's default profile, systemd's SystemCallFilter=) or a security module refuses io_uring_setup to it", group)
	case ok && mode == 1:
		return fmt.Sprintf("kernel.io_uring_disabled is 1: only processes with cap_sys_admin or in group %d (kernel.io_uring_group) may use io_uring, and this one is in neither; add the handler's user to group %d (SupplementaryGroups= in the unit), set kernel.io_uring_disabled to 0, or use receive.backend socket", group, group)
	case ok:
		return fmt.Sprintf("kernel.io_uring_disabled is %d, so a seccomp filter (a container runtime's default profile, systemd's SystemCallFilter=) or a security module refuses io_uring_setup to this process", mode)
	}
	return "a seccomp filter (a container runtime's default profile, systemd's SystemCallFilter=) or a security module refuses io_uring_setup to this process"
}
