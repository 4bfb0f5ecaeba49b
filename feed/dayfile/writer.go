package dayfile

import (
	"fmt"
	"io"
)

// Writer writes BinaryFILE records through a large buffer. Errors are
// sticky: after a failed write every later call returns the same error.
type Writer struct {
	w   io.Writer
	buf []byte
	n   uint64
	err error
}

// NewWriter returns a Writer with a DefaultBufferSize buffer.
func NewWriter(w io.Writer) *Writer { return NewWriterSize(w, DefaultBufferSize) }

// NewWriterSize returns a Writer with a buffer of size bytes (at least
// MaxRecord).
func NewWriterSize(w io.Writer, size int) *Writer {
	if size < MaxRecord {
		size = MaxRecord
	}
	return &Writer{w: w, buf: make([]byte, 0, size)}
}

// WriteMessage appends one record holding msg. msg must be 1 to 65535 bytes.
func (w *Writer) WriteMessage(msg []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(msg) == 0 || len(msg) > 0xFFFF {
		return fmt.Errorf("dayfile: write record %d: message length %d outside 1..65535", w.n+1, len(msg))
	}
	if cap(w.buf)-len(w.buf) < 2+len(msg) {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	w.buf = append(w.buf, byte(len(msg)>>8), byte(len(msg)))
	w.buf = append(w.buf, msg...)
	w.n++
	return nil
}

// WriteBlocks appends records that are already framed as [u16 length][message]
// blocks (the payload layout of a MoldUDP64 packet) holding count messages.
// The framing is not checked.
func (w *Writer) WriteBlocks(blocks []byte, count int) error {
	if w.err != nil {
		return w.err
	}
	if cap(w.buf)-len(w.buf) < len(blocks) {
		if err := w.Flush(); err != nil {
			return err
		}
		if len(blocks) > cap(w.buf) {
			if _, err := w.w.Write(blocks); err != nil {
				w.err = fmt.Errorf("dayfile: write: %w", err)
				return w.err
			}
			w.n += uint64(count)
			return nil
		}
	}
	w.buf = append(w.buf, blocks...)
	w.n += uint64(count)
	return nil
}

// Flush writes the buffered records to the underlying writer. It does not
// flush that writer: a bufio.Writer beneath keeps what it holds until its
// own Flush (the Writer buffers already; write to the file itself).
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		w.err = fmt.Errorf("dayfile: write: %w", err)
	}
	return w.err
}

// Count returns how many records have been written (including buffered ones).
func (w *Writer) Count() uint64 { return w.n }
