package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/internal/demo"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/proto/shm"
)

func init() {
	register(&command{name: "demo", summary: "end-to-end demo in a namespace lab (root): generate, send A+B with loss, receive, publish, verify", run: runDemo})
}

func runDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: feedhandler demo [flags] (as root, from the repository's top directory: make demo)")
		fs.PrintDefaults()
	}
	feed := fs.String("feed", "feeds/demo.yaml", "feed config whose log, lines (groups and ports), receive.backend, book.depth and shm keys (name, slots, mode, group) the demo uses (the lab's interface replaces the configured one; other keys are not used); \"\" for built-in defaults")
	messages := fs.Int("messages", 1_000_000, "messages in the generated day")
	symbols := fs.Int("symbols", 500, "instruments in the generated day")
	seed := fs.Uint64("seed", 1, "generator seed")
	loss := fs.Float64("loss", 0.02, "packet loss injected on line A")
	dropBoth := fs.Int("drop-both", 5, "runs of packets dropped on BOTH lines (the first and the last data packet among them), repaired by recovery")
	startAt := fs.Float64("start-at", 0.1, "fraction of the day sent before the handler starts (a late join, repaired by snapshot); 0: start first")
	rate := fs.Float64("rate", 20000, "packets per second per line")
	backend := fs.String("backend", "", "receive backend, overriding the config (auto, xdp, uring, socket)")
	mode := fs.String("mode", "run-to-completion", "pipeline mode: run-to-completion (one thread) or sharded (two shard threads)")
	maxPacket := fs.Int("max-packet", 300, "largest MoldUDP64 packet in bytes: 300 gives about 8.6 messages per packet, like the real feed's; 1400 packs about 50")
	pinCPUs := fs.Bool("pin", true, "run to completion: pin the sender to the first CPU the process may run on and the handler's receive thread to the last")
	// Spinning catches nearly every packet of the demo's rate without a
	// wakeup (rx -> shm p50 about 2 µs against 27 µs sleeping). But a
	// SCHED_FIFO thread that spins at this rate never sleeps, and while
	// the kernel throttles real-time threads (kernel.sched_rt_runtime_us
	// below its period, the default) it loses its CPU for up to 50 ms a
	// second: p99 6-10 ms on the lab VM. So by default the demo spins
	// 100 µs only where that throttle is off, and otherwise sleeps in
	// poll(2) between packets (p99 0.1-0.2 ms); docs/TUNING.md.
	spin := fs.Duration("spin", 100*time.Microsecond, "run to completion: how long the receive thread polls its rings before it sleeps (AF_XDP; 0: sleep in poll(2) at once); default 100µs, or 0 when the kernel throttles real-time threads (kernel.sched_rt_runtime_us) or on one CPU")
	// SCHED_FIFO by default: on this shared 2-CPU lab it keeps other
	// processes from taking the receive thread's CPU for whole time
	// slices, as isolated cores would on a production box (docs/TUNING.md).
	rtPriority := fs.Int("rt-priority", 10, "run the handler's hot threads under SCHED_FIFO at this priority (1..99; 0: normal scheduling); refused without cap_sys_nice or RLIMIT_RTPRIO, then normal scheduling (docs/TUNING.md); unless given, 0 when the receive thread is not pinned (--pin=false, or one CPU)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// "feedhandler demo feeds/demo.yaml": the file goes with --feed.
		fs.Usage()
		return fmt.Errorf("unexpected argument %q: demo takes its flags only (a feed file: --feed FILE)", fs.Arg(0))
	}
	feedSet := false
	fs.Visit(func(f *flag.Flag) { feedSet = feedSet || f.Name == "feed" })
	if _, err := os.Stat(*feed); !feedSet && errors.Is(err, os.ErrNotExist) {
		wd, _ := os.Getwd()
		return fmt.Errorf("no %s in %s: the default --feed is relative to the repository's top directory; run the demo from there (make demo), or give --feed FILE, or --feed \"\" for the built-in defaults", *feed, wd)
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo builds network namespaces and loads XDP: run it as root")
	}
	spinSet, rtSet := false, false
	fs.Visit(func(f *flag.Flag) { spinSet, rtSet = spinSet || f.Name == "spin", rtSet || f.Name == "rt-priority" })
	// demo.Run pins only with two CPUs or more (the sender's and the
	// receive thread's): with one (taskset -c 0, a cgroup's cpuset of
	// one CPU) the receive thread shares it with the sender.
	oneCPU := runtime.NumCPU() < 2
	if (!*pinCPUs || oneCPU) && !rtSet {
		// The handler gives SCHED_FIFO only to a pinned thread: unpinned,
		// the default priority would only be refused with a warning.
		*rtPriority = 0
	}
	rtNote := ""
	if *rtPriority > 0 && !rtSet {
		// The default priority where the kernel refuses it (a cgroup
		// without real-time runtime, a container's seccomp filter) would
		// only be refused with a warning: ask for none.
		if err := handler.RealtimeGranted(*rtPriority); err != nil {
			*rtPriority = 0
			rtNote = fmt.Sprintf("SCHED_FIFO not granted here (%v), so the demo asked for none", err)
			log.Info().Msg("demo: " + rtNote)
		}
	}
	if oneCPU && !spinSet {
		// Spinning on the one CPU the sender needs only delays the
		// packets the thread waits for.
		*spin = 0
	}
	if !spinSet && *rtPriority > 0 && privilege.MayRealtime(*rtPriority) && handler.RTThrottle() != "" {
		// (Refused SCHED_FIFO, the thread runs under normal scheduling,
		// which the throttle does not touch: it keeps its spin.)
		*spin = 0
	}
	o := demo.Options{Backend: "xdp", LossA: *loss, Rate: *rate, ShmName: "demo", Depth: 10, Log: log, Pin: *pinCPUs, Spin: *spin, RingSize: 16384, RTPriority: *rtPriority}
	switch *mode {
	case "run-to-completion":
		o.Mode = handler.ModeRunToCompletion
	case "sharded":
		// Three hot threads on this lab's 2 CPUs: a pinned, spinning
		// receive thread would starve the shard threads, and so would
		// unpinned SCHED_FIFO threads.
		o.Mode, o.Pin, o.Spin, o.RTPriority = handler.ModeSharded, false, 0, 0
	default:
		return fmt.Errorf("demo: --mode %q: want run-to-completion or sharded", *mode)
	}
	if *feed != "" {
		// The demo's recovery servers take its own credentials
		// (internal/demo): the feed's snapshot password is not used.
		cfg, err := config.LoadOffline(*feed)
		if err != nil {
			return err
		}
		log = newLogger(cfg.Log)
		o.Log = log
		demoFromFeed(cfg, &o)
	}
	if *backend != "" {
		o.Backend = *backend
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log.Info().Msgf("generating %d messages over %d instruments (seed %d) ...", *messages, *symbols, *seed)
	t0 := time.Now()
	day, err := demo.GenerateDaySized(*messages, *symbols, *seed, *maxPacket)
	if err != nil {
		return err
	}
	log.Info().Msgf("%d MoldUDP64 packets of at most %d bytes (%.1f messages each) in %v; reference books built by replaying the same messages",
		len(day.Packets), *maxPacket, float64(day.Messages)/float64(len(day.Packets)), time.Since(t0).Round(time.Millisecond))
	log.Info().Msgf("sending on lines A (%.1f%% loss) and B at %.0f packets/s each through a namespace lab; handler backend %q ...",
		100**loss, *rate, o.Backend)
	o.Day = day
	o.Drop = demo.DropOnBoth(day, *dropBoth)
	o.Recovery = &demo.Recovery{Rerequest: true, Snapshot: true}
	if *startAt > 0 {
		o.StartAtSeq = max(1, uint64(float64(day.Messages)**startAt))
	}
	fmt.Printf("  %d packets dropped on both lines; the handler starts after message %d was sent; recovery: lab re-request server and GLIMPSE snapshot server\n",
		len(o.Drop), o.StartAtSeq)
	quietRuntime(log, gcHeadroom)
	logHugePages(log)
	gc0 := gcCycles()
	res, err := demo.Run(ctx, o)
	gcRun := gcCycles() - gc0
	if ctx.Err() != nil {
		log.Info().Msg("interrupted: the lab, the sender and the shared memory were cleaned up")
		return ctx.Err()
	}
	if res != nil {
		printDemo(os.Stdout, day, res, gcRun, o, rtNote)
	}
	if err != nil {
		return err
	}
	if len(res.Mismatches) > 0 {
		return fmt.Errorf("%d published books differ from the replay", len(res.Mismatches))
	}
	if res.Stale > 0 {
		return fmt.Errorf("%d books still flagged possibly stale", res.Stale)
	}
	return nil
}

// demoFromFeed takes into o the keys of a feed config that the demo
// uses: receive.backend, book.depth, the shm file's name, slots, mode and
// group, and the lines' groups and ports (the lab's veth replaces their
// interfaces). The other keys are not used (docs/OPERATIONS.md).
func demoFromFeed(cfg *config.Config, o *demo.Options) {
	o.Backend = cfg.Receive.Backend
	o.Depth = cfg.Book.Depth
	o.ShmName = cfg.SHM.Name
	o.ShmSlots = cfg.SHM.Slots
	o.ShmMode = cfg.SHM.Mode
	o.ShmGroup = cfg.SHM.Group
	if len(cfg.Lines) > 0 {
		o.LineA = netip.AddrPortFrom(cfg.Lines[0].Group, cfg.Lines[0].Port)
	}
	if len(cfg.Lines) > 1 {
		o.LineB = netip.AddrPortFrom(cfg.Lines[1].Group, cfg.Lines[1].Port)
	}
}

// demoMessages is the summary's messages line: sent, delivered in order
// (the arbiter's: from the lines and re-requests, none a snapshot stood
// in for) and applied to the books (those and the snapshots' messages; a
// System Event once per book thread), with what sets the three apart.
func demoMessages(sent uint64, st *handler.Stats) string {
	delivered, applied := st.Arbiter.Delivered, st.Applied()
	rs := st.Recovery
	line := fmt.Sprintf("%d sent, %d delivered in order (from the lines and re-requests", sent, delivered)
	if rs.Snapshots > 0 && delivered < sent {
		line += fmt.Sprintf("; snapshots stood in for the other %d", sent-delivered)
	}
	line += fmt.Sprintf("), %d applied", applied)
	var with []string
	if rs.SnapshotMessages > 0 {
		with = append(with, fmt.Sprintf("the snapshots' %d messages", rs.SnapshotMessages))
	}
	if len(st.Shards) > 1 && applied != delivered+rs.SnapshotMessages {
		with = append(with, "a System Event once per book thread")
	}
	if n := len(with); n > 0 {
		line += " (" + strings.Join(append([]string{"those"}, with[:n-1]...), ", ") + " and " + with[n-1] + ")"
	}
	return line
}

func printDemo(w io.Writer, day *demo.Day, res *demo.Result, gcRun uint64, o demo.Options, rtNote string) {
	st := res.Stats
	fmt.Fprintf(w, "\ntop of the most active books, read back from shared memory (%s):\n", res.Backend)
	for _, t := range res.Top {
		fmt.Fprintf(w, "  %-8s %8d msgs  ", t.Symbol, t.Messages)
		for i := 2; i >= 0; i-- {
			if i < len(t.Bids) {
				fmt.Fprintf(w, "%7d@%-10s", t.Bids[i].Shares, price(t.Bids[i].Price))
			} else {
				fmt.Fprintf(w, "%18s", "")
			}
		}
		fmt.Fprint(w, " | ")
		for i := 0; i < 3 && i < len(t.Asks); i++ {
			fmt.Fprintf(w, "%7d@%-10s", t.Asks[i].Shares, price(t.Asks[i].Price))
		}
		fmt.Fprintln(w)
	}
	a, b := st.Arbiter.Lines[0], st.Arbiter.Lines[1]
	var droppedA uint64
	if len(res.Sender.Lines) > 0 {
		droppedA = res.Sender.Lines[0].Dropped
	}
	var inc uint64
	for _, s := range st.Shards {
		inc += s.Book.Inconsistencies()
	}
	fmt.Fprintf(w, "\nsummary\n")
	fmt.Fprintf(w, "  backend              %s, %s\n", res.Backend, st.Mode)
	fmt.Fprintf(w, "  messages             %s\n", demoMessages(uint64(day.Messages), &st))
	perPkt := float64(day.Messages) / float64(max(1, len(day.Packets)))
	reached := float64(res.Sender.Input) / max(res.Sender.Elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "  sender               %d packets (%.1f messages each) at %.0f packets/s per line asked, %.0f reached (%.0f messages/s); A and B copies in one sendmmsg; deadline pacing: %d writes of 2 to %d packets after a late wakeup, %d schedule slips\n",
		res.Sender.Input, perPkt, o.Rate, reached, reached*perPkt, res.Sender.Bursts, res.Sender.MaxBurst, res.Sender.Slips)
	fmt.Fprintf(w, "  line A               %d packets, %d sequence jumps (sender dropped %d packets), won %d, duplicates %d\n",
		a.Packets, a.LineGaps, droppedA, a.Won, a.Duplicates)
	fmt.Fprintf(w, "  line B               %d packets, %d sequence jumps, won %d, duplicates %d\n", b.Packets, b.LineGaps, b.Won, b.Duplicates)
	rs := st.Recovery
	fmt.Fprintf(w, "  gaps (both lines)    %d detected: %d repaired by re-request, %d by snapshot, %d still open\n",
		rs.GapsDetected, rs.RecoveredByRerequest, rs.RecoveredBySnapshot, rs.Open)
	for _, e := range rs.Events {
		how := "re-request"
		if e.By == "snapshot" {
			how = fmt.Sprintf("snapshot (GLIMPSE at sequence %d)", e.NextSeq)
		}
		what := "late join"
		if e.Range.First > 1 || e.By != "snapshot" {
			what = "gap"
		}
		if e.Asked.Count > 0 && e.Asked != e.Range {
			// Narrowed: asked up to a packet its line contradicted since.
			how += fmt.Sprintf(" (asked %d..%d)", e.Asked.First, e.Asked.End()-1)
		}
		fmt.Fprintf(w, "    %-9s %d..%d (%d messages) repaired by %s in %s\n", what, e.Range.First, e.Range.End()-1, e.Range.Count, how, dur(int64(e.Took)))
	}
	fmt.Fprintf(w, "  re-requests          %d sent, %d retries, %d timeouts, %d bad and %d late answers, %d messages recovered\n",
		rs.Rerequest.Requests, rs.Rerequest.Retries, rs.Rerequest.Timeouts, rs.Rerequest.Bad(), rs.Rerequest.Late+st.Arbiter.RecoveredLate, st.Arbiter.RecoveredMessages)
	fmt.Fprintf(w, "  snapshots            %d loaded (%d messages), %d failed; spill held at most %d packets\n",
		rs.Snapshots, rs.SnapshotMessages, rs.SnapshotFailures, st.Arbiter.HeldMax)
	fmt.Fprintf(w, "  recovery time        p50 %s  p99 %s  (gap detected -> books whole, %d repairs)\n",
		dur(rs.RecoveryTime.Quantile(0.5)), dur(rs.RecoveryTime.Quantile(0.99)), rs.RecoveryTime.Count)
	fmt.Fprintf(w, "  inconsistencies      %d\n", inc)
	rxTime := "kernel receive time, the XDP program's with xdp"
	if strings.Contains(res.Backend, "stamped on reading") || st.Receive.Extra.Get("xdp_user_ts") != 0 {
		// Frames without the steering program's metadata: a kernel that
		// refuses it (the backend says so from the start), or a driver
		// without it (counted, in the receive stats as last refreshed).
		// Their latency starts at the pickup.
		rxTime = "receive time taken on reading where the XDP program could put none in front of the frame"
	}
	fmt.Fprintf(w, "  rx -> shm latency    p50 %s  p99 %s  p99.9 %s  max %s  (%d live messages; %s -> shm publish)\n",
		dur(st.Latency.Quantile(0.5)), dur(st.Latency.Quantile(0.99)), dur(st.Latency.Quantile(0.999)), dur(st.Latency.Max), st.Latency.Count, rxTime)
	fmt.Fprintf(w, "  handler's own path   p50 %s  p99 %s  p99.9 %s  max %s  (receive-thread pickup -> shm publish)\n",
		dur(st.PathLatency.Quantile(0.5)), dur(st.PathLatency.Quantile(0.99)), dur(st.PathLatency.Quantile(0.999)), dur(st.PathLatency.Max))
	if r := &st.RepairedLatency; r.Count > 0 {
		fmt.Fprintf(w, "  repaired messages    p50 %s  p99 %s  max %s  (%d messages that waited for re-request or snapshot: rx -> shm, kept out of the lines above)\n",
			dur(r.Quantile(0.5)), dur(r.Quantile(0.99)), dur(r.Max), r.Count)
	}
	// The demo removes its shm file at exit (demo.Run): a reader started
	// after it finds none, so the line says where one that stays comes from.
	fmt.Fprintf(w, "  shm file             %s: %d slots (%d used), mode %04o, gid %d; removed at exit (`feedhandler replay --shm NAME` keeps one for bookview)\n",
		shm.Path(o.ShmName), st.Shm.Capacity, st.Shm.Used, uint32(res.ShmPerm), res.ShmGid)
	fmt.Fprintf(w, "  the lab              %s\n", labLine(st, o))
	if secs := res.RxSwitchSecs; secs > 0 {
		fmt.Fprintf(w, "  receive thread       %s; %.0f voluntary context switches/s (slept in poll(2) or parked by Go's preemption), %.0f involuntary (its CPU given to another thread) while the sender ran%s\n",
			threadLine(st.ReceiveThread, rtNote), float64(res.RxSwitches[0])/secs, float64(res.RxSwitches[1])/secs, cpuShare(res))
	}
	fmt.Fprintf(w, "  garbage collection   %d cycles during the run (GOGC %s)\n", gcRun, envOr("GOGC", "off, limit: memory from the OS at start + 1 GiB"))
	verdict := "MATCH: every published book equals the replay of the same messages"
	if res.Instruments == 0 {
		verdict = "NOTHING compared: no book was read back"
	} else if len(res.Mismatches) > 0 {
		verdict = fmt.Sprintf("MISMATCH in %d books, e.g. %s", len(res.Mismatches), strings.Join(res.Mismatches[:min(3, len(res.Mismatches))], "; "))
	}
	fmt.Fprintf(w, "  books                %d instruments compared to depth %d, %d flagged possibly stale: %s\n", res.Instruments, res.Depth, res.Stale, verdict)
}

// cpuShare says what the receive thread had of its CPU while the sender
// ran: the share of the time it ran, and the share it was runnable and
// waited behind other threads (the rest it slept); "" without the
// kernel's scheduler times.
func cpuShare(res *demo.Result) string {
	secs := res.RxSwitchSecs
	if res.RxRun <= 0 || secs <= 0 {
		return ""
	}
	return fmt.Sprintf("; it ran %.0f%% of that time and waited runnable %.1f%% (other threads on its CPU)",
		100*res.RxRun.Seconds()/secs, 100*res.RxWait.Seconds()/secs)
}

// labLine says in one line what the lab's CPUs share.
func labLine(st handler.Stats, o demo.Options) string {
	threads := 1
	if st.Mode == handler.ModeSharded {
		threads += len(st.Shards)
	}
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			load = f[0]
		}
	}
	spin := "sleeps in poll(2) between packets"
	if o.Spin == 0 && st.ReceiveThread.Throttle != "" {
		spin += "; spinning, it would lose its CPU to real-time throttling (the receive thread line); with kernel.sched_rt_runtime_us=-1 the demo spins 100µs by default"
	}
	if o.Spin > 0 && strings.HasPrefix(st.Backend, "xdp") {
		spin = fmt.Sprintf("polls its rings for %v before it sleeps", o.Spin)
	}
	n := runtime.NumCPU()
	if sender, receive, ok := demo.PinCPUs(); o.Pin && ok {
		shards := ""
		if threads > 1 {
			shards = fmt.Sprintf(", %d unpinned shard threads", threads-1)
		}
		return fmt.Sprintf("%d CPUs: the sender and the kernel's veth and XDP receive work on CPU %d, the handler's receive thread on CPU %d (%s)%s; every other process of this machine shares them too (load average %s)",
			n, sender, receive, spin, shards, load)
	}
	return fmt.Sprintf("%d CPUs shared, unpinned, by the sender, the kernel's veth and XDP receive work, the handler's %d hot thread(s) (the receive thread %s) and every other process (load average %s): rx -> shm includes waiting for a CPU",
		n, threads, spin, load)
}

// threadLine says how a hot thread is scheduled; rtNote, if set, why the
// demo asked for no SCHED_FIFO.
func threadLine(th handler.ThreadSched, rtNote string) string {
	switch {
	case th.Priority > 0 && th.Throttle != "":
		return fmt.Sprintf("SCHED_FIFO priority %d, with %s", th.Priority, th.Throttle)
	case th.Priority > 0:
		return fmt.Sprintf("SCHED_FIFO priority %d", th.Priority)
	case th.Reason != "":
		return "normal scheduling, SCHED_FIFO refused: " + th.Reason
	case rtNote != "":
		return "normal scheduling (" + rtNote + ")"
	case th.Core < 0:
		return "normal scheduling, unpinned (the demo asks for SCHED_FIFO only for a receive thread pinned to a CPU of its own: run to completion with --pin on two CPUs or more)"
	}
	return "normal scheduling (--rt-priority 0)"
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func dur(ns int64) string { return time.Duration(ns).String() }
