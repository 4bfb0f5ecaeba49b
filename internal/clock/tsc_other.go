//go:build !amd64

package clock

func rdtsc() int64 { return 0 }

func invariantTSC() (bool, string) {
	return false, "the TSC clock is built for amd64 only"
}
