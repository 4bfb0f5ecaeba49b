package pcap

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// pcapng block types whose heads ngGuard reads.
const (
	ngSectionHeader       = 0x0A0D0D0A
	ngInterfaceDescriptor = 1
	ngPacket              = 2 // obsolete Packet Block
	ngEnhancedPacket      = 6
	ngByteOrderMagic      = 0x1A2B3C4D
	ngHeadLen             = 24 // block type, length and the fields read (caplen ends at 24)
)

// ngGuard passes a pcapng stream to pcapgo's NgReader, reading each
// block's head on the way: pcapgo sizes its frame buffer by an interface's
// snaplen or a packet's captured length, as the file says, up to 4 GiB for
// a few bytes of file. An interface's snaplen of 0 or above MaxSnaplen is
// passed on as MaxSnaplen (as libpcap reads it), and a packet whose
// captured length is above MaxSnaplen or its block's length is an error.
// The rest of each block passes through uncopied.
type ngGuard struct {
	r    *bufio.Reader
	big  bool // the current section is big-endian
	head [ngHeadLen]byte
	hoff int    // head[hoff:hn] is still to be read
	hn   int    // bytes of the current block's head
	left uint64 // bytes of the current block after its head
	// links are the link types of the current section's interfaces, in
	// the order of their Interface Description Blocks (pcapgo keeps them
	// as a byte: 276, Linux cooked v2, as 20).
	links []int
}

func (g *ngGuard) order() binary.ByteOrder {
	if g.big {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

func (g *ngGuard) Read(p []byte) (int, error) {
	if g.hoff == g.hn && g.left == 0 {
		if err := g.nextBlock(); err != nil {
			return 0, err
		}
	}
	if g.hoff < g.hn {
		n := copy(p, g.head[g.hoff:g.hn])
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
	h := g.head[:]
	g.hoff, g.hn = 0, 0
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
		if _, err := io.ReadFull(g.r, h[have:hn]); err != nil {
			return io.ErrUnexpectedEOF
		}
	}
	switch typ {
	case ngSectionHeader:
		g.links = g.links[:0]
	case ngInterfaceDescriptor:
		g.links = append(g.links, int(o.Uint16(h[8:10])))
		if s := o.Uint32(h[12:16]); s == 0 || s > MaxSnaplen {
			o.PutUint32(h[12:16], MaxSnaplen)
		}
	case ngPacket, ngEnhancedPacket:
		if c := uint64(o.Uint32(h[20:24])); c > MaxSnaplen || c > total-32 {
			return fmt.Errorf("pcapng: packet block of %d bytes captures %d bytes (at most %d)", total, c, min(MaxSnaplen, total-32))
		}
	}
	g.hn = hn
	g.left = max(total, uint64(hn)) - uint64(hn)
	return nil
}
