package book

// prefetch asks the CPU to start loading the cache line at addr. It is a
// hint: it never faults and changes nothing observable.
//
//go:noescape
func prefetch(addr uintptr)

// prefetchSpan asks the CPU to start loading the cache lines of the 256
// bytes from addr (eight order slots). A hint, like prefetch.
//
//go:noescape
func prefetchSpan(addr uintptr)
