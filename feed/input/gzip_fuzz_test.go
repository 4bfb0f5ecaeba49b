package input_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"testing"

	"github.com/marketfeed/feedhandler/feed/input"
)

// readTrace reads data with a new Reader: the messages it returns, then
// how it ends, and the counts (Gzip aside).
func readTrace(data []byte) string {
	r, err := input.NewReader(bytes.NewReader(data), input.Options{ReorderWindow: 4})
	if err != nil {
		return "open: " + err.Error()
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s empty=%v\n", r.Format(), r.Empty())
	for range len(data) + 1 {
		m, err := r.Next()
		if err != nil {
			fmt.Fprintf(&b, "end: %v\n", err)
			break
		}
		fmt.Fprintf(&b, "%x\n", []byte(m))
	}
	st := *r.Stats()
	st.Gzip, st.GzipPadding = false, 0
	fmt.Fprintf(&b, "%+v", st)
	return b.String()
}

// FuzzGzip: a file gzipped, in one member or two (as `cat a.gz b.gz` or
// pigz makes them; RFC 1952 allows any number), then zero padding or
// not, reads as the file: the same messages, counts and end. The gzip path had no fuzz target of
// its own, the fuzzer being unable to write a valid gzip stream.
func FuzzGzip(f *testing.F) {
	f.Add([]byte{0, 12, 'S', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'O', 0, 12, 'S', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'C'}, uint16(14))
	f.Add(fuzzCapture(), uint16(30))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		at := min(int(cut), len(data))
		var z bytes.Buffer
		for _, part := range [][]byte{data[:at], data[at:]} {
			zw := gzip.NewWriter(&z)
			zw.Write(part)
			zw.Close()
		}
		if len(data) > 0 && data[0] == 0x1f {
			return // a gzip stream inside: inflated once only, by design
		}
		want, got := readTrace(data), readTrace(z.Bytes())
		if got != want {
			t.Fatalf("gzipped in two members at %d:\n%s\nplain:\n%s", at, got, want)
		}
		z.Write(make([]byte, cut%600))
		if got := readTrace(z.Bytes()); got != want {
			t.Fatalf("gzipped in two members at %d, %d zero bytes after:\n%s\nplain:\n%s", at, cut%600, got, want)
		}
	})
}
