package handler

import (
	"cmp"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/internal/privilege"
)

// MaxRTPriority is the highest SCHED_FIFO priority Config.RTPriority takes,
// the same as the config file's cores.rt_priority.
const MaxRTPriority = config.MaxRTPriority

// MaxShards is the most book shards Start runs (Config.ShardCores): a
// locate's shard is a byte. The config file's cores.shards has the same
// bound.
const MaxShards = config.MaxShards

// ThreadSched is how the kernel schedules one hot thread (the receive
// thread, or a shard thread), read back from the kernel after setup.
type ThreadSched struct {
	Tid      int    // kernel thread id (0: the thread has not started)
	Core     int    // CPU it is pinned to; -1: not pinned
	Priority int    // SCHED_FIFO priority; 0: normal scheduling (SCHED_OTHER)
	Reason   string // Config.RTPriority was asked for and not granted: why ("" otherwise)
	// Throttle, for a SCHED_FIFO thread, says what the kernel's real-time
	// throttling takes from it ("" otherwise: normal scheduling, or
	// throttling off). See rtThrottle.
	Throttle string
}

// Policy names the scheduling policy: "fifo" or "other".
func (t ThreadSched) Policy() string {
	if t.Priority > 0 {
		return "fifo"
	}
	return "other"
}

// Switches reads the thread's context switches so far from
// /proc/self/task/TID/status: voluntary ones are the thread sleeping (in
// poll(2), or a futex wait when the Go scheduler parked it for a
// preemption hand-off), involuntary ones the kernel running something
// else on its CPU.
func (t ThreadSched) Switches() (voluntary, involuntary uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", t.Tid))
	if err != nil {
		return 0, 0, fmt.Errorf("read thread %d context switches: %w", t.Tid, err)
	}
	f := privilege.StatusFields(b, 10, "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
	return f[0], f[1], nil
}

// CPUTime reads the thread's scheduler times so far from
// /proc/self/task/TID/schedstat: how long it ran on a CPU, and how long it
// was runnable and waited for one (the kernel running other threads on
// its CPU). Over an interval, run + wait against the interval's length
// says what the thread had of it; the rest it slept. The file exists on a
// kernel built with CONFIG_SCHED_INFO (schedstats need not be on).
func (t ThreadSched) CPUTime() (run, wait time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", t.Tid))
	if err != nil {
		return 0, 0, fmt.Errorf("read thread %d scheduler times: %w", t.Tid, err)
	}
	return parseSchedstat(string(b))
}

// parseSchedstat parses a schedstat line: "RUN_NS WAIT_NS TIMESLICES".
func parseSchedstat(s string) (run, wait time.Duration, err error) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("schedstat %q: want run and wait times", s)
	}
	r, err1 := strconv.ParseUint(f[0], 10, 63)
	w, err2 := strconv.ParseUint(f[1], 10, 63)
	if err := cmp.Or(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("schedstat %q: %w", s, err)
	}
	return time.Duration(r), time.Duration(w), nil
}

// setupThread pins the calling thread, which must be locked to its
// goroutine, to core (none for core < 0) and, with prio > 0, has it run
// under SCHED_FIFO at prio. It records the outcome in ts, the policy as
// the kernel reads it back, and why SCHED_FIFO was refused (then the
// thread runs under normal scheduling). It returns the pinning's error:
// the thread then runs unpinned, and under normal scheduling whatever prio
// asked.
func setupThread(core, prio int, ts *ThreadSched) error {
	*ts = ThreadSched{Tid: unix.Gettid(), Core: core}
	errPin := pin(core)
	if errPin != nil {
		ts.Core = -1
	}
	switch {
	case prio > 0 && errPin != nil:
		// A SCHED_FIFO thread keeps every normal task off the CPU it runs
		// on: it must own the core it was given (the config refuses
		// cores.rt_priority without cores.receive for the same reason).
		// Unpinned, it would take whichever CPU the scheduler gives it.
		ts.Reason = fmt.Sprintf("not given to an unpinned thread (%v): a real-time thread must own its core", errPin)
	case prio > 0 && core < 0:
		// The same for a thread given no core at all (handler.Config's
		// ReceiveCore or a ShardCores entry -1).
		ts.Reason = "not given to an unpinned thread (no core asked): a real-time thread must own its core"
	case prio > 0:
		if err := setFIFO(prio); err != nil {
			ts.Reason = err.Error()
		}
	}
	if a, err := unix.SchedGetAttr(0, 0); err == nil && a.Policy == unix.SCHED_FIFO {
		ts.Priority = int(a.Priority)
		ts.Throttle = rtThrottle(readProc)
	}
	return errPin
}

// rtThrottle says what real-time throttling takes from a SCHED_FIFO thread,
// or "" when it takes nothing. With kernel.sched_rt_runtime_us below its
// period, a CPU whose real-time threads used up the runtime is taken from
// them until the period ends: a FIFO thread that never sleeps loses its
// core for up to period - runtime (50 ms of every second by default) in
// one block, whether or not anything else waits there. On the lab VM
// (Linux 6.18) a lone FIFO spinner's CPU went idle for those blocks, an
// isolated core would too, and setting the runtime to -1 removed them
// from the demo's tail (docs/TUNING.md). read returns a file's contents
// (a test passes its own).
func rtThrottle(read func(string) (string, error)) string {
	rt, err := readInt(read, "/proc/sys/kernel/sched_rt_runtime_us")
	if err != nil || rt < 0 {
		return ""
	}
	period, err := readInt(read, "/proc/sys/kernel/sched_rt_period_us")
	if err != nil || rt >= period {
		return ""
	}
	return fmt.Sprintf("real-time throttling: kernel.sched_rt_runtime_us=%d of %d, so a FIFO thread that does not sleep loses its core for up to %d ms of every %d ms; set kernel.sched_rt_runtime_us=-1 on a box whose hot cores are isolated (docs/TUNING.md)",
		rt, period, (period-rt)/1000, period/1000)
}

// RTThrottle says what real-time throttling would take from a SCHED_FIFO
// hot thread, as ThreadSched.Throttle says it for a running one: "" when
// nothing (throttling off).
func RTThrottle() string { return rtThrottle(readProc) }

func readProc(name string) (string, error) {
	b, err := os.ReadFile(name)
	return string(b), err
}

func readInt(read func(string) (string, error), name string) (int64, error) {
	s, err := read(name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
}

// RealtimeGranted tries SCHED_FIFO at prio on a thread of its own, which
// then ends: nil when the kernel grants it, else why not (no cap_sys_nice
// or RLIMIT_RTPRIO, a seccomp filter, a cgroup without real-time runtime;
// privilege.MayRealtime sees only the first). For a caller choosing a
// default priority, as the demo does, before it asks Start for one.
func RealtimeGranted(prio int) error {
	done := make(chan error)
	go func() {
		// Locked and never unlocked: the thread ends with the goroutine,
		// and no other goroutine runs on it under SCHED_FIFO.
		runtime.LockOSThread()
		done <- setFIFO(prio)
	}()
	return <-done
}

// setFIFO moves the calling thread to SCHED_FIFO at prio. Threads it
// creates (none: Go creates new threads from its template thread when the
// creator is locked) would start under normal scheduling
// (SCHED_FLAG_RESET_ON_FORK).
func setFIFO(prio int) error {
	a := unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: uint32(prio), Flags: unix.SCHED_FLAG_RESET_ON_FORK}
	if err := unix.SchedSetAttr(0, &a, 0); err != nil {
		return fmt.Errorf("run thread under SCHED_FIFO priority %d: %w", prio, privilege.ExplainRealtime(err, prio))
	}
	return nil
}

// logThread logs how a hot thread is scheduled, once at start: a warning
// when SCHED_FIFO was asked for and refused (the receive backend's
// fallbacks are logged the same way), and one when real-time throttling
// can take its core (ThreadSched.Throttle).
func (h *Handler) logThread(name string, t ThreadSched) {
	ev, msg := h.log.Info(), "hot thread"
	if t.Reason != "" {
		ev, msg = h.log.Warn().Int("rt_priority_asked", h.cfg.RTPriority).Str("reason", t.Reason),
			"hot thread under normal scheduling: SCHED_FIFO refused"
	}
	ev.Str("thread", name).Int("tid", t.Tid).Int("core", t.Core).Str("policy", t.Policy()).Int("rt_priority", t.Priority).
		Msg(msg)
	if t.Throttle != "" {
		h.log.Warn().Str("thread", name).Int("core", t.Core).Str("reason", t.Throttle).
			Msg("hot thread may lose its core for tens of milliseconds")
	}
}
