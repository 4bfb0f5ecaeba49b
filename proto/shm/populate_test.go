package shm

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/cppbuild"
)

// sparseSize is the size of the files of sparseFeeds: all but their first
// page is a hole, which a reader that maps them with MAP_POPULATE fills
// with pages of memory (tmpfs allocates a page for each read fault).
const sparseSize = 64 << 20

// sparseFeed is a file under a feed's name that is not a feed this reader
// takes, sparse past its first page.
type sparseFeed struct {
	name string
	path string
	want error // Open's error: ErrFormat or ErrLayoutVersion
}

// sparseFeeds makes three such files: one that is no feed at all, a feed's
// header on a file larger than the header says (file size mismatch), and a
// header of another layout version.
func sparseFeeds(t *testing.T) []sparseFeed {
	t.Helper()
	w := testWriter(t, Config{Instruments: 1, Depth: 1})
	header := make([]byte, headerSize)
	copy(header, w.m.mem)
	notFeed := make([]byte, headerSize)
	copy(notFeed, "not a feed file")
	version := append([]byte(nil), header...)
	binary.LittleEndian.PutUint32(version[offLayoutVersion:], LayoutVersion+1)
	var out []sparseFeed
	for _, c := range []struct {
		name  string
		first []byte
		want  error
	}{
		{"not a feed", notFeed, ErrFormat},
		{"size mismatch", header, ErrFormat},
		{"layout version", version, ErrLayoutVersion},
	} {
		path := testName(t)
		if err := os.WriteFile(path, c.first, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, sparseSize); err != nil {
			t.Fatal(err)
		}
		out = append(out, sparseFeed{name: c.name, path: path, want: c.want})
	}
	return out
}

// allocated is how many bytes of memory (tmpfs pages) path holds.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestOpenRefusesBeforePopulate: Open checks the header before it maps the
// file with MAP_POPULATE. A file that is not a feed (another program's
// sparse shm file under a mistyped name, a file truncated to a larger
// size, a feed of another layout version) is refused without a page of it
// allocated. Before, Open mapped and populated the whole file first, and
// tmpfs allocated every page of its holes, for good: a 64 MiB hole became
// 64 MiB of /dev/shm that stayed after the refusal.
func TestOpenRefusesBeforePopulate(t *testing.T) {
	for _, f := range sparseFeeds(t) {
		t.Run(f.name, func(t *testing.T) {
			before := allocated(t, f.path)
			if _, err := Open(f.path); !errors.Is(err, f.want) {
				t.Fatalf("open: %v, want %v", err, f.want)
			}
			if after := allocated(t, f.path); after != before {
				t.Fatalf("open of a %d-byte file allocated %d bytes of it before refusing it (had %d)", sparseSize, after, before)
			}
		})
	}
}

// TestCppOpenRefusesBeforePopulate is TestOpenRefusesBeforePopulate for
// the C++ reader.
func TestCppOpenRefusesBeforePopulate(t *testing.T) {
	bin := cppbuild.Build(t, cppDriver)
	for _, f := range sparseFeeds(t) {
		t.Run(f.name, func(t *testing.T) {
			before := allocated(t, f.path)
			want := "open ErrFormat"
			if f.want == ErrLayoutVersion {
				want = "open ErrLayoutVersion"
			}
			startSession(t, bin, f.path).expect("open", want)
			if after := allocated(t, f.path); after != before {
				t.Fatalf("C++ open of a %d-byte file allocated %d bytes of it before refusing it (had %d)", sparseSize, after, before)
			}
		})
	}
}
