package itch

import "strconv"

// AppendPrice4 appends a Price(4) (4 implied decimals) as "150.2500".
func AppendPrice4(dst []byte, p uint32) []byte {
	return appendFixed(dst, uint64(p), 10_000, 4)
}

// AppendPrice8 appends a Price(8) (8 implied decimals, the MWCB levels) as
// "3000.00000000".
func AppendPrice8(dst []byte, p uint64) []byte {
	return appendFixed(dst, p, 100_000_000, 8)
}

func appendFixed(dst []byte, v, scale uint64, digits int) []byte {
	dst = strconv.AppendUint(dst, v/scale, 10)
	dst = append(dst, '.')
	return appendPadded(dst, v%scale, digits)
}

// appendPadded appends v in decimal, zero padded to width digits.
func appendPadded(dst []byte, v uint64, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v > 0 || len(buf)-i < width {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[i:]...)
}

// AppendTimestamp appends a timestamp (ns since midnight) as
// "09:30:00.000000008". Hours past 23 (timestamps are 48-bit) are printed as
// they are.
func AppendTimestamp(dst []byte, ns uint64) []byte {
	s := ns / 1e9
	dst = appendPadded(dst, s/3600, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, s/60%60, 2)
	dst = append(dst, ':')
	dst = appendPadded(dst, s%60, 2)
	dst = append(dst, '.')
	return appendPadded(dst, ns%1e9, 9)
}
