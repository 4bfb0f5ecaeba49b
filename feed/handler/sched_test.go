package handler

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/internal/shmtest"
)

// kernelSched reads how the kernel schedules thread tid of this process,
// twice: sched_getattr(2), and /proc/self/task/TID/sched, whose policy
// and prio (99 - priority for a real-time thread, 120 + nice otherwise)
// must agree with it.
func kernelSched(t *testing.T, tid int) (policy, prio int) {
	t.Helper()
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatalf("sched_getattr thread %d: %v", tid, err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/sched", tid))
	if err != nil {
		t.Fatal(err)
	}
	procPolicy, procPrio := -1, -1
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		switch strings.TrimSpace(k) {
		case "policy":
			if err == nil {
				procPolicy = n
			}
		case "prio":
			if err == nil {
				procPrio = n
			}
		}
	}
	wantProcPrio := 120 + int(a.Nice)
	if a.Policy == unix.SCHED_FIFO {
		wantProcPrio = 99 - int(a.Priority)
	}
	if procPolicy != int(a.Policy) || procPrio != wantProcPrio {
		t.Fatalf("thread %d: sched_getattr policy %d priority %d, /proc says policy %d prio %d", tid, a.Policy, a.Priority, procPolicy, procPrio)
	}
	return int(a.Policy), int(a.Priority)
}

// startRT starts a handler whose receive thread (and, sharded, its two
// shard threads) asks for SCHED_FIFO at prio, over a scripted receiver
// that sleeps a millisecond when idle (a real-time thread that never
// blocks would starve its CPU's other threads). It returns the handler
// and its log.
func startRT(t *testing.T, mode Mode, prio int) (*Handler, *bytes.Buffer) {
	t.Helper()
	var shards []int
	if mode == ModeSharded {
		shards = []int{0, runtime.NumCPU() - 1}
	}
	name := shmtest.Name(t, "fhrt")
	logs := &bytes.Buffer{}
	h, err := Start(Config{
		Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}},
		Book:        book.Config{MaxOrders: 1 << 10, MaxLocates: 64, MaxLevels: 1 << 10},
		Mode:        mode,
		ReceiveCore: 0,
		ShardCores:  shards,
		RTPriority:  prio,
		ShmName:     name,
		Feed:        "rt",
		Open:        func(rx.Config) (rx.Receiver, error) { return &scriptRx{errAt: -1}, nil },
		Log:         zerolog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop() })
	return h, logs
}

// hotThreads returns the stats' receive thread and, sharded, the shard
// threads.
func hotThreads(st *Stats) map[string]ThreadSched {
	m := map[string]ThreadSched{"receive": st.ReceiveThread}
	for i, s := range st.Shards {
		m["shard "+strconv.Itoa(i)] = s.Thread
	}
	return m
}

// TestRTPriority: with the privilege (cap_sys_nice, or an RLIMIT_RTPRIO of
// at least the priority), every hot thread runs under SCHED_FIFO at the
// priority, as the kernel reports it for the thread ids the stats name;
// the metrics say so. In run to completion the one shard is the receive
// thread.
func TestRTPriority(t *testing.T) {
	if !mayRealtime(t, 3) {
		t.Skip("this process has neither cap_sys_nice nor RLIMIT_RTPRIO >= 3: TestRTPriorityFallback covers it")
	}
	hot := map[int]bool{}
	forEachMode(t, func(t *testing.T, mode Mode, _ []int) {
		h, _ := startRT(t, mode, 3)
		st := h.Stats()
		for name, th := range hotThreads(&st) {
			if th.Tid == 0 || th.Priority != 3 || th.Reason != "" || th.Policy() != "fifo" {
				t.Errorf("%s thread: %+v, want SCHED_FIFO priority 3", name, th)
				continue
			}
			if pol, prio := kernelSched(t, th.Tid); pol != unix.SCHED_FIFO || prio != 3 {
				t.Errorf("%s thread %d: the kernel says policy %d priority %d, want SCHED_FIFO (%d) 3", name, th.Tid, pol, prio, unix.SCHED_FIFO)
			}
			if want := rtThrottle(readProc); th.Throttle != want {
				t.Errorf("%s thread: Throttle %q, want %q (this kernel's settings)", name, th.Throttle, want)
			}
		}
		if mode == ModeRunToCompletion && st.Shards[0].Thread.Tid != st.ReceiveThread.Tid {
			t.Errorf("run to completion: shard thread %d is not the receive thread %d", st.Shards[0].Thread.Tid, st.ReceiveThread.Tid)
		}
		if mode == ModeSharded && st.Shards[0].Thread.Tid == st.ReceiveThread.Tid {
			t.Errorf("sharded: shard 0 reports the receive thread")
		}
		text := string(NewExposition(h).appendText(nil))
		for _, want := range []string{`feedhandler_receive_thread_rt_priority{feed="rt"} 3` + "\n", `feedhandler_shard_thread_rt_priority{feed="rt",shard="0"} 3` + "\n"} {
			if !strings.Contains(text, want) {
				t.Errorf("exposition lacks %q", want)
			}
		}
		// Every other thread of the process stays normal. (A hot thread
		// of an earlier subtest that ran on the main thread stays: Go
		// wedges a main thread whose locked goroutine exits.)
		for _, th := range hotThreads(&st) {
			hot[th.Tid] = true
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range tasks {
			tid, _ := strconv.Atoi(e.Name())
			if a, err := unix.SchedGetAttr(tid, 0); err == nil && !hot[tid] && a.Policy != unix.SCHED_NORMAL {
				t.Errorf("thread %d, not a hot thread, runs under policy %d", tid, a.Policy)
			}
		}
	})
}

// TestRTPriorityOff: without RTPriority every hot thread runs under
// normal scheduling and says so, with no reason; out-of-range priorities
// are refused at start.
func TestRTPriorityOff(t *testing.T) {
	h, _ := startRT(t, ModeRunToCompletion, 0)
	st := h.Stats()
	if th := st.ReceiveThread; th.Tid == 0 || th.Priority != 0 || th.Reason != "" || th.Core != 0 || th.Throttle != "" {
		t.Errorf("receive thread %+v, want normal scheduling on core 0", th)
	} else if pol, _ := kernelSched(t, th.Tid); pol != unix.SCHED_NORMAL {
		t.Errorf("the kernel says policy %d", pol)
	}
	for _, p := range []int{-1, MaxRTPriority + 1} {
		_, err := Start(Config{RTPriority: p, ShmName: "fhrt-never"})
		if err == nil || !strings.Contains(err.Error(), "real-time priority") {
			t.Errorf("RTPriority %d: %v", p, err)
		}
	}
}

// mayRealtime reports whether this process may use SCHED_FIFO at prio.
func mayRealtime(t *testing.T, prio int) bool {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_RTPRIO, &lim); err != nil {
		t.Fatal(err)
	}
	may := mayRealtimeCap(t) || lim.Cur >= uint64(prio)
	if got := privilege.MayRealtime(prio); got != may {
		t.Errorf("privilege.MayRealtime(%d) = %v, want %v", prio, got, may)
	}
	return may
}

// TestRTPriorityFallback runs TestRTPriorityChild in a child process
// without cap_sys_nice (dropped from the bounding set by setpriv when this
// process is root), once with RLIMIT_RTPRIO 0, where every hot thread
// must fall back to normal scheduling and say why in its stats, metrics
// and log, and once with RLIMIT_RTPRIO 5, which allows priority 3 without
// any capability (systemd's LimitRTPRIO=).
func TestRTPriorityFallback(t *testing.T) {
	var wrap []string
	if os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("setpriv (util-linux) not installed: cannot drop cap_sys_nice for the child")
		}
		wrap = []string{setpriv, "--bounding-set=-sys_nice", "--inh-caps=-sys_nice", "--"}
	} else if mayRealtimeCap(t) {
		t.Skip("not root, yet cap_sys_nice is held: cannot drop it for the child")
	}
	for _, rl := range []string{"0", "5"} {
		t.Run("rlimit-rtprio-"+rl, func(t *testing.T) {
			args := append(wrap, os.Args[0], "-test.run=^TestRTPriorityChild$", "-test.v", "-test.count=1")
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Env = append(os.Environ(), "FH_RT_CHILD_RLIMIT="+rl)
			out, err := deathsig.CombinedOutput(cmd)
			if strings.Contains(string(out), "--- SKIP: TestRTPriorityChild") && err == nil {
				t.Skipf("child skipped:\n%s", out)
			}
			if err != nil || !strings.Contains(string(out), "--- PASS: TestRTPriorityChild") {
				t.Fatalf("child: %v\n%s", err, out)
			}
			t.Logf("child:\n%s", out)
		})
	}
}

// mayRealtimeCap reports whether this process holds cap_sys_nice.
func mayRealtimeCap(t *testing.T) bool {
	eff, err := privilege.Effective()
	if err != nil {
		t.Fatal(err)
	}
	return eff&privilege.SysNice != 0
}

// TestRTPriorityChild is TestRTPriorityFallback's child: it runs only
// with FH_RT_CHILD_RLIMIT set, as the RLIMIT_RTPRIO to set.
func TestRTPriorityChild(t *testing.T) {
	rl := os.Getenv("FH_RT_CHILD_RLIMIT")
	if rl == "" {
		t.Skip("run by TestRTPriorityFallback")
	}
	if mayRealtimeCap(t) {
		t.Fatal("the child still holds cap_sys_nice")
	}
	n, err := strconv.ParseUint(rl, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_RTPRIO, &lim); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_RTPRIO, &unix.Rlimit{Cur: n, Max: n}); err != nil {
		if n > lim.Max {
			t.Skipf("cannot raise RLIMIT_RTPRIO's hard limit %d to %d without cap_sys_resource: %v", lim.Max, n, err)
		}
		t.Fatalf("set RLIMIT_RTPRIO %d: %v", n, err)
	}
	forEachMode(t, func(t *testing.T, mode Mode, _ []int) {
		h, logs := startRT(t, mode, 3)
		st := h.Stats()
		want := 3
		if n < 3 {
			want = 0
		}
		for name, th := range hotThreads(&st) {
			pol, prio := kernelSched(t, th.Tid)
			t.Logf("%s thread %d: %+v; kernel: policy %d priority %d", name, th.Tid, th, pol, prio)
			if th.Priority != want || prio != want {
				t.Errorf("%s thread: priority %d (kernel %d), want %d", name, th.Priority, prio, want)
			}
			if want == 0 && (pol != unix.SCHED_NORMAL || !strings.Contains(th.Reason, "lacks cap_sys_nice and its RLIMIT_RTPRIO is 0: set LimitRTPRIO=3")) {
				t.Errorf("%s thread: policy %d, reason %q", name, pol, th.Reason)
			}
			if want == 3 && (pol != unix.SCHED_FIFO || th.Reason != "") {
				t.Errorf("%s thread: policy %d, reason %q", name, pol, th.Reason)
			}
		}
		text := string(NewExposition(h).appendText(nil))
		if m := fmt.Sprintf(`feedhandler_receive_thread_rt_priority{feed="rt"} %d`+"\n", want); !strings.Contains(text, m) {
			t.Errorf("exposition lacks %q", m)
		}
		if want == 0 {
			for _, w := range []string{`"level":"warn"`, "SCHED_FIFO priority 3: operation not permitted", `"policy":"other"`, `"rt_priority_asked":3`} {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log lacks %s:\n%s", w, logs)
				}
			}
		}
	})
}

// TestRTThrottle: what real-time throttling takes from a FIFO thread, from
// the kernel's settings (given as files).
func TestRTThrottle(t *testing.T) {
	files := func(rt, period string) func(string) (string, error) {
		return func(name string) (string, error) {
			v := map[string]string{
				"/proc/sys/kernel/sched_rt_runtime_us": rt,
				"/proc/sys/kernel/sched_rt_period_us":  period,
			}[name]
			if v == "" {
				return "", os.ErrNotExist
			}
			return v, nil
		}
	}
	for _, c := range []struct {
		rt, period string
		want       string // a substring; "" for none
	}{
		{"950000\n", "1000000\n", "for up to 50 ms of every 1000 ms"},
		{"950000", "1000000", "kernel.sched_rt_runtime_us=950000 of 1000000"},
		{"900000", "1000000", "for up to 100 ms"},
		{"-1\n", "1000000", ""},
		{"1000000", "1000000", ""},
		{"", "1000000", ""}, // unreadable: nothing said
		{"junk", "1000000", ""},
		{"950000", "", ""},
	} {
		got := rtThrottle(files(c.rt, c.period))
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("runtime %q period %q: %q, want %q", c.rt, c.period, got, c.want)
		}
	}
}

// TestRTPriorityNotUnpinned: a hot thread whose core cannot be had (a CPU
// this host does not have, or one outside the unit's CPUAffinity=) runs
// unpinned, and then not under SCHED_FIFO: a real-time thread that spins
// keeps every normal task off whichever CPU it lands on. Its stats say
// why. Before, the thread took SCHED_FIFO unpinned.
func TestRTPriorityNotUnpinned(t *testing.T) {
	if !mayRealtime(t, 3) {
		t.Skip("this process has neither cap_sys_nice nor RLIMIT_RTPRIO >= 3")
	}
	const core = 1023 // the last CPU unix.CPUSet holds
	if runtime.NumCPU() > core {
		t.Skip("this host has CPU 1023")
	}
	var ts ThreadSched
	var errPin error
	done := make(chan struct{})
	var pol, prio int
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		errPin = setupThread(core, 3, &ts)
		if a, err := unix.SchedGetAttr(0, 0); err == nil {
			pol, prio = int(a.Policy), int(a.Priority)
		} else {
			pol = -1
		}
	}()
	<-done
	if errPin == nil {
		t.Fatalf("pinned to CPU %d of a host with %d", core, runtime.NumCPU())
	}
	if pol != unix.SCHED_NORMAL || ts.Priority != 0 || ts.Policy() != "other" {
		t.Errorf("unpinned thread: the kernel says policy %d priority %d, stats %+v; want normal scheduling", pol, prio, ts)
	}
	if !strings.Contains(ts.Reason, "unpinned") || ts.Core != -1 {
		t.Errorf("stats %+v: want Core -1 and a Reason naming the failed pinning", ts)
	}
}

// TestRTPriorityNoCore: a hot thread given no core (core -1: unpinned by
// choice, as handler.Config{ReceiveCore: -1, RTPriority: 10} asks) is not
// given SCHED_FIFO either: spinning, it would keep every normal task off
// whichever CPU it lands on, as a thread whose pinning failed would. Its
// stats say why. Before, it ran under SCHED_FIFO unpinned.
func TestRTPriorityNoCore(t *testing.T) {
	if !mayRealtime(t, 3) {
		t.Skip("this process has neither cap_sys_nice nor RLIMIT_RTPRIO >= 3")
	}
	var ts ThreadSched
	var errPin error
	done := make(chan struct{})
	var pol, prio int
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		errPin = setupThread(-1, 3, &ts)
		if a, err := unix.SchedGetAttr(0, 0); err == nil {
			pol, prio = int(a.Policy), int(a.Priority)
		} else {
			pol = -1
		}
	}()
	<-done
	if errPin != nil {
		t.Fatalf("no core asked: %v", errPin)
	}
	if pol != unix.SCHED_NORMAL || ts.Priority != 0 || ts.Policy() != "other" {
		t.Errorf("thread with no core: the kernel says policy %d priority %d, stats %+v; want normal scheduling", pol, prio, ts)
	}
	if !strings.Contains(ts.Reason, "unpinned") || ts.Core != -1 {
		t.Errorf("stats %+v: want Core -1 and a Reason saying the thread is unpinned", ts)
	}
}

// TestThreadCPUTime runs two threads spinning on one CPU: each must be
// seen running, and since they share the CPU, at least one of them
// waiting for it while runnable.
func TestThreadCPUTime(t *testing.T) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for c := range 1024 {
		if set.IsSet(c) {
			cpu = c
		}
	}
	type times struct {
		run, wait time.Duration
		err       error
	}
	start := make(chan struct{})
	out := make(chan times, 2)
	for range 2 {
		go func() {
			// Locked and never unlocked: the pinned thread ends with the goroutine.
			runtime.LockOSThread()
			var one unix.CPUSet
			one.Set(cpu)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				out <- times{err: err}
				return
			}
			th := ThreadSched{Tid: unix.Gettid()}
			r0, w0, err := th.CPUTime()
			if err != nil {
				out <- times{err: err}
				return
			}
			<-start
			for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
			}
			r1, w1, err := th.CPUTime()
			out <- times{r1 - r0, w1 - w0, err}
		}()
	}
	close(start)
	var waited time.Duration
	for range 2 {
		r := <-out
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.run <= 0 {
			t.Errorf("a thread that spun 50 ms ran %v", r.run)
		}
		waited += r.wait
	}
	if waited <= 0 {
		t.Errorf("two threads spinning on CPU %d: neither waited for it (%v)", cpu, waited)
	}
}

func TestParseSchedstat(t *testing.T) {
	run, wait, err := parseSchedstat("6453689 27833426 3\n")
	if err != nil || run != 6453689 || wait != 27833426 {
		t.Errorf("got %v %v %v", run, wait, err)
	}
	for _, bad := range []string{"", "12", "x 1 1", "1 -2 3"} {
		if _, _, err := parseSchedstat(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
