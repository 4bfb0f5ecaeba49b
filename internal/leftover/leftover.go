// Package leftover names the files and directories that tests (and the
// demo) make outside the directories Go removes for them, after the
// process that owns them, and removes those whose owner is gone.
//
// A process removes what it made at its cleanup; one that is killed
// (SIGKILL, a signal's default action, or go test's -timeout, whose panic
// runs no cleanup) cannot. Its names carry its pid (NAME-PID-…), and the
// next process that makes a name of the same prefix removes them once
// that pid is gone: no process has it, it is a zombie, or the process that
// has it now started after the thing was last modified (the pid was
// reused: the owner made it after it started, so a process started later
// cannot be the owner). Anything whose owner still runs stays, whoever it
// is (another test binary, a handler it started, a user's demo).
//
// It imports nothing of the project, so that every package's tests can
// use it.
package leftover

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is the unit of /proc/PID/stat's start time (USER_HZ, 100 on
// every Linux architecture).
const clockTick = 10 * time.Millisecond

// reuseMargin is how much later than the thing's modification time a
// process must have started to count as another process with the same
// pid: the two clocks compared (the wall clock of the file's time, the
// boot clock of the start time) are read apart and the start time is in
// ticks.
const reuseMargin = time.Second

// Gone reports whether process pid, the owner of something last modified
// at modified, is gone: no process has the pid, the one that has it is a
// zombie (it runs no code and removes nothing), or it started after
// modified (the pid was reused). A pid this process may not signal but
// that exists counts as alive.
func Gone(pid int, modified time.Time) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	state, started, err := processStart(pid)
	if err != nil {
		return errors.Is(err, os.ErrNotExist) // gone between the two looks
	}
	return state == 'Z' || started.After(modified.Add(reuseMargin))
}

// processStart reads pid's state and the wall-clock time it started.
func processStart(pid int) (state byte, started time.Time, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, time.Time{}, err
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, so the
	// fields are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, time.Time{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 { // state is field 3, starttime field 22
		return 0, time.Time{}, fmt.Errorf("/proc/%d/stat: %d fields after comm", pid, len(f))
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("/proc/%d/stat: start time %q: %w", pid, f[19], err)
	}
	var boot unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return 0, time.Time{}, fmt.Errorf("clock_gettime(CLOCK_BOOTTIME): %w", err)
	}
	sinceStart := time.Duration(boot.Nano()) - time.Duration(ticks)*clockTick
	return f[0][0], time.Now().Add(-sinceStart), nil
}

// PidOf returns PID of a name prefix-PID or prefix-PID-…
func PidOf(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return 0, false
	}
	digits, _, _ := strings.Cut(rest, "-")
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	return pid, err == nil && pid > 0
}

// RemoveStale removes the entries of dir named prefix-PID or prefix-PID-…
// (with what they hold), and those named .prefix-PID-… (a writer's
// temporary files), whose owner PID is Gone, and returns how many it
// removed.
func RemoveStale(dir, prefix string) int {
	if !hostPids() {
		return 0
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	removed := 0
	for _, e := range entries {
		pid, ok := PidOf(strings.TrimPrefix(e.Name(), "."), prefix)
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil || !Gone(pid, info.ModTime()) {
			continue
		}
		if os.RemoveAll(filepath.Join(dir, e.Name())) == nil {
			removed++
		}
	}
	return removed
}

// hostPids reports whether this process sees pids as /proc does (the
// owners' pids in names are those of the pid namespace /proc shows): a
// test's child in a pid namespace of its own has other pids, where every
// owner would look gone, and removes nothing.
func hostPids() bool {
	self, err := os.Readlink("/proc/self")
	return err == nil && self == strconv.Itoa(os.Getpid())
}

var swept sync.Map // dir + "\x00" + prefix -> struct{}: RemoveStale ran in this process

// SweepOnce runs RemoveStale(dir, prefix) the first time this process
// asks for the pair.
func SweepOnce(dir, prefix string) {
	if _, done := swept.LoadOrStore(dir+"\x00"+prefix, struct{}{}); !done {
		RemoveStale(dir, prefix)
	}
}

// MkdirTemp makes a new directory under os.TempDir() named
// prefix-PID-RANDOM, for the caller to remove, after removing the
// directories of the prefix whose owner is gone (the first time in this
// process).
func MkdirTemp(prefix string) (string, error) {
	SweepOnce(os.TempDir(), prefix)
	return os.MkdirTemp("", fmt.Sprintf("%s-%d-", prefix, os.Getpid()))
}

// TB is the part of testing.TB that TempDir uses (the package does not
// import testing: the demo, in the product binary, uses MkdirTemp).
type TB interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// TempDir is MkdirTemp for a test, removed at its cleanup; t.TempDir is
// the first choice, and this is for a directory that outlives no test but
// must not be under t.TempDir's name (one that another user must reach:
// t.TempDir's parent is mode 0700).
func TempDir(t TB, prefix string) string {
	t.Helper()
	dir, err := MkdirTemp(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
