package handler

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// keepOffPinnedCores restricts every thread of the process except the
// callers of pin (the pipeline's hot threads, tids hot) to the CPUs it may
// use minus the pinned cores, so that the Go runtime's other threads (the
// metrics server, the stats logger, timers, sysmon, the garbage
// collector's workers) never preempt a hot thread on its own core: the
// scheduler would otherwise place them there whenever the other cores are
// busy. Threads created later inherit the mask of the thread that creates
// them; the runtime creates threads for a locked thread through its
// template thread, which this restricts too. A thread whose mask would
// become empty (every allowed CPU is pinned) is left alone. It returns how
// many threads it restricted.
func keepOffPinnedCores(pinned []int, hot []int) (int, error) {
	if len(pinned) == 0 {
		return 0, nil
	}
	isHot := func(tid int) bool {
		for _, h := range hot {
			if h == tid {
				return true
			}
		}
		return false
	}
	n := 0
	// Twice: a thread created during the first pass by a thread not yet
	// restricted inherits the full mask.
	for pass := 0; pass < 2; pass++ {
		d, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return n, fmt.Errorf("keep threads off pinned cores: %w", err)
		}
		for _, e := range d {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || isHot(tid) {
				continue
			}
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &set); err != nil {
				continue // exited meanwhile
			}
			changed := false
			for _, c := range pinned {
				if c >= 0 && set.IsSet(c) {
					set.Clear(c)
					changed = true
				}
			}
			if !changed || set.Count() == 0 {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil {
				return n, fmt.Errorf("keep thread %d off pinned cores: %w", tid, err)
			}
			if pass == 0 {
				n++
			}
		}
	}
	return n, nil
}
