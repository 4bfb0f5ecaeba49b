package book

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// framedOps encodes ops as length-prefixed blocks, as a BinaryFILE holds them.
func framedOps(ops []op) []byte {
	var buf []byte
	var m [64]byte
	for _, o := range ops {
		b := encodeOp(m[:0], o, 1)
		buf = append(buf, byte(len(b)>>8), byte(len(b)))
		buf = append(buf, b...)
	}
	return buf
}

// TestApplyFramedDifferential: the random streams of
// TestDifferentialRandomITCH, framed and applied by ApplyFramed in runs of
// random length with a prefetch cursor ahead, give the reference book's
// results after every run, and the same books and counters as Apply.
func TestApplyFramedDifferential(t *testing.T) {
	for seed := range uint64(6) {
		cfg := Config{MaxOrders: 1 << 12, MaxLocates: 6, MaxLevels: 1 << 10, Overflow: 1 << 12}
		if seed%2 == 1 {
			cfg = Config{MaxOrders: 40, MaxLocates: 6, MaxLevels: 24, Overflow: 40}
		}
		ops := randomOps(300+seed, 6, 20000)
		data := framedOps(ops)
		bs, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		one, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := newRefBooks(cfg)
		rng := rand.New(rand.NewPCG(seed, 7))
		off, pf, done := 0, 0, 0
		for done < len(ops) {
			k := 1 + rng.IntN(70)
			next, npf, a := bs.ApplyFramed(data, off, pf, k)
			if a != min(k, len(ops)-done) {
				t.Fatalf("seed %d: applied %d of %d at op %d", seed, a, k, done)
			}
			for _, o := range ops[done : done+a] {
				r.apply(o)
				applyOpITCH(one, o)
			}
			done += a
			off, pf = next, npf
			if pf < off {
				t.Fatalf("prefetch cursor %d behind %d", pf, off)
			}
			for l := 0; l <= cfg.MaxLocates; l++ {
				if err := compareBook(bs, r, uint16(l)); err != nil {
					t.Fatalf("seed %d, op %d: %v", seed, done, err)
				}
			}
			if err := compareStats(bs, r); err != nil {
				t.Fatalf("seed %d, op %d: %v", seed, done, err)
			}
		}
		if off != len(data) {
			t.Fatalf("seed %d: ended at %d of %d", seed, off, len(data))
		}
		if bs.Stats() != one.Stats() {
			t.Fatalf("seed %d: stats %+v, Apply gives %+v", seed, bs.Stats(), one.Stats())
		}
		var a, b bytes.Buffer
		if err := bs.WriteJSON(&a, 0); err != nil {
			t.Fatal(err)
		}
		if err := one.WriteJSON(&b, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("seed %d: ApplyFramed's books differ from Apply's", seed)
		}
		if err := checkInvariants(bs); err != nil {
			t.Fatal(err)
		}
	}
}

// TestApplyFramedStops: ApplyFramed stops before a block that is not a
// known type of exactly its length, or that runs past the end, and applies
// nothing of it; a bad offset applies nothing.
func TestApplyFramedStops(t *testing.T) {
	good := framedOps(announceOps(3))
	del := msgOf(&itch.OrderDeleteFields{Header: hdr(1), OrderRef: 3})
	long := append(append([]byte{0, byte(len(del) + 1)}, del...), 0)
	for _, tc := range []struct {
		name string
		tail []byte
	}{
		{"zero length", []byte{0, 0, 'S'}},
		{"unknown type", []byte{0, 3, 'z', 0, 0}},
		{"long", long},
		{"short", append([]byte{0, byte(len(del) - 1)}, del[:len(del)-1]...)},
		{"past the end", append([]byte{0, byte(len(del))}, del[:len(del)-2]...)},
		{"a length byte alone", []byte{0}},
	} {
		bs, err := New(Config{MaxOrders: 8, MaxLocates: 4, MaxLevels: 8})
		if err != nil {
			t.Fatal(err)
		}
		data := append(append([]byte(nil), good...), tc.tail...)
		next, _, a := bs.ApplyFramed(data, 0, 0, 100)
		if a != 3 || next != len(good) {
			t.Errorf("%s: applied %d, stopped at %d; want 3 at %d", tc.name, a, next, len(good))
		}
		if st := bs.Stats(); st.Messages != 3 || st.Inconsistencies() != 0 {
			t.Errorf("%s: stats %+v", tc.name, st)
		}
		if next, _, a := bs.ApplyFramed(data, len(good), 0, 100); a != 0 || next != len(good) {
			t.Errorf("%s: from the bad block: applied %d, at %d", tc.name, a, next)
		}
	}
	bs, err := New(Config{MaxOrders: 8, MaxLocates: 4, MaxLevels: 8})
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{-1, len(good) + 1} {
		if _, _, a := bs.ApplyFramed(good, off, 0, 10); a != 0 {
			t.Errorf("offset %d: applied %d", off, a)
		}
	}
	if _, _, a := bs.ApplyFramed(good, 0, 0, 0); a != 0 || bs.Stats().Messages != 0 {
		t.Errorf("limit 0: applied %d", a)
	}
	if n := testing.AllocsPerRun(100, func() {
		bs.Reset()
		bs.ApplyFramed(good, 0, 1, 100) // a cursor off the block boundaries only hints wrongly
	}); n != 0 {
		t.Errorf("ApplyFramed: %v allocs per run", n)
	}
}
