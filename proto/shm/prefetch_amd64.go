package shm

import "unsafe"

// prefetchLines asks the CPU to start loading the cache lines of p[:n]
// (n > 0). It is a hint: it never faults and changes nothing observable.
//
//go:noescape
func prefetchLines(p unsafe.Pointer, n int)
