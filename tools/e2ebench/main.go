// Command e2ebench measures the whole handler in a namespace lab: for each
// receive backend and each send rate it sends a generated day on lines A and
// B, and reports the receive-timestamp-to-shared-memory-publish latency
// percentiles, gaps and loss, and whether the published books match.
//
//	go run ./tools/e2ebench -backends xdp,uring,socket -rates 100000,200000,0 -messages 2000000 -modes run-to-completion,sharded
//
// Rate 0 means as fast as the sender goes. Run it as root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/internal/demo"
)

func main() {
	demo.MaybeSender() // Run re-executes this binary as the sender
	backends := flag.String("backends", "xdp,uring,socket", "receive backends to compare")
	rates := flag.String("rates", "100000,0", "input packets per second per line; 0 = as fast as possible")
	messages := flag.Int("messages", 2_000_000, "messages in the generated day")
	symbols := flag.Int("symbols", 2000, "instruments")
	runs := flag.Int("runs", 3, "runs per backend and rate (medians reported)")
	pin := flag.Bool("pin", false, "pin the receive thread to CPU 1 (and, sharded, the shard thread to CPU 0)")
	modes := flag.String("modes", "run-to-completion,sharded", "pipeline modes to compare: run-to-completion, sharded (one shard thread)")
	maxPacket := flag.Int("max-packet", 1400, "largest MoldUDP64 packet in bytes (smaller: fewer messages per packet)")
	flag.Parse()

	day, err := demo.GenerateDaySized(*messages, *symbols, 1, *maxPacket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("e2ebench: %d messages, %d packets per line (at most %d bytes, %.1f messages each), %d runs each, medians; pinned=%v\n",
		day.Messages, len(day.Packets), *maxPacket, float64(day.Messages)/float64(len(day.Packets)), *runs, *pin)
	tw := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tbackend\trate pkt/s\tsent pkt/s\trx->pub p50\tp99\tp99.9\tmax\tpath p50\tp99\tp99.9\tgaps\tgap msgs\trx drops\tbooks\t")
	for _, ms := range strings.Split(*modes, ",") {
		var mode handler.Mode
		switch ms {
		case "run-to-completion":
			mode = handler.ModeRunToCompletion
		case "sharded":
			mode = handler.ModeSharded
		default:
			fmt.Fprintf(os.Stderr, "e2ebench: mode %q: want run-to-completion or sharded\n", ms)
			os.Exit(2)
		}
		for _, b := range strings.Split(*backends, ",") {
			for _, rs := range strings.Split(*rates, ",") {
				rate, err := strconv.ParseFloat(rs, 64)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				var p50, p99, p999, mx, q50, q99, q999, sent, gaps, gapMsgs, drops []float64
				match := 0
				name := b
				for i := 0; i < *runs; i++ {
					o := demo.Options{Day: day, Backend: b, Rate: rate, LossA: 0.01, Log: zerolog.Nop(), Mode: mode,
						ShmName: fmt.Sprintf("e2ebench-%d", os.Getpid()), Timeout: 30 * time.Second}
					// Sharded: one shard thread, the layout that was the default.
					o.Configure = func(c *handler.Config) {
						if mode == handler.ModeSharded {
							c.ShardCores = []int{-1}
						}
						if *pin {
							c.ReceiveCore = 1
							if mode == handler.ModeSharded {
								c.ShardCores = []int{0}
							}
						}
					}
					if rate == 0 {
						o.Rate = 1e9
					}
					res, err := demo.Run(context.Background(), o)
					if res == nil {
						fmt.Fprintf(os.Stderr, "%s at %s: %v\n", b, rs, err)
						continue
					}
					name = res.Backend
					st := res.Stats
					p50 = append(p50, float64(st.Latency.Quantile(0.5)))
					p99 = append(p99, float64(st.Latency.Quantile(0.99)))
					p999 = append(p999, float64(st.Latency.Quantile(0.999)))
					mx = append(mx, float64(st.Latency.Max))
					q50 = append(q50, float64(st.PathLatency.Quantile(0.5)))
					q99 = append(q99, float64(st.PathLatency.Quantile(0.99)))
					q999 = append(q999, float64(st.PathLatency.Quantile(0.999)))
					sent = append(sent, float64(res.Sender.Input)/res.SendTime.Seconds())
					gaps = append(gaps, float64(st.Arbiter.Gaps))
					gapMsgs = append(gapMsgs, float64(st.Arbiter.GapMessages))
					drops = append(drops, float64(st.Receive.Dropped))
					if err == nil && len(res.Mismatches) == 0 && st.Arbiter.Gaps == 0 {
						match++
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%d/%d identical\t\n", mode, name, rs, median(sent),
					ns(median(p50)), ns(median(p99)), ns(median(p999)), ns(median(mx)), ns(median(q50)), ns(median(q99)), ns(median(q999)),
					median(gaps), median(gapMsgs), median(drops), match, *runs)
				tw.Flush()
			}
		}
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ns(v float64) string { return time.Duration(v).String() }
