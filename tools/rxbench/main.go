// Command rxbench measures the receive backends of feed/rx in a namespace
// lab: a sender in one namespace floods (or paces) UDP multicast packets
// over a veth pair to a receiver in the other, once per backend and run,
// and rxbench reports per backend the medians of the received packet rate,
// the loss seen at the sender, at the veth and at the receiver, and the
// receive CPU time per packet (the receiving thread plus the threaded-NAPI
// kthread doing the kernel's share), with ratios against recvmmsg.
//
// The lab uses threaded NAPI so the receive work runs on the receiver's
// core: the NAPI kthread and the receiving thread are pinned to CPU 1, the
// sender to CPU 0. Needs root.
//
//	go run ./tools/rxbench -runs 3 -duration 5s -size 64
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/clilog"
)

func main() {
	var o options
	flag.StringVar(&o.backends, "backends", "socket,uring,xdp", "comma-separated backends to measure")
	flag.IntVar(&o.runs, "runs", 3, "runs per backend (interleaved); medians are reported")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "sending time per run")
	flag.Float64Var(&o.rate, "rate", 0, "packets/s to send (0: as fast as the sender can)")
	flag.IntVar(&o.size, "size", 64, "UDP payload bytes")
	flag.IntVar(&o.batch, "batch", 64, "receive batch size")
	flag.IntVar(&o.rxCPU, "rx-cpu", 1, "CPU for the receiving thread and the NAPI kthread")
	flag.IntVar(&o.txCPU, "tx-cpu", 0, "CPU for the sending thread")
	flag.BoolVar(&o.busyPoll, "busy-poll", false, "set the busy-poll socket options")
	flag.BoolVar(&o.locked, "locked", true, "rx.Config.LockedThread (io_uring: SINGLE_ISSUER|DEFER_TASKRUN)")
	verbose := flag.Bool("v", false, "log each run")
	flag.Parse()
	o.log = zerolog.Nop()
	if *verbose {
		o.log = clilog.Console(os.Stderr)
	}
	res, err := bench(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rxbench:", err)
		os.Exit(1)
	}
	report(os.Stdout, o, res)
}

type options struct {
	backends string
	runs     int
	duration time.Duration
	rate     float64
	size     int
	batch    int
	rxCPU    int
	txCPU    int
	busyPoll bool
	locked   bool
	log      zerolog.Logger
}

func (o options) backendList() []string {
	var out []string
	for _, b := range strings.Split(o.backends, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}
