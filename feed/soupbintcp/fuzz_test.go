package soupbintcp

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the packet reader, in both
// directions and with a small buffer (so long packets take the copy path):
// it never panics, every error is a clean end or a counted ErrMalformed,
// and the fixed-size packets it returns decode without panicking.
func FuzzReader(f *testing.F) {
	f.Add(AppendLoginAccepted(nil, "S1", 1))
	f.Add(AppendLoginRequest(nil, LoginRequest{Username: "u", Password: "p", Sequence: 1}))
	f.Add(AppendPacket(AppendPacket(nil, TypeSequencedData, []byte("AXXXXXXXXXXX")), TypeServerHeartbeat, nil))
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 'S', 1, 2})
	f.Add([]byte{0, 5, 0xee, 1, 2, 3, 4})
	f.Add(AppendLoginRejected(nil, 'A'))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, dir := range []Direction{FromServer, FromClient} {
			var st Stats
			r := NewReader(bytes.NewReader(data), dir, 16, 1000, &st)
			bad := 0
			for {
				typ, p, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					if !errors.Is(err, ErrMalformed) {
						t.Fatalf("error %v is not ErrMalformed", err)
					}
					bad++
					break
				}
				if !dir.Valid(typ) || len(p) > 1000 {
					t.Fatalf("returned type %q with %d bytes", typ, len(p))
				}
				switch typ {
				case TypeLoginAccepted:
					ParseLoginAccepted(p) //nolint:errcheck
				case TypeLoginRequest:
					if req, err := ParseLoginRequest(p); err == nil {
						if again := AppendLoginRequest(nil, req); len(again) != HeaderLen+LoginRequestLen {
							t.Fatalf("re-encoded login request of %d bytes", len(again))
						}
					}
				}
			}
			if got := st.Malformed(); got != uint64(bad) {
				t.Fatalf("%d malformed errors, %d counted", bad, got)
			}
		}
	})
}

func TestReaderErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", []byte{0, 0, 'S'}, ErrEmpty},
		{"truncated-header", []byte{0}, ErrTruncated},
		{"truncated-payload", []byte{0, 10, 'S', 1, 2}, ErrTruncated},
		{"oversized", []byte{0xff, 0xff, 'S'}, ErrOversized},
		{"unknown", []byte{0, 1, '?'}, ErrUnknownType},
		{"wrong-direction", []byte{0, 1, 'R'}, ErrUnknownType},
		{"bad-length", []byte{0, 2, 'H', 0}, ErrBadLength},
		{"short-accept", AppendPacket(nil, TypeLoginAccepted, []byte("S")), ErrBadLength},
	} {
		var st Stats
		r := NewReader(bytes.NewReader(c.in), FromServer, 0, 1000, &st)
		_, _, err := r.Next()
		if !errors.Is(err, c.want) || !errors.Is(err, ErrMalformed) || st.Malformed() != 1 {
			t.Errorf("%s: %v (malformed %d), want %v", c.name, err, st.Malformed(), c.want)
		}
	}
	if _, err := ParseNumeric([]byte(" 12a")); !errors.Is(err, ErrBadField) {
		t.Errorf("ParseNumeric accepted a letter: %v", err)
	}
	if _, err := ParseNumeric([]byte("99999999999999999999")); !errors.Is(err, ErrBadField) {
		t.Errorf("ParseNumeric accepted an overflow: %v", err)
	}
	if v, err := ParseNumeric([]byte("                  42")); v != 42 || err != nil {
		t.Errorf("ParseNumeric = %d, %v", v, err)
	}
}
