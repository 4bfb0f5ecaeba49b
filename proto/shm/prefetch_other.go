//go:build !amd64

package shm

import "unsafe"

func prefetchLines(p unsafe.Pointer, n int) {}
