package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"

	"github.com/rs/zerolog"
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

// quietRuntime applies the runtime settings the command runs with unless
// the environment names them: GOGC=off, and GOMEMLIMIT at the live heap
// after start plus gcHeadroom, so the garbage collector does not run (nor
// stop or slow the receive thread) in steady state until gcHeadroom of that
// garbage has accumulated, yet cannot let
// the heap grow without bound. GOGC=off also turns off the cycle the
// runtime otherwise forces every 2 minutes. Call it once everything is allocated: it
// runs one collection first, before traffic matters. It returns what it
// applied, for the log.
func quietRuntime(log zerolog.Logger) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ev := log.Info().Uint64("live_heap", ms.HeapAlloc)
	if v, ok := os.LookupEnv("GOGC"); ok {
		ev = ev.Str("gogc", v+" (from the environment)")
	} else {
		debug.SetGCPercent(-1)
		ev = ev.Str("gogc", "off")
	}
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		ev = ev.Str("gomemlimit", v+" (from the environment)")
	} else {
		limit := int64(ms.Sys) + gcHeadroom
		debug.SetMemoryLimit(limit)
		ev = ev.Int64("gomemlimit", limit)
	}
	ev.Msg("runtime: garbage collection only past the memory limit")
}

// gcCycles is the number of GC cycles so far (what GODEBUG=gctrace=1
// prints a line for).
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
