package shm

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/credtest"
)

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
	credtest.AsUser(t, nobody, nogroup, func() {
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
	credtest.AsUser(t, nobody, nogroup, func() {
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
	credtest.AsUser(t, nobody, nogroup, func() {
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
