//go:build !amd64

package book

func prefetch(addr uintptr) {}
