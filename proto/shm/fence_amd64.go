package shm

// loadFence orders the plain loads of a slot copy before the seqlock's
// re-check. amd64 never reorders loads with loads (TSO), and the compiler
// does not move memory accesses across sync/atomic operations.
func loadFence() {}
