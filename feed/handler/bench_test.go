package handler

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// BenchmarkPipeline measures the handler's own path at full speed, without
// a network: a scripted receiver hands a generated day's packets (each on
// lines A and B) to the real receive thread, arbiter, router, shard ring,
// book and shared-memory publisher. ns/msg is wall time per message from
// the first Receive to the last message applied and published; path-p50/p99
// are the pickup-to-publish latencies under that full load (queueing
// included).
func BenchmarkPipeline(b *testing.B) {
	const n = 500_000
	pkts := dayPackets(b, n)
	var script []rx.Packet
	now := time.Now().UnixNano()
	for _, p := range pkts {
		script = append(script, rx.Packet{Data: p, Line: rx.LineA, RxTime: now}, rx.Packet{Data: p, Line: rx.LineB, RxTime: now})
	}
	name := fmt.Sprintf("fhbench-%d", os.Getpid())
	defer shm.Remove(name)
	var total time.Duration
	var last Stats
	b.ReportAllocs()
	for b.Loop() {
		r := &scriptRx{script: script, errAt: -1}
		h, err := Start(Config{
			Receive:    rx.Config{Lines: []rx.LineConfig{{Name: "A"}, {Name: "B"}}, BatchSize: 64},
			Book:       book.Config{MaxOrders: 1 << 18, MaxLocates: 1024, MaxLevels: 1 << 16},
			ShardCores: []int{-1},
			ShmName:    name,
			Open:       func(rx.Config) (rx.Receiver, error) { return r, nil },
			Log:        zerolog.Nop(),
		})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		for h.Applied() < n {
			time.Sleep(50 * time.Microsecond)
		}
		total += time.Since(t0)
		h.Stop()
		last = h.Stats()
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(n*b.N), "ns/msg")
	b.ReportMetric(float64(last.PathLatency.Quantile(0.5)), "path-p50-ns")
	b.ReportMetric(float64(last.PathLatency.Quantile(0.99)), "path-p99-ns")
}
