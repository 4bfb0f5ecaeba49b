package xsk

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/race"
)

// testRing lays a ring out in ordinary memory the way the kernel does
// (producer, consumer, flags, then the entries), so the producer/consumer
// logic can be checked against a simulated kernel, including index
// wrap-around at 2^32.
func testRingMem(size, entry int) ([]byte, unix.XDPRingOffset) {
	off := unix.XDPRingOffset{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}
	mem := make([]byte, 192+size*entry)
	return mem, off
}

func TestAddrRingWrap(t *testing.T) {
	const size = 8
	mem, off := testRingMem(size, 8)
	var fill addrRing
	fill.init(mem, off, size)
	// Start both indices just below the 32-bit wrap.
	start := uint32(1<<32 - 5)
	*fill.producer, *fill.consumer = start, start
	fill.cachedProd, fill.cachedCons = start, start+size

	// The simulated kernel consumes from the fill ring.
	kernelTake := func(max int) []uint64 {
		var out []uint64
		for len(out) < max {
			c := atomic.LoadUint32(fill.consumer)
			if c == atomic.LoadUint32(fill.producer) {
				break
			}
			out = append(out, fill.addrs[c&fill.mask])
			atomic.StoreUint32(fill.consumer, c+1)
		}
		return out
	}
	rng := rand.New(rand.NewPCG(1, 2))
	next := uint64(0)
	var inFlight []uint64
	for round := 0; round < 1000; round++ {
		want := rng.IntN(size + 3)
		batch := make([]uint64, want)
		for i := range batch {
			batch[i] = next + uint64(i)
		}
		n := fill.put(batch)
		if room := size - len(inFlight); n != min(want, room) {
			t.Fatalf("round %d: put %d of %d with %d free", round, n, want, room)
		}
		inFlight = append(inFlight, batch[:n]...)
		next += uint64(n)
		got := kernelTake(rng.IntN(size + 1))
		for i, a := range got {
			if a != inFlight[i] {
				t.Fatalf("round %d: kernel read %d, want %d", round, a, inFlight[i])
			}
		}
		inFlight = inFlight[len(got):]
	}
	if *fill.producer-start != uint32(next) {
		t.Fatalf("producer advanced %d, want %d", *fill.producer-start, next)
	}
}

func TestDescRingWrap(t *testing.T) {
	const size = 16
	mem, off := testRingMem(size, int(unsafe.Sizeof(unix.XDPDesc{})))
	var rx descRing
	rx.init(mem, off, size)
	start := uint32(1<<32 - 7)
	*rx.producer, *rx.consumer = start, start
	rx.cachedProd, rx.cachedCons = start, start

	rng := rand.New(rand.NewPCG(3, 4))
	produced, consumed := uint64(0), uint64(0)
	dst := make([]Desc, size+4)
	for round := 0; round < 1000; round++ {
		// The simulated kernel produces what fits.
		k := rng.IntN(size + 1)
		for i := 0; i < k; i++ {
			p := atomic.LoadUint32(rx.producer)
			if p-atomic.LoadUint32(rx.consumer) == size {
				break
			}
			rx.descs[p&rx.mask] = unix.XDPDesc{Addr: produced * 4096, Len: uint32(produced % 1500)}
			atomic.StoreUint32(rx.producer, p+1)
			produced++
		}
		n := rx.take(dst[:rng.IntN(len(dst))])
		for _, d := range dst[:n] {
			if d.Addr != consumed*4096 || d.Len != uint32(consumed%1500) {
				t.Fatalf("round %d: desc %+v, want frame %d", round, d, consumed)
			}
			consumed++
		}
	}
	for n := rx.take(dst); n > 0; n = rx.take(dst) {
		consumed += uint64(n)
	}
	if consumed != produced {
		t.Fatalf("consumed %d of %d", consumed, produced)
	}
}

func TestRingAllocs(t *testing.T) {
	mem, off := testRingMem(64, 8)
	var r addrRing
	r.init(mem, off, 64)
	addrs := make([]uint64, 16)
	if a, exact := race.AllocsPerRun(t, 100, func() {
		r.put(addrs)
		*r.consumer = *r.producer // the kernel took them
	}); exact && a != 0 {
		t.Fatalf("put allocates %v times", a)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []Config{
		{RxSize: 100},
		{FillSize: 48},
		{CompSize: 3},
		{TxSize: 5},
		{FillSize: 64, Frames: 65},
		{TxFrames: 2},
		{Queue: -1},
	}
	for _, c := range cases {
		if _, err := Open(c); err == nil {
			t.Errorf("Open accepted %+v", c)
		}
	}
	if _, err := NewUMEM(UMEMConfig{FrameSize: 1000}); err == nil {
		t.Error("NewUMEM accepted a 1000-byte frame size")
	}
}

func TestUMEMFrames(t *testing.T) {
	u, err := NewUMEM(UMEMConfig{FrameSize: 2048, Frames: 16})
	if err != nil {
		t.Fatal(err)
	}
	first, err := u.take(10)
	if err != nil || first != 0 {
		t.Fatalf("take 10 = %d, %v", first, err)
	}
	if _, err := u.take(7); err == nil {
		t.Fatal("took 7 frames with 6 free")
	}
	if err := u.giveBack(first, 10); err != nil {
		t.Fatal(err)
	}
	if u.Free() != 16 {
		t.Fatalf("%d free after giving back, want 16", u.Free())
	}
	d := u.Data(2048*3+256, 100)
	if len(d) != 100 || cap(d) != 100 {
		t.Fatalf("Data view len %d cap %d", len(d), cap(d))
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := u.take(1); err == nil {
		t.Fatal("took frames from a closed UMEM")
	}
}

// BenchmarkRing moves batches of 64 addresses through a fill ring, the
// kernel's side simulated by advancing the consumer.
func BenchmarkRing(b *testing.B) {
	mem, off := testRingMem(4096, 8)
	var r addrRing
	r.init(mem, off, 4096)
	addrs := make([]uint64, 64)
	b.ReportAllocs()
	for b.Loop() {
		r.put(addrs)
		atomic.StoreUint32(r.consumer, atomic.LoadUint32(r.producer))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/frame")
}
