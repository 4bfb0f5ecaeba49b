package shm

// prefetchLines asks the CPU to start loading the n cache lines from addr
// on. It is a hint: it never faults and changes nothing observable.
//
//go:noescape
func prefetchLines(addr uintptr, n int)
