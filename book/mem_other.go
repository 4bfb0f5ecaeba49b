//go:build !linux

package book

func adviseHuge(b []byte) {}
