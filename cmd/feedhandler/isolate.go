package main

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// isolateLoop keeps the process's other threads off the CPU that the
// calling thread runs on, when the calling thread may run on that one CPU
// only (`taskset -c N feedhandler replay ...`). Every thread of a pinned
// process inherits the pin, so the Go runtime's own threads (sysmon, which
// wakes every 10 ms while a goroutine runs, and the idle Ms it wakes) share
// the loop's CPU and preempt it: in a traced replay of the 5 M-message day,
// 48 of the loop's 50 involuntary switches were to two of its own threads.
// isolateLoop moves them to the other CPUs the kernel allows; the loop's
// thread, its CPU and the work it does are unchanged. New threads are
// started by the runtime's template thread while the caller is locked
// (runtime.LockOSThread), so they inherit the moved mask.
//
// The caller must have locked its goroutine to its thread. It returns the
// number of threads moved and a function that gives each its mask back. It
// does nothing (0 moved) when the caller may run on more than one CPU, when
// no other CPU is allowed, or on any error: isolation is best effort and
// never changes what is measured.
func isolateLoop() (moved int, restore func()) {
	restore = func() {}
	var mine unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil || mine.Count() != 1 {
		return 0, restore
	}
	var others unix.CPUSet
	for i := range others {
		others[i] = ^mine[i]
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, restore
	}
	self := unix.Gettid()
	type thread struct {
		tid  int
		mask unix.CPUSet
	}
	var threads []thread
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil || tid == self {
			continue
		}
		th := thread{tid: tid}
		if unix.SchedGetaffinity(tid, &th.mask) != nil {
			continue
		}
		// The kernel keeps the allowed CPUs of others (its cpuset and the
		// online ones); EINVAL when none is left: then nothing moves.
		if unix.SchedSetaffinity(tid, &others) == nil {
			threads = append(threads, th)
		}
	}
	return len(threads), func() {
		for i := range threads {
			_ = unix.SchedSetaffinity(threads[i].tid, &threads[i].mask) // a thread gone since is ignored
		}
	}
}
