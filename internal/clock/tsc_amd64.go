package clock

// rdtsc reads the time-stamp counter (RDTSC: not serializing, so it may be
// taken a few tens of cycles before the instructions around it retire,
// which is far below the clock's error bound).
//
//go:noescape
func rdtsc() int64

func cpuid(leaf uint32) (a, b, c, d uint32)

// invariantTSC reports whether the CPU says its TSC runs at a constant rate
// in every power state (CPUID 0x80000007 EDX bit 8, "invariant TSC"; Linux
// shows it as constant_tsc and nonstop_tsc), and if not, why.
func invariantTSC() (bool, string) {
	if max, _, _, _ := cpuid(0x80000000); max < 0x80000007 {
		return false, "the CPU has no CPUID leaf 0x80000007 (no invariant TSC bit)"
	}
	if _, _, _, d := cpuid(0x80000007); d&(1<<8) == 0 {
		return false, "the CPU does not report an invariant TSC (CPUID 0x80000007 EDX bit 8)"
	}
	return true, ""
}
