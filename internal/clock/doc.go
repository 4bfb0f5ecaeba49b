// Package clock reads the wall clock for the hot path at a fraction of
// time.Now's cost.
//
// Now returns Unix nanoseconds on the CLOCK_REALTIME scale, the scale of
// time.Now().UnixNano(), of the kernel's receive timestamps (SO_TIMESTAMPNS;
// XDP's TAI converted with the TAI offset) and of readers that compare a
// snapshot's times with their own clock.
//
// time.Now reads two kernel clocks through the vDSO (CLOCK_REALTIME and
// CLOCK_MONOTONIC); on a KVM guest each read costs about 28 ns. Now reads
// one cheaper thing:
//
//   - TSC mode (amd64, the CPU reports an invariant TSC: CPUID 0x80000007
//     EDX bit 8): one RDTSC and a multiply. The rate is measured against
//     CLOCK_MONOTONIC over windows of 0.1 to 1 s. The kernel slews
//     CLOCK_MONOTONIC and CLOCK_REALTIME together (NTP), so they differ only
//     by an offset that changes when the wall clock is stepped; that offset
//     is sampled at every re-anchor.
//   - Monotonic mode (other CPUs and architectures, FEEDHANDLER_CLOCK=
//     monotonic, or a TSC that failed its checks): one CLOCK_MONOTONIC read
//     plus the same offset.
//
// Re-anchoring. The parameters hold for Period (10 ms). The first Now after
// that, on whatever thread calls it, samples the kernel's clocks (about
// 0.2 µs) and publishes new parameters into the slot readers are not using,
// then moves the current-slot index: a reader never takes a lock and never
// waits for a writer (a reader that finds another thread re-anchoring reads
// time.Now instead). Nothing allocates.
//
// Checks. Each re-anchor compares the TSC line with CLOCK_MONOTONIC. More
// than 20 µs apart (plus 100 ppm of the time since the last anchor), or a
// rate more than 1000 ppm from the last, is a fault: the TSC jumped or
// changed speed, as when a VM is migrated or restored from a snapshot.
// After a fault Now runs in monotonic mode until the rate is measured again;
// after three, for the life of the process. A TSC reading more than one
// Period from the anchor, either way, re-anchors before it is used. Source
// says which mode runs and why; ReadStats counts re-anchors and faults.
//
// Error bound, against CLOCK_REALTIME read at the same moment:
//
//   - Monotonic mode: the offset's sampling error (half a vDSO read, about
//     15 ns), and up to 1 µs of wall-clock steps that are deliberately not
//     followed (they are sampling noise); a larger step of the kernel's
//     wall clock shows up at the next re-anchor, within Period.
//   - TSC mode: the same, plus the rate error over one Period (the rate is
//     measured to a fraction of a ppm: a few ns over 10 ms) and whatever
//     the kernel's NTP frequency changed since the last rate window (at
//     the kernel's maximum slew, 500 ppm, 5 µs over 10 ms).
//     TestNowTracksWallClock checks every reading on every CPU against
//     time.Now taken around it and fails above 5 µs; the errors seen on
//     the development VM are in docs/ARCHITECTURE.md ("Clocks").
//
// RDTSC is not serializing: a reading may be taken a few tens of cycles
// before the instructions around it complete, far inside the bound. A
// kernel that lists no "tsc" clocksource (KernelClocksource) distrusts the
// TSC for its own timekeeping; this package does not rely on the kernel's
// judgement but checks the TSC itself, every Period.
package clock
