package bpf

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// The program puts MetaLen bytes of XDP metadata in front of every frame it
// redirects (struct rx_meta in steer.c): three 32-bit words in native byte
// order, MetaMagic, then the low and high halves of the CLOCK_TAI time in
// ns at which the program ran. AF_XDP delivers them just before the frame's
// data in the UMEM, in zero-copy and (since Linux 6.6 at least) copy mode.
const (
	MetaLen   = 12
	MetaMagic = 0x46484d31 // "FHM1"
)

// ParseMeta reads the receive time (CLOCK_TAI ns) from the MetaLen bytes
// in front of a frame. ok is false when they do not hold the program's
// metadata: a driver without metadata support leaves stale bytes there.
func ParseMeta(meta []byte) (taiNs int64, ok bool) {
	if len(meta) < MetaLen {
		return 0, false
	}
	m := meta[len(meta)-MetaLen:]
	if binary.NativeEndian.Uint32(m[0:4]) != MetaMagic {
		return 0, false
	}
	lo := binary.NativeEndian.Uint32(m[4:8])
	hi := binary.NativeEndian.Uint32(m[8:12])
	return int64(uint64(hi)<<32 | uint64(lo)), true
}

// ClearMeta overwrites the magic word of the metadata in front of a frame,
// so that a later frame in the same buffer that arrives without metadata is
// not mistaken for one with it.
func ClearMeta(meta []byte) {
	if len(meta) >= MetaLen {
		binary.NativeEndian.PutUint32(meta[len(meta)-MetaLen:], 0)
	}
}

// TAIOffset returns CLOCK_TAI minus CLOCK_REALTIME in ns, a whole number
// of seconds: 37 s since 2017 when the kernel was told the leap seconds
// (adjtimex, by chrony or ntpd), else 0. Subtract it from a TAI time to get
// Unix time (CLOCK_REALTIME). It changes only at leap seconds; read it again
// from time to time.
func TAIOffset() (int64, error) {
	var tai, rt1, rt2 unix.Timespec
	// Bracket the TAI read with two REALTIME reads and use their midpoint,
	// so the offset is off by at most half the time between them.
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &rt1); err != nil {
		return 0, fmt.Errorf("read CLOCK_REALTIME: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_TAI, &tai); err != nil {
		return 0, fmt.Errorf("read CLOCK_TAI: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_REALTIME, &rt2); err != nil {
		return 0, fmt.Errorf("read CLOCK_REALTIME: %w", err)
	}
	mid := rt1.Nano() + (rt2.Nano()-rt1.Nano())/2
	off := tai.Nano() - mid
	// The true offset is a whole number of seconds: round away the read
	// skew.
	const s = int64(1e9)
	if off < 0 {
		return -((-off + s/2) / s * s), nil
	}
	return (off + s/2) / s * s, nil
}
