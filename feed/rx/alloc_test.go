package rx

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// TestReceiveAllocs: steady-state Receive+Release allocates nothing, with
// packets waiting and on an idle poll.
func TestReceiveAllocs(t *testing.T) {
	for _, backend := range []string{BackendSocket, BackendUring} {
		t.Run(backend, func(t *testing.T) {
			lab := newLab(t, netlab.Options{})
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
			allocs := testing.AllocsPerRun(runs, func() {
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
			if allocs != 0 {
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
			allocs = testing.AllocsPerRun(5, func() {
				n, _ := r.Receive(pkts)
				r.Release(pkts[:n])
			})
			if allocs != 0 {
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
