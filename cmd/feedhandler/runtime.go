package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/config"
)

// gcHeadroom is the garbage the process may accumulate before the Go
// runtime collects: the hot thread, its stats copy every 20 ms (the
// receiver's Stats: TestStatsAllocs in feed/rx, on the real backends), the
// stats line (JSON format) and the rendering of a metrics scrape allocate
// nothing in steady state (TestRunToCompletionAllocatesNothing,
// TestScrapeAndStatsLineAllocateNothing), so what
// accumulates is net/http's per-request state (17 small allocations per
// scrape) and the console log format's, which takes years of scrapes to
// reach this.
const gcHeadroom = 1 << 30

// minGCHeadroom is the headroom under a memory bound with no slack: the
// part of the 64 MiB that config's bound counts for the Go runtime and
// tables (runtimeReserve) not measured in use at start (about 26 MiB, 13
// of it the binary's pages). A collection every 32 MiB of garbage is
// thousands of scrapes apart.
const minGCHeadroom = 32 << 20

// gcHeadroomFor is the headroom for a process whose memory config counts
// m (cfg.Memory): gcHeadroom, or less under a memory bound (the cgroup's
// MemoryMax=, RLIMIT_AS, MemTotal), the bound's slack past the books, the
// rest and what can grow, but never below minGCHeadroom, which the bound
// has counted. With 1 GiB whatever the bound, a process in a 512 MiB
// cgroup was never collected and the cgroup killed it.
func gcHeadroomFor(m config.Memory) int64 {
	if m.Have <= 0 || m.Err != nil {
		return gcHeadroom
	}
	slack := m.Have - (m.Books + m.Start + m.Growth)
	return min(gcHeadroom, max(minGCHeadroom, minGCHeadroom+slack))
}

// quietRuntime applies the runtime settings the command runs with unless
// the environment names them (quietGC): GOGC=off, and GOMEMLIMIT at the
// memory taken from the OS after start (runtime.MemStats.Sys) plus
// headroom (gcHeadroom, or gcHeadroomFor under a memory bound), so the
// garbage collector does not run (nor stop or slow the receive thread) in
// steady state until about that much garbage has accumulated, yet cannot
// let the heap grow without bound. GOGC=off also
// turns off the cycle the runtime otherwise forces every 2 minutes. Call it
// once everything is allocated: it runs one collection first, before
// traffic matters. It logs what it applied and keeps it.
func quietRuntime(log zerolog.Logger, headroom int64) {
	q, _ := quietGC(headroom)
	ev := log.Info().Uint64("live_heap", q.heap)
	if q.gogcOff {
		ev = ev.Str("gogc", "off")
	} else {
		ev = ev.Str("gogc", os.Getenv("GOGC")+" (from the environment)")
	}
	if q.limit >= 0 {
		ev = ev.Int64("gomemlimit", q.limit)
	} else {
		ev = ev.Str("gomemlimit", os.Getenv("GOMEMLIMIT")+" (from the environment)")
	}
	ev.Msg("runtime: garbage collection only past the memory limit")
}

// quietSet is what quietGC did.
type quietSet struct {
	heap    uint64 // the live heap after the collection
	gogcOff bool   // the collector turned off (false: GOGC from the environment, left alone)
	limit   int64  // the memory limit set (-1: GOMEMLIMIT from the environment, left alone)
}

// quietGC runs one collection, then, unless the environment names them,
// turns the collector off (GOGC=off) and sets the memory limit to the
// memory taken from the OS (runtime.MemStats.Sys) plus headroom. It
// returns what it set and the function that restores the previous
// settings.
func quietGC(headroom int64) (q quietSet, restore func()) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	q = quietSet{heap: ms.HeapAlloc, limit: -1}
	pct, lim := 0, int64(-1)
	if _, ok := os.LookupEnv("GOGC"); !ok {
		pct, q.gogcOff = debug.SetGCPercent(-1), true
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		q.limit = int64(ms.Sys) + headroom
		lim = debug.SetMemoryLimit(q.limit)
	}
	return q, func() {
		if q.limit >= 0 {
			debug.SetMemoryLimit(lim)
		}
		if q.gogcOff {
			debug.SetGCPercent(pct)
		}
	}
}

// gcCycles is the number of GC cycles so far (what GODEBUG=gctrace=1
// prints a line for).
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// logHugePages says whether the books' tables can be backed by transparent
// huge pages (book.HugePages), and warns when they cannot: on 4 KiB pages
// the order table's random lookups miss the TLB (docs/TUNING.md, section 4).
func logHugePages(log zerolog.Logger) {
	if ok, mode := book.HugePages(); ok {
		log.Info().Str("transparent_hugepage", mode).Msg("book tables backed by huge pages where the kernel has them")
	} else if runtime.GOOS != "linux" {
		log.Info().Str("transparent_hugepage", mode).Msg("book tables on the system's default pages")
	} else {
		log.Warn().Str("transparent_hugepage", mode).
			Msg("book tables on 4 KiB pages: every order lookup may miss the TLB (replay took 2.3 times as long on a generated day); set /sys/kernel/mm/transparent_hugepage/enabled to madvise (docs/TUNING.md)")
	}
}
