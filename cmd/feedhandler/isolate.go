package main

import (
	"os"
	"runtime"
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
// thread, its CPU and the work it does are unchanged. Threads that the
// locked caller itself would start come from the runtime's template thread,
// which is moved too, so they inherit the moved mask; a thread cloned while
// the scan of /proc/self/task runs may keep the pin and is not counted.
//
// The runtime (Go 1.25+) recomputes GOMAXPROCS about once a second from
// the CPUs that sysmon's thread may use, and sysmon is one of the threads
// moved: GOMAXPROCS would follow the moved mask, with a stop-the-world,
// in the middle of the loop. So before moving anything isolateLoop sets
// GOMAXPROCS to its current value, which marks it set by the user (no
// stop-the-world, as the value does not change): it stays for the rest
// of the process, also after restore, and the runtime no longer follows
// CPU affinity or cgroup limit changes (a replay ends with its loop).
//
// The caller must have locked its goroutine to its thread. It returns the
// number of threads moved and a function that gives each its mask back
// (threads created meanwhile keep theirs). It does nothing (0 moved) when
// the caller may run on more than one CPU, when no other CPU is allowed,
// or on any error: isolation is best effort, and the loop's work and the
// number of Ps it runs with are the same either way.
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
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0)) // user-set: sysmon no longer recomputes it
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
