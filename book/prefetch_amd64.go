package book

// prefetch asks the CPU to start loading the cache line at addr. It is a
// hint: it never faults and changes nothing observable.
//
//go:noescape
func prefetch(addr uintptr)
