// Package seccomptest refuses io_uring_setup(2) through a seccomp filter,
// with EPERM as a container runtime's default profile or systemd's
// SystemCallFilter= does, or with another errno (EACCES, as a security
// module does; ENOSYS, as a build sandbox does): tests use it to meet a
// refused io_uring on a host where it is enabled, without
// kernel.io_uring_disabled, a global setting that would refuse it to every
// other process of the host too.
package seccomptest

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DenyIOUringSetup installs a seccomp filter under which io_uring_setup
// fails with EPERM and every other call goes through: on the calling
// thread only (lock it, and let it exit), or with all set on every thread
// of the process (a child process before it runs its command). It sets
// no_new_privs first, which a filter needs without cap_sys_admin; both
// last for the thread (process) and whatever it starts.
func DenyIOUringSetup(all bool) error { return RefuseIOUringSetup(unix.EPERM, all) }

// RefuseIOUringSetup is DenyIOUringSetup with io_uring_setup failing with
// errno.
func RefuseIOUringSetup(errno unix.Errno, all bool) error {
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_IO_URING_SETUP},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(errno)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl no_new_privs: %w", err)
	}
	var flags uintptr
	if all {
		flags = unix.SECCOMP_FILTER_FLAG_TSYNC
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("seccomp set mode filter: %w", errno)
	}
	return nil
}
