package book

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// applyAll scans a framed stream and applies every message (parse+apply).
func applyAll(bs *Books, buf []byte) int {
	var s itch.Scanner
	s.Reset(buf)
	n := 0
	for m, ok := s.Next(); ok; m, ok = s.Next() {
		bs.Apply(m)
		n++
	}
	return n
}

// applyAllAhead is applyAll with a second scanner ahead calling Prefetch
// ahead messages before Apply.
func applyAllAhead(bs *Books, buf []byte, ahead int) int {
	var s, a itch.Scanner
	s.Reset(buf)
	a.Reset(buf)
	for range ahead {
		if m, ok := a.Next(); ok {
			bs.Prefetch(m)
		}
	}
	n := 0
	for m, ok := s.Next(); ok; m, ok = s.Next() {
		if p, ok := a.Next(); ok {
			bs.Prefetch(p)
		}
		bs.Apply(m)
		n++
	}
	return n
}

// BenchmarkApplyDay: 5000 symbols (activity skewed to a few), 2 M live
// orders built up, then 3 M messages of a day's mix (timed), then every
// order deleted so each iteration replays the same stream on the same
// Books. ns/msg is parse+apply of the churn phase only: the build-up and
// drain phases are untimed set-up.
func BenchmarkApplyDay(b *testing.B) {
	p := buildDayPhases(1, 5000, 2_000_000, 3_000_000, true)
	bs, err := New(Config{MaxOrders: 1 << 22, MaxLocates: 8192, MaxLevels: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	for _, ph := range p { // warm up ladders and page in the tables
		applyAll(bs, ph.buf)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	var churn, cpu time.Duration
	for b.Loop() {
		applyAll(bs, p[0].buf)
		t0, c0 := time.Now(), threadCPU()
		applyAll(bs, p[1].buf)
		churn += time.Since(t0)
		cpu += threadCPU() - c0
		applyAll(bs, p[2].buf)
	}
	b.ReportMetric(float64(churn.Nanoseconds())/float64(b.N*p[1].msgs), "ns/msg")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*p[1].msgs), "cpu-ns/msg")
	if s := bs.Stats(); s.Inconsistencies() != 0 || s.Orders != 0 {
		b.Fatalf("stream not consistent: %+v", s)
	}
}

// BenchmarkApplyGeneratedDay: parse+apply of a whole day from the project's
// generator (internal/itchgen), 5 M messages, 500 symbols (its default);
// the same day as `itchgen -n 5000000`, but seed 7. Reset between
// iterations is untimed.
func BenchmarkApplyGeneratedDay(b *testing.B) {
	for _, ahead := range []int{0, PrefetchAhead} {
		b.Run(fmt.Sprintf("ahead=%d", ahead), func(b *testing.B) { benchGeneratedDay(b, ahead) })
	}
}

var dayBuf []byte
var dayMsgs int

func benchGeneratedDay(b *testing.B, ahead int) {
	if dayBuf == nil {
		dayBuf, dayMsgs = generatedDay(b, 5_000_000, 500)
	}
	buf, msgs := dayBuf, dayMsgs
	bs, err := New(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	applyAll(bs, buf) // grow the ladders once
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	var apply, cpu time.Duration
	for b.Loop() {
		bs.Reset()
		t0, c0 := time.Now(), threadCPU()
		if ahead == 0 {
			applyAll(bs, buf)
		} else {
			applyAllAhead(bs, buf, ahead)
		}
		apply += time.Since(t0)
		cpu += threadCPU() - c0
	}
	b.ReportMetric(float64(apply.Nanoseconds())/float64(b.N*msgs), "ns/msg")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*msgs), "cpu-ns/msg")
	if s := bs.Stats(); s.Inconsistencies() != 0 {
		b.Fatalf("generated day not consistent: %+v", s)
	}
}

// threadCPU returns the CPU time of the calling OS thread: on a shared
// machine it, unlike wall time, does not count time others ran.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkApplyBatch is the live path's shape: the generated day cut into
// batches of messages in hand (a shard's batch of up to 256, or one packet
// of about 8.6 messages), each applied in turn, with Prefetch called
// PrefetchAhead messages ahead inside the batch (prefetch=ahead), on the
// whole batch first (prefetch=batch), or not at all.
func BenchmarkApplyBatch(b *testing.B) {
	if dayBuf == nil {
		dayBuf, dayMsgs = generatedDay(b, 5_000_000, 500)
	}
	var all []itch.Msg
	var s itch.Scanner
	s.Reset(dayBuf)
	for m, ok := s.Next(); ok; m, ok = s.Next() {
		all = append(all, m)
	}
	for _, size := range []int{9, 256} {
		for _, mode := range []string{"none", "ahead", "batch"} {
			b.Run(fmt.Sprintf("batch=%d/prefetch=%s", size, mode), func(b *testing.B) {
				bs, err := New(DefaultConfig())
				if err != nil {
					b.Fatal(err)
				}
				applyBatches(bs, all, size, mode) // grow the ladders once
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				b.ReportAllocs()
				var apply, cpu time.Duration
				for b.Loop() {
					bs.Reset()
					t0, c0 := time.Now(), threadCPU()
					applyBatches(bs, all, size, mode)
					apply += time.Since(t0)
					cpu += threadCPU() - c0
				}
				b.ReportMetric(float64(apply.Nanoseconds())/float64(b.N*len(all)), "ns/msg")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(all)), "cpu-ns/msg")
			})
		}
	}
}

// applyBatches applies msgs in batches of size, prefetching as mode says.
func applyBatches(bs *Books, msgs []itch.Msg, size int, mode string) {
	for len(msgs) > 0 {
		batch := msgs[:min(size, len(msgs))]
		msgs = msgs[len(batch):]
		switch mode {
		case "batch":
			for _, m := range batch {
				bs.Prefetch(m)
			}
			for _, m := range batch {
				bs.Apply(m)
			}
		case "ahead":
			for _, m := range batch[:min(PrefetchAhead, len(batch))] {
				bs.Prefetch(m)
			}
			for i, m := range batch {
				if j := i + PrefetchAhead; j < len(batch) {
					bs.Prefetch(batch[j])
				}
				bs.Apply(m)
			}
		default:
			for _, m := range batch {
				bs.Apply(m)
			}
		}
	}
}
