package shm

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/cppbuild"
)

// cutAndRegrow cuts the file at path to size bytes and grows it back to its
// size: everything past the cut reads as zeros, the first page (the
// header) survives when size is at least a page.
func cutAndRegrow(t *testing.T, path string, size int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()); err != nil {
		t.Fatal(err)
	}
}

// TestReaderCutPastFirstPage: a feed file cut past its first page and
// grown back to its size (truncate -s 8192 f; truncate -s SIZE f) keeps
// the header (magic, generation, size): a reader's Check said nothing,
// and its reads found no books (the index and slots zeroed) or the
// writer's later stores into the zeroed file, as if all were well; Open
// took the file too. The trailer (a copy of the generation in the file's
// last 8 bytes, which any cut below the size zeroes) tells: Check, a
// follower's Wait and Open say ErrFormat. A file without a trailer (an
// earlier writer's) is read as before.
func TestReaderCutPastFirstPage(t *testing.T) {
	for _, cut := range []int64{headerSize, 2 * headerSize, -1} {
		w := publishedWriter(t, Config{Instruments: 4, Depth: 2})
		size := cut
		if cut < 0 {
			size = int64(len(w.m.mem)) - 1 // one byte: the trailer's last
		}
		r := testReader(t, w.Path())
		f := r.Follow()
		if err := r.Check(); err != nil {
			t.Fatalf("check before: %v", err)
		}
		cutAndRegrow(t, w.Path(), size)
		if err := r.Check(); !errors.Is(err, ErrFormat) {
			t.Fatalf("cut to %d bytes and grown back: check %v, want ErrFormat", size, err)
		}
		if _, err := f.Wait(make([]Update, 4), time.Minute, WaitOptions{Spin: 1}); !errors.Is(err, ErrFormat) {
			t.Fatalf("cut to %d bytes and grown back: wait %v, want ErrFormat", size, err)
		}
		if r2, err := Open(w.Path()); !errors.Is(err, ErrFormat) {
			if err == nil {
				r2.Close()
			}
			t.Fatalf("cut to %d bytes and grown back: open %v, want ErrFormat", size, err)
		}
	}

	// An earlier writer's file: no trailer (offset 0 in the header).
	w := publishedWriter(t, Config{Instruments: 4, Depth: 2})
	*w.m.u64(offTrailer) = 0
	*w.m.u64(w.l.trailer) = 0
	r := testReader(t, w.Path())
	if err := r.Check(); err != nil {
		t.Fatalf("a file without a trailer: check %v, want nil", err)
	}
	if _, err := r.Read(1, make([]byte, r.Info().MaxSnapshot)); err != nil {
		t.Fatalf("a file without a trailer: read %v", err)
	}
}

// TestTrailerUnaligned: a header whose trailer is not 8-byte aligned (a
// corrupt or crafted file of a size that is not a multiple of 8: the
// writer's are page rounded) is ErrFormat: the trailer's atomic load
// would fault for its alignment on arm64 (SIGBUS, BUS_ADRALN), which the
// readers' fault guard does not take for a truncation.
func TestTrailerUnaligned(t *testing.T) {
	l := plan(1, 1, 2, maxSnapshotSize(1))
	l.pid, l.heartbeatEvery, l.generation = 1, int64(time.Second), 0x1234567
	m := &mapping{mem: make([]byte, l.fileSize+4)}
	m.writeHeader(l)
	if _, err := m.readHeader(int64(l.fileSize)); err != nil {
		t.Fatalf("the file as planned: %v", err)
	}
	l.fileSize += 4
	l.trailer = l.fileSize - trailerSize
	m.writeHeader(l)
	if _, err := m.readHeader(int64(l.fileSize)); !errors.Is(err, ErrFormat) {
		t.Fatalf("trailer at %d (file of %d bytes): %v, want ErrFormat", l.trailer, l.fileSize, err)
	}
}

// TestCppReaderCutPastFirstPage is TestReaderCutPastFirstPage for the C++
// reader: check, wait and open say Format.
func TestCppReaderCutPastFirstPage(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver) // first: the writer beats only when told
	w := publishedWriter(t, Config{Instruments: 4, Depth: 2})
	s := startSession(t, bin, w.Path())
	for _, step := range [][2]string{{"open", "Ok"}, {"follow", "Ok"}, {"check", "Ok"}, {"cut", ""},
		{"check", "ErrFormat"}, {"wait 60000", "ErrFormat n 0"}, {"open", "ErrFormat"}} {
		if step[0] == "cut" {
			cutAndRegrow(t, w.Path(), 2*headerSize)
			continue
		}
		s.expect(step[0], strings.Fields(step[0])[0]+" "+step[1])
	}
}
