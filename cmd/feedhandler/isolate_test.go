package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadMasks returns the CPU mask of every thread of the process but the caller's.
func threadMasks(t *testing.T) map[int]unix.CPUSet {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[int]unix.CPUSet{}
	for _, e := range tasks {
		tid, _ := strconv.Atoi(e.Name())
		var s unix.CPUSet
		if tid == unix.Gettid() || unix.SchedGetaffinity(tid, &s) != nil {
			continue
		}
		m[tid] = s
	}
	return m
}

func TestIsolateLoop(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.Count() < 2 {
		t.Skipf("the test process may run on %d CPU; isolating needs 2", orig.Count())
	}
	defer func() {
		if err := unix.SchedSetaffinity(0, &orig); err != nil {
			t.Fatal(err)
		}
	}()

	// Not pinned: nothing moves.
	if moved, restore := isolateLoop(); moved != 0 {
		restore()
		t.Fatalf("moved %d threads of a thread allowed on %d CPUs", moved, orig.Count())
	}

	cpu := -1
	for c := range 1024 {
		if orig.IsSet(c) {
			cpu = c
			break
		}
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	before := threadMasks(t)
	moved, restore := isolateLoop()
	if moved == 0 {
		t.Fatalf("no thread moved; the process has %d others", len(before))
	}
	var self unix.CPUSet
	if err := unix.SchedGetaffinity(0, &self); err != nil || self != one {
		t.Errorf("the loop's own mask changed: %v (err %v)", self, err)
	}
	n := 0
	for tid, s := range threadMasks(t) {
		if _, old := before[tid]; !old {
			continue // started since: not ours to check
		}
		if s.IsSet(cpu) {
			t.Errorf("thread %d may still run on the loop's CPU %d", tid, cpu)
		}
		n++
	}
	// Every thread of before may run on cpu (it inherited the test's mask),
	// so each one found off it was moved. The reverse does not hold: a
	// thread started after before was read is moved and counted too, and a
	// thread of before may have exited since (CI once saw 7 moved, 6 found).
	if n == 0 || n > moved {
		t.Errorf("moved %d threads, found %d of the %d older ones off CPU %d", moved, n, len(before), cpu)
	}
	restore()
	for tid, s := range threadMasks(t) {
		if b, old := before[tid]; old && s != b {
			t.Errorf("thread %d mask not restored", tid)
		}
	}
}

// TestIsolateLoopKeepsGOMAXPROCS: sysmon recomputes GOMAXPROCS from its own
// thread's mask about once a second unless it was set by the user, and
// isolateLoop moves sysmon's thread; GOMAXPROCS must not follow. The
// testing package sets GOMAXPROCS itself before running tests (which marks
// it user-set), so the check runs in a child process, from TestMain before
// m.Run (isolateGOMAXPROCSChild).
func TestIsolateLoopKeepsGOMAXPROCS(t *testing.T) {
	cmd := boundedCommand(t, os.Args[0])
	// GOMAXPROCS set in the environment, or GODEBUG=updatemaxprocs=0, stops
	// the runtime from recomputing it: the child would pass without a check.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, "GODEBUG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "FEEDHANDLER_TEST_ISOLATE_GOMAXPROCS=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		t.Logf("child: %s", out)
	case errors.As(err, &ee) && ee.ExitCode() == 3:
		t.Skipf("child: %s", out)
	default:
		t.Fatalf("child: %v: %s", err, out)
	}
}

// isolateGOMAXPROCSChild pins its thread to one CPU, isolates it, and keeps
// a P busy for 1.5 s (sysmon checks GOMAXPROCS at most once a second, and
// only while a P runs): exit status 0 when GOMAXPROCS stayed, 1 when it
// changed or nothing moved, 3 when the process may not run on 2 CPUs.
func isolateGOMAXPROCSChild() int {
	runtime.LockOSThread()
	var orig, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil || orig.Count() < 2 {
		fmt.Printf("the process may run on %d CPUs (err %v); the check needs 2", orig.Count(), err)
		return 3
	}
	for c := 0; ; c++ {
		if orig.IsSet(c) {
			one.Set(c)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		fmt.Printf("pin: %v", err)
		return 1
	}
	procs := runtime.GOMAXPROCS(0)
	moved, restore := isolateLoop()
	defer restore()
	if moved == 0 {
		fmt.Print("no thread moved")
		return 1
	}
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond {
		if p := runtime.GOMAXPROCS(0); p != procs {
			fmt.Printf("GOMAXPROCS changed from %d to %d %v after isolateLoop moved %d threads", procs, p, time.Since(start).Round(time.Millisecond), moved)
			return 1
		}
	}
	fmt.Printf("GOMAXPROCS stayed %d for %v after isolateLoop moved %d threads", procs, time.Since(start).Round(time.Millisecond), moved)
	return 0
}
