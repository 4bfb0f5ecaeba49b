package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds on the package's waits for a child process or a goroutine that
// a broken command never ends: a hang fails its test with a line naming
// what it waited for, instead of go test's -timeout panic (which names
// the test at best, prints none of its log and ends the whole package).
// Not timing thresholds: the whole package runs in about 100 s on an idle
// machine, and a bound is far above what any wait takes under load.

// maxWait is the most a test waits for one child or goroutine.
const maxWait = 5 * time.Minute

// waitBound is how long a test started now may wait for one thing:
// maxWait, or less when the test binary's -timeout would end first, so
// that the test is the one to fail (and print its log) before it.
func waitBound(t *testing.T) time.Duration {
	d := maxWait
	if deadline, ok := t.Deadline(); ok {
		d = min(d, time.Until(deadline)-30*time.Second)
	}
	return max(d, 10*time.Second)
}

// boundedCommand is exec.Command for a child the test waits for (Run,
// Output, Wait, reads of its pipes): one still running waitBound after
// this call is killed with its descendants (a script's background
// handler), and the test fails naming the command line; Wait returns at
// most 10 s later though something else holds its pipes. A child still
// running when the test's cleanup starts is killed too.
func boundedCommand(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	bound := waitBound(t)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	var mu sync.Mutex
	ended := false // the test's cleanup began: t.Errorf may no longer be called after it
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Cancel = func() error {
		mu.Lock()
		defer mu.Unlock()
		if !ended && ctx.Err() == context.DeadlineExceeded {
			t.Errorf("%s: still running %v after it was started: killed", cmd, bound.Round(time.Second))
		}
		killTree(cmd.Process.Pid)
		return nil
	}
	cmd.WaitDelay = 10 * time.Second
	t.Cleanup(func() {
		mu.Lock()
		ended = true
		mu.Unlock()
		cancel()
	})
	return cmd
}

// await returns what ch brings; if it brings nothing within waitBound,
// the test fails naming what it waited for.
func await[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	bound := waitBound(t)
	select {
	case v := <-ch:
		return v
	case <-time.After(bound):
		t.Fatalf("%s: nothing after %v", what, bound)
		panic("unreachable")
	}
}

// killTree sends SIGKILL to pid and its descendants, found first (killed
// first, a parent's children go to init, out of reach).
func killTree(pid int) {
	pids := []int{pid}
	for i := 0; i < len(pids); i++ {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pids[i]))
		for _, task := range tasks {
			b, _ := os.ReadFile(task)
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					pids = append(pids, c)
				}
			}
		}
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
}
