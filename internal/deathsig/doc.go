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
