package bpf

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file is the one place in package bpf that issues a raw syscall or
// uses unsafe; everything else goes through github.com/cilium/ebpf.

// mapLookupAttr is union bpf_attr as BPF_MAP_LOOKUP_ELEM reads it.
type mapLookupAttr struct {
	mapFD uint32
	_     uint32
	key   uint64 // user address of the key
	value uint64 // user address of the value buffer
	flags uint64
}

// lookupCounters reads the per-CPU values of key 0 of the counters map fd
// into per (one element per possible CPU) with BPF_MAP_LOOKUP_ELEM.
// cilium/ebpf's Map.Lookup allocates a buffer for every per-CPU lookup; this
// reads straight into per and allocates nothing. key, per and attr must be
// heap memory owned by the caller for the duration of the call.
func lookupCounters(fd int, key *uint32, per []steerCounters, attr *mapLookupAttr) error {
	*attr = mapLookupAttr{
		mapFD: uint32(fd),
		key:   uint64(uintptr(unsafe.Pointer(key))),
		value: uint64(uintptr(unsafe.Pointer(&per[0]))),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_LOOKUP_ELEM, uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr))
	runtime.KeepAlive(key)
	runtime.KeepAlive(per)
	if errno != 0 {
		return errno
	}
	return nil
}

// counterStride is the size of one CPU's counters in the map's per-CPU value
// as the kernel copies it out (the value size rounded up to 8 bytes).
const counterStride = unsafe.Sizeof(steerCounters{})
