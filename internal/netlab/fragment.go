package netlab

import "encoding/binary"

// Fragments splits frame, whose IPv4 header (without options: a
// fragment after the first would carry only the copied ones) starts at
// ipOff, into frames of IPv4 fragments of it, as a sender over a smaller
// MTU does: fragment i carries sizes[i] bytes of the IPv4 payload
// (multiples of 8), the last size again for the fragments past the
// list's, the last fragment the rest; each keeps the
// link header and the datagram's identification, its total length,
// fragment offset, More Fragments flag and header checksum set.
func Fragments(frame []byte, ipOff int, sizes ...int) [][]byte {
	body := frame[ipOff+20:]
	var out [][]byte
	for i, off := 0, 0; off < len(body); i++ {
		n := len(body) - off
		if len(sizes) > 0 && sizes[min(i, len(sizes)-1)] < n {
			n = sizes[min(i, len(sizes)-1)]
		}
		f := append(append([]byte(nil), frame[:ipOff+20]...), body[off:off+n]...)
		ip := f[ipOff:]
		binary.BigEndian.PutUint16(ip[2:], uint16(20+n))
		fo := uint16(off / 8)
		if off+n < len(body) {
			fo |= 0x2000 // More Fragments
		}
		binary.BigEndian.PutUint16(ip[6:], fo)
		binary.BigEndian.PutUint16(ip[10:], 0)
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[j:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		out = append(out, f)
		off += n
	}
	return out
}
