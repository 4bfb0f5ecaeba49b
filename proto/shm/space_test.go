package shm

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCreateTmpfsTooSmall: a file larger than its tmpfs can hold fails
// Create with ENOSPC (review of round 13: Create's stores into every page
// died with SIGBUS). The tmpfs is mounted in a mount namespace of the
// test's own thread.
func TestCreateTmpfsTooSmall(t *testing.T) {
	dir := t.TempDir()
	type result struct {
		skip string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread in its own namespace exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			res <- result{skip: "unshare a mount namespace (needs CAP_SYS_ADMIN): " + err.Error()}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			res <- result{err: fmt.Errorf("make mounts private: %w", err)}
			return
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
			res <- result{err: fmt.Errorf("mount tmpfs: %w", err)}
			return
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		w, err := Create(Config{Name: filepath.Join(dir, "feed"), Instruments: 4096, Depth: 10})
		if err == nil {
			size := w.l.fileSize
			w.Close()
			res <- result{err: fmt.Errorf("Create of a %d-byte file on a 2 MiB tmpfs succeeded", size)}
			return
		}
		if !errors.Is(err, unix.ENOSPC) {
			res <- result{err: fmt.Errorf("Create: %w, want ENOSPC", err)}
			return
		}
		res <- result{}
	}()
	r := <-res
	if r.skip != "" {
		t.Skip(r.skip)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
}
