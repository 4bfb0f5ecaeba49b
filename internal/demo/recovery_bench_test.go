package demo

import (
	"github.com/marketfeed/feedhandler/feed/handler"
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// BenchmarkRecoveryRerequest1000 drops 100 runs of about 1,000 messages on
// both lines and reports the time from gap detection to the range being
// whole again (delivered in order on the receive thread), p50 and p99 over
// the gaps, and the most packets the spill held.
//
//	go test -run '^$' -bench RecoveryRerequest1000 -benchtime 1x ./internal/demo
func BenchmarkRecoveryRerequest1000(b *testing.B) {
	needLab(b)
	d := testDay(b)
	drop := map[int]bool{}
	step := (len(d.Packets) - 10) / 101
	gaps := 0
	for g := 1; g <= 100; g++ {
		first := g * step
		var msgs uint64
		for i := first; msgs < 1000; i++ {
			p, _ := moldudp64.Parse(d.Packets[i])
			drop[i] = true
			msgs += uint64(p.Messages())
		}
		gaps++
	}
	var res *Result
	for b.Loop() {
		res = run(b, handler.ModeRunToCompletion, Options{Backend: "xdp", Drop: drop, Recovery: &Recovery{Rerequest: true}})
	}
	rs := res.Stats.Recovery
	if rs.RecoveredByRerequest < uint64(gaps) || rs.Open != 0 || res.Stale != 0 || len(res.Mismatches) != 0 {
		b.Fatalf("recovery %s, stale %d, mismatches %d", rs, res.Stale, len(res.Mismatches))
	}
	var msgs uint64
	for _, e := range rs.Events {
		msgs += e.Range.Count
	}
	b.ReportMetric(float64(rs.RecoveryTime.Quantile(0.5))/1e6, "p50-ms")
	b.ReportMetric(float64(rs.RecoveryTime.Quantile(0.99))/1e6, "p99-ms")
	b.ReportMetric(float64(rs.RecoveryTime.Count), "gaps")
	b.ReportMetric(float64(res.Stats.Arbiter.RecoveredMessages)/float64(gaps), "msgs/gap")
	b.ReportMetric(float64(res.Stats.Arbiter.HeldMax), "spill-max-pkts")
}
