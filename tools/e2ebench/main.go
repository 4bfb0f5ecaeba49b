// Command e2ebench measures the whole handler in a namespace lab: for each
// pipeline mode, receive backend and send rate it sends a generated day on
// lines A and B (1% loss injected on A, so line B fills A's holes), and
// reports the kernel-receive-timestamp-to-shared-memory-publish latency
// percentiles, the handler's own path, what the sender reached, gaps and
// kernel drops, whether the published books match, and the lowest rate at
// which messages were lost.
//
//	go run ./tools/e2ebench -backends xdp -rates 50000,100000,150000,200000,0 -modes run-to-completion,sharded
//
// Rate 0 means as fast as the sender goes. The sender paces by deadline
// (internal/exchange Config.Deadline). In run to completion, -pin pins the
// sender to the first CPU the process may run on and the receive thread to
// the last (demo.PinCPUs), and -spin sets how
// long the receive thread polls its rings before it sleeps; sharded runs
// are neither pinned nor spinning (three hot threads on two CPUs). Run it as root, under
// `flock /tmp/bench.lock` on a shared machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/internal/demo"
)

func main() {
	demo.MaybeSender() // Run re-executes this binary as the sender
	backends := flag.String("backends", "xdp", "receive backends to compare (xdp, uring, socket)")
	rates := flag.String("rates", "50000,100000,150000,200000,0", "input packets per second per line, ascending; 0 = as fast as the sender goes")
	messages := flag.Int("messages", 1_000_000, "messages in the generated day")
	symbols := flag.Int("symbols", 2000, "instruments")
	runs := flag.Int("runs", 3, "runs per backend and rate (medians reported)")
	pin := flag.Bool("pin", true, "run to completion: pin the sender to the first CPU the process may run on and the receive thread to the last")
	spin := flag.Duration("spin", time.Millisecond, "run to completion: how long the receive thread polls its rings before it sleeps (AF_XDP; 0: sleep at once)")
	modes := flag.String("modes", "run-to-completion,sharded", "pipeline modes to compare: run-to-completion, sharded (one shard thread)")
	maxPacket := flag.Int("max-packet", 300, "largest MoldUDP64 packet in bytes (300: about 8.6 messages per packet, like the real feed's)")
	rtPriority := flag.Int("rt-priority", 0, "run to completion: run the receive thread under SCHED_FIFO at this priority (1..99; 0: normal scheduling)")
	flag.Parse()
	if *runs < 1 {
		fmt.Fprintf(os.Stderr, "e2ebench: -runs %d: want at least 1\n", *runs)
		os.Exit(2)
	}

	day, err := demo.GenerateDaySized(*messages, *symbols, 1, *maxPacket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("e2ebench: %d messages, %d packets per line (at most %d bytes, %.1f messages each), %d runs each, medians; pin=%v spin=%v rt-priority=%d; load average %s\n",
		day.Messages, len(day.Packets), *maxPacket, float64(day.Messages)/float64(len(day.Packets)), *runs, *pin, *spin, *rtPriority, loadAvg())
	fmt.Println("rx wait: share of the run the receive thread was runnable but waited for its CPU (other threads ran there);")
	fmt.Println("rx->pub: kernel receive timestamp (the XDP program's, or SO_TIMESTAMPNS) to shm publish; path: receive-thread pickup to publish;")
	if err := bpf.ProbeMeta(); errors.Is(err, bpf.ErrNoMetaHelper) {
		fmt.Printf("  here xdp's rx->pub starts when the frame is read, not at the kernel's receive: %v\n", err)
	}
	fmt.Println("lost msgs: messages missing on both lines (in gaps); rx drops: packets the kernel dropped; slips: times the sender fell more than a burst behind its schedule")
	fmt.Println(aligned(header))
	type onset struct{ mode, backend, rate string }
	var lossAt []onset
	var noLoss, failed []string
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
			lossSeen, failedHere := false, false
			for _, rs := range strings.Split(*rates, ",") {
				rate, err := strconv.ParseFloat(rs, 64)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				var row rowRuns
				name := b
				for i := 0; i < *runs; i++ {
					o := demo.Options{Day: day, Backend: b, Rate: rate, LossA: 0.01, Log: zerolog.Nop(), Mode: mode,
						ShmName: fmt.Sprintf("e2ebench-%d", os.Getpid()), Timeout: 30 * time.Second, RingSize: 16384}
					if mode == handler.ModeRunToCompletion {
						// Sharded runs two hot threads: on 2 CPUs a pinned,
						// spinning receive thread would starve the shard.
						o.Pin, o.Spin, o.RTPriority = *pin, *spin, *rtPriority
					}
					// Sharded: one shard thread, the layout that was the default.
					o.Configure = func(c *handler.Config) {
						if mode == handler.ModeSharded {
							c.ShardCores = []int{-1}
						}
					}
					if rate == 0 {
						o.Rate = 1e9
					}
					res, err := demo.Run(context.Background(), o)
					if res == nil {
						fmt.Fprintf(os.Stderr, "%s at %s: %v\n", b, rs, err)
						row.failed++
						continue
					}
					name = res.Backend
					st := res.Stats
					if th := st.ReceiveThread; th.Priority != o.RTPriority {
						fmt.Fprintf(os.Stderr, "%s at %s: receive thread under normal scheduling: %s\n", b, rs, th.Reason)
					}
					row.p50 = append(row.p50, float64(st.Latency.Quantile(0.5)))
					row.p99 = append(row.p99, float64(st.Latency.Quantile(0.99)))
					row.p999 = append(row.p999, float64(st.Latency.Quantile(0.999)))
					row.mx = append(row.mx, float64(st.Latency.Max))
					row.q50 = append(row.q50, float64(st.PathLatency.Quantile(0.5)))
					row.q99 = append(row.q99, float64(st.PathLatency.Quantile(0.99)))
					row.q999 = append(row.q999, float64(st.PathLatency.Quantile(0.999)))
					row.sent = append(row.sent, float64(res.Sender.Input)/max(res.Sender.Elapsed.Seconds(), 1e-9))
					row.gaps = append(row.gaps, float64(st.Arbiter.Gaps))
					row.lost = append(row.lost, float64(st.Arbiter.GapMessages))
					row.drops = append(row.drops, float64(st.Receive.Dropped))
					if secs := res.RxSwitchSecs; secs > 0 && res.RxRun > 0 {
						row.wait = append(row.wait, 100*res.RxWait.Seconds()/secs)
					}
					if rate > 0 {
						row.slips = append(row.slips, float64(res.Sender.Slips))
					}
					if st.Arbiter.Gaps > 0 || st.Receive.Dropped > 0 || err != nil {
						row.lossRuns++
						extra, _ := st.Receive.Extra.MarshalJSON() // which kernel counter the drops are
						fmt.Fprintf(os.Stderr, "%s %s at %s, run %d: %d gaps (%d messages), %d packets dropped by the kernel (backend counters %s), %d mismatched books, receive thread %s (%d voluntary, %d involuntary switches, waited runnable %v, in %.1fs), error %v\n",
							mode, b, rs, i+1, st.Arbiter.Gaps, st.Arbiter.GapMessages, st.Receive.Dropped, extra, len(res.Mismatches),
							st.ReceiveThread.Policy(), res.RxSwitches[0], res.RxSwitches[1], res.RxWait.Round(time.Microsecond), res.RxSwitchSecs, err)
					}
					if err == nil && len(res.Mismatches) == 0 && st.Arbiter.Gaps == 0 {
						row.match++
					}
				}
				fmt.Println(aligned(row.line(mode.String(), shortBackend(name), rateName(rs), *runs)))
				if row.failed > 0 {
					failed = append(failed, fmt.Sprintf("%s %s at %s: %d of %d runs", mode, b, rateName(rs), row.failed, *runs))
					failedHere = true
				}
				if row.lossRuns > 0 && !lossSeen {
					lossSeen = true
					lossAt = append(lossAt, onset{mode.String(), shortBackend(name), fmt.Sprintf("%s (sent %.0f pkt/s; %d of %d runs lost messages)", rateName(rs), median(row.sent), row.lossRuns, *runs)})
				}
			}
			if !lossSeen && !failedHere {
				noLoss = append(noLoss, fmt.Sprintf("%s %s", mode, b))
			}
		}
	}
	fmt.Println()
	for _, l := range lossAt {
		fmt.Printf("loss starts: %s %s at %s\n", l.mode, l.backend, l.rate)
	}
	for _, n := range noLoss {
		fmt.Printf("no loss: %s at any rate tried\n", n)
	}
	for _, f := range failed {
		fmt.Printf("failed (no figures; see stderr): %s\n", f)
	}
	fmt.Printf("load average at the end %s\n", loadAvg())
}

// header names the table's columns, a tab after each (rowRuns.line).
const header = "mode\tbackend\trate pkt/s\tsent pkt/s\trx->pub p50\tp99\tp99.9\tmax\tpath p50\tp99\tp99.9\tgaps\tlost msgs\trx drops\tslips\trx wait\tbooks\t"

// aligned right-aligns each tab-ended cell of a table line (the header or
// a row) in its column's width, two spaces apart (the last, words, left), so that rows printed as
// each finishes line up with the header. (A tabwriter flushed after each
// row aligned only the header and the first row: it aligns the lines of
// one Flush.) A cell wider than its column pushes the rest of its row.
func aligned(line string) string {
	var b strings.Builder
	for i, c := range strings.Split(strings.TrimSuffix(line, "\t"), "\t") {
		if i > 0 {
			b.WriteString("  ")
		}
		if i < len(columnWidth)-1 {
			b.WriteString(strings.Repeat(" ", max(0, columnWidth[i]-utf8.RuneCountInString(c))))
		}
		b.WriteString(c) // the last column (books: words) left-aligned
	}
	return b.String()
}

// columnWidth is each column's width in runes: its header's, at least
// what its figures take (a mode's name, "3.719168ms").
var columnWidth = func() []int {
	var w []int
	for i, h := range strings.Split(strings.TrimSuffix(header, "\t"), "\t") {
		n := max(utf8.RuneCountInString(h), 10)
		if i == 0 {
			n = max(n, len("run-to-completion"))
		}
		w = append(w, n)
	}
	return w
}()

// rowRuns holds the figures of one table row's runs (one mode, backend
// and rate); a run that failed before it measured anything is only
// counted.
type rowRuns struct {
	p50, p99, p999, mx, q50, q99, q999, sent, gaps, lost, drops, slips, wait []float64
	match, lossRuns, failed                                                  int
}

// line is the row for the table: the medians of the runs that measured,
// "-" where none did (a median of no run is not 0), and how many failed.
func (r *rowRuns) line(mode, backend, rate string, runs int) string {
	books := fmt.Sprintf("%d/%d identical", r.match, runs)
	if r.failed > 0 {
		books += fmt.Sprintf(", %d failed", r.failed)
	}
	if len(r.p50) == 0 {
		return fmt.Sprintf("%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t", mode, backend, rate, books)
	}
	sl := "-"
	if len(r.slips) > 0 {
		sl = fmt.Sprintf("%.0f", median(r.slips))
	}
	wt := "-"
	if len(r.wait) > 0 {
		wt = fmt.Sprintf("%.1f%%", median(r.wait))
	}
	return fmt.Sprintf("%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t", mode, backend, rate, median(r.sent),
		ns(median(r.p50)), ns(median(r.p99)), ns(median(r.p999)), ns(median(r.mx)), ns(median(r.q50)), ns(median(r.q99)), ns(median(r.q999)),
		median(r.gaps), median(r.lost), median(r.drops), sl, wt, books)
}

func rateName(rs string) string {
	if rs == "0" {
		return "max"
	}
	return rs
}

// shortBackend drops the details in parentheses (interface, copy mode).
func shortBackend(s string) string {
	if i := strings.IndexByte(s, ' '); i > 0 {
		return s[:i]
	}
	return s
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
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
