package handler

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// gcSample reads the runtime's GC cycle count (the cycles GODEBUG=gctrace=1
// prints a line for) and the heap objects allocated so far, tiny ones
// (under 16 bytes, packed together) included.
func gcSample() (cycles, objects uint64) {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/tiny/allocs:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64() + s[2].Value.Uint64()
}

// batches counts the batches the shards applied and published so far.
func batches(h *Handler) uint64 {
	var n uint64
	for _, s := range h.shards {
		n += s.batches.Load()
	}
	return n
}

// TestPacedRunStartsNoGC runs the real pipeline (receive thread, arbiter,
// books, shm publisher, housekeeping; in both modes) over a generated day
// paced at 100k packets/s per line, and checks that no GC cycle starts in
// the steady-state window after the warm-up, nor is anything allocated once per
// batch. GOGC is lowered to 1 for the
// test so the check has teeth: a path allocating even a few bytes per
// packet grows the heap by 1% within milliseconds and starts a cycle.
func TestPacedRunStartsNoGC(t *testing.T) {
	if testing.Short() {
		t.Skip("paced run takes seconds")
	}
	const msgs = 1_200_000
	g := dayPacketsSized(t, msgs, 300)
	var script []rx.Packet
	for _, p := range g {
		script = append(script, rx.Packet{Data: p, Line: rx.LineA}, rx.Packet{Data: p, Line: rx.LineB})
	}
	g = nil
	for _, m := range modes {
		t.Run(m.mode.String(), func(t *testing.T) {
			name := fmt.Sprintf("fhgc-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
			defer shm.Remove(name)
			r := &pacedRx{scriptRx: scriptRx{errAt: -1, script: script}}
			r.interval = time.Second / 200_000 // 100k/s per line, two lines
			h, err := Start(Config{
				Receive:     rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}, BatchSize: 64},
				Book:        book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
				Mode:        m.mode,
				ShardCores:  m.shards,
				ReceiveCore: -1,
				ShmName:     name,
				Open:        func(rx.Config) (rx.Receiver, error) { r.start = time.Now(); return r, nil },
				Log:         zerolog.Nop(),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Stop()
			total := time.Duration(len(script)) * r.interval
			// Warm up: the first tenth of the day registers the
			// instruments and grows nothing after.
			time.Sleep(total / 10)
			runtime.GC()
			defer debug.SetGCPercent(debug.SetGCPercent(1))
			c0, o0 := gcSample()
			d0, b0 := h.Delivered(), batches(h)
			time.Sleep(total * 7 / 10)
			d1, b1 := h.Delivered(), batches(h)
			c1, o1 := gcSample()
			t.Logf("%s: %d messages in %d batches delivered in the window (%v), %d GC cycles, %d heap objects allocated by the process",
				m.mode, d1-d0, b1-b0, total*7/10, c1-c0, o1-o0)
			if d1 == d0 || b1 == b0 {
				t.Fatal("nothing delivered in the window: no steady state was measured")
			}
			if c1 != c0 {
				t.Errorf("%d GC cycles started during the steady-state window (%d objects allocated)", c1-c0, o1-o0)
			}
			// Nothing on the path allocates, not even once per batch:
			// what is left is the runtime's and the test's own, a few
			// dozen objects. The runtime counts small objects lazily (per
			// cache refill), so one object per batch can read as fewer:
			// compare with a tenth of the batches.
			if o1-o0 >= (b1-b0)/10 {
				t.Errorf("%d heap objects allocated during %d batches", o1-o0, b1-b0)
			}
		})
	}
}
