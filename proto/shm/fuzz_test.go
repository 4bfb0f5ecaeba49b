package shm

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var (
	fuzzFileOnce sync.Once
	fuzzFile     []byte
)

// validFile is a small feed file with published snapshots and journal
// records.
func validFile(t *testing.T) []byte {
	fuzzFileOnce.Do(func() {
		name := filepath.Join(t.TempDir(), "feed")
		w, err := Create(Config{Name: name, Instruments: 4, Depth: 2, JournalLen: 16})
		if err != nil {
			t.Fatal(err)
		}
		s := newSnapshot(2)
		for loc := uint16(1); loc <= 3; loc++ {
			w.Register(loc, symbolOf(loc))
			for k := uint64(1); k < 5; k++ {
				fillSnapshot(s, loc, k+uint64(loc), 2)
				w.Publish(s)
			}
		}
		w.Close()
		fuzzFile, err = os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
	})
	return fuzzFile
}

// FuzzOpen corrupts a valid feed file (patch bytes at an offset, or
// truncate it) and exercises every read path: Open must fail with ErrFormat
// or ErrLayoutVersion, or the reader must work without panicking.
func FuzzOpen(f *testing.F) {
	f.Add(uint32(offCapacity), []byte{0xff, 0xff}, false)
	f.Add(uint32(headerSize+4), []byte{0x09}, false)  // index entry of locate 1 -> slot 8
	f.Add(uint32(offSlots), []byte{0x40}, false)      // slots offset
	f.Add(uint32(offDepth), []byte{0x01}, false)      // depth 1 < published levels
	f.Add(uint32(1<<20), []byte{0x00, 0x7f}, false)   // somewhere in a slot
	f.Add(uint32(offLayoutVersion), []byte{9}, false) // version
	f.Add(uint32(pageSize*70), []byte{}, true)        // truncated
	f.Fuzz(func(t *testing.T, off uint32, patch []byte, truncate bool) {
		b := append([]byte(nil), validFile(t)...)
		off %= uint32(len(b))
		if truncate {
			b = b[:off]
		} else {
			copy(b[off:], patch)
		}
		name := filepath.Join(t.TempDir(), "feed")
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(name)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrLayoutVersion) {
				t.Fatalf("open: %v", err)
			}
			return
		}
		defer r.Close()
		r.Check()
		buf := make([]byte, r.Info().MaxSnapshot)
		for loc := 0; loc < MaxLocates; loc++ {
			if _, ok := r.slotOf(uint16(loc)); !ok {
				continue
			}
			v, err := r.Read(uint16(loc), buf)
			if err != nil {
				continue
			}
			v.Symbol()
			v.Seq()
			v.Messages()
			for i := 0; ; i++ {
				_, okb := v.Bid(i)
				_, oka := v.Ask(i)
				if !okb && !oka {
					break
				}
			}
		}
		for _, in := range r.Instruments() {
			r.Lookup(in.Symbol)
		}
		fl := r.Follow()
		fl.next = 0
		dst := make([]Update, 8)
		for i := 0; i < 8; i++ {
			fl.Poll(dst)
		}
	})
}
