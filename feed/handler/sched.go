package handler

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/internal/privilege"
)

// MaxRTPriority is the highest SCHED_FIFO priority Config.RTPriority takes,
// the same as the config file's cores.rt_priority.
const MaxRTPriority = config.MaxRTPriority

// ThreadSched is how the kernel schedules one hot thread (the receive
// thread, or a shard thread), read back from the kernel after setup.
type ThreadSched struct {
	Tid      int    // kernel thread id (0: the thread has not started)
	Core     int    // CPU it is pinned to; -1: not pinned
	Priority int    // SCHED_FIFO priority; 0: normal scheduling (SCHED_OTHER)
	Reason   string // Config.RTPriority was asked for and not granted: why ("" otherwise)
	// Throttle, for a SCHED_FIFO thread on a core that is not isolated,
	// says what the kernel's real-time throttling lets other tasks take
	// of that core ("" otherwise: normal scheduling, throttling off, or
	// an isolated core, where nothing else is queued). See rtThrottle.
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

// setupThread pins the calling thread, which must be locked to its
// goroutine, to core (none for core < 0) and, with prio > 0, has it run
// under SCHED_FIFO at prio. It records the outcome in ts, the policy as
// the kernel reads it back, and why SCHED_FIFO was refused (then the
// thread runs under normal scheduling). It returns the pinning's error:
// the thread then runs unpinned.
func setupThread(core, prio int, ts *ThreadSched) error {
	*ts = ThreadSched{Tid: unix.Gettid(), Core: core}
	errPin := pin(core)
	if errPin != nil {
		ts.Core = -1
	}
	if prio > 0 {
		if err := setFIFO(prio); err != nil {
			ts.Reason = err.Error()
		}
	}
	if a, err := unix.SchedGetAttr(0, 0); err == nil && a.Policy == unix.SCHED_FIFO {
		ts.Priority = int(a.Priority)
		ts.Throttle = rtThrottle(ts.Core, readProc)
	}
	return errPin
}

// rtThrottle says what real-time throttling takes from a SCHED_FIFO thread
// pinned to core (-1: unpinned), or "" when it takes nothing. With
// kernel.sched_rt_runtime_us below its period, the kernel runs the normal
// tasks queued on a CPU whose real-time threads used up the runtime: a
// busy FIFO thread loses its core for up to period - runtime (50 ms of
// every second by default) in one block. On this lab VM (Linux 6.18)
// setting the runtime to -1 removed those blocks from the demo's tail
// (docs/TUNING.md). On an isolated core (isolcpus) nothing else is queued
// and the throttle never acts. read returns a file's contents (a test
// passes its own).
func rtThrottle(core int, read func(string) (string, error)) string {
	rt, err := readInt(read, "/proc/sys/kernel/sched_rt_runtime_us")
	if err != nil || rt < 0 {
		return ""
	}
	period, err := readInt(read, "/proc/sys/kernel/sched_rt_period_us")
	if err != nil || rt >= period {
		return ""
	}
	if core >= 0 {
		if iso, err := read("/sys/devices/system/cpu/isolated"); err == nil && inCPUList(iso, core) {
			return ""
		}
	}
	return fmt.Sprintf("real-time throttling on a shared core: kernel.sched_rt_runtime_us=%d of %d, so normal tasks queued on the core take it for up to %d ms at once; isolate the core, or set kernel.sched_rt_runtime_us=-1 (docs/TUNING.md)",
		rt, period, (period-rt)/1000)
}

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

// inCPUList reports whether cpu is in list, a kernel CPU list such as
// "1-3,6" (empty: none).
func inCPUList(list string, cpu int) bool {
	for _, r := range strings.Split(strings.TrimSpace(list), ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		if a <= cpu && cpu <= b {
			return true
		}
	}
	return false
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
