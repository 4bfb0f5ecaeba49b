// Package credtest runs a test's function under another user's
// credentials, on one OS thread of the test process: Linux credentials
// are per thread, and the raw syscalls bypass Go's all-threads setuid, so
// the rest of the process stays root.
package credtest

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// AsUser runs fn on an OS thread whose credentials alone are switched to
// uid and gid without supplementary groups. The thread is never unlocked,
// so the runtime discards it afterwards. It skips where this process is
// not root (it needs CAP_SETUID and CAP_SETGID).
func AsUser(t testing.TB, uid, gid int, fn func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("switching a thread to another user needs root (CAP_SETUID, CAP_SETGID)")
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0); e != 0 {
			done <- e
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)); e != 0 {
			done <- e
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)); e != 0 {
			done <- e
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("switch thread to %d:%d: %v", uid, gid, err)
	}
}
