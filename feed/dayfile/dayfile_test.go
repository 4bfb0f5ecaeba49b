package dayfile_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/internal/race"
)

// records returns n pseudo-random messages of ITCH-like and odd sizes,
// including the largest possible one.
func records(n int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	sizes := []int{12, 19, 23, 31, 35, 36, 39, 40, 44, 50}
	out := make([][]byte, n)
	for i := range out {
		size := sizes[rng.IntN(len(sizes))]
		switch i % 997 {
		case 5:
			size = 0xFFFF
		case 7:
			size = 1
		}
		m := make([]byte, size)
		for j := range m {
			m[j] = byte(rng.Uint32())
		}
		out[i] = m
	}
	return out
}

func writeAll(t testing.TB, msgs [][]byte) []byte {
	var buf bytes.Buffer
	w := dayfile.NewWriterSize(&buf, 0) // minimum buffer: exercises flushing
	for _, m := range msgs {
		if err := w.WriteMessage(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.Count() != uint64(len(msgs)) {
		t.Fatalf("writer count %d, want %d", w.Count(), len(msgs))
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	msgs := records(5000, 1)
	file := writeAll(t, msgs)
	want := 0
	for _, m := range msgs {
		want += 2 + len(m)
	}
	if len(file) != want {
		t.Fatalf("file is %d bytes, want %d", len(file), want)
	}
	sources := map[string]func() io.Reader{
		"whole":   func() io.Reader { return bytes.NewReader(file) },
		"onebyte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(file)) },
		"half":    func() io.Reader { return iotest.HalfReader(bytes.NewReader(file)) },
	}
	for name, src := range sources {
		for _, size := range []int{0, dayfile.DefaultBufferSize} {
			t.Run(fmt.Sprintf("%s/%d", name, size), func(t *testing.T) {
				r := dayfile.NewReaderSize(src(), size)
				var off int64
				for i, m := range msgs {
					got, err := r.Next()
					if err != nil {
						t.Fatalf("record %d: %v", i, err)
					}
					if !bytes.Equal(got, m) {
						t.Fatalf("record %d differs (len %d, want %d)", i, len(got), len(m))
					}
					if r.Offset() != off {
						t.Fatalf("record %d offset %d, want %d", i, r.Offset(), off)
					}
					off += int64(2 + len(m))
				}
				if _, err := r.Next(); err != io.EOF {
					t.Fatalf("after last record: %v, want io.EOF", err)
				}
				if r.Count() != uint64(len(msgs)) {
					t.Fatalf("count %d, want %d", r.Count(), len(msgs))
				}
			})
		}
	}
}

func TestTruncated(t *testing.T) {
	msgs := records(100, 2)
	file := writeAll(t, msgs)
	lastOff := len(file) - 2 - len(msgs[len(msgs)-1])
	cases := []struct {
		cut  int
		want string
	}{
		{1, "1 of 2 length bytes"},
		{2, fmt.Sprintf("0 of %d message bytes", len(msgs[len(msgs)-1]))},
		{len(msgs[len(msgs)-1]) + 1, fmt.Sprintf("%d of %d message bytes", len(msgs[len(msgs)-1])-1, len(msgs[len(msgs)-1]))},
	}
	for _, c := range cases {
		// Keep c.cut bytes of the last record.
		data := file[:lastOff+c.cut]
		r := dayfile.NewReader(bytes.NewReader(data))
		var err error
		n := 0
		for ; ; n++ {
			if _, err = r.Next(); err != nil {
				break
			}
		}
		if n != len(msgs)-1 {
			t.Errorf("cut %d: read %d whole records, want %d", c.cut, n, len(msgs)-1)
		}
		if !errors.Is(err, dayfile.ErrTruncated) {
			t.Fatalf("cut %d: error %v, want ErrTruncated", c.cut, err)
		}
		wantOff := fmt.Sprintf("record %d at offset %d", len(msgs), lastOff)
		if !strings.Contains(err.Error(), wantOff) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cut %d: error %q should name %q and %q", c.cut, err, wantOff, c.want)
		}
	}
}

func TestEmptyRecord(t *testing.T) {
	r := dayfile.NewReader(bytes.NewReader([]byte{0, 1, 'S', 0, 0, 0, 1, 'E'}))
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); !errors.Is(err, dayfile.ErrEmptyRecord) || !strings.Contains(err.Error(), "record 2 at offset 3") {
		t.Fatalf("got %v, want ErrEmptyRecord, record 2 at offset 3", err)
	}
	// Passed over: the next record follows.
	if m, err := r.Next(); err != nil || string(m) != "E" || r.Offset() != 5 || r.Count() != 3 {
		t.Fatalf("after the empty record: %q, %v at offset %d, %d records; want \"E\" at 5, 3", m, err, r.Offset(), r.Count())
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
}

func TestWriterRejectsBadLength(t *testing.T) {
	w := dayfile.NewWriter(io.Discard)
	if err := w.WriteMessage(nil); err == nil {
		t.Error("empty message accepted")
	}
	if err := w.WriteMessage(make([]byte, 0x10000)); err == nil {
		t.Error("65536-byte message accepted")
	}
}

func TestWriteBlocks(t *testing.T) {
	msgs := records(300, 3)
	file := writeAll(t, msgs)
	var buf bytes.Buffer
	w := dayfile.NewWriterSize(&buf, 0)
	half := len(file) / 3
	// Split on a record boundary.
	r := dayfile.NewReader(bytes.NewReader(file))
	n := 0
	for r.Offset() < int64(half) {
		r.Next()
		n++
	}
	cut := int(r.Offset())
	if err := w.WriteBlocks(file[:cut], n-1); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBlocks(file[cut:], len(msgs)-n+1); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), file) || w.Count() != uint64(len(msgs)) {
		t.Fatalf("WriteBlocks output differs (count %d)", w.Count())
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, io.ErrShortWrite }

func TestWriterStickyError(t *testing.T) {
	w := dayfile.NewWriterSize(errWriter{}, 0)
	var err error
	for i := 0; err == nil && i < 10; i++ {
		err = w.WriteMessage(make([]byte, 0xFFFF))
	}
	if !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("got %v, want io.ErrShortWrite", err)
	}
	if err := w.Flush(); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("flush after failure: %v", err)
	}
}

// loopReader serves the same bytes forever, so a benchmark or allocation test
// can read without an end.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func TestReaderAllocs(t *testing.T) {
	file := writeAll(t, records(1000, 4))
	r := dayfile.NewReader(&loopReader{data: file})
	allocs, exact := race.AllocsPerRun(t, 100000, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if exact && allocs != 0 {
		t.Fatalf("Next allocates %v times per message", allocs)
	}
}

func TestWriterAllocs(t *testing.T) {
	w := dayfile.NewWriter(io.Discard)
	msg := make([]byte, 36)
	allocs, exact := race.AllocsPerRun(t, 100000, func() {
		if err := w.WriteMessage(msg); err != nil {
			t.Fatal(err)
		}
	})
	if exact && allocs != 0 {
		t.Fatalf("WriteMessage allocates %v times per message", allocs)
	}
}

func BenchmarkReader(b *testing.B) {
	msgs := records(100000, 5)
	for i := range msgs {
		msgs[i] = msgs[i][:min(len(msgs[i]), 50)]
	}
	file := writeAll(b, msgs)
	r := dayfile.NewReader(&loopReader{data: file})
	b.SetBytes(int64(len(file) / len(msgs)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/msg")
}

func BenchmarkWriter(b *testing.B) {
	w := dayfile.NewWriter(io.Discard)
	msg := make([]byte, 36)
	b.SetBytes(38)
	b.ReportAllocs()
	for b.Loop() {
		w.WriteMessage(msg)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/msg")
}

func FuzzReader(f *testing.F) {
	f.Add([]byte{0, 1, 'S', 0, 2, 'A', 'B'})
	f.Add([]byte{0, 5, 'S'})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := dayfile.NewReaderSize(iotest.HalfReader(bytes.NewReader(data)), 0)
		total := 0
		for {
			m, err := r.Next()
			if err == io.EOF {
				if total != len(data) {
					t.Fatalf("EOF after %d of %d bytes", total, len(data))
				}
				return
			}
			if err != nil {
				if total == len(data) {
					t.Fatalf("error %v at the clean end", err)
				}
				return
			}
			total += 2 + len(m)
		}
	})
}

func Example() {
	var file bytes.Buffer
	w := dayfile.NewWriter(&file)
	w.WriteMessage([]byte("S\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00O"))
	w.WriteMessage([]byte("hello"))
	w.Flush()

	r := dayfile.NewReader(&file)
	for {
		msg, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("offset %d: %d bytes, type %q\n", r.Offset(), len(msg), msg[0])
	}
	// Output:
	// offset 0: 12 bytes, type 'S'
	// offset 14: 5 bytes, type 'h'
}
