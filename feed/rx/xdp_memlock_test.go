package rx

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/privilege"
)

// xdpMemlockLimit is the RLIMIT_MEMLOCK TestXDPMemlock runs under: below
// the default ring's 16 MiB UMEM, the size of a 4 MiB one (ring_size
// 1024), above a 2 MiB one (ring_size 512) and io_uring's rings.
const xdpMemlockLimit = 4 << 20

// openWithoutIPCLock opens cfg in the lab's receiving namespace on a thread
// without cap_ipc_lock, under an RLIMIT_MEMLOCK of xdpMemlockLimit (the
// process's soft limit, put back after): what a process of the unit's
// user gets whose LimitMEMLOCK= is below its UMEM.
func openWithoutIPCLock(t *testing.T, lab *netlab.Lab, cfg Config) (Receiver, error) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max != unix.RLIM_INFINITY && lim.Max < xdpMemlockLimit {
		t.Skipf("RLIMIT_MEMLOCK hard limit %d is below %d", lim.Max, xdpMemlockLimit)
	}
	low := unix.Rlimit{Cur: xdpMemlockLimit, Max: lim.Max}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &low); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim)
	var r Receiver
	var openErr error
	err := lab.Do(lab.Dst, func() error {
		runtime.LockOSThread() // Do's, again: WithoutOnLockedThread may keep it
		defer runtime.UnlockOSThread()
		return privilege.WithoutOnLockedThread(privilege.IPCLock, func() { r, openErr = Open(cfg) })
	})
	if err != nil {
		if r != nil {
			r.Close()
		}
		t.Fatal(err)
	}
	return r, openErr
}

// TestXDPMemlock: without cap_ipc_lock the kernel charges AF_XDP's UMEM
// to RLIMIT_MEMLOCK, and refuses one above it (XDP_UMEM_REG: ENOBUFS). That
// is a limit of the host, as io_uring's rings above it are: under auto the
// backend falls back to io_uring, logging the limit and the remedy; asked
// for by name, it fails saying so, with ErrNotSupported (run: exit 78).
// Before, both returned 'register umem (16777216 bytes): no buffer space
// available', auto stopped there, and run exited 1, which the unit
// restarted until its start limit.
func TestXDPMemlock(t *testing.T) {
	lab := xdpNewLab(t, netlab.Options{Prefix: "h173"})
	line := []LineConfig{{Name: "A", Interface: lab.DstIf, Group: xdpTestGroup, Port: xdpTestPort}}
	const remedy = "raise it (LimitMEMLOCK= in the unit, ulimit -l) or grant cap_ipc_lock"

	t.Run("xdp", func(t *testing.T) {
		r, err := openWithoutIPCLock(t, lab, Config{Backend: BackendXDP, Lines: line})
		if r != nil {
			r.Close()
		}
		if !errors.Is(err, ErrNotSupported) || !errors.Is(err, unix.ENOBUFS) ||
			!strings.Contains(err.Error(), "AF_XDP charges its UMEMs (16 MiB) to RLIMIT_MEMLOCK, 4096 KiB here") || !strings.Contains(err.Error(), remedy) {
			t.Fatalf("a 16 MiB UMEM under a 4 MiB RLIMIT_MEMLOCK without cap_ipc_lock: %v; want ENOBUFS and ErrNotSupported, naming the UMEMs, the limit and %q", err, remedy)
		}
	})
	t.Run("auto", func(t *testing.T) {
		var logs bytes.Buffer
		r, err := openWithoutIPCLock(t, lab, Config{Lines: line, Log: zerolog.New(zerolog.SyncWriter(&logs))})
		if err != nil {
			t.Fatalf("auto: %v; want a fallback to io_uring:\n%s", err, logs.String())
		}
		defer r.Close()
		if !strings.HasPrefix(r.Backend(), BackendUring) {
			t.Errorf("auto opened %q, want the io_uring backend", r.Backend())
		}
		if !strings.Contains(logs.String(), "rx: xdp backend unavailable here, falling back to uring") ||
			!strings.Contains(logs.String(), "4096 KiB here") || !strings.Contains(logs.String(), remedy) {
			t.Errorf("the fallback's log does not give the limit and %q:\n%s", remedy, logs.String())
		}
	})
	t.Run("fits", func(t *testing.T) {
		// A 2 MiB UMEM (ring_size 512) fits the limit: AF_XDP opens.
		r, err := openWithoutIPCLock(t, lab, Config{Lines: line, RingSize: 512})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if !strings.HasPrefix(r.Backend(), BackendXDP) {
			t.Fatalf("a 2 MiB UMEM under a 4 MiB limit: auto opened %q, want AF_XDP", r.Backend())
		}
		// A 4 MiB one fits the limit alone, but the uid holds the first:
		// not a limit of the host (the other may stop), so auto does
		// not fall back, and the error says what holds the rest.
		r2, err := openWithoutIPCLock(t, lab, Config{Lines: line, RingSize: 1024})
		if r2 != nil {
			r2.Close()
		}
		if !errors.Is(err, unix.ENOBUFS) || errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "that fits alone, so locked memory the uid holds elsewhere takes the rest") {
			t.Errorf("a 4 MiB UMEM while the uid holds another under a 4 MiB limit: %v; want ENOBUFS, not ErrNotSupported, saying the uid holds the rest", err)
		}
	})
}
