//go:build !amd64

package shm

import "sync/atomic"

// loadFence orders the plain loads of a slot copy before the seqlock's
// re-check. Weakly ordered CPUs (arm64) may satisfy a plain load after a
// later load-acquire; a read-modify-write has release semantics, which
// keeps the copy's loads before it, and acquire semantics, which keeps the
// re-check after it.
func loadFence() {
	var x uint64
	atomic.AddUint64(&x, 0)
}
