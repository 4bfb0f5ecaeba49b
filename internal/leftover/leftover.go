// Package leftover names the files and directories that tests (and the
// demo) make outside the directories Go removes for them, after the
// process that owns them, and removes those whose owner is gone.
//
// A process removes what it made at its cleanup; one that is killed
// (SIGKILL, a signal's default action, or go test's -timeout, whose panic
// runs no cleanup) cannot. Its names carry it (NAME-PID-sSTART-…: its pid
// and its start time in clock ticks after boot, Owner), and the next
// process that makes a name of the same prefix removes them once that
// process is gone: no process has the pid, it is a zombie, or the process
// that has it now started at another tick (the pid was reused). No wall
// clock is read, so a clock step (NTP, a VM resumed) changes nothing.
// Anything whose owner still runs stays, whoever it is (another test
// binary, a handler it started, a user's demo).
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

	"golang.org/x/sys/unix"
)

// Owner is a process as names and records carry it: its pid and the
// time it started, in clock ticks after boot (/proc/PID/stat's field 22),
// which tells it from a later process given the same pid. Start 0: not
// known (a name of the format before the start was recorded), the pid
// alone is checked.
type Owner struct {
	Pid   int
	Start uint64
}

// String returns PID-sSTART (PID when Start is not known), the form
// names carry and ParseOwner reads.
func (o Owner) String() string {
	if o.Start == 0 {
		return strconv.Itoa(o.Pid)
	}
	return fmt.Sprintf("%d-s%d", o.Pid, o.Start)
}

// Self returns this process's Owner (its Start 0 if /proc cannot say).
var Self = sync.OnceValue(func() Owner {
	o, err := Process(os.Getpid())
	if err != nil {
		return Owner{Pid: os.Getpid()}
	}
	return o
})

// Process returns the Owner that is process pid now.
func Process(pid int) (Owner, error) {
	_, start, err := processStart(pid)
	if err != nil {
		return Owner{}, err
	}
	return Owner{Pid: pid, Start: start}, nil
}

// ParseOwner reads the Owner at the start of s (PID or PID-sSTART, then
// the end of s or '-' and the rest), and returns it with what follows.
func ParseOwner(s string) (Owner, string, bool) {
	digits, rest, _ := strings.Cut(s, "-")
	pid, ok := number(digits)
	if !ok || pid == 0 || pid > 1<<31 {
		return Owner{}, "", false
	}
	o := Owner{Pid: int(pid)}
	if field, after, _ := strings.Cut(rest, "-"); strings.HasPrefix(field, "s") {
		if start, ok := number(field[1:]); ok && start > 0 {
			o.Start, rest = start, after
		}
	}
	return o, rest, true
}

// number parses decimal digits only (no sign, no space).
func number(s string) (uint64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// Gone reports whether process o is gone: no process has its pid, the
// one that has it is a zombie (it runs no code and removes nothing), or
// it started at another tick than o's (the pid was reused). A pid this
// process may not signal but that exists counts as alive.
func Gone(o Owner) bool {
	if o.Pid <= 0 {
		return false
	}
	if err := unix.Kill(o.Pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	state, start, err := processStart(o.Pid)
	if err != nil {
		return errors.Is(err, os.ErrNotExist) // gone between the two looks
	}
	return state == 'Z' || (o.Start != 0 && start != o.Start)
}

// processStart reads pid's state and start time (clock ticks after boot)
// from /proc/PID/stat.
func processStart(pid int) (state byte, start uint64, err error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read process start: %w", err)
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, so the
	// fields are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("read process start: %s: no ')'", path)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 { // state is field 3, starttime field 22
		return 0, 0, fmt.Errorf("read process start: %s: %d fields after comm", path, len(f))
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("read process start: %s: start time %q: %w", path, f[19], err)
	}
	return f[0][0], start, nil
}

// OwnerOf returns the Owner of a name prefix-OWNER or prefix-OWNER-…
// (OWNER as ParseOwner reads it).
func OwnerOf(name, prefix string) (Owner, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return Owner{}, false
	}
	o, _, ok := ParseOwner(rest)
	return o, ok
}

// RemoveStale removes the entries of dir named prefix-OWNER or
// prefix-OWNER-… (with what they hold), and those named .prefix-OWNER-…
// (a writer's temporary files), whose OWNER is Gone, and returns how many
// it removed.
func RemoveStale(dir, prefix string) int {
	if !HostPids() {
		return 0
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	removed := 0
	for _, e := range entries {
		o, ok := OwnerOf(strings.TrimPrefix(e.Name(), "."), prefix)
		if !ok || !Gone(o) {
			continue
		}
		if os.RemoveAll(filepath.Join(dir, e.Name())) == nil {
			removed++
		}
	}
	return removed
}

// HostPids reports whether this process sees pids as /proc does (the
// owners' pids in names are those of the pid namespace /proc shows): a
// test's child in a pid namespace of its own has other pids, where every
// owner would look gone, and must remove nothing.
func HostPids() bool {
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
// prefix-OWNER-RANDOM (OWNER: Self), for the caller to remove, after removing the
// directories of the prefix whose owner is gone (the first time in this
// process).
func MkdirTemp(prefix string) (string, error) {
	SweepOnce(os.TempDir(), prefix)
	return os.MkdirTemp("", prefix+"-"+Self().String()+"-")
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
