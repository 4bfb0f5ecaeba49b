package itch_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// FuzzDecode feeds arbitrary bytes as a block stream. The scanner must never
// panic, must only fail with the documented error kinds, must account for
// every block in its counters, and every message it returns must decode and
// re-encode to its own bytes (every byte of every layout is a field).
func FuzzDecode(f *testing.F) {
	f.Add(blockStream())
	f.Add(itch.AppendBlock(vector('A').AppendBlock(nil), []byte{'z', 1, 2}))
	f.Add(itch.AppendBlock(nil, vector('U').Append(nil)[:20]))
	f.Add([]byte{0, 0})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s itch.Scanner
		s.Reset(data)
		var returned uint64
		for {
			m, ok := s.Next()
			if !ok {
				if s.Err() == nil || !s.Resume() {
					break
				}
				continue
			}
			returned++
			if len(m) < itch.Length(m.Type()) || !itch.Known(m.Type()) {
				t.Fatalf("returned %q of %d bytes", m.Type(), len(m))
			}
			if err := itch.Check(m); err != nil {
				t.Fatalf("Check of a returned message: %v", err)
			}
			e, ok := itch.Decode(m)
			if !ok {
				t.Fatalf("Decode(%q) failed", m.Type())
			}
			if re := e.Append(nil); !bytes.Equal(re, m[:itch.Length(m.Type())]) {
				t.Fatalf("%q: re-encoded %x, want %x", m.Type(), re, m)
			}
			_ = readLikeBook(m) + fieldsOf(m)
		}
		if err := s.Err(); err != nil {
			var fe *itch.FrameError
			if !errors.As(err, &fe) || !errors.Is(err, itch.ErrTruncated) {
				t.Fatalf("undocumented error %T: %v", err, err)
			}
			if int(fe.Offset)+len(s.Rest()) != len(data) {
				t.Fatalf("rest %d bytes from offset %d of %d", len(s.Rest()), fe.Offset, len(data))
			}
		}
		if returned != s.Messages {
			t.Fatalf("returned %d, counted %d", returned, s.Messages)
		}
		// Count the blocks independently, and check each with Accept.
		var blocks uint64
		var c itch.Counters
		rest := data
		for len(rest) >= 2 {
			n := int(rest[0])<<8 | int(rest[1])
			if len(rest)-2 < n {
				break
			}
			blocks++
			c.Accept(rest[2 : 2+n])
			rest = rest[2+n:]
		}
		c.Truncated = s.Truncated
		if c != s.Counters {
			t.Fatalf("Accept counted %+v, Scanner %+v", c, s.Counters)
		}
		truncated := uint64(0)
		if len(rest) > 0 {
			truncated = 1
		}
		if s.Messages+s.Unknown+s.Short != blocks || s.Truncated != truncated {
			t.Fatalf("counters %+v for %d blocks, truncated %d", s.Counters, blocks, truncated)
		}
	})
}
