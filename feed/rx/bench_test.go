package rx

import (
	"context"
	"iter"
	"runtime"
	"testing"

	"github.com/marketfeed/feedhandler/internal/netlab"
)

// BenchmarkReceive: Receive+Release of 64-byte datagrams while an unpaced
// sender floods one line in the lab. The figure includes waiting for the
// sender (the default lab delivers on the sender's core); tools/rxbench
// measures CPU per packet properly.
func BenchmarkReceive(b *testing.B) {
	for _, c := range []struct {
		name, backend string
		locked        bool
	}{{"socket", BackendSocket, false}, {"uring", BackendUring, false}, {"uring-locked", BackendUring, true}, {"xdp", BackendXDP, false}} {
		b.Run(c.name, func(b *testing.B) {
			if c.locked {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
			}
			lab := netlab.ForTest(b, netlab.Options{})
			lines := labLines(lab)[:1]
			senders := labSenders(b, lab, lines, 0)
			r := openBackend(b, lab, c.backend, Config{Lines: lines, LockedThread: c.locked})
			defer r.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				senders[0].Send(ctx, flood(64))
			}()
			defer func() { cancel(); <-done }()
			pkts := make([]Packet, 64)
			var n int
			b.ReportAllocs()
			for b.Loop() {
				k, err := r.Receive(pkts)
				if err != nil {
					b.Fatal(err)
				}
				n += k
				r.Release(pkts[:k])
			}
			b.Logf("%s: %+v", r.Backend(), r.Stats())
			if n > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/pkt")
				b.ReportMetric(float64(n)/float64(b.N), "pkts/op")
			}
		})
	}
}

func flood(size int) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		p := make([]byte, size)
		for yield(p) {
		}
	}
}
