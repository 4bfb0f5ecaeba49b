package clock

import (
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Period is how long the clock runs on one anchor: the first Now more than
// Period after the last anchor re-anchors it to the kernel's clocks.
const Period = 10 * time.Millisecond

const (
	// The TSC rate is measured against CLOCK_MONOTONIC over a window of at
	// least minBaseline, restarted once it is maxBaseline long.
	minBaseline = int64(100 * time.Millisecond)
	maxBaseline = int64(time.Second)
	// maxWindow is the widest pair of TSC reads around a monotonic read
	// that still counts as one moment (about 5 µs at 2 GHz); wider, the
	// thread was interrupted between them.
	maxWindow = 10_000
	// A re-anchor that finds the TSC clock more than faultNs (plus
	// faultPPM of the time since the last anchor) away from
	// CLOCK_MONOTONIC, or a new rate more than ratePPM from the last, is a
	// fault: the TSC jumped or changed speed (a VM migrated or restored).
	faultNs  = int64(20 * time.Microsecond)
	faultPPM = 100
	ratePPM  = 1000
	// maxFaults faults turn the TSC off for the life of the process.
	maxFaults = 3
	// A sample this tight is taken without trying again: a TSC pair
	// around a warm monotonic read is about 70 ticks here, a monotonic
	// pair around a warm time.Now about 90 ns.
	tightWindow = 200
	tightOff    = int64(150 * time.Nanosecond)
	// offWindow: the widest pair of monotonic reads around a wall read
	// whose offset sample is averaged in.
	offWindow = int64(time.Microsecond)
	// offStep: a wall offset (CLOCK_REALTIME less CLOCK_MONOTONIC) sample
	// this far from the current one is a step of the kernel's wall clock,
	// followed at once; closer ones are averaged (sampling noise).
	offStep = int64(time.Microsecond)
)

// slot is one published set of parameters. In TSC mode (mult != 0): the
// wall time at TSC anchor is wall, and a tick lasts mult/2^32 ns. In
// monotonic mode (mult == 0): anchor is the monotonic time of the last
// re-anchor and wall is CLOCK_REALTIME less CLOCK_MONOTONIC. Either way a
// reading more than limit (ticks or ns) from the anchor re-anchors first.
type slot struct {
	gen    atomic.Uint64 // the generation these fields belong to; 0 while written
	mult   atomic.Int64
	anchor atomic.Int64
	wall   atomic.Int64
	limit  atomic.Int64
}

// clk is the clock's state. The readers (Now) only load the slot cur
// names; one writer at a time (busy) fills the other slot and then moves
// cur, so a reader never waits for a writer the kernel descheduled.
type clk struct {
	cur   atomic.Uint64
	slots [2]slot
	busy  atomic.Bool

	useTSC atomic.Bool
	reason atomic.Pointer[string] // why the TSC is not used; nil when it is
	recals atomic.Uint64
	faults atomic.Uint64

	// The reads, replaced in tests.
	readTSC  func() int64
	readMono func() int64
	readWall func() (wall, mono int64)

	// Writer state, owned by the holder of busy.
	mult                  int64 // ns per tick << 32; 0 until measured
	anchorTSC, anchorMono int64
	baseTSC, baseMono     int64 // the rate's window start
	haveBase              bool
	off                   int64
	haveOff               bool
}

// sample is one moment read on both clocks.
type sample struct {
	tsc, mono int64 // a TSC reading and CLOCK_MONOTONIC at the same moment
	off       int64 // CLOCK_REALTIME less CLOCK_MONOTONIC
	good      bool  // the TSC reads bracketed the monotonic read tightly
	offGood   bool  // so did the monotonic reads around the wall read
}

var (
	base = time.Now() // the monotonic clock's zero
	std  clk

	reasonFault = "the TSC disagreed with CLOCK_MONOTONIC " + strconv.Itoa(maxFaults) +
		" times (it jumped or changed rate: a VM migrated or restored?)"
	reasonEnv = "FEEDHANDLER_CLOCK=monotonic"
)

func init() {
	std.readTSC, std.readMono, std.readWall = rdtsc, mono, wall
	std.start(os.Getenv("FEEDHANDLER_CLOCK"))
}

// mono reads CLOCK_MONOTONIC (ns since base): one vDSO call.
func mono() int64 { return int64(time.Since(base)) }

// wall reads CLOCK_REALTIME and CLOCK_MONOTONIC together (time.Now).
func wall() (int64, int64) {
	t := time.Now()
	return t.UnixNano(), int64(t.Sub(base))
}

func (c *clk) start(env string) {
	ok, why := invariantTSC()
	switch {
	case env == "monotonic":
		ok, why = false, reasonEnv
	case env != "" && env != "tsc":
		ok, why = false, "FEEDHANDLER_CLOCK="+env+" is neither tsc nor monotonic"
	}
	c.useTSC.Store(ok)
	if !ok {
		c.reason.Store(&why)
	}
	c.busy.Store(true)
	c.recalibrate(c.sample())
	c.busy.Store(false)
}

// monoOrigin is the origin of Mono.
var monoOrigin = time.Now()

// Mono returns t, read with time.Now, as ns on the monotonic clock since
// the package was loaded, plus one so that no reading is 0 (0 stands for
// never where callers keep times). Differences of Mono readings are
// immune to steps of the wall clock, unlike Now's: for timeouts and ages
// that receive timestamps are not compared with. (t without a monotonic
// reading, as time.Unix makes, is taken on the wall clock.)
func Mono(t time.Time) int64 { return int64(t.Sub(monoOrigin)) + 1 }

// Now returns the wall-clock time, Unix ns (CLOCK_REALTIME), for the hot
// path: with an invariant TSC one RDTSC and a multiply, else one
// CLOCK_MONOTONIC read plus the wall clock's offset. It never blocks and
// allocates nothing; about once per Period one call re-anchors the clock
// (a few clock reads).
func Now() int64 {
	c := &std
	g := c.cur.Load()
	s := &c.slots[g&1]
	mult, anchor, wall, limit := s.mult.Load(), s.anchor.Load(), s.wall.Load(), s.limit.Load()
	var t int64
	if mult != 0 {
		t = rdtsc()
	} else {
		t = mono()
	}
	if s.gen.Load() == g {
		if ns, ok := at(t, mult, anchor, wall, limit); ok {
			return ns
		}
	}
	return c.slow()
}

// now is Now on any clk (the tests' clocks, whose reads are replaced).
func (c *clk) now() int64 {
	if ns, ok := c.read(); ok {
		return ns
	}
	return c.slow()
}

// read is Now's fast path through c's reads: false when the current slot
// changed during the read or the reading is past its limit.
func (c *clk) read() (int64, bool) {
	g := c.cur.Load()
	s := &c.slots[g&1]
	mult, anchor, wall, limit := s.mult.Load(), s.anchor.Load(), s.wall.Load(), s.limit.Load()
	var t int64
	if mult != 0 {
		t = c.readTSC()
	} else {
		t = c.readMono()
	}
	if s.gen.Load() != g {
		return 0, false
	}
	return at(t, mult, anchor, wall, limit)
}

// at converts a reading t (TSC ticks, or monotonic ns when mult is 0) with
// one slot's parameters; false when t is more than limit from the anchor.
func at(t, mult, anchor, wall, limit int64) (int64, bool) {
	d := t - anchor
	if d > limit || d < -limit {
		return 0, false
	}
	if mult == 0 {
		return t + wall, true
	}
	return wall + (d*mult)>>32, true
}

// slow re-anchors the clock and reads it again. When another thread is
// re-anchoring, it reads the kernel's wall clock instead of waiting.
func (c *clk) slow() int64 {
	if !c.busy.CompareAndSwap(false, true) {
		w, _ := c.readWall()
		return w
	}
	c.recalibrate(c.sample())
	c.busy.Store(false)
	if ns, ok := c.read(); ok {
		return ns
	}
	w, _ := c.readWall()
	return w
}

// sample reads the TSC, CLOCK_MONOTONIC and CLOCK_REALTIME at one moment:
// a TSC pair around a monotonic read, and the wall offset from a time.Now
// bracketed by monotonic reads; each tried up to three times until it is
// tight, the tightest kept.
func (c *clk) sample() sample {
	var s sample
	if c.useTSC.Load() {
		best := int64(math.MaxInt64)
		for range 3 {
			t1 := c.readTSC()
			m := c.readMono()
			t2 := c.readTSC()
			if w := t2 - t1; w >= 0 && w < best {
				best, s.tsc, s.mono = w, t1+w/2, m
			}
			if best <= tightWindow {
				break
			}
		}
		s.good = best <= maxWindow
		if best == math.MaxInt64 { // the TSC ran backwards three times
			s.tsc, s.mono = c.readTSC(), c.readMono()
		}
	} else {
		s.mono = c.readMono()
	}
	best := int64(math.MaxInt64)
	for range 3 {
		m0 := c.readMono()
		w, m1 := c.readWall()
		if d := m1 - m0; d < best {
			best, s.off = d, w-m0-d/2
		}
		if best <= tightOff {
			break
		}
	}
	s.offGood = best <= offWindow
	return s
}

// recalibrate re-anchors the clock on s and publishes the new parameters.
// The caller holds busy.
func (c *clk) recalibrate(s sample) {
	c.recals.Add(1)
	// The offset follows a step of the kernel's wall clock at once and
	// otherwise averages the samples (one sample is off by up to half a
	// vDSO call, more on a cold cache).
	switch d := s.off - c.off; {
	case !c.haveOff || abs(d) > offStep:
		c.off, c.haveOff = s.off, true
	case s.offGood:
		c.off += d / 16
	}
	if c.useTSC.Load() {
		c.updateTSC(s)
	} else {
		c.anchorMono = s.mono
	}
	g := c.cur.Load() + 1
	sl := &c.slots[g&1]
	sl.gen.Store(0)
	if c.useTSC.Load() && c.mult != 0 {
		sl.mult.Store(c.mult)
		sl.anchor.Store(c.anchorTSC)
		sl.wall.Store(c.anchorMono + c.off)
		sl.limit.Store(int64(Period) << 32 / c.mult)
	} else {
		sl.mult.Store(0)
		sl.anchor.Store(s.mono)
		sl.wall.Store(c.off)
		sl.limit.Store(int64(Period))
	}
	sl.gen.Store(g)
	c.cur.Store(g)
}

// updateTSC checks the TSC clock against s, measures its rate and moves the
// anchor to s.
func (c *clk) updateTSC(s sample) {
	if !s.good {
		// No trustworthy moment: continue the current line from the
		// reading, to be checked at the next re-anchor.
		if c.mult != 0 {
			c.anchorMono += int64(float64(s.tsc-c.anchorTSC) * float64(c.mult) / (1 << 32))
			c.anchorTSC = s.tsc
		}
		return
	}
	if c.mult != 0 {
		gap := s.mono - c.anchorMono
		pred := c.anchorMono + int64(float64(s.tsc-c.anchorTSC)*float64(c.mult)/(1<<32))
		if abs(pred-s.mono) > faultNs+abs(gap)/1e6*faultPPM {
			c.fault(s)
			return
		}
	}
	c.anchorTSC, c.anchorMono = s.tsc, s.mono
	if !c.haveBase {
		c.baseTSC, c.baseMono, c.haveBase = s.tsc, s.mono, true
		return
	}
	span := s.mono - c.baseMono
	if span < minBaseline {
		return
	}
	ticks := s.tsc - c.baseTSC
	if ticks <= 0 {
		c.fault(s)
		return
	}
	m := int64(float64(span) / float64(ticks) * (1 << 32))
	if c.mult != 0 && abs(m-c.mult) > c.mult/1e6*ratePPM {
		c.fault(s)
		return
	}
	c.mult = m
	if span >= maxBaseline {
		c.baseTSC, c.baseMono = s.tsc, s.mono
	}
}

// fault drops the TSC rate (monotonic mode until it is measured again from
// s) and, at maxFaults, the TSC for good.
func (c *clk) fault(s sample) {
	c.mult = 0
	c.anchorTSC, c.anchorMono = s.tsc, s.mono
	c.baseTSC, c.baseMono = s.tsc, s.mono
	if c.faults.Add(1) >= maxFaults {
		c.reason.Store(&reasonFault)
		c.useTSC.Store(false)
	}
}

// Source says which clock Now reads and, when it is not the TSC, why.
func Source() (name, reason string) {
	if r := std.reason.Load(); r != nil {
		return "monotonic", *r
	}
	if std.cur.Load() != 0 && std.slots[std.cur.Load()&1].mult.Load() == 0 {
		return "tsc", "invariant TSC; rate being measured, CLOCK_MONOTONIC until then"
	}
	return "tsc", "invariant TSC, checked against CLOCK_MONOTONIC every " + Period.String()
}

// KernelClocksource is the kernel's current clocksource and whether the
// kernel lists "tsc" among the available ones ("" when sysfs has neither).
// A kernel that lists no tsc distrusts the TSC as its own clock (a VM may
// boot with tsc=unstable); Now still checks it against CLOCK_MONOTONIC.
func KernelClocksource() (current string, tscAvailable bool) {
	const dir = "/sys/devices/system/clocksource/clocksource0/"
	if b, err := os.ReadFile(dir + "current_clocksource"); err == nil {
		current = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(dir + "available_clocksource"); err == nil {
		for _, f := range strings.Fields(string(b)) {
			tscAvailable = tscAvailable || f == "tsc"
		}
	}
	return current, tscAvailable
}

// Stats are the clock's counters since the process started.
type Stats struct {
	Recalibrations uint64 // re-anchors to the kernel's clocks
	Faults         uint64 // re-anchors that found the TSC off (see Source)
}

// ReadStats returns the clock's counters.
func ReadStats() Stats {
	return Stats{Recalibrations: std.recals.Load(), Faults: std.faults.Load()}
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
