package rx

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/race"
)

// TestReceiveAllocs: steady-state Receive+Release allocates nothing, with
// packets waiting and on an idle poll.
func TestReceiveAllocs(t *testing.T) {
	for _, backend := range []string{BackendSocket, BackendUring} {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			lines := labLines(lab)
			senders := labSenders(t, lab, lines, 20000)
			r := openBackend(t, lab, backend, Config{Lines: lines, PollTimeout: 5 * time.Millisecond})
			defer r.Close()
			const runs = 100
			// Queue more than the runs will take, so every run finds packets
			// (socket buffer or completion queue).
			sendLines(t, senders, 2*runs)
			pkts := make([]Packet, 2)
			got := 0
			allocs, exact := race.AllocsPerRun(t, runs, func() {
				n, err := r.Receive(pkts)
				if err != nil {
					t.Fatal(err)
				}
				got += n
				r.Release(pkts[:n])
			})
			if got == 0 {
				t.Fatal("no packets received during the measurement")
			}
			if exact && allocs != 0 {
				t.Fatalf("Receive+Release with traffic: %v allocations per run, want 0", allocs)
			}
			// Drain, then measure the idle path (poll/wait timing out).
			for {
				n, err := r.Receive(pkts)
				if err != nil {
					t.Fatal(err)
				}
				r.Release(pkts[:n])
				if n == 0 {
					break
				}
			}
			start := time.Now()
			allocs, exact = race.AllocsPerRun(t, 5, func() {
				n, _ := r.Receive(pkts)
				r.Release(pkts[:n])
			})
			if exact && allocs != 0 {
				t.Fatalf("idle Receive: %v allocations per run, want 0", allocs)
			}
			// Six idle calls (AllocsPerRun warms up once) each block for the
			// poll timeout: returning sooner means Receive spins.
			if d := time.Since(start); d < 6*5*time.Millisecond {
				t.Fatalf("6 idle Receive calls returned after %v, before their 5ms poll timeouts", d)
			}
		})
	}
}

// TestStatsAllocs: Stats of every real backend allocates nothing, with the
// counters read from the kernel (socket drops; the XDP program's per-CPU
// counters and the AF_XDP sockets' statistics). The handler calls it every
// 20 ms for the life of the process, so one allocation per call would make
// the GC run in steady state.
func TestStatsAllocs(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			lines := labLines(lab)
			senders := labSenders(t, lab, lines, 20000)
			r := openBackend(t, lab, backend, Config{Lines: lines, PollTimeout: 5 * time.Millisecond})
			defer r.Close()
			const n = 50
			sendAfter(t, senders, n)
			expectLines(t, r, senders, n)
			var st Stats
			allocs, exact := race.AllocsPerRun(t, 100, func() { st = r.Stats() })
			if exact && allocs != 0 {
				t.Errorf("Stats: %v allocations per call, want 0", allocs)
			}
			// The figures are real: the counters moved, and the xdp
			// backend read its program's per-CPU counters.
			if st.Packets[LineA] < n || st.Packets[LineB] < n {
				t.Errorf("Stats counts %v packets, want at least %d per line", st.Packets, n)
			}
			if backend == BackendXDP && st.Extra.Get("xdp_redirected") < 2*n {
				t.Errorf("Stats: program redirected %d, want at least %d", st.Extra.Get("xdp_redirected"), 2*n)
			}
		})
	}
}

// TestExtra: the fixed-size counter set adds, sums and reads by name, and
// marshals as the JSON object the map it replaced did.
func TestExtra(t *testing.T) {
	var e Extra
	e.Add("a", 1)
	e.Add("b", 2)
	e.Add("a", 3)
	if e.Len() != 2 || e.Get("a") != 4 || e.Get("b") != 2 || e.Get("c") != 0 {
		t.Fatalf("extra %+v: want a=4 b=2", e)
	}
	if name, v := e.At(1); name != "b" || v != 2 {
		t.Fatalf("At(1) = %s %d, want b 2", name, v)
	}
	b, err := e.MarshalJSON()
	if err != nil || string(b) != `{"a":4,"b":2}` {
		t.Fatalf("MarshalJSON = %s, %v", b, err)
	}
	for i := e.Len(); i < MaxExtra; i++ {
		e.Add(string(rune('c'+i)), 1)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("adding a counter past MaxExtra did not panic")
		}
	}()
	e.Add("one-too-many", 1)
}

// TestBackendAllocs: Backend of every real backend allocates nothing: the
// handler puts it in every stats line and metrics scrape (Stats.Backend),
// so one allocation per call would make the GC run in steady state. The
// io_uring backend's concatenated its name at every call.
func TestBackendAllocs(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			lab := netlab.ForTest(t, netlab.Options{})
			r := openBackend(t, lab, backend, Config{Lines: labLines(lab), PollTimeout: 5 * time.Millisecond})
			defer r.Close()
			var name string
			if a, exact := race.AllocsPerRun(t, 100, func() { name = r.Backend() }); exact && a != 0 {
				t.Errorf("Backend (%q): %v allocations per call, want 0", name, a)
			}
		})
	}
}
