package shm

import (
	"errors"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// asUser runs fn on an OS thread whose credentials alone are switched to
// uid and gid without supplementary groups (Linux credentials are per
// thread; the raw syscalls bypass Go's all-threads setuid). The thread is
// never unlocked, so the runtime discards it afterwards.
func asUser(t *testing.T, uid, gid int, fn func()) {
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

func statOf(t *testing.T, path string) (os.FileMode, int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm(), int(fi.Sys().(*syscall.Stat_t).Gid)
}

// TestPermissions: the file carries the configured mode (umask ignored) and
// group; a reader in the group reads; a reader outside it gets an error
// naming the group it needs.
func TestPermissions(t *testing.T) {
	const nobody, nogroup = 65534, 65534
	old := unix.Umask(0o077) // a strict umask must not change the configured mode
	defer unix.Umask(old)

	// Default: 0640, the writer's group (root here).
	w := testWriter(t, Config{Instruments: 4, Depth: 2})
	if mode, gid := statOf(t, w.Path()); mode != 0o640 || gid != os.Getegid() {
		t.Fatalf("default file: mode %04o gid %d, want 0640 gid %d", mode, gid, os.Getegid())
	}
	asUser(t, nobody, nogroup, func() {
		r, err := Open(w.Path())
		if err == nil {
			r.Close()
			t.Errorf("nobody opened a 0640 file of group %d", os.Getegid())
			return
		}
		var pe *PermissionError
		if !errors.As(err, &pe) || !errors.Is(err, fs.ErrPermission) {
			t.Errorf("error %v (%T), want a *PermissionError wrapping fs.ErrPermission", err, err)
		}
		if want := "permission denied: you need group root (file mode 0640"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	})

	// Group nogroup: nobody (primary group nogroup) reads.
	w2 := testWriter(t, Config{Instruments: 4, Depth: 2, Group: "nogroup", Mode: 0o660})
	if err := w2.Register(1, "AAPL"); err != nil {
		t.Fatal(err)
	}
	s := newSnapshot(2)
	fillSnapshot(s, 1, 1, 2)
	if err := w2.Publish(s); err != nil {
		t.Fatal(err)
	}
	if mode, gid := statOf(t, w2.Path()); mode != 0o660 || gid != nogroup {
		t.Fatalf("file of group nogroup: mode %04o gid %d, want 0660 gid %d", mode, gid, nogroup)
	}
	asUser(t, nobody, nogroup, func() {
		r, err := Open(w2.Path())
		if err != nil {
			t.Errorf("nobody in group nogroup: %v", err)
			return
		}
		defer r.Close()
		buf := make([]byte, r.Info().MaxSnapshot)
		if _, err := r.Read(1, buf); err != nil {
			t.Errorf("read as nobody: %v", err)
		}
	})

	// Owner only: the message names the user.
	w3 := testWriter(t, Config{Instruments: 4, Depth: 2, Group: "nogroup", Mode: 0o600})
	asUser(t, nobody, nogroup, func() {
		_, err := Open(w3.Path())
		if err == nil || !strings.Contains(err.Error(), "permission denied: you need to run as user root") {
			t.Errorf("0600 file: error %v, want it to name user root", err)
		}
	})

	// Bad configurations fail Create with the reason.
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Instruments: 4, Depth: 2, Group: "no-such-group-fh"}, `look up group "no-such-group-fh": no such group`},
		{Config{Instruments: 4, Depth: 2, Mode: 0o440}, "mode 0440: want permission bits only, writable by the owner"},
	} {
		c.cfg.Name = testName(t)
		if w, err := Create(c.cfg); err == nil {
			w.Close()
			t.Errorf("Create(%+v) succeeded", c.cfg)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Create(%+v): %v, want %q", c.cfg, err, c.want)
		}
	}
}
