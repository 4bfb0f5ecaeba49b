package input

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// errTrailingGarbage reports bytes after a gzip member that are neither
// another member nor zero padding.
var errTrailingGarbage = errors.New("trailing garbage")

// gzipMembers inflates a gzip file of one member or more (RFC 1952, as
// `cat a.gz b.gz` or pigz makes them). Zero bytes after the last member
// (a tape's or block device's padding, a file preallocated larger than
// what was written) end it, counted in padding, as gzip -d ignores them
// ("decompression OK, trailing zero bytes ignored"); any other byte after
// a member that does not start another is an error, where gzip -d warns
// ("trailing garbage ignored"): a file cut or overwritten there.
type gzipMembers struct {
	br      *bufio.Reader // the compressed bytes
	zr      *gzip.Reader  // the current member
	padding uint64        // zero bytes after the last member
	err     error         // sticky: io.EOF after the last member, or why it stopped
}

// newGzipMembers reads the first member's header from br.
func newGzipMembers(br *bufio.Reader) (*gzipMembers, error) {
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	return &gzipMembers{br: br, zr: zr}, nil
}

func (g *gzipMembers) Read(p []byte) (int, error) {
	for g.err == nil {
		n, err := g.zr.Read(p)
		if err == io.EOF {
			g.err = g.next()
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	return 0, g.err
}

// next starts the member after the one that ended: io.EOF when none
// follows (nothing more, or zero padding to the end).
func (g *gzipMembers) next() error {
	head, _ := g.br.Peek(2)
	switch {
	case len(head) == 0:
		return io.EOF
	case len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b:
		if err := g.zr.Reset(g.br); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("gzip: next member: %w", err)
		}
		g.zr.Multistream(false)
		return nil
	}
	for {
		b, err := g.br.ReadByte()
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			return fmt.Errorf("gzip: read after the last member: %w", err)
		}
		if b != 0 {
			return fmt.Errorf("gzip: byte %#02x after the last member (and %d zero bytes): not a gzip member: %w", b, g.padding, errTrailingGarbage)
		}
		g.padding++
	}
}

// Close closes the current member's reader.
func (g *gzipMembers) Close() error { return g.zr.Close() }
