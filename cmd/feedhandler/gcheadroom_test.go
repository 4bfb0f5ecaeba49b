package main

import (
	"testing"

	"github.com/marketfeed/feedhandler/feed/config"
)

// TestGCHeadroomUnderMemoryBound: the garbage the runtime lets accumulate
// before it collects (GOGC off, GOMEMLIMIT at the memory after start plus
// this headroom) fits in the memory the process can have. It was 1 GiB
// whatever the bound, so under a 512 MiB MemoryMax= the defaults, which
// fit at start (about 440 MiB resident), were never collected: each
// scrape or health check leaves about 4 KiB (3000 new connections: 12 MiB
// of resident set), so the cgroup's out-of-memory kill came in a day or
// two of probes, long before the 1 GiB. The headroom is now the bound's
// slack, at least the part of the 64 MiB runtime reserve left for
// garbage, at most 1 GiB.
func TestGCHeadroomUnderMemoryBound(t *testing.T) {
	const mib = 1 << 20
	defaults := config.Memory{Books: 386 * mib, Start: 90 * mib, Growth: 80 * mib}
	for _, tc := range []struct {
		name string
		have int64
		want int64
	}{
		{"512 MiB, the growth not fitting", 512 * mib, minGCHeadroom},
		{"600 MiB, 44 MiB of slack", 600 * mib, minGCHeadroom + 44*mib},
		{"24 GiB", 24 << 30, gcHeadroom},
		{"unknown", 0, gcHeadroom},
	} {
		m := defaults
		m.Have = tc.have
		if got := gcHeadroomFor(m); got != tc.want {
			t.Errorf("%s: headroom %d MiB, want %d MiB", tc.name, got>>20, tc.want>>20)
		}
	}
}
