package main

import (
	"os"
	"runtime"
	"strconv"
	"testing"

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
	if n != moved {
		t.Errorf("moved %d threads, found %d off CPU %d", moved, n, cpu)
	}
	restore()
	for tid, s := range threadMasks(t) {
		if b, old := before[tid]; old && s != b {
			t.Errorf("thread %d mask not restored", tid)
		}
	}
}
