package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/deathsig"
	"github.com/marketfeed/feedhandler/internal/privilege"
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
// running when the test's cleanup starts is killed too. One the test
// binary leaves behind, killed by go test's -timeout (SIGQUIT, then the
// exit) or by a signal, gets SIGKILL from the kernel (Pdeathsig): before,
// a handler started by a test killed so ran on, its sockets bound and its
// groups joined, until someone found it. The kernel sends Pdeathsig when
// the thread that forked the child ends, not the process: child's Start
// forks on deathsig's thread, which never ends (a goroutine that ends with
// its thread locked ends the thread: netlab.Do's after a failed switch
// back). The kernel clears it when the child changes its uid: setpriv's
// flags for it are deathsig.SetprivUser's (which keep it), and the handler
// started as root with user: sets it again after its own switch
// (privilege.SwitchUser).
func boundedCommand(t *testing.T, name string, args ...string) *child {
	t.Helper()
	bound := waitBound(t)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	var mu sync.Mutex
	ended := false // the test's cleanup began: t.Errorf may no longer be called after it
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{} // deathsig.Start sets Pdeathsig
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
	return &child{Cmd: cmd, t: t}
}

// child is a command boundedCommand made: its Start (and Run, Output,
// CombinedOutput, which start it) is deathsig's, which forks it on a
// thread that lives as long as the test binary, so that its Pdeathsig
// comes when the test binary ends and never before. That thread is in the
// host's network namespace: a child for a namespace of the test's runs
// under ip netns exec (inNetns), and Start fails on a thread switched into
// one (netlab.Do) rather than start it on the host.
type child struct {
	*exec.Cmd
	t *testing.T
}

// Start is exec.Cmd's Start with deathsig's (deathsig.Start).
func (c *child) Start() error {
	return deathsig.Start(c.Cmd)
}

// Run is exec.Cmd's Run with child's Start.
func (c *child) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output is exec.Cmd's Output with deathsig's Start (deathsig.Output); an
// exit error carries stderr when the caller did not take it.
func (c *child) Output() ([]byte, error) {
	return deathsig.Output(c.Cmd)
}

// CombinedOutput is exec.Cmd's CombinedOutput with deathsig's Start.
func (c *child) CombinedOutput() ([]byte, error) {
	return deathsig.CombinedOutput(c.Cmd)
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

// TestChildDiesWithTestBinary: a child of boundedCommand dies with the
// test binary that started it (killed here with SIGKILL, as go test's
// -timeout ends one), and not before, though the goroutine that started it
// ended with its thread locked, which ends the thread. In a child test
// binary, which starts sleep and prints its pid. Without Pdeathsig the
// sleep outlived its test binary; forked on the starting goroutine's own
// thread, it died with that thread. As root, two more children run as
// nobody, whose uid change clears Pdeathsig: a sleep through setpriv with
// deathsig.SetprivUser's flags (which keep it), and this test binary again,
// switching to nobody itself with privilege.SwitchUser as the handler
// started as root with user: does (which sets it again). Without
// --pdeathsig keep, and without SwitchUser's keepDeathsig, each outlived
// its test binary.
func TestChildDiesWithTestBinary(t *testing.T) {
	switch os.Getenv("FEEDHANDLER_TEST_ORPHAN") {
	case "1":
		orphanSleeps(t)
		select {} // until killed
	case "switch-user":
		if _, _, err := privilege.SwitchUser("nobody"); err != nil {
			t.Fatal(err)
		}
		fmt.Println("switched")
		time.Sleep(time.Hour) // until killed
	}
	parent, out := startOrphanTestBinary(t, "1")
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Scan()
		lines <- sc.Text()
		io.Copy(io.Discard, out)
	}()
	line := await(t, "the child test binary's sleep pids", lines)
	kinds, ok := strings.CutPrefix(line, "sleep pids ")
	if !ok {
		parent.Process.Kill()
		t.Fatalf("the child test binary printed no sleep pids: %q (%v)", line, parent.Wait())
	}
	pids := map[string]int{}
	for _, f := range strings.Fields(kinds) {
		kind, pid, _ := strings.Cut(f, "=")
		n, err := strconv.Atoi(pid)
		if err != nil {
			t.Fatalf("the child test binary printed %q", line)
		}
		pids[kind] = n
		defer syscall.Kill(n, syscall.SIGKILL)
	}
	if pid := pids["plain"]; !running(pid, "sleep") {
		t.Errorf("sleep (pid %d) was killed when the thread that started it ended, its test binary still running", pid)
	}
	if len(pids) < 3 {
		t.Logf("only %s: the children as nobody need root and setpriv", line)
	}
	parent.Process.Kill()
	parent.Wait()
	bound := waitBound(t)
	deadline := time.Now().Add(bound)
	for _, kind := range []string{"plain", "setpriv", "switches-user"} {
		pid, ok := pids[kind]
		arg0 := "sleep"
		if kind == "switches-user" {
			arg0 = os.Args[0]
		}
		for ok && running(pid, arg0) {
			if time.Now().After(deadline) {
				t.Errorf("%s (%s, pid %d) still runs %v after the test binary that started it was killed", filepath.Base(arg0), kind, pid, bound)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// startOrphanTestBinary starts this test binary again to run
// TestChildDiesWithTestBinary's part named mode, its stdout piped.
func startOrphanTestBinary(t *testing.T, mode string) (*child, io.Reader) {
	c := boundedCommand(t, os.Args[0], "-test.run=^TestChildDiesWithTestBinary$", "-test.count=1")
	c.Env = append(os.Environ(), "FEEDHANDLER_TEST_ORPHAN="+mode)
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return c, out
}

// orphanSleeps is TestChildDiesWithTestBinary's child test binary: it
// starts its children and prints their pids ("sleep pids plain=N ...")
// once each sleeps (setpriv has executed sleep, the test binary has
// switched user).
func orphanSleeps(t *testing.T) {
	sleep := boundedCommand(t, "sleep", "3600")
	tid := 0
	for tid == 0 {
		started := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread ends with the goroutine
			if syscall.Gettid() == os.Getpid() {
				// The main thread, which the runtime keeps (wedged)
				// rather than end: another goroutine, on another
				// thread, next.
				started <- nil
				return
			}
			tid = syscall.Gettid()
			started <- sleep.Start()
		}()
		if err := <-started; err != nil {
			t.Fatal(err)
		}
	}
	// Until the thread is gone: the kernel has sent the Pdeathsig of a
	// child it forked by then.
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); os.IsNotExist(err) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	line := fmt.Sprintf("sleep pids plain=%d", sleep.Process.Pid)
	if _, err := exec.LookPath("setpriv"); err == nil && os.Geteuid() == 0 {
		kept := boundedCommand(t, "setpriv", append(deathsig.SetprivUser("65534", "65534"), "sleep", "3600")...)
		if err := kept.Start(); err != nil {
			t.Fatal(err)
		}
		switching, out := startOrphanTestBinary(t, "switch-user")
		if l, _ := bufio.NewReader(out).ReadString('\n'); l != "switched\n" {
			t.Fatalf("the test binary switching user said %q", l)
		}
		for !running(kept.Process.Pid, "sleep") {
			time.Sleep(time.Millisecond)
		}
		line += fmt.Sprintf(" setpriv=%d switches-user=%d", kept.Process.Pid, switching.Process.Pid)
	}
	fmt.Println(line)
}

// running reports whether pid runs arg0 (its first argument: not a pid
// reused) and has no SIGKILL pending.
func running(pid int, arg0 string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.HasPrefix(cmdline, []byte(arg0+"\x00")) {
		return false
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for l := range strings.Lines(string(status)) {
		k, v, _ := strings.Cut(strings.TrimSpace(l), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "State":
			if strings.HasPrefix(v, "Z") || strings.HasPrefix(v, "X") {
				return false
			}
		case "SigPnd", "ShdPnd":
			if m, err := strconv.ParseUint(v, 16, 64); err == nil && m&(1<<(syscall.SIGKILL-1)) != 0 {
				return false
			}
		}
	}
	return true
}
