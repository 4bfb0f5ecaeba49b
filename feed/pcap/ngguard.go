package pcap

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// pcapng block types whose heads ngGuard reads.
const (
	ngSectionHeader       = 0x0A0D0D0A
	ngInterfaceDescriptor = 1
	ngPacket              = 2 // obsolete Packet Block
	ngEnhancedPacket      = 6
	ngByteOrderMagic      = 0x1A2B3C4D
	ngHeadLen             = 24 // block type, length and the fields read (caplen ends at 24)
	// ngMaxInterfaceBlock bounds an Interface Description Block, read
	// whole for its options (libpcap's largest block, 16 MiB).
	ngMaxInterfaceBlock = 16 << 20
	ngOptTsresol        = 9  // if_tsresol
	ngOptTsoffset       = 14 // if_tsoffset
)

// ngGuard passes a pcapng stream to pcapgo's NgReader, reading each
// block's head on the way: pcapgo sizes its frame buffer by an interface's
// snaplen or a packet's captured length, as the file says, up to 4 GiB for
// a few bytes of file. An interface's snaplen of 0 or above MaxSnaplen is
// passed on as MaxSnaplen (as libpcap reads it), and a packet whose
// captured length is above MaxSnaplen or its block's length is an error.
// An Interface Description Block is read whole: its timestamp resolution
// (if_tsresol) and offset (if_tsoffset) are kept, and a resolution finer
// than a 64-bit timestamp can count is an error (pcapgo divided by zero).
// The rest of each block passes through uncopied.
type ngGuard struct {
	r    *bufio.Reader
	big  bool   // the current section is big-endian
	blk  []byte // the current block's bytes read ahead: its head, or an Interface Description Block whole
	hoff int    // blk[hoff:] is still to be passed on
	left uint64 // bytes of the current block after blk
	// ifaces are the current section's interfaces, in the order of their
	// Interface Description Blocks (pcapgo keeps a link type as a byte:
	// 276, Linux cooked v2, as 20).
	ifaces []ngIface
	// ts: the current block is a packet block (Enhanced or obsolete)
	// whose timestamp, in its interface's units, is ts.
	ts    uint64
	hasTS bool
}

// ngIface is what the reader keeps of an interface.
type ngIface struct {
	link   int
	tsres  byte  // if_tsresol: 10^-n s, or 2^-(n&0x7F) s when n&0x80 (6, µs, when absent)
	offset int64 // if_tsoffset, seconds
}

// unixNano returns the time of timestamp ts of the interface, in ns since
// the epoch. pcapgo scales a fraction of a binary resolution by an integer
// factor (1e9/2^20 as 953, 2^32/1e9 as 4), off by up to 7%.
func (f *ngIface) unixNano(ts uint64) int64 {
	var sec, ns uint64
	if e := uint(f.tsres & 0x7F); f.tsres&0x80 != 0 {
		sec = ts >> e
		hi, lo := bits.Mul64(ts&(1<<e-1), 1e9)
		ns = lo >> e
		if e > 0 {
			ns |= hi << (64 - e)
		}
	} else {
		unit := pow10[e]
		sec = ts / unit
		if e <= 9 {
			ns = ts % unit * pow10[9-e]
		} else {
			ns = ts % unit / pow10[e-9]
		}
	}
	return (int64(sec)+f.offset)*1e9 + int64(ns)
}

var pow10 = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return p
}()

func (g *ngGuard) order() binary.ByteOrder {
	if g.big {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

func (g *ngGuard) Read(p []byte) (int, error) {
	if g.hoff == len(g.blk) && g.left == 0 {
		if err := g.nextBlock(); err != nil {
			return 0, err
		}
	}
	if g.hoff < len(g.blk) {
		n := copy(p, g.blk[g.hoff:])
		g.hoff += n
		return n, nil
	}
	if uint64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, err := g.r.Read(p)
	g.left -= uint64(n)
	return n, err
}

// nextBlock reads the next block's head, checked and patched.
func (g *ngGuard) nextBlock() error {
	if cap(g.blk) < ngHeadLen {
		g.blk = make([]byte, 0, ngHeadLen)
	}
	h := g.blk[:ngHeadLen]
	g.blk, g.hoff, g.hasTS = g.blk[:0], 0, false
	if _, err := io.ReadFull(g.r, h[:8]); err != nil {
		return err // io.EOF at a block's boundary: the end of the file
	}
	// A Section Header's type reads the same in either byte order;
	// every other block's type is in its section's.
	typ := binary.LittleEndian.Uint32(h[0:4])
	have := 8
	if typ != ngSectionHeader {
		typ = g.order().Uint32(h[0:4])
	} else {
		if _, err := io.ReadFull(g.r, h[8:12]); err != nil {
			return io.ErrUnexpectedEOF
		}
		have = 12
		switch uint32(ngByteOrderMagic) {
		case binary.BigEndian.Uint32(h[8:12]):
			g.big = true
		case binary.LittleEndian.Uint32(h[8:12]):
			g.big = false
		}
	}
	o := g.order()
	total := uint64(o.Uint32(h[4:8]))
	hn := have
	switch typ {
	case ngInterfaceDescriptor, ngPacket, ngEnhancedPacket:
		// The smallest such block (an interface of no options, a packet
		// of no bytes) has a head whole; a shorter one would have pcapgo
		// read its fields from the next block, unchecked.
		least := uint64(32)
		if typ == ngInterfaceDescriptor {
			least = 20
		}
		if total < least {
			return fmt.Errorf("pcapng: block type %d of %d bytes (at least %d)", typ, total, least)
		}
		hn = int(min(total, ngHeadLen))
		if typ == ngInterfaceDescriptor {
			if total > ngMaxInterfaceBlock {
				return fmt.Errorf("pcapng: interface description block of %d bytes (at most %d)", total, ngMaxInterfaceBlock)
			}
			hn = int(total)
		}
		var err error
		if h, err = readAppend(g.r, h[:have], hn-have); err != nil {
			return io.ErrUnexpectedEOF
		}
	}
	switch typ {
	case ngSectionHeader:
		g.ifaces = g.ifaces[:0]
	case ngInterfaceDescriptor:
		f, err := ngInterface(h, o, len(g.ifaces))
		if err != nil {
			return err
		}
		g.ifaces = append(g.ifaces, f)
		if s := o.Uint32(h[12:16]); s == 0 || s > MaxSnaplen {
			o.PutUint32(h[12:16], MaxSnaplen)
		}
	case ngPacket, ngEnhancedPacket:
		if c := uint64(o.Uint32(h[20:24])); c > MaxSnaplen || c > total-32 {
			return fmt.Errorf("pcapng: packet block of %d bytes captures %d bytes (at most %d)", total, c, min(MaxSnaplen, total-32))
		}
		g.ts, g.hasTS = uint64(o.Uint32(h[12:16]))<<32|uint64(o.Uint32(h[16:20])), true
	}
	g.blk = h[:hn]
	g.left = max(total, uint64(hn)) - uint64(hn)
	return nil
}

// readAppend reads n bytes from r onto b, growing b as they come (a
// block's length claims what the file may not hold).
func readAppend(r io.Reader, b []byte, n int) ([]byte, error) {
	for n > 0 {
		k := min(n, 64<<10)
		if cap(b)-len(b) < k {
			b = append(b[:cap(b)], make([]byte, k)...)[:len(b)]
		}
		if _, err := io.ReadFull(r, b[len(b):len(b)+k]); err != nil {
			return b, err
		}
		b, n = b[:len(b)+k], n-k
	}
	return b, nil
}

// ngInterface reads the link type and the timestamp options of the
// Interface Description Block blk (whole, of byte order o), the section's
// interface i.
func ngInterface(blk []byte, o binary.ByteOrder, i int) (ngIface, error) {
	f := ngIface{link: int(o.Uint16(blk[8:10])), tsres: 6}
	opts := blk[16 : len(blk)-4]
	for len(opts) >= 4 {
		code, n := o.Uint16(opts[0:2]), int(o.Uint16(opts[2:4]))
		if code == 0 {
			break
		}
		if 4+n > len(opts) {
			return f, fmt.Errorf("pcapng: interface %d: option %d of %d bytes past its block's end", i, code, n)
		}
		v := opts[4 : 4+n]
		switch {
		case code == ngOptTsresol && n >= 1:
			f.tsres = v[0]
		case code == ngOptTsoffset && n >= 8:
			f.offset = int64(o.Uint64(v))
		}
		opts = opts[min(len(opts), 4+(n+3)&^3):]
	}
	if e := f.tsres & 0x7F; (f.tsres&0x80 != 0 && e > 63) || (f.tsres&0x80 == 0 && e > 19) {
		base := "10"
		if f.tsres&0x80 != 0 {
			base = "2"
		}
		return f, fmt.Errorf("pcapng: interface %d: timestamp resolution (if_tsresol %#x) of %s^-%d s is finer than a 64-bit timestamp counts", i, f.tsres, base, e)
	}
	return f, nil
}
