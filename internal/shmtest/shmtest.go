// Package shmtest names the feed files that tests create under /dev/shm
// and removes them.
//
// A test removes its file through the t.Cleanup that Name registers before
// the file exists, so the file goes on every path the test can end by
// (pass, t.Fatal, a panic). A test binary that is killed (SIGKILL, or go
// test's -timeout, whose panic runs no cleanup) cannot remove anything;
// its files carry its pid and start tick (leftover.Owner), and the next
// Name of the same prefix removes them once that process is gone
// (internal/leftover).
//
// It imports nothing of the project but internal/leftover, so that
// proto/shm's own tests can use it.
package shmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/marketfeed/feedhandler/internal/leftover"
)

// Dir is where the files live (shm.Dir).
const Dir = "/dev/shm"

// maxTestName bounds the test's part of a name (a file name has at most
// 255 bytes).
const maxTestName = 96

var counter atomic.Uint64

// Name returns a feed name under Dir unique in this process,
// prefix-OWNER-N-TEST (OWNER is leftover.Self, TEST is t.Name(), '/' as
// '-'), and registers a t.Cleanup that removes the file and its writer's
// temporary files. The
// first Name of a prefix in a process removes that prefix's files whose
// owner is gone (RemoveStale).
func Name(t testing.TB, prefix string) string {
	t.Helper()
	leftover.SweepOnce(Dir, prefix)
	test := strings.ReplaceAll(t.Name(), "/", "-")
	if len(test) > maxTestName {
		test = test[:maxTestName]
	}
	name := fmt.Sprintf("%s-%s-%d-%s", prefix, leftover.Self(), counter.Add(1), test)
	t.Cleanup(func() { Remove(name) })
	return name
}

// Path is Name as a path under Dir.
func Path(t testing.TB, prefix string) string {
	t.Helper()
	return filepath.Join(Dir, Name(t, prefix))
}

// Remove deletes the file name (bare, under Dir) and the temporary files
// a writer builds it under (shm.Create's .NAME.tmp.*), if they exist.
func Remove(name string) {
	os.Remove(filepath.Join(Dir, name))
	temps, _ := filepath.Glob(filepath.Join(Dir, "."+name+".tmp.*"))
	for _, p := range temps {
		os.Remove(p)
	}
}

// RemoveStale removes the files under Dir named prefix-OWNER or
// prefix-OWNER-… (and their writers' temporary files, .prefix-OWNER-…)
// whose owner is gone (leftover.Gone: no process has its pid, a zombie,
// or a process that started at another tick, which reused the pid), and
// returns how many it removed. A file of a live process, or one whose pid
// this process may not signal, stays.
func RemoveStale(prefix string) int { return leftover.RemoveStale(Dir, prefix) }
