package dayfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultBufferSize is the read and write buffer size used by NewReader and
// NewWriter.
const DefaultBufferSize = 1 << 20

// MaxRecord is the largest record: a u16 length prefix and 65535 bytes.
const MaxRecord = 2 + 0xFFFF

var (
	// ErrTruncated reports a file that ends inside a record (in its length
	// prefix or its message bytes).
	ErrTruncated = errors.New("truncated record")
	// ErrEmptyRecord reports a record with length 0, which holds no
	// message; Next passes over it, and the next call reads on.
	ErrEmptyRecord = errors.New("empty record")
)

// Reader reads BinaryFILE records from an io.Reader through one large buffer.
type Reader struct {
	r     io.Reader
	buf   []byte
	start int   // first unread byte in buf
	end   int   // end of valid data in buf
	base  int64 // file offset of buf[0]
	last  int64 // file offset of the last record returned
	n     uint64
	err   error // sticky read error (io.EOF once the source is exhausted)
}

// NewReader returns a Reader with a DefaultBufferSize buffer.
func NewReader(r io.Reader) *Reader { return NewReaderSize(r, DefaultBufferSize) }

// NewReaderSize returns a Reader with a buffer of size bytes (at least
// MaxRecord, so that any record fits).
func NewReaderSize(r io.Reader, size int) *Reader {
	if size < MaxRecord {
		size = MaxRecord
	}
	return &Reader{r: r, buf: make([]byte, size)}
}

// Next returns the next message (without its length prefix). The slice is a
// view into the Reader's buffer, valid until the next call to Next. At the
// clean end of the input Next returns io.EOF; a file ending inside a record
// yields an error wrapping ErrTruncated that names the record's offset.
func (r *Reader) Next() ([]byte, error) {
	if r.end-r.start < 2 {
		if err := r.fill(2); err != nil {
			return nil, err
		}
	}
	n := int(binary.BigEndian.Uint16(r.buf[r.start:]))
	if r.end-r.start < 2+n {
		if err := r.fill(2 + n); err != nil {
			return nil, err
		}
	}
	off := r.base + int64(r.start)
	if n == 0 {
		// Passed over: its length prefix frames it, the next call reads
		// the record after it.
		r.start += 2
		r.last = off
		r.n++
		return nil, fmt.Errorf("dayfile: read record %d at offset %d: %w", r.n, off, ErrEmptyRecord)
	}
	msg := r.buf[r.start+2 : r.start+2+n : r.start+2+n]
	r.start += 2 + n
	r.last = off
	r.n++
	return msg, nil
}

// fill makes at least need bytes available at r.buf[r.start:], moving the
// unread tail to the front of the buffer and reading until it is there.
func (r *Reader) fill(need int) error {
	if r.start > 0 {
		copy(r.buf, r.buf[r.start:r.end])
		r.base += int64(r.start)
		r.end -= r.start
		r.start = 0
	}
	for r.end < need {
		if r.err != nil {
			return r.fail(need)
		}
		m, err := r.r.Read(r.buf[r.end:])
		r.end += m
		if err != nil {
			r.err = err
		}
	}
	return nil
}

func (r *Reader) fail(need int) error {
	off := r.base + int64(r.start)
	if r.err != io.EOF {
		return fmt.Errorf("dayfile: read record %d at offset %d: %w", r.n+1, off, r.err)
	}
	have := r.end - r.start
	if have == 0 {
		return io.EOF
	}
	if have < 2 {
		return fmt.Errorf("dayfile: read record %d at offset %d: %w: %d of 2 length bytes", r.n+1, off, ErrTruncated, have)
	}
	return fmt.Errorf("dayfile: read record %d at offset %d: %w: %d of %d message bytes", r.n+1, off, ErrTruncated, have-2, need-2)
}

// Offset returns the file offset of the length prefix of the record most
// recently read by Next.
func (r *Reader) Offset() int64 { return r.last }

// Count returns how many records Next has read (empty ones included).
func (r *Reader) Count() uint64 { return r.n }
