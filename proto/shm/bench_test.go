package shm

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkPublish publishes depth-10 snapshots, both sides full, into 16
// slots in turn: encode + seqlock copy + journal append, with the journal
// shared by concurrent publishers (the default) and with a single writer.
func BenchmarkPublish(b *testing.B) {
	b.Run("shared", func(b *testing.B) { benchPublish(b, false) })
	b.Run("single", func(b *testing.B) { benchPublish(b, true) })
}

func benchPublish(b *testing.B, single bool) {
	const depth = 10
	w := testWriter(b, Config{Instruments: 16, Depth: depth, SingleWriter: single})
	for loc := uint16(0); loc < 16; loc++ {
		w.Register(loc, symbolOf(loc))
	}
	s := newSnapshot(depth)
	fillSnapshot(s, 1, depth*3+depth, depth) // k%11 == 10, (k/3)%11 == 2
	s.Bids, s.Asks = s.Bids[:depth], s.Asks[:depth]
	s.PublishTime = 1
	b.ReportAllocs()
	for b.Loop() {
		s.Locate = (s.Locate + 1) & 15
		if err := w.Publish(s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/snapshot")
}

// BenchmarkEncodeDirect is the encoding part of BenchmarkPublish: the
// fixed slot layout of encode.go.
func BenchmarkEncodeDirect(b *testing.B) {
	const depth = 10
	buf := make([]byte, maxSnapshotSize(depth))
	s := newSnapshot(depth)
	fillSnapshot(s, 1, 40, depth)
	s.Bids, s.Asks = s.Bids[:depth], s.Asks[:depth]
	writePrefix(buf, 1, []byte("AAPL"))
	b.ReportAllocs()
	for b.Loop() {
		writeSnapshot(buf, s, bidsAt(4), 1)
	}
}

// BenchmarkEncodeBuilder encodes the same snapshot with the generated
// FlatBuffers builder (reused), for comparison with BenchmarkEncodeDirect.
func BenchmarkEncodeBuilder(b *testing.B) {
	const depth = 10
	e := newEncoder(depth)
	s := newSnapshot(depth)
	fillSnapshot(s, 1, 40, depth)
	s.Bids, s.Asks = s.Bids[:depth], s.Asks[:depth]
	s.PublishTime = 1
	b.ReportAllocs()
	for b.Loop() {
		e.encode(s, []byte("AAPL"))
	}
}

// BenchmarkRead reads a consistent depth-10 snapshot into a caller buffer
// while no writer is active (the uncontended cost).
func BenchmarkRead(b *testing.B) {
	const depth = 10
	w := testWriter(b, Config{Instruments: 1, Depth: depth})
	w.Register(1, "AAPL")
	s := newSnapshot(depth)
	fillSnapshot(s, 1, 40, depth)
	s.Bids, s.Asks = s.Bids[:depth], s.Asks[:depth]
	w.Publish(s)
	r := testReader(b, w.Path())
	buf := make([]byte, r.Info().MaxSnapshot)
	b.ReportAllocs()
	var sum uint64
	for b.Loop() {
		v, err := r.Read(1, buf)
		if err != nil {
			b.Fatal(err)
		}
		sum += v.Seq()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/read")
}

// BenchmarkBeginCommit is BenchmarkPublish/single through Begin and Commit
// with each locate's Slot given, as the handler's Publisher publishes
// (Begin's fast path on little-endian machines), the levels copied into
// the slot's vectors.
func BenchmarkBeginCommit(b *testing.B) {
	const depth = 10
	w := testWriter(b, Config{Instruments: 16, Depth: depth, SingleWriter: true})
	var slots [16]Slot
	for loc := uint16(0); loc < 16; loc++ {
		w.Register(loc, symbolOf(loc))
		slots[loc], _ = w.Slot(loc)
	}
	s := newSnapshot(depth)
	fillSnapshot(s, 1, depth*3+depth, depth)
	s.Bids, s.Asks = s.Bids[:depth], s.Asks[:depth]
	s.PublishTime = 1
	var p Pending
	b.ReportAllocs()
	for b.Loop() {
		s.Locate = (s.Locate + 1) & 15
		if err := w.Begin(slots[s.Locate], s, depth, depth, &p); err != nil {
			b.Fatal(err)
		}
		copy(p.Bids, s.Bids)
		copy(p.Asks, s.Asks)
		w.Commit(&p)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/snapshot")
}

// BenchmarkFirstStore is the cost of the first store into each page of a
// new shared mapping of a new file, mapped as Create maps it
// (MAP_POPULATE): "populated" as it was, "dirtied" after dirtyPages, as
// Create leaves it. ns/page is the store's mean (ns/op includes making the
// file).
func BenchmarkFirstStore(b *testing.B) {
	for _, dirty := range []bool{false, true} {
		name := "populated"
		if dirty {
			name = "dirtied"
		}
		b.Run(name, func(b *testing.B) {
			const size = 1 << 20
			path := testName(b)
			var stores time.Duration
			var pages int
			for b.Loop() {
				mem := mapNew(b, path, size)
				if dirty {
					dirtyPages(mem)
				}
				t := time.Now()
				for off := 8; off < size; off += pageSize {
					mem[off] = 1
				}
				stores += time.Since(t)
				pages += size / pageSize
				if err := unix.Munmap(mem); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(stores.Nanoseconds())/float64(pages), "ns/page")
		})
	}
}

// mapNew makes path a new file of size bytes and maps it as Create does.
func mapNew(b *testing.B, path string, size int) []byte {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(size)); err != nil {
		b.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		b.Fatal(err)
	}
	return mem
}

// BenchmarkJournalLaps publishes a depth-1 snapshot through a new single
// writer's first journal lap (65,536 records, 256 pages), then through its
// second, and reports each lap's mean publish: the first lap's records
// land on journal pages the publishing thread had not stored to (see
// dirtyPages).
func BenchmarkJournalLaps(b *testing.B) {
	const n = 1 << 16
	path := testName(b)
	s := newSnapshot(1)
	fillSnapshot(s, 1, 1, 1)
	s.Bids, s.Asks = s.Bids[:1], s.Asks[:1]
	s.PublishTime = 1
	var laps [2]time.Duration
	b.ReportAllocs()
	for b.Loop() {
		w, err := Create(Config{Name: path, Instruments: 1, Depth: 1, JournalLen: n, SingleWriter: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Register(1, "AAPL"); err != nil {
			b.Fatal(err)
		}
		for lap := range laps {
			t := time.Now()
			for range n {
				if err := w.Publish(s); err != nil {
					b.Fatal(err)
				}
			}
			laps[lap] += time.Since(t)
		}
		w.Close()
	}
	b.ReportMetric(float64(laps[0].Nanoseconds())/float64(b.N*n), "ns/publish-lap1")
	b.ReportMetric(float64(laps[1].Nanoseconds())/float64(b.N*n), "ns/publish-lap2")
}

// BenchmarkPoll is a follower's Poll: empty (the spin loop of a Wait that
// finds nothing) and of 16 records (the follower moved back over records
// still in the ring each round).
func BenchmarkPoll(b *testing.B) {
	w := testWriter(b, Config{Instruments: 1, Depth: 1, JournalLen: 64, SingleWriter: true})
	w.Register(1, "AAPL")
	s := newSnapshot(1)
	fillSnapshot(s, 1, 1, 1)
	r := testReader(b, w.Path())
	f := r.Follow()
	for range 16 {
		w.Publish(s)
	}
	ups := make([]Update, 16)
	b.Run("empty", func(b *testing.B) {
		f.next = r.m.head()
		for b.Loop() {
			if n, err := f.Poll(ups); n != 0 || err != nil {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("16", func(b *testing.B) {
		head := r.m.head()
		for b.Loop() {
			f.next = head - 16
			if n, err := f.Poll(ups); n != 16 || err != nil {
				b.Fatal(n, err)
			}
		}
	})
}
