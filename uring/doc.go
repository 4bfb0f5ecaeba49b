// Package uring is a small io_uring layer over raw system calls, without cgo.
//
// It is the only package of the module that calls io_uring_setup,
// io_uring_enter and io_uring_register or touches the shared rings; the rest
// of the module (feed/rx) builds on its types:
//
//   - Ring: Setup maps the submission (SQ) and completion (CQ) rings and the
//     SQE array; GetSQE hands out the next free submission entry, Submit and
//     Wait enter the kernel, PeekCQE/CQAdvance and CQEs read completions.
//   - BufRing: a provided buffer ring (IORING_REGISTER_PBUF_RING). The ring
//     and its buffers live in anonymous mmapped memory, never on the Go heap,
//     so the kernel holds no Go pointers. Add queues buffer ids, Advance
//     publishes them to the kernel; Reclaim takes all of them back (after
//     Wait's EBADR: completions, and the buffers they named, lost).
//   - RecvmsgOut / ParseRecvmsg: the layout of a buffer filled by a
//     multishot RECVMSG (struct io_uring_recvmsg_out, name, control, payload).
//
// Missing kernel support (ENOSYS, io_uring_disabled (EPERM), a security
// module's refusal (EACCES), an opcode or register operation the kernel
// does not know) is reported as an error wrapping ErrNotSupported; other
// errors wrap the errno, so callers compare with errors.Is.
//
// A Ring is not safe for concurrent use: one goroutine submits and reaps.
//
// Task work and Go threads: completions of socket requests are finished as
// "task work" on the OS thread that submitted the request, and Go moves
// goroutines between threads. SINGLE_ISSUER|DEFER_TASKRUN (the fastest
// mode: task work runs in batches when the ring's only submitter waits)
// therefore needs the ring to be used from one locked OS thread
// (runtime.LockOSThread); SetupRDisabled plus Enable lets the ring be made
// on one thread and handed to the thread that will use it. COOP_TASKRUN
// works from any thread (a sleeping submitter is woken, a running one is
// not interrupted). Flags are chosen by the caller through Params.Flags.
package uring
