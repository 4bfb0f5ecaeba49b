package demo

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestPinCPUsOf: the demo pins within the CPUs the process may run on.
// A container's or a taskset's cpuset need not start at CPU 0: with CPUs
// 2 and 5 the sender goes to 2 and the receive thread to 5. (Before, the
// demo pinned to CPU 0 and CPU runtime.NumCPU()-1, here 1: neither in
// the set, so both pins failed.)
func TestPinCPUsOf(t *testing.T) {
	for _, tc := range []struct {
		cpus            []int
		sender, receive int
		ok              bool
	}{
		{[]int{0, 1}, 0, 1, true},
		{[]int{2, 5}, 2, 5, true},
		{[]int{3, 4, 7, 100}, 3, 100, true},
		{[]int{6}, 0, 0, false},
		{nil, 0, 0, false},
	} {
		var set unix.CPUSet
		for _, c := range tc.cpus {
			set.Set(c)
		}
		s, r, ok := pinCPUsOf(&set)
		if s != tc.sender || r != tc.receive || ok != tc.ok {
			t.Errorf("CPUs %v: sender %d, receive %d, ok %v; want %d, %d, %v", tc.cpus, s, r, ok, tc.sender, tc.receive, tc.ok)
		}
	}
	// This process: both within its own mask.
	var self unix.CPUSet
	if err := unix.SchedGetaffinity(0, &self); err != nil {
		t.Fatal(err)
	}
	if s, r, ok := PinCPUs(); ok && (!self.IsSet(s) || !self.IsSet(r) || s == r) {
		t.Errorf("PinCPUs: sender %d, receive %d, not two CPUs of this process's mask", s, r)
	}
}
