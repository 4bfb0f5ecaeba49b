// Package race tells a test whether its binary is race-built (go test
// -race), and counts allocations the way a test that asserts them must:
// through AllocsPerRun, which says when a count is not the code's own.
//
// Under the race detector sync.Pool drops a share of what is put (by
// design, to find code that leans on it keeping things), so a path that
// allocates nothing with its pools warm (zerolog's events, fmt's buffers)
// allocates now and then, and testing.AllocsPerRun's integer mean of a
// zero-allocation path is 1 whenever one run's drops reach its run count:
// such a count fails by chance. The plain run asserts every count; the
// race run still runs every counted function (runs times, watched by the
// detector) and the rest of the test, and logs the count.
//
// Every test in the repository counts allocations through AllocsPerRun
// (TestEveryAllocationCountKnowsTheRaceBuild walks the tree for a call of
// testing.AllocsPerRun, or of AllocsPerRun whose second result is
// dropped), so a count added tomorrow does not fail the race step by
// chance. It imports nothing of the project, so that every package's
// tests can use it.
package race

import "testing"

// AllocsPerRun is testing.AllocsPerRun(runs, f), and exact says whether
// n is f's own count, to be asserted: false in a race-built binary, where
// the count is logged (t's log) and the caller asserts nothing of it:
//
//	if n, exact := race.AllocsPerRun(t, 100, f); exact && n != 0 {
//		t.Fatalf("f allocates %v times", n)
//	}
func AllocsPerRun(t testing.TB, runs int, f func()) (n float64, exact bool) {
	t.Helper()
	n = testing.AllocsPerRun(runs, f)
	if Enabled {
		t.Logf("%v allocations a run, not asserted: a race-built binary, whose sync.Pool drops a share of what is put", n)
		return n, false
	}
	return n, true
}
