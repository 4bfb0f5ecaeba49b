package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestReplayShmMatchesBooksOut replays a generated day (a BinaryFILE, and
// the same day as a two-line pcap) with --shm; `bookview --once --json`
// must then print exactly what `replay --books-out --depth 10` writes.
func TestReplayShmMatchesBooksOut(t *testing.T) {
	for _, asPcap := range []bool{false, true} {
		t.Run(fmt.Sprintf("pcap=%v", asPcap), func(t *testing.T) {
			path, _ := genInspectFile(t, itchgen.Config{Messages: 300_000, Symbols: 300, Seed: 11, Lines: 2, Loss: 0.01}, asPcap)
			name := shmtest.Name(t, "fh-replayshm")
			booksOut := filepath.Join(t.TempDir(), "books.json")
			if err := replay([]string{"--quiet", "--shm", name, "--books-out", booksOut, "--depth", "10", path}, io.Discard, io.Discard); err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(booksOut)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			// The replay closed the feed: the books are printed, and the
			// error (exit status 3) says the writer is not live.
			err = bookview([]string{"--shm", name, "--once", "--json"}, &got)
			var se *writerStateError
			if !errors.As(err, &se) || se.state.State != "closed" || !errors.Is(err, shm.ErrClosed) {
				t.Fatalf("bookview after replay: %v, want the writer state closed", err)
			}
			if len(want) < 1000 {
				t.Fatalf("books output suspiciously small: %q", want)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Fatalf("bookview --once --json differs from replay --books-out --depth 10:\nbookview: %.400s\nreplay:   %.400s", got.Bytes(), want)
			}
			// The writer closed the feed: every snapshot stays readable, and
			// replay never flags a book stale (it publishes what the file
			// holds; the input layer reports its gaps).
			r, err := shm.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			buf := make([]byte, r.Info().MaxSnapshot)
			for _, in := range r.Instruments() {
				v, err := r.Read(in.Locate, buf)
				if err != nil {
					t.Fatalf("%s: %v", in.Symbol, err)
				}
				if v.Flags()&bookfb.FlagsPossiblyStale != 0 {
					t.Fatalf("%s flagged stale by replay", in.Symbol)
				}
			}
		})
	}
}
