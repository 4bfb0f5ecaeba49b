package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/marketfeed/feedhandler/feed/config"
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
			path, _ := genDayFile(t, itchgen.Config{Messages: 300_000, Symbols: 300, Seed: 11, Lines: 2, Loss: 0.01}, asPcap)
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

// TestReplayShmSlots: --shm-slots sizes the --shm file (default
// config.DefaultSHMSlots, as the feed config's shm.slots), and a value out
// of 1..65536 is refused before anything is created, naming the flag.
func TestReplayShmSlots(t *testing.T) {
	path, _ := genDayFile(t, itchgen.Config{Messages: 5_000, Symbols: 30, Seed: 3}, false)
	for _, tc := range []struct {
		args  []string
		slots int
	}{
		{nil, config.DefaultSHMSlots},
		{[]string{"--shm-slots", "40"}, 40},
		{[]string{"--shm-slots=65536"}, 65536},
	} {
		name := shmtest.Name(t, "fh-replayslots")
		args := append(append([]string{"--quiet", "--shm", name}, tc.args...), path)
		if err := replay(args, io.Discard, io.Discard); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		r, err := shm.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		info, n := r.Info(), len(r.Instruments())
		r.Close()
		if info.Instruments != tc.slots || n != 30 {
			t.Errorf("%v: %d slots, %d instruments, want %d slots, 30 instruments", tc.args, info.Instruments, n, tc.slots)
		}
	}
	for _, bad := range []string{"0", "-1", "65537"} {
		name := shmtest.Name(t, "fh-replayslots")
		err := replay([]string{"--quiet", "--shm", name, "--shm-slots", bad, path}, io.Discard, io.Discard)
		want := "replay: --shm-slots " + bad + " is out of range (1..65536)"
		if err == nil || err.Error() != want {
			t.Errorf("--shm-slots %s: %v, want %q", bad, err, want)
		}
		if _, err := os.Stat(shm.Path(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("--shm-slots %s: the feed file exists (%v)", bad, err)
		}
	}
}
