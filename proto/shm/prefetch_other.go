//go:build !amd64

package shm

// prefetchLines is a no-op where there is no prefetch_GOARCH.s.
func prefetchLines(addr uintptr, n int) {}
