package book

import "testing"

// opsOfBytes turns fuzz input into ops over a tiny space of locates, refs and
// prices, so duplicates, unknown refs, over-executions and full capacities
// are common. Each op takes 7 bytes.
func opsOfBytes(data []byte) []op {
	var ops []op
	var match uint64 // the last match number given
	for ; len(data) >= 7; data = data[7:] {
		o := op{
			kind:      "RAAAAEECXXDDUUUPQBB"[int(data[0])%19],
			locate:    uint16(data[1] % 8),
			ref:       uint64(data[2] % 32),
			side:      "SB"[data[3]&1],
			printable: data[3]&2 != 0,
			shares:    uint32(data[4]),
			price:     100 + uint32(data[5]%16),
			newRef:    uint64(data[6] % 32),
		}
		if data[2] >= 224 {
			o.ref += uint64(data[2]) << 32 // same low bits, different ref
		}
		if data[3] == 255 {
			o.side = 'Z'
		}
		switch o.kind {
		case 'E', 'C', 'P', 'Q':
			match++
			o.match = match
			o.volume = uint64(data[4])
		case 'B': // one of the last 8 matches, or one never given
			o.match = match + 1 - uint64(data[6]%9)
		}
		o.symbol = [8]byte{'F', byte('A' + o.locate), ' ', ' ', ' ', ' ', ' ', ' '}
		ops = append(ops, o)
	}
	return ops
}

// FuzzDifferential drives the fast book (through ITCH messages and Apply)
// and the reference book with the same ops and compares them after each.
func FuzzDifferential(f *testing.F) {
	f.Add([]byte("\x00\x01\x00\x00\x00\x00\x00\x01\x01\x05\x01\x10\x03\x00\x05\x01\x05\x00\x05\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := Config{MaxOrders: 16, MaxLocates: 5, MaxLevels: 12, Overflow: 16}
		ops := append(announceOps(3), opsOfBytes(data)...)
		runDifferential(t, cfg, ops, applyOpITCH)
	})
}
