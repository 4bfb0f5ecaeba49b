package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianOf(ss []sample, f func(sample) float64) float64 {
	xs := make([]float64, len(ss))
	for i, s := range ss {
		xs[i] = f(s)
	}
	return median(xs)
}

// report prints the median of each figure per backend, and the ratios of
// rate and CPU per packet against the socket (recvmmsg) backend.
func report(w io.Writer, o options, res map[string][]sample) {
	rate := "max"
	if o.rate > 0 {
		rate = fmt.Sprintf("%.0f/s", o.rate)
	}
	fmt.Fprintf(w, "rxbench: %d runs x %v per backend, %d-byte payloads, send rate %s, batch %d, rx+napi on CPU %d, sender on CPU %d; medians\n",
		o.runs, o.duration, o.size, rate, o.batch, o.rxCPU, o.txCPU)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend\tsent\treceived\trx pkt/s\tloss %\tsend err\tveth drop\trx drop\tunaccounted\tthread ns/pkt\tnapi ns/pkt\tcpu ns/pkt\tpkt/s vs socket\tcpu vs socket\t")
	base := res["socket"]
	for _, b := range o.backendList() {
		ss := res[b]
		if len(ss) == 0 {
			continue
		}
		pps := medianOf(ss, sample.pps)
		cpu := medianOf(ss, sample.nsPerPkt)
		ratio := func(v, ref float64) string {
			if ref == 0 || len(base) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", v/ref)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%s\t\n",
			ss[0].backend,
			medianOf(ss, func(s sample) float64 { return float64(s.sent) }),
			medianOf(ss, func(s sample) float64 { return float64(s.received) }),
			pps,
			medianOf(ss, sample.lossPct),
			medianOf(ss, func(s sample) float64 { return float64(s.sendErrs) }),
			medianOf(ss, func(s sample) float64 { return float64(s.vethDrops) }),
			medianOf(ss, func(s sample) float64 { return float64(s.rxDrops) }),
			medianOf(ss, sample.unaccounted),
			medianOf(ss, func(s sample) float64 { return perPkt(s.threadNs, s.received) }),
			medianOf(ss, func(s sample) float64 { return perPkt(s.napiNs, s.received) }),
			cpu,
			ratio(pps, medianOf(base, sample.pps)),
			ratio(cpu, medianOf(base, sample.nsPerPkt)),
		)
	}
	tw.Flush()
}

func perPkt(ns, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(ns) / float64(n)
}
