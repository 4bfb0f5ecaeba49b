// Package privilege measures and sheds the process's privileges: the
// capability sets each receive backend needs (measured, see
// docs/OPERATIONS.md), an explanation naming the missing capability when
// setup fails for lack of one, and the drop after setup: to a configured
// user when started as root, and of every capability on every thread.
//
// Linux capabilities and credentials belong to threads, and a Go program
// has several threads from its start. Switching user goes through
// syscall.Setresuid and friends, which Go applies to every thread (with or
// without cgo); the kernel then clears every thread's parent-death signal,
// which SwitchUser sets again on a thread kept for it. Dropping
// capabilities without switching user needs syscall.AllThreadsSyscall,
// which Go refuses when cgo is linked (ENOTSUP): build the command with
// CGO_ENABLED=0 (make build does), or Drop reports ErrNotSupported and the
// capabilities stay.
package privilege
