// Package deathsig starts child processes that the kernel kills (SIGKILL)
// when this process ends, however it ends: a test binary killed by go
// test's -timeout or a signal, a demo interrupted. Start sets the child's
// parent-death signal (exec.Cmd's SysProcAttr.Pdeathsig, PR_SET_PDEATHSIG)
// and forks it on one thread that lives as long as the process.
//
// The kernel sends the parent-death signal when the thread that forked the
// child ends, not the process: a goroutine that forks and then ends with its
// thread locked (netlab.Do's after a failed switch back, the feed handler's
// receive thread when a run stops it) ends its thread, and a child forked
// there, or by any goroutine the runtime ran on that thread, would be
// killed in mid-run. Forking on a thread locked for the process's life
// avoids that, without holding the caller's thread while the child runs.
//
// The child gets the forking thread's namespaces and credentials, which are
// the process's own, not those of the caller's thread: a child of a thread
// switched into a network namespace (netlab.Do) would run in the host's,
// so Start refuses a caller whose thread is in another network namespace
// (run the child under `ip netns exec` instead); capabilities a caller
// dropped on its locked thread are not dropped for the child either (run it
// under setpriv).
//
// The kernel clears the signal when the child changes its user (setuid,
// setresuid; setpriv --reuid) or executes a set-user-ID binary: setpriv
// keeps it with --pdeathsig keep (SetprivUser's flags); a child that
// switches user by itself loses it unless it sets it again, as the feed
// handler does (privilege.SwitchUser).
// Exec.Cmd's SysProcAttr.Credential keeps it: the child sets the signal
// after it changes its user.
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
// starts every child; netns is its thread's network namespace.
var forker struct {
	once  sync.Once
	do    chan func()
	netns syscall.Stat_t
	err   error
}

// Start starts cmd as cmd.Start does, with SIGKILL as its parent-death
// signal (the rest of cmd.SysProcAttr kept), forked on forker's thread. It
// fails, starting nothing, when the calling goroutine's thread is in
// another network namespace than the process's.
func Start(cmd *exec.Cmd) error {
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
	errc := make(chan error, 1)
	forker.do <- func() { errc <- cmd.Start() }
	return <-errc
}

// Run is cmd.Run with Start.
func Run(cmd *exec.Cmd) error {
	if err := Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// Output is cmd.Output with Start: an exit error carries stderr when the
// caller did not take it.
func Output(cmd *exec.Cmd) ([]byte, error) {
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

// CombinedOutput is cmd.CombinedOutput with Start.
func CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
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
