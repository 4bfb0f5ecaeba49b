package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/proto/shm"
)

func init() {
	register(&command{name: "replay", summary: "build order books from a BinaryFILE or MoldUDP64 pcap as fast as possible; report speed, latency, inconsistencies", run: runReplay})
}

func runReplay(args []string) error { return replay(args, os.Stdout, os.Stderr) }

// latencySampleEvery: one message in this many is timed (a power of two).
// Timing every message would add two clock reads per message to the
// throughput figure; one in 64 adds well under 1 ns/msg.
const latencySampleEvery = 64

// defaultSettle is replay's pause between setup and timer (--settle). On
// the shared 2-vCPU VMs of this project's benchmarks, a replay started
// right after another large process (the previous run, or a peer engine
// in compare.sh) ran its loop about 10% slower, and with twice the spread,
// as one started after a pause; 200-300 ms of sleep before the timer
// removed the difference (docs/TUNING.md, "Replay timing").
const defaultSettle = 300 * time.Millisecond

type replayReport struct {
	File          string            `json:"file"`
	Files         []string          `json:"files,omitempty"`          // every INPUT in order, when several (--feed: a capture's files); File is the first
	FilesReplayed []string          `json:"files_replayed,omitempty"` // those of Files replayed, whole or in part: all, or up to the one it stopped in, or those before one it refused as the next (Error says why)
	Format        string            `json:"format"`
	Messages      uint64            `json:"messages"`
	SetupMs       float64           `json:"setup_ms"`   // allocating the books and mapping the input
	SettleMs      float64           `json:"settle_ms"`  // the pause after setup, before the timer (--settle)
	HugePages     string            `json:"huge_pages"` // the kernel's transparent huge page mode, "off: " and why when the books cannot have them (book.HugePages)
	AnonKB        int64             `json:"anon_kb"`    // the process's anonymous memory after setup (the books, mostly), from /proc/self/smaps_rollup (-1: unknown)
	HugeKB        int64             `json:"huge_kb"`    // how much of it transparent huge pages back (-1: unknown)
	WallMs        float64           `json:"wall_ms"`    // reading, parsing and applying every message
	NsPerMsg      float64           `json:"ns_per_msg"`
	CPUMs         float64           `json:"cpu_ms"`                    // user+system CPU of the process during the loop
	CPUNsPerMsg   float64           `json:"cpu_ns_per_msg"`            // the figure to trust on a busy machine
	LoopFaults    int64             `json:"loop_page_faults"`          // minor+major page faults of the loop's thread during the loop
	LoopPreempted int64             `json:"loop_involuntary_switches"` // times the loop's thread lost its CPU to another thread
	ThreadsMoved  int               `json:"loop_threads_moved"`        // the process's other threads moved off a pinned loop's CPU (isolateLoop)
	MsgsPerSec    float64           `json:"msgs_per_sec"`
	Latency       latencyReport     `json:"apply_latency"`
	Instruments   int               `json:"instruments"` // announced
	WithOrders    int               `json:"instruments_with_orders"`
	Orders        uint64            `json:"orders"`                  // live at the end
	Levels        uint64            `json:"levels"`                  // live at the end
	Overflowed    uint64            `json:"overflow_orders"`         // live orders outside their home slot
	Inconsistent  uint64            `json:"inconsistencies"`         // sum of the counters below
	Counters      map[string]uint64 `json:"counters"`                // book inconsistency counters by kind
	BrokenUnmatch uint64            `json:"broken_trades_unmatched"` // B naming no remembered trade (not an inconsistency)
	InputUnknown  uint64            `json:"input_unknown_types"`
	InputShort    uint64            `json:"input_short_messages"`
	InputGaps     uint64            `json:"input_gaps,omitempty"`
	InputMissing  uint64            `json:"input_missing_messages,omitempty"`
	// A capture's frames that are not whole IPv4/UDP datagrams, and UDP
	// datagrams that are not MoldUDP64 packets: their messages, if any,
	// were not applied.
	InputFramesSkipped uint64            `json:"input_frames_skipped,omitempty"`
	InputSkippedBy     map[string]uint64 `json:"input_frames_skipped_by_reason,omitempty"` // pcap.Reason's names: truncated (a snaplen too short), not IPv4, IPv4 fragment incomplete, IPv4 fragment overlap, IPv4 fragment over limit, IPv4 fragment too far, bad checksum, ...
	// IPv4 fragments reassembled as the kernel does for the socket
	// backends (pcap.Stats.Reassembled, Fragments): the datagrams, and
	// the frames they took.
	InputReassembled uint64 `json:"input_datagrams_reassembled,omitempty"`
	InputFragments   uint64 `json:"input_fragments_reassembled,omitempty"`
	InputBadPackets  uint64 `json:"input_bad_packets,omitempty"`
	InputGzipPadding uint64 `json:"input_gzip_padding,omitempty"` // zero bytes after a gzipped input's last member, ignored as gzip -d does
	inputSkipped     string // the same, for the text report
	// With --feed: the capture's lines arbitrated as the handler did.
	Arbitrated    *arbitratedReport `json:"arbitrated,omitempty"`
	CapacityError string            `json:"capacity_error,omitempty"`
	Error         string            `json:"error,omitempty"` // why the input stopped early (the report covers what was applied until then)
}

type latencyReport struct {
	Method          string  `json:"method"`
	Samples         uint64  `json:"samples"`
	P50             float64 `json:"p50_ns"`
	P99             float64 `json:"p99_ns"`
	P999            float64 `json:"p99_9_ns"`
	Max             float64 `json:"max_ns"`
	TimerOverheadNs float64 `json:"timer_overhead_ns"` // median cost of the two clock reads alone, included in the figures
}

func replay(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	booksOut := fs.String("books-out", "", "write the final books as JSON to this file")
	depth := fs.Int("depth", 0, "levels per side in --books-out (0: all)")
	cfg := book.DefaultConfig()
	fs.IntVar(&cfg.MaxOrders, "max-orders", cfg.MaxOrders, "live order capacity")
	fs.IntVar(&cfg.MaxLevels, "max-levels", cfg.MaxLevels, "live price level capacity")
	fs.IntVar(&cfg.Overflow, "overflow", 0, "order slots for orders whose home slot is taken (0: max-orders/4)")
	quiet := fs.Bool("quiet", false, "no progress line on stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the replay loop to this file")
	settle := fs.Duration("settle", defaultSettle, "pause this long after setup, before the timer starts: the loop then runs on a machine that has finished with whatever ran before it (see docs/TUNING.md); 0 for none")
	shmName := fs.String("shm", "", "publish the books into shared memory under this `NAME` while replaying (read them with bookview or the proto/shm reader)")
	shmDepth := fs.Int("shm-depth", 10, "levels per side published with --shm")
	feedPath := fs.String("feed", "", "arbitrate a capture (capture.path) of the feed this `FILE` configures as its handler did: its lines, arbitration timers, session and symbols, clocked by the capture's timestamps, and its book capacities")
	shmSlots := fs.Int("shm-slots", config.DefaultSHMSlots, fmt.Sprintf("instrument slots in the --shm file, 1..%d (the feed config's shm.slots; a Nasdaq day lists about 9k instruments)", config.MaxSHMSlots))
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: feedhandler replay [--json] [--quiet] [--books-out FILE] [--depth N] [--shm NAME [--shm-depth N] [--shm-slots N]] [--feed FILE] [--max-orders N] [--max-levels N] [--overflow N] [--settle D] [--cpuprofile FILE] INPUT [INPUT...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 && (fs.NArg() == 0 || *feedPath == "") {
		fs.Usage()
		return errors.New("replay: want exactly one INPUT file (several only with --feed: a capture's files in order)")
	}
	if *depth < 0 {
		return fmt.Errorf("replay: --depth %d is negative", *depth)
	}
	if *settle < 0 {
		return fmt.Errorf("replay: --settle %v is negative", *settle)
	}
	if *shmSlots < 1 || *shmSlots > config.MaxSHMSlots {
		return fmt.Errorf("replay: --shm-slots %d is out of range (1..%d)", *shmSlots, config.MaxSHMSlots)
	}
	path := fs.Arg(0)
	var fc *config.Config
	if *feedPath != "" {
		var err error
		if fc, err = replayFeed(fs, *feedPath); err != nil {
			return err
		}
		cfg = fc.BookConfig()
	}

	t0 := time.Now()
	bs, err := book.New(cfg)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	r, err := input.OpenOptions(path, inputOptions(fc))
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer r.Close()
	// input.OpenOptions takes an empty file for a BinaryFILE of no message: a
	// capture that recorded nothing, a download that failed. Replaying it
	// would report a run of 0 messages as a success.
	// Asked of the reader, not of the file's size: a FIFO (a day piped
	// in) has size 0 whatever it will bring.
	if r.Empty() {
		return fmt.Errorf("replay: %s is empty (0 bytes): nothing to replay", path)
	}

	overhead := timerOverhead()
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("replay: create cpu profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("replay: start cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	rp := replayer{bs: bs, quiet: *quiet, stderr: stderr}
	if *shmName != "" {
		w, err := shm.Create(shm.Config{Name: *shmName, Instruments: *shmSlots, Depth: *shmDepth, SingleWriter: true})
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		defer w.Close() // marks the feed closed; the books stay readable
		rp.w, rp.pub = w, handler.NewPublisher(w, bs, *shmDepth)
	}
	var arb *arbitrated
	if fc != nil {
		if arb, err = newArbitrated(fc, path, r, &rp); err != nil {
			return err
		}
		if arb.more = fs.Args()[1:]; len(arb.more) > 0 {
			if err := arb.readMoreAnswers(); err != nil {
				return err
			}
		}
	}
	var scan *itch.Scanner
	var data []byte
	if r.Format() == input.FormatBinaryFile && !r.Stats().Gzip && rp.pub == nil && regularFile(path) {
		// A BinaryFILE is mapped and scanned in place: no copy, no reader.
		// A gzipped one is read through r, which inflates it; so is one
		// piped in (a FIFO, /dev/stdin), whose size says nothing and
		// whose first MiB r has taken already.
		mapped, unmap, err := mapFile(path)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		data = mapped
		defer unmap()
		scan = new(itch.Scanner)
		scan.Reset(data)
	}
	// Collect once now and not during the loop, as the run command does:
	// the books' arrays are allocated in a few large steps, and a
	// collection they trigger would otherwise still be marking (on the
	// same pinned CPU) when the loop starts. The loop allocates nothing.
	// quietGC restores the settings when the replay ends.
	_, restoreGC := quietGC(gcHeadroom)
	defer restoreGC()
	setup := time.Since(t0)
	anonKB, hugeKB := anonMemory()
	time.Sleep(*settle)
	// The loop runs on this thread alone, so its faults and preemptions
	// can be counted per thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	moved, unisolate := isolateLoop()
	defer unisolate()
	ru0 := rusage()
	cpu0 := cpuTime()
	rp.start = time.Now()
	rp.lastProgress = rp.start
	// An input that ends badly (cut mid-record, a gzip stream cut short,
	// a block that overruns the file) stops the loop with an error; the
	// report of what was applied up to there is still printed, then the
	// error returned.
	loopErr := rp.runGuarded(arb, r, data, scan)
	wall := time.Since(rp.start)
	cpu := cpuTime() - cpu0
	ru1 := rusage()
	n, hist := rp.n, &rp.hist

	st := bs.Stats()
	rep := replayReport{
		File: path, Format: r.Format().String(), Messages: n,
		SetupMs: float64(setup.Microseconds()) / 1e3, WallMs: float64(wall.Microseconds()) / 1e3,
		SettleMs: float64(settle.Microseconds()) / 1e3, HugePages: hugePagesReport(), AnonKB: anonKB, HugeKB: hugeKB,
		Orders: st.Orders, Levels: st.Levels, Overflowed: st.Overflowed,
		Inconsistent: st.Inconsistencies(), Counters: counters(st), BrokenUnmatch: st.BrokenUnmatched,
	}
	if n > 0 {
		rep.NsPerMsg = float64(wall.Nanoseconds()) / float64(n)
		rep.MsgsPerSec = float64(n) / wall.Seconds()
		rep.CPUNsPerMsg = float64(cpu.Nanoseconds()) / float64(n)
	}
	rep.CPUMs = float64(cpu.Microseconds()) / 1e3
	// Rusage's fields are int32 on 386: convert before the sums.
	rep.LoopFaults = (int64(ru1.Minflt) + int64(ru1.Majflt)) - (int64(ru0.Minflt) + int64(ru0.Majflt))
	rep.LoopPreempted = int64(ru1.Nivcsw) - int64(ru0.Nivcsw)
	rep.ThreadsMoved = moved
	rep.Latency = latencyReport{
		Method:  fmt.Sprintf("every %dth message timed with two monotonic clock reads around Apply (parse of the message body and book update; not file reading)", latencySampleEvery),
		Samples: hist.n, P50: hist.quantile(0.5), P99: hist.quantile(0.99), P999: hist.quantile(0.999),
		Max: float64(hist.max), TimerOverheadNs: overhead,
	}
	for b := range bs.All() {
		rep.Instruments++
		if b.Orders() > 0 {
			rep.WithOrders++
		}
	}
	rep.InputGzipPadding = r.Stats().GzipPadding
	switch {
	case arb != nil:
		rep.InputGzipPadding = arb.gzipPadding + arb.in.Stats().GzipPadding
		rep.Arbitrated = arb.report()
		rep.InputShort = arb.r.BadMessages()
		rep.InputGaps, rep.InputMissing = arb.r.Stats().Gaps, arb.r.Stats().GapMessages
	case scan != nil:
		rep.InputUnknown, rep.InputShort = scan.Unknown, scan.Short
	default:
		ist := r.Stats()
		rep.InputUnknown, rep.InputShort = ist.Codec.Unknown, ist.Codec.Short
		rep.InputGaps, rep.InputMissing = ist.Gaps()
		rep.InputFramesSkipped, rep.InputBadPackets = ist.Frames.Malformed(), ist.Malformed
		rep.InputSkippedBy, rep.inputSkipped = skippedBy(ist.Frames), ist.Frames.SkippedSummary()
		rep.InputReassembled, rep.InputFragments = ist.Frames.Reassembled, ist.Frames.Fragments
		if loopErr == nil && ist.Frames.Frames > 0 && ist.Frames.Datagrams == 0 {
			// Not a datagram in the capture: a snaplen that cut every
			// frame, a link type not decoded, another protocol. A
			// report of 0 messages would pass for a quiet feed.
			hint := ""
			if ist.Frames.Skipped[pcap.BadChecksum] == ist.Frames.Frames {
				hint = "; a capture taken on the sending host, whose NIC fills the checksums in after it, has them all fail"
			}
			loopErr = fmt.Errorf("no IPv4/UDP datagram in the capture's %d frames (skipped: %s%s)", ist.Frames.Frames, rep.inputSkipped, hint)
		}
	}
	if err := bs.Err(); err != nil {
		rep.CapacityError = err.Error()
	}
	if fs.NArg() > 1 {
		rep.Files = fs.Args()
		rep.FilesReplayed = rep.Files[:arb.replayed]
	}
	if loopErr != nil {
		at := path
		if arb != nil {
			at = arb.path // the file it stopped in
		}
		loopErr = fmt.Errorf("replay %s after %d messages: %w", at, rp.n, loopErr)
		rep.Error = loopErr.Error()
	}

	if *booksOut != "" {
		f, err := os.Create(*booksOut)
		if err != nil {
			return fmt.Errorf("replay: create books output: %w", err)
		}
		if err := bs.WriteJSON(f, *depth); err != nil {
			f.Close()
			return fmt.Errorf("replay: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("replay: close books output: %w", err)
		}
	}

	if a := rep.Arbitrated; a != nil && a.Unmatched != nil && !*asJSON {
		fmt.Fprintf(stderr, "replay: --feed %s: %s\n", a.Feed, a.Unmatched.Why)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
		return loopErr
	}
	if len(rep.Files) > 1 {
		notReplayed := ""
		if n := len(rep.FilesReplayed); n < len(rep.Files) {
			notReplayed = "; not replayed: " + strings.Join(rep.Files[n:], ", ")
		}
		fmt.Fprintf(stdout, "files         %s (%s), replayed as one capture%s\n", strings.Join(rep.FilesReplayed, ", "), rep.Format, notReplayed)
	} else {
		fmt.Fprintf(stdout, "file          %s (%s)\n", rep.File, rep.Format)
	}
	fmt.Fprintf(stdout, "messages      %d in %.3f s: %.1f ns/msg, %.2f M msg/s (setup %.1f ms, then %.0f ms settle)\n",
		rep.Messages, rep.WallMs/1e3, rep.NsPerMsg, rep.MsgsPerSec/1e6, rep.SetupMs, rep.SettleMs)
	fmt.Fprintf(stdout, "cpu           %.3f s: %.1f ns/msg (user+system, whole process); in the loop %d page faults, %d preemptions (%d other threads moved off its CPU)\n",
		rep.CPUMs/1e3, rep.CPUNsPerMsg, rep.LoopFaults, rep.LoopPreempted, rep.ThreadsMoved)
	fmt.Fprintf(stdout, "huge pages    %s, %d of %d MiB anonymous memory in huge pages (transparent huge pages for the books' tables; without them every order lookup may miss the TLB)\n",
		rep.HugePages, rep.HugeKB>>10, rep.AnonKB>>10)
	fmt.Fprintf(stdout, "apply latency p50 %.0f ns, p99 %.0f ns, p99.9 %.0f ns, max %.0f ns (%d samples, 1 in %d; timer overhead %.0f ns included)\n",
		rep.Latency.P50, rep.Latency.P99, rep.Latency.P999, rep.Latency.Max, rep.Latency.Samples, latencySampleEvery, overhead)
	fmt.Fprintf(stdout, "books         %d instruments, %d with orders, %d orders, %d levels (%d orders in overflow slots)\n",
		rep.Instruments, rep.WithOrders, rep.Orders, rep.Levels, rep.Overflowed)
	fmt.Fprintf(stdout, "inconsistent  %d", rep.Inconsistent)
	for _, k := range counterNames {
		if v := rep.Counters[k]; v != 0 {
			fmt.Fprintf(stdout, " %s=%d", k, v)
		}
	}
	fmt.Fprintf(stdout, "\ninput         %d unknown types, %d short messages, %d gaps (%d missing)",
		rep.InputUnknown, rep.InputShort, rep.InputGaps, rep.InputMissing)
	if rep.InputFramesSkipped+rep.InputBadPackets > 0 {
		fmt.Fprintf(stdout, "; %d frames skipped (%s), %d datagrams not MoldUDP64", rep.InputFramesSkipped, rep.inputSkipped, rep.InputBadPackets)
	}
	if rep.InputReassembled > 0 {
		fmt.Fprintf(stdout, "; %d datagrams reassembled from %d IPv4 fragments", rep.InputReassembled, rep.InputFragments)
	}
	if rep.InputGzipPadding > 0 {
		fmt.Fprintf(stdout, "; %d zero bytes after the gzip stream ignored", rep.InputGzipPadding)
	}
	fmt.Fprintln(stdout)
	if a := rep.Arbitrated; a != nil {
		polls := "the capture's batch marks"
		if n := a.Datagrams[0] + a.Datagrams[1]; a.Marked != n {
			polls = fmt.Sprintf("batch marks for %d of %d, the rest modelled (datagrams %v apart)", a.Marked, n, handler.ReplayPollGap)
		}
		if a.Failed != 0 {
			polls += fmt.Sprintf(", %d runs of failed receive calls", a.Failed)
		}
		if a.CaptureLost != 0 {
			polls += fmt.Sprintf("; the capture left out %d datagrams (its ring full, a failed write): a gap there may be the capture's, not the feed's", a.CaptureLost)
		}
		skipped := ""
		if a.skipped != "" {
			skipped = ": " + a.skipped
		}
		if a.Reassembled != 0 {
			skipped += fmt.Sprintf("; %d datagrams reassembled from %d IPv4 fragments", a.Reassembled, a.Fragments)
		}
		fmt.Fprintf(stdout, "arbitrated    as %s: datagrams A %d, B %d, other %d (%d frames skipped%s); %d messages delivered, %d filtered out; %d session changes (books emptied); empty polls by %s\n",
			a.Feed, a.Datagrams[0], a.Datagrams[1], a.Other, a.Skipped, skipped, a.Delivered, a.Filtered, a.Resets, polls)
		if lr := a.LiveRecovery; lr.Answers+lr.Snapshots != 0 {
			snaps := ""
			if lr.Snapshots != 0 {
				snaps = fmt.Sprintf("; it loaded %d snapshots (%d messages)", lr.Snapshots, lr.SnapshotMessages)
			}
			if lr.SnapshotsReplayed != 0 {
				snaps += fmt.Sprintf(", %d replayed from the capture (the books rebuilt where it rebuilt them)", lr.SnapshotsReplayed)
			}
			if n := lr.Snapshots - lr.SnapshotsReplayed; n != 0 {
				snaps += fmt.Sprintf(", %d of which the capture does not hold (a capture of an older handler, their messages left out, or a file that starts inside one): the books replayed miss what they repaired, a gap here", n)
			}
			fmt.Fprintf(stdout, "live recovery the handler received %d re-request answers (%d messages), replayed where it received them, and gave up %d re-requests there%s\n",
				lr.Answers, lr.AnswerMessages, lr.GaveUp, snaps)
		}
		if a.CaptureStart == captureContinued {
			lack := "the books replayed lack what they held (every order added before it, a snapshot begun there, what the handler held there behind a range it re-requested) and its start is a gap"
			if a.LiveRecovery.SnapshotsReplayed+a.Resets != 0 {
				// Rebuilt whole from a snapshot it holds, or emptied for a
				// new session: from there on the books are the handler's.
				lack = "until the books were rebuilt from a snapshot it holds or emptied at a session change (above) they lacked what those files held (every order added before it), and its start is a gap"
			}
			fmt.Fprintf(stdout, "capture start %s is the capture's file %d, not its first: the %d files before it (the one just before named %s) were not given: %s; give the capture's files from its first, in order\n",
				rep.File, a.FilesBefore+1, a.FilesBefore, a.PreviousFile, lack)
		}
		if a.CaptureEnd == captureCut {
			fmt.Fprintln(stdout, "capture cut   the capture does not end as the handler ends one (killed or crashed, the file still written, or full): what the handler received after its last frame is not in it, and the books replayed are those of that frame")
		}
	}
	if rep.CapacityError != "" {
		fmt.Fprintf(stdout, "capacity      %s\n", rep.CapacityError)
	}
	if rep.Error != "" {
		fmt.Fprintf(stdout, "stopped       %s\n", rep.Error)
	}
	return loopErr
}

// runGuarded is run, with --shm on a goroutine that turns faults into
// panics (set once) and one recover around the whole loop: the --shm file
// truncated under the writer (an operator's `truncate -s 0`) made the next
// publish or heartbeat fault with SIGBUS, and the process died ("unexpected
// fault address", exit 2). shm.Writer.Fault turns the fault into an error
// wrapping shm.ErrTruncated and closes the writer (Close then stores
// nothing); the replay stops there, reports what it applied, and exits 74
// (shmLostError), as run does. Nothing is added per message.
func (rp *replayer) runGuarded(arb *arbitrated, r *input.Reader, data []byte, scan *itch.Scanner) (err error) {
	if rp.w == nil {
		return rp.run(arb, r, data, scan)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		ferr := rp.w.Fault(p)
		if ferr == nil {
			panic(p)
		}
		err = shmLostError{ferr}
	}()
	return rp.run(arb, r, data, scan)
}

// run is replay's loop over the input: arbitrated (--feed), a mapped
// BinaryFILE, or the input reader.
func (rp *replayer) run(arb *arbitrated, r *input.Reader, data []byte, scan *itch.Scanner) error {
	switch {
	case arb != nil:
		return arb.run()
	case scan != nil:
		return rp.applyFile(data, scan)
	}
	if rp.pub != nil {
		defer func() {
			rp.pub.Flush()
			rp.w.Heartbeat()
		}()
	}
	for {
		m, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if rp.pub != nil {
			rp.applyPublish(m)
			continue
		}
		rp.apply(m)
	}
}

// skippedBy is a capture's skipped frames by reason (nil when none).
func skippedBy(st pcap.Stats) map[string]uint64 {
	var m map[string]uint64
	for why := pcap.Reason(1); why < pcap.NumReasons; why++ {
		if n := st.Skipped[why]; n > 0 {
			if m == nil {
				m = make(map[string]uint64)
			}
			m[why.String()] = n
		}
	}
	return m
}

var counterNames = []string{"malformed", "unknown_type", "unknown_locate", "locate_capacity", "locate_reassigned",
	"duplicate_add", "unknown_ref_execute", "unknown_ref_cancel", "unknown_ref_delete", "unknown_ref_replace",
	"over_execution", "over_cancel", "bad_side", "zero_shares", "order_capacity", "level_capacity", "ladder_mismatch", "long",
	"duplicate_match", "bad_state"}

func counters(s book.Stats) map[string]uint64 {
	v := []uint64{s.Malformed, s.UnknownType, s.UnknownLocate, s.LocateCapacity, s.LocateReassigned,
		s.DuplicateAdd, s.UnknownRefExecute, s.UnknownRefCancel, s.UnknownRefDelete, s.UnknownRefReplace,
		s.OverExecution, s.OverCancel, s.BadSide, s.ZeroShares, s.OrderCapacity, s.LevelCapacity, s.LadderMismatch, s.Long,
		s.DuplicateMatch, s.BadState}
	m := make(map[string]uint64, len(v))
	for i, k := range counterNames {
		m[k] = v[i]
	}
	return m
}

// replayer applies messages, timing one in latencySampleEvery.
type replayer struct {
	bs           *book.Books
	w            *shm.Writer        // with --shm
	pub          *handler.Publisher // with --shm
	lastBeat     time.Time
	hist         latencyHist
	n            uint64
	start        time.Time
	lastProgress time.Time
	quiet        bool
	stderr       io.Writer
}

func (rp *replayer) apply(m itch.Msg) {
	rp.n++
	if rp.n%latencySampleEvery != 0 {
		rp.bs.Apply(m)
		return
	}
	rp.sample(m, rp.n)
}

// applyFile applies every message of a BinaryFILE in data. A block holding
// a known type of exactly its length is framed here, without a call per
// message; any other block (an unknown type, a short or long message, a
// truncated end) goes through scan, which counts it, skips what can be
// skipped and returns the error that stops the replay. The messages applied
// and the counts are those of scanning data with scan alone.
//
// A second cursor runs up to book.PrefetchAhead blocks ahead and hands them
// to Books.PrefetchBlocks, prefetchGroup at a time, so the order slots a
// delete, execute, cancel or replace reads, and the books, are in cache
// when Apply gets to them. It only hints: a block it frames wrongly (it checks only that the
// block fits in data) costs a wasted load.
func (rp *replayer) applyFile(data []byte, scan *itch.Scanner) error {
	bs, p, end := rp.bs, unsafe.Pointer(unsafe.SliceData(data)), len(data) // reads through p are checked against end by hand
	off := 0
	for {
		pf, count := off+bs.PrefetchBlocks(data[off:], book.PrefetchAhead), rp.n // the count stays in a register in the loop
		for off+itch.BlockHeaderLen < end {
			n := int(*(*byte)(unsafe.Add(p, off)))<<8 | int(*(*byte)(unsafe.Add(p, off+1)))
			start := off + itch.BlockHeaderLen
			m := itch.Msg(unsafe.Slice((*byte)(unsafe.Add(p, start)), end-start)) // start < end; no further (checkptr, -race, refuses a slice past the data)
			if n < itch.HeaderLen || n > len(m) || n != itch.Length(m[0]) {
				break
			}
			off, m = start+n, m[:n] // m[:n]: no bounds check, n fits
			// rp.apply, by hand: it does not inline here. Apply comes
			// straight after the framing, with no call or store in
			// between, so that the inlined Apply shares the framing's
			// loads of the type and its length and drops its own length
			// test. (The Apply call keeps its line in the function:
			// default.pgo finds it there.) Then, every prefetchGroup
			// messages, the next prefetchGroup blocks at the second
			// cursor (see below).
			count++
			if count%latencySampleEvery != 0 {
				bs.Apply(m)
			} else {
				rp.sample(m, count)
			}
			// One call for the group, since a call costs the loop its
			// registers. A short return (a block past end) leaves pf <= end.
			if count%prefetchGroup == 0 {
				pf += bs.PrefetchBlocks(unsafe.Slice((*byte)(unsafe.Add(p, pf)), end-pf), prefetchGroup)
			}
		}
		rp.n = count
		if off == len(data) {
			return nil
		}
		rest := data[off:]
		scan.ResetAt(rest, int64(off))
		if m, ok := scan.Next(); ok {
			rp.apply(m)
		} else if scan.Err() == nil { // only skipped blocks were left
			return nil
		} else if !scan.Resume() { // a short message is counted and skipped
			return scan.Err()
		}
		off = len(data) - len(scan.Rest())
	}
}

// prefetchGroup is how many blocks applyFile prefetches at once: one
// Books.PrefetchBlocks call every prefetchGroup messages keeps the second
// cursor between PrefetchAhead-prefetchGroup and PrefetchAhead messages
// ahead.
const prefetchGroup = 8

// publishEvery is how many messages --shm applies between publishes:
// the books changed in between are published once each, in their latest
// state (conflated), as the pipeline's shards do per batch.
const publishEvery = 256

// applyPublish applies m and, every publishEvery messages, publishes the
// books that changed.
func (rp *replayer) applyPublish(m itch.Msg) {
	rp.n++
	loc, changed := rp.bs.Apply(m)
	rp.pub.Applied(loc, changed, rp.n, 0)
	if rp.n%publishEvery == 0 {
		rp.pub.Flush()
		if now := time.Now(); now.Sub(rp.lastBeat) > 50*time.Millisecond {
			rp.lastBeat = now
			rp.w.Heartbeat()
			if !rp.quiet {
				rp.progress()
			}
		}
	}
}

// sample applies m timed; kept out of apply so that apply inlines.
func (rp *replayer) sample(m itch.Msg, count uint64) {
	rp.n = count
	a := nanotime()
	rp.bs.Apply(m)
	rp.hist.add(uint64(nanotime() - a))
	if rp.n%(1<<20) == 0 && !rp.quiet {
		rp.progress()
	}
}

func (rp *replayer) progress() {
	now := time.Now()
	if now.Sub(rp.lastProgress) < 2*time.Second {
		return
	}
	rp.lastProgress = now
	el := now.Sub(rp.start)
	fmt.Fprintf(rp.stderr, "replay: %d messages in %.1fs (%.2f M msg/s, %.1f ns/msg), %d live orders\n",
		rp.n, el.Seconds(), float64(rp.n)/el.Seconds()/1e6, float64(el.Nanoseconds())/float64(rp.n), rp.bs.Stats().Orders)
}

// loadLimit: BinaryFILEs up to this size are read into memory before the
// timed loop; larger ones are mapped and fault in as they are scanned.
const loadLimit = 8 << 30

// mapFile returns the contents of the file at path. A file up to loadLimit
// is read into anonymous memory that the kernel is asked to back with
// transparent huge pages: a mapping of the page cache has 4 KiB pages, and
// the CPU's stream prefetchers stop at every page boundary, so the scan
// missed on the first message of each page. A larger file is mapped
// read-only.
func mapFile(path string) (data []byte, unmap func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("map input: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("map input: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("map input: %s is not a regular file", path)
	}
	size := fi.Size()
	if size == 0 {
		return nil, func() {}, nil
	}
	if size > loadLimit {
		data, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return nil, nil, fmt.Errorf("map input %s: %w", path, err)
		}
		_ = unix.Madvise(data, unix.MADV_SEQUENTIAL)
		return data, func() { _ = unix.Munmap(data) }, nil
	}
	data, err = unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, fmt.Errorf("map input %s: memory for %d bytes: %w", path, size, err)
	}
	_ = unix.Madvise(data, unix.MADV_HUGEPAGE) // best effort: THP may be off
	if _, err := io.ReadFull(f, data); err != nil {
		_ = unix.Munmap(data)
		return nil, nil, fmt.Errorf("read input %s: %w", path, err)
	}
	return data, func() { _ = unix.Munmap(data) }, nil
}

// regularFile reports whether path names a regular file (symbolic links
// followed), one mapFile can read by its size.
func regularFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// rusage returns the calling thread's resource usage (zero on error).
func rusage() (ru unix.Rusage) {
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return ru
}

// cpuTime returns the user+system CPU time of the process.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var clockBase = time.Now()

// nanotime reads the monotonic clock.
func nanotime() int64 { return int64(time.Since(clockBase)) }

// timerOverhead returns the median cost of an empty timed region.
func timerOverhead() float64 {
	var h latencyHist
	for range 20000 {
		a := nanotime()
		h.add(uint64(nanotime() - a))
	}
	return h.quantile(0.5)
}

// latencyHist is a log-linear histogram: exact below 1024 ns, then 64
// buckets per power of two (under 1.6% error).
type latencyHist struct {
	buckets [1024 + 64*54]uint64
	n, max  uint64
}

func (h *latencyHist) add(ns uint64) {
	h.n++
	h.max = max(h.max, ns)
	h.buckets[bucketOf(ns)]++
}

func bucketOf(ns uint64) int {
	if ns < 1024 {
		return int(ns)
	}
	e := bits.Len64(ns) - 11 // ns in [1024<<e, 2048<<e)
	return 1024 + e*64 + int((ns>>(e+4))&63)
}

// bucketValue is the lower bound of bucket i.
func bucketValue(i int) float64 {
	if i < 1024 {
		return float64(i)
	}
	e := (i - 1024) / 64
	sub := (i - 1024) % 64
	return float64((uint64(1024) << e) + uint64(sub)<<(e+4))
}

func (h *latencyHist) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var c uint64
	for i, v := range h.buckets {
		c += v
		if c >= rank {
			return bucketValue(i)
		}
	}
	return float64(h.max)
}

// anonMemory returns the process's anonymous memory and how much of it
// transparent huge pages back, in KiB (-1 each when unknown): the kernel
// may back a madvised table with small pages when it finds no free huge
// page, and a replay that runs slower then says why.
func anonMemory() (anonKB, hugeKB int64) {
	anonKB, hugeKB = -1, -1
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Anonymous:":
			anonKB = v
		case "AnonHugePages:":
			hugeKB = v
		}
	}
	return
}

// hugePagesReport is book.HugePages for replay's report.
func hugePagesReport() string {
	ok, mode := book.HugePages()
	if !ok {
		return "off: " + mode
	}
	return mode
}
