package shm

import (
	"testing"
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
		writeSnapshot(buf, s, 4, 1)
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
