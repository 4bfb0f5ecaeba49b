package itchgen

import (
	"strconv"
	"testing"
)

// uintn must draw exactly what uint64(intn(int(n))) drew on 64-bit
// platforms, so that a seed generates the same day as before uintn existed
// (uintn exists so that the generator builds for GOARCH=386).
func TestUintnMatchesIntn(t *testing.T) {
	if strconv.IntSize != 64 {
		t.Skip("intn cannot take these spans with a 32-bit int")
	}
	for _, n := range []uint64{1, 1000, Hour, 5 * Hour, 6 * Hour, 15 * Hour, 1<<62 + 12345} {
		a, b := rng{s: 42}, rng{s: 42}
		for i := 0; i < 10000; i++ {
			if x, y := a.uintn(n), uint64(b.intn(int(n))); x != y {
				t.Fatalf("n=%d draw %d: uintn %d, intn %d", n, i, x, y)
			}
		}
	}
}
