//go:build race

package handler

// raceEnabled: under the race detector sync.Pool drops a share of what is
// put back (zerolog's events), so a pooled path allocates now and then.
const raceEnabled = true
