package clock

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/race"
)

// maxErrNs is the error bound the tests hold Now to against time.Now: a
// correctness bound (the documented one), not a timing threshold.
const maxErrNs = 5_000

// bracketNs: a pair of time.Now reads further apart than this lost the CPU
// between them, so the reading between them proves nothing either way.
const bracketNs = 2_000

// checkAgainstWall reads read() between two time.Now reads for d and
// returns the errors (distance outside the bracket) of the readings whose
// bracket was tight, and how many were discarded.
func checkAgainstWall(t *testing.T, d time.Duration, read func() int64) (errs []int64, discarded int) {
	t.Helper()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		w1 := time.Now().UnixNano()
		c := read()
		w2 := time.Now().UnixNano()
		if w2-w1 > bracketNs {
			discarded++
			continue
		}
		var e int64
		if c < w1 {
			e = w1 - c
		} else if c > w2 {
			e = c - w2
		}
		errs = append(errs, e)
		// Vary the phase against the re-anchors and let time pass.
		if i%64 == 0 {
			time.Sleep(time.Duration(i%7) * 100 * time.Microsecond)
		}
	}
	return errs, discarded
}

func report(t *testing.T, name string, errs []int64, discarded int) {
	t.Helper()
	if len(errs) < 1000 {
		t.Fatalf("%s: only %d tight readings (%d discarded): the machine is too loaded to check the clock", name, len(errs), discarded)
	}
	slices.Sort(errs)
	q := func(f float64) int64 { return errs[int(f*float64(len(errs)-1))] }
	t.Logf("%s: %d readings (%d discarded), error outside the time.Now bracket: p50 %d ns, p99 %d ns, p99.9 %d ns, max %d ns",
		name, len(errs), discarded, q(0.5), q(0.99), q(0.999), errs[len(errs)-1])
	if m := errs[len(errs)-1]; m > maxErrNs {
		t.Errorf("%s: Now was %d ns outside time.Now's bracket; the bound is %d ns", name, m, maxErrNs)
	}
}

// TestNowTracksWallClock holds Now to its error bound against time.Now on
// every CPU the test may run on, over seconds (hundreds of re-anchors).
func TestNowTracksWallClock(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatalf("sched_getaffinity: %v", err)
	}
	defer unix.SchedSetaffinity(0, &set)
	per := 3 * time.Second / time.Duration(max(set.Count(), 1))
	for cpu := 0; cpu < 1024; cpu++ {
		if !set.IsSet(cpu) {
			continue
		}
		var one unix.CPUSet
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			t.Fatalf("pin to CPU %d: %v", cpu, err)
		}
		errs, discarded := checkAgainstWall(t, per, Now)
		report(t, "cpu "+strconv.Itoa(cpu), errs, discarded)
	}
	name, why := Source()
	cur, avail := KernelClocksource()
	t.Logf("source %s (%s); stats %+v; kernel clocksource %q, tsc listed %v", name, why, ReadStats(), cur, avail)
	if ok, _ := invariantTSC(); ok && os.Getenv("FEEDHANDLER_CLOCK") == "" {
		// The check above must have covered the TSC, not only the
		// fallback.
		if name != "tsc" || std.slots[std.cur.Load()&1].mult.Load() == 0 {
			t.Errorf("the CPU has an invariant TSC but Now does not run on it: %s (%s), %+v", name, why, ReadStats())
		}
	}
}

// TestMonotonicMode holds the fallback to the same bound.
func TestMonotonicMode(t *testing.T) {
	c := newReal("monotonic")
	errs, discarded := checkAgainstWall(t, 500*time.Millisecond, c.now)
	report(t, "monotonic", errs, discarded)
	if name, why := c.source(); name != "monotonic" || why != reasonEnv {
		t.Errorf("source %q (%q), want monotonic (%q)", name, why, reasonEnv)
	}
}

func newReal(env string) *clk {
	c := &clk{readTSC: rdtsc, readMono: mono, readWall: wall}
	c.start(env)
	return c
}

func (c *clk) source() (string, string) {
	if r := c.reason.Load(); r != nil {
		return "monotonic", *r
	}
	return "tsc", ""
}

// fake is a TSC and kernel clocks the test moves by hand.
type fake struct {
	mono    int64   // ns
	ticks   float64 // TSC ticks per ns
	tscBase int64   // the TSC at mono 0 (moved to make jumps)
	wallOff int64
}

func (f *fake) clk(env string) *clk {
	c := &clk{
		readTSC:  func() int64 { return f.tscBase + int64(float64(f.mono)*f.ticks) },
		readMono: func() int64 { return f.mono },
		readWall: func() (int64, int64) { return f.mono + f.wallOff, f.mono },
	}
	c.start(env)
	return c
}

func (c *clk) mode() int64 { return c.slots[c.cur.Load()&1].mult.Load() }

// run advances the fake by step for d, reading the clock at every step, and
// returns the largest error against the fake's wall clock.
func (f *fake) run(c *clk, d, step time.Duration) int64 {
	var worst int64
	for end := f.mono + int64(d); f.mono < end; f.mono += int64(step) {
		worst = max(worst, abs(c.now()-(f.mono+f.wallOff)))
	}
	return worst
}

// TestTSCFaults drives the TSC logic with a fake TSC: rate measured, the
// wall clock stepped, a TSC jump and a TSC rate change are caught at the
// next re-anchor, and the third fault turns the TSC off.
func TestTSCFaults(t *testing.T) {
	if ok, why := invariantTSC(); !ok {
		t.Skipf("no TSC mode on this machine: %s", why)
	}
	f := &fake{mono: 5e9, ticks: 2.1, tscBase: 123_456_789, wallOff: 1_700_000_000e9}
	c := f.clk("")
	if c.mode() != 0 {
		t.Fatal("TSC mode before the rate was measured")
	}
	if e := f.run(c, 300*time.Millisecond, 3*time.Millisecond); e > 1 {
		t.Errorf("error %d ns while the rate was measured", e)
	}
	if c.mode() == 0 {
		t.Fatal("still monotonic after 300 ms")
	}
	if e := f.run(c, 2*time.Second, 7*time.Millisecond); e > 1 {
		t.Errorf("error %d ns on a steady TSC", e)
	}
	// The kernel's wall clock is stepped by 3 ms: followed at the next
	// re-anchor, not counted as a fault.
	f.wallOff += 3e6
	f.mono += int64(Period) + 1
	if e := f.run(c, 100*time.Millisecond, time.Millisecond); e > 1 {
		t.Errorf("error %d ns after a wall-clock step", e)
	}
	if n := c.faults.Load(); n != 0 {
		t.Fatalf("%d faults after a wall-clock step", n)
	}
	// A TSC jump of 1 ms (forward, within the period) is a fault.
	f.tscBase += int64(1e6 * f.ticks)
	f.mono += int64(Period) + 1
	c.now()
	if c.faults.Load() != 1 || c.mode() != 0 {
		t.Fatalf("TSC jump: faults %d, mode %d; want 1 fault and monotonic mode", c.faults.Load(), c.mode())
	}
	if e := f.run(c, 50*time.Millisecond, time.Millisecond); e > 1 {
		t.Errorf("error %d ns in monotonic mode after the fault", e)
	}
	if e := f.run(c, 300*time.Millisecond, 3*time.Millisecond); e > 1 || c.mode() == 0 {
		t.Errorf("after the jump: error %d ns, mode %d; want the TSC back", e, c.mode())
	}
	// A rate change of 0.5% is a fault.
	f.tscBase -= int64(float64(f.mono) * f.ticks * 0.005)
	f.ticks *= 1.005
	f.run(c, 500*time.Millisecond, 3*time.Millisecond)
	if c.faults.Load() != 2 {
		t.Fatalf("rate change: %d faults, want 2", c.faults.Load())
	}
	// A TSC that runs backwards.
	f.tscBase -= int64(5e6 * f.ticks)
	f.run(c, 50*time.Millisecond, time.Millisecond)
	if c.faults.Load() != 3 || c.useTSC.Load() {
		t.Fatalf("third fault: faults %d, TSC in use %v; want 3 and off", c.faults.Load(), c.useTSC.Load())
	}
	if name, why := c.source(); name != "monotonic" || why != reasonFault {
		t.Errorf("source %q (%q) after three faults", name, why)
	}
	if e := f.run(c, time.Second, 3*time.Millisecond); e > 1 || c.mode() != 0 {
		t.Errorf("after the TSC was turned off: error %d ns, mode %d", e, c.mode())
	}
}

// TestLongIdle: a reading long after the last (no Now for an hour) is
// re-anchored before use and is not a fault.
func TestLongIdle(t *testing.T) {
	if ok, why := invariantTSC(); !ok {
		t.Skipf("no TSC mode on this machine: %s", why)
	}
	f := &fake{mono: 1e9, ticks: 3.0, wallOff: 1_600_000_000e9}
	c := f.clk("")
	f.run(c, 200*time.Millisecond, 5*time.Millisecond)
	f.mono += int64(time.Hour)
	if e := abs(c.now() - (f.mono + f.wallOff)); e > 1 {
		t.Errorf("error %d ns after an hour idle", e)
	}
	if c.faults.Load() != 0 || c.mode() == 0 {
		t.Errorf("after an hour idle: faults %d, mode %d", c.faults.Load(), c.mode())
	}
}

func TestEnv(t *testing.T) {
	for _, env := range []string{"monotonic", "rdtscp"} {
		c := (&fake{mono: 1e9, ticks: 2}).clk(env)
		if name, why := c.source(); name != "monotonic" || why == "" {
			t.Errorf("FEEDHANDLER_CLOCK=%s: source %q (%q)", env, name, why)
		}
	}
}

// TestConcurrentReaders reads on several goroutines while re-anchors are
// forced: every reading within the bound (and, with -race, no data race).
func TestConcurrentReaders(t *testing.T) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			std.slow()
		}
	}()
	var mu sync.Mutex
	var all []int64
	discardedAll := 0
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs, d := checkAgainstWall(t, 300*time.Millisecond, Now)
			mu.Lock()
			all, discardedAll = append(all, errs...), discardedAll+d
			mu.Unlock()
		}()
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	report(t, "concurrent", all, discardedAll)
}

func TestAllocs(t *testing.T) {
	if n, exact := race.AllocsPerRun(t, 1000, func() { Now() }); exact && n != 0 {
		t.Errorf("Now: %v allocations", n)
	}
	if n, exact := race.AllocsPerRun(t, 100, func() { std.slow() }); exact && n != 0 {
		t.Errorf("re-anchor: %v allocations", n)
	}
}

var sink int64

// BenchmarkNow compares Now with time.Now and a bare RDTSC, and times the
// re-anchor that one reading in every Period pays. The monotonic fallback:
// FEEDHANDLER_CLOCK=monotonic go test -bench Now.
func BenchmarkNow(b *testing.B) {
	b.Run("clock.Now", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink += Now()
		}
	})
	b.Run("time.Now", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink += time.Now().UnixNano()
		}
	})
	b.Run("re-anchor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink += std.slow()
		}
	})
	b.Run("rdtsc", func(b *testing.B) {
		for b.Loop() {
			sink += rdtsc()
		}
	})
}
