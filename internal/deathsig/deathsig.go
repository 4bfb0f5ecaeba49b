package deathsig

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// forker is a goroutine locked to its thread for the process's life, which
// starts every child and runs OnThread's functions; netns is its thread's
// network namespace.
var forker struct {
	once  sync.Once
	do    chan func()
	netns syscall.Stat_t
	err   error
}

// OnThread runs f on a thread that lives as long as the process (the one
// Start forks on, started the first time), and returns when f has: for
// what the kernel ties to a thread and should last, a child's parent-death
// signal (Start) or the process's own (privilege.SwitchUser's).
func OnThread(f func()) {
	startForker()
	done := make(chan struct{})
	forker.do <- func() { f(); close(done) }
	<-done
}

// startForker starts forker the first time, once its thread's network
// namespace is known.
func startForker() {
	forker.once.Do(func() {
		forker.do = make(chan func())
		ready := make(chan struct{})
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the process
			forker.err = syscall.Stat("/proc/thread-self/ns/net", &forker.netns)
			close(ready)
			for f := range forker.do {
				f()
			}
		}()
		<-ready
	})
}

// Start starts cmd as cmd.Start does, with SIGKILL as its parent-death
// signal (the rest of cmd.SysProcAttr kept), forked on forker's thread. It
// fails, starting nothing, when the calling goroutine's thread is in
// another network namespace than the process's.
func Start(cmd *exec.Cmd) error {
	startForker()
	if forker.err == nil {
		var here syscall.Stat_t
		if err := syscall.Stat("/proc/thread-self/ns/net", &here); err == nil && (here.Dev != forker.netns.Dev || here.Ino != forker.netns.Ino) {
			return fmt.Errorf("start %s: the calling thread is in network namespace net:[%d], not the process's net:[%d], where the child would run: run it under ip netns exec", cmd, here.Ino, forker.netns.Ino)
		}
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	var err error
	OnThread(func() { err = cmd.Start() })
	return err
}

// Run is cmd.Run with Start.
func Run(cmd *exec.Cmd) error {
	if err := Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// Output is cmd.Output with Start: an exit error carries stderr when the
// caller did not take it. As cmd.Output, it refuses a cmd whose Stdout is
// set, starting nothing.
func Output(cmd *exec.Cmd) ([]byte, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("exec: Stdout already set")
	}
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	captured := cmd.Stderr == nil
	if captured {
		cmd.Stderr = &errOut
	}
	err := Run(cmd)
	if ee := (*exec.ExitError)(nil); captured && errors.As(err, &ee) {
		ee.Stderr = errOut.Bytes()
	}
	return out.Bytes(), err
}

// CombinedOutput is cmd.CombinedOutput with Start. As cmd.CombinedOutput,
// it refuses a cmd whose Stdout or Stderr is set, starting nothing.
func CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
	if cmd.Stdout != nil {
		return nil, errors.New("exec: Stdout already set")
	}
	if cmd.Stderr != nil {
		return nil, errors.New("exec: Stderr already set")
	}
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := Run(cmd)
	return b.Bytes(), err
}

// SetprivUser is setpriv's flags that run its command as user and group
// (names or numbers) without supplementary groups, its parent-death signal
// kept (--pdeathsig keep): the kernel clears the signal when the uid
// changes, and a child so run outlives a killed parent. A setpriv older
// than util-linux 2.33 lacks the flag: there it is left out, and such a
// child outlives a killed parent as it did before.
func SetprivUser(user, group string) []string {
	f := []string{"--reuid=" + user, "--regid=" + group, "--clear-groups"}
	if setprivKeeps() {
		f = append(f, "--pdeathsig", "keep")
	}
	return f
}

// setprivKeeps reports whether setpriv has --pdeathsig.
var setprivKeeps = sync.OnceValue(func() bool {
	out, _ := exec.Command("setpriv", "--help").Output()
	return bytes.Contains(out, []byte("--pdeathsig"))
})
