package handler

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/spsc"
)

// TestUnpinnedShardWaitsUnpinned: sharded, a shard given a CPU this
// process may run on is pinned and polls its ring hard before sleeping
// (it owns the core); one given a CPU it may not (here 1023, which the
// host lacks; a CPU outside the cgroup's cpuset is refused alike) runs
// unpinned, and must wait as an unpinned shard does. Before, it kept the
// pinned shard's backoff: 65,536 polls and 16,384 sched_yield(2) before
// each sleep, on CPUs it shares with the receive thread (measured here,
// two such shards idle: each ran 0.49-0.50 s of every second, against
// 0.07 s unpinned).
func TestUnpinnedShardWaitsUnpinned(t *testing.T) {
	const missing = 1023 // the last CPU unix.CPUSet holds
	if runtime.NumCPU() > missing {
		t.Skip("this host has CPU 1023")
	}
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !allowed.IsSet(cpu) {
		cpu++
	}
	h, _, _ := startScript(t, ModeSharded, []int{cpu, missing}, nil, -1, zerolog.Nop(), nil)
	defer h.Stop()
	for i, want := range []struct {
		core   int
		pinned bool
	}{{cpu, true}, {-1, false}} {
		s := h.shards[i]
		if s.thread.Core != want.core {
			t.Fatalf("shard %d (CPU %d asked): its thread is on core %d, want %d", i, s.core, s.thread.Core, want.core)
		}
		// As SetBackoff completes it.
		r, err := spsc.New[slot](2)
		if err != nil {
			t.Fatal(err)
		}
		r.SetBackoff(shardBackoff(want.pinned))
		if got, w := s.ring.Backoff(), r.Backoff(); got != w {
			t.Errorf("shard %d (CPU %d asked, thread on core %d): ring backoff %+v, want %+v", i, s.core, s.thread.Core, got, w)
		}
	}
}
