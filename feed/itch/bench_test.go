package itch_test

import (
	"math/rand/v2"
	"testing"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// mixStream builds n messages with the type mix of a real day (10302019):
// A 43.3%, D 41.9%, U 8.7%, E 2.5%, I 1.3%, X 1.2%, P 0.5%, F 0.5%, then C,
// L, Q, Y, H, R, S, J, V, B sharing the remaining 0.1%.
func mixStream(n int) []byte {
	type share struct {
		t   byte
		per float64 // per 1000
	}
	mix := []share{{'A', 433}, {'D', 419}, {'U', 87}, {'E', 25}, {'I', 13}, {'X', 12}, {'P', 5}, {'F', 5}, {'C', 0.4},
		{'L', 0.2}, {'Q', 0.1}, {'Y', 0.1}, {'H', 0.05}, {'R', 0.05}, {'S', 0.025}, {'J', 0.025}, {'V', 0.025}, {'B', 0.025}}
	var total float64
	for _, s := range mix {
		total += s.per
	}
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 0, n*40)
	for i := range n {
		x := r.Float64() * total
		t := mix[0].t
		for _, s := range mix {
			if x < s.per {
				t = s.t
				break
			}
			x -= s.per
		}
		hdr := itch.Header{Locate: uint16(r.IntN(8000) + 1), Timestamp: 34_200_000_000_000 + uint64(i)*1000}
		ref := r.Uint64() >> 20
		switch t {
		case 'A':
			f := itch.AddOrderFields{Header: hdr, OrderRef: ref, Side: 'B', Shares: uint32(r.IntN(1000)), Stock: itch.NewSymbol("AAPL"), Price: uint32(r.IntN(2_000_000))}
			buf = f.AppendBlock(buf)
		case 'D':
			f := itch.OrderDeleteFields{Header: hdr, OrderRef: ref}
			buf = f.AppendBlock(buf)
		case 'U':
			f := itch.OrderReplaceFields{Header: hdr, OriginalOrderRef: ref, NewOrderRef: ref + 1, Shares: 100, Price: uint32(r.IntN(2_000_000))}
			buf = f.AppendBlock(buf)
		case 'E':
			f := itch.OrderExecutedFields{Header: hdr, OrderRef: ref, ExecutedShares: 10, MatchNumber: uint64(i)}
			buf = f.AppendBlock(buf)
		case 'X':
			f := itch.OrderCancelFields{Header: hdr, OrderRef: ref, CancelledShares: 10}
			buf = f.AppendBlock(buf)
		default:
			v := vector(t)
			buf = v.AppendBlock(buf)
		}
	}
	return buf
}

// BenchmarkDecode scans a realistic mix and reads the fields of every message
// the way a book does.
func BenchmarkDecode(b *testing.B) {
	const n = 100_000
	buf := mixStream(n)
	var s itch.Scanner
	var sum uint64
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		s.Reset(buf)
		for m, ok := s.Next(); ok; m, ok = s.Next() {
			sum += readLikeBook(m)
		}
	}
	if s.Err() != nil || s.Messages == 0 {
		b.Fatal(s.Err())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/msg")
	_ = sum
}

// BenchmarkEncode appends the same mix of messages (A, D, U, E) as blocks.
func BenchmarkEncode(b *testing.B) {
	add := itch.AddOrderFields{Header: hdr(1, 0, 1), OrderRef: 1, Side: 'S', Shares: 100, Stock: itch.NewSymbol("AAPL"), Price: 1000}
	del := itch.OrderDeleteFields{Header: hdr(1, 0, 2), OrderRef: 1}
	rep := itch.OrderReplaceFields{Header: hdr(1, 0, 3), OriginalOrderRef: 1, NewOrderRef: 2, Shares: 10, Price: 1100}
	exe := itch.OrderExecutedFields{Header: hdr(1, 0, 4), OrderRef: 2, ExecutedShares: 10, MatchNumber: 9}
	buf := make([]byte, 0, 1<<16)
	const per = 1000
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for i := range per / 4 {
			add.OrderRef = uint64(i)
			buf = add.AppendBlock(buf)
			buf = del.AppendBlock(buf)
			buf = rep.AppendBlock(buf)
			buf = exe.AppendBlock(buf)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/per, "ns/msg")
}

// BenchmarkScan measures framing alone: iterate the blocks of the same mix
// and touch only the type byte.
func BenchmarkScan(b *testing.B) {
	const n = 100_000
	buf := mixStream(n)
	var s itch.Scanner
	var sum uint64
	b.ReportAllocs()
	for b.Loop() {
		s.Reset(buf)
		for m, ok := s.Next(); ok; m, ok = s.Next() {
			sum += uint64(m[0])
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/msg")
	_ = sum
}

// BenchmarkDecodeBoxed decodes the same mix with Decode (a new *XxxFields per
// message, the tools' path) for comparison with the views.
func BenchmarkDecodeBoxed(b *testing.B) {
	const n = 100_000
	buf := mixStream(n)
	var s itch.Scanner
	var sum int
	b.ReportAllocs()
	for b.Loop() {
		s.Reset(buf)
		for m, ok := s.Next(); ok; m, ok = s.Next() {
			f, _ := itch.Decode(m)
			sum += int(f.Type())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/msg")
	_ = sum
}
