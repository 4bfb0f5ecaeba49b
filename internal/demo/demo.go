// Package demo runs the whole feed handler end to end inside a namespace lab:
// it generates a trading day, sends it as MoldUDP64 multicast on lines A and
// B (with faults injected as asked), runs the pipeline on the receiving side,
// then reads every published book back through the shared-memory reader
// library and compares it with books built off-line from the same messages.
//
// `feedhandler demo` and the end-to-end tests both use it.
package demo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/leftover"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/proto/bookfb"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// Day is a generated day as MoldUDP64 packets plus the books it leaves.
type Day struct {
	Session  moldudp64.Session
	Packets  [][]byte // data packets then end-of-session packets
	Messages uint64
	Symbols  []itch.Symbol
	Books    *book.Books // reference books after every message
}

// GenerateDay builds a day of n messages over symbols instruments, packed
// into MoldUDP64 packets of at most 1400 bytes.
func GenerateDay(n, symbols int, seed uint64) (*Day, error) {
	return GenerateDaySized(n, symbols, seed, 0)
}

// GenerateDaySized is GenerateDay with packets of at most maxPacket bytes
// (0: 1400): smaller packets carry fewer messages, as a real feed's do
// outside bursts.
func GenerateDaySized(n, symbols int, seed uint64, maxPacket int) (*Day, error) {
	g, err := itchgen.New(itchgen.Config{Messages: n, Symbols: symbols, Seed: seed})
	if err != nil {
		return nil, err
	}
	bs, err := book.New(smallBooks())
	if err != nil {
		return nil, err
	}
	d := &Day{Session: moldudp64.NewSession(g.Config().Session), Books: bs}
	b := moldudp64.NewBuilder(d.Session, 1, maxPacket)
	flush := func() {
		if p := b.Flush(); p != nil {
			d.Packets = append(d.Packets, append([]byte(nil), p...))
		}
	}
	err = g.Stream(func(m itch.Msg) error {
		bs.Apply(m)
		d.Messages++
		if err := b.Add(m); errors.Is(err, moldudp64.ErrFull) {
			flush()
			return b.Add(m)
		} else {
			return err
		}
	})
	if err != nil {
		return nil, fmt.Errorf("generate day: %w", err)
	}
	flush()
	for i := 0; i < 3; i++ {
		d.Packets = append(d.Packets, append([]byte(nil), b.EndOfSession()...))
	}
	d.Symbols = g.Symbols()
	return d, nil
}

func smallBooks() book.Config {
	return book.Config{MaxOrders: 1 << 20, MaxLocates: 65535, MaxLevels: 1 << 18}
}

// Options shape a run. Zero values pick the defaults shown.
type Options struct {
	Day      *Day
	Backend  string  // rx backend (default auto)
	Rate     float64 // input packets per second (default 30000); each goes to both lines
	LossA    float64 // line A fault injection
	DupA     float64
	ReorderA float64
	LossB    float64
	DupB     float64
	ReorderB float64
	// LagB delays line B by this many input packets (exchange.Line.Lag).
	LagB int
	// Extra are datagrams that are not the day's, sent on both lines
	// (with their faults) right before the day's packet of their index:
	// a truncated or corrupt copy, a stray session's packet. The
	// recovery servers do not know them.
	Extra map[int][][]byte
	// ExtraA are such datagrams sent on line A alone.
	ExtraA map[int][][]byte
	// SendSeed seeds the sender's fault injection (0: 7).
	SendSeed int64
	// Drop removes these input packets (by index) from both lines: a gap
	// no line can fill.
	Drop    map[int]bool
	ShmName string        // default "fhdemo"
	Depth   int           // default 10
	Timeout time.Duration // for the whole run after sending (default 60s)
	Log     zerolog.Logger
	// Reference, if set, returns the books to compare the published ones
	// with, once the handler is done (res has its Stats and Sender),
	// instead of Day.Books.
	Reference func(res *Result) *book.Books
	// Lines A and B (default GroupA, GroupB).
	LineA, LineB netip.AddrPort
	// ShmSlots, ShmMode and ShmGroup are the shm file's instrument slots,
	// permission bits and group (handler.Config's; zero: its defaults,
	// 16384 slots, 0640, the process's group): a feed file's shm.slots,
	// shm.mode and shm.group.
	ShmSlots int
	ShmMode  os.FileMode
	ShmGroup string
	// Configure, if set, adjusts the handler config before Start.
	Configure func(*handler.Config)
	// Recovery, if set, runs the lab's recovery servers and points the
	// handler at them.
	Recovery *Recovery
	// StartAtSeq starts the handler once the sender has sent this
	// sequence number (a late join); 0 starts it first.
	StartAtSeq uint64
	// Hostile, if set, sends datagrams of a foreign session to the groups
	// before and during the feed.
	Hostile *Hostile
	// Flap, if set, takes the receiving interface down and up again
	// while the feed runs.
	Flap *Flap
	// Mode is the handler's pipeline mode (default: run to completion on
	// the receive thread); ModeSharded runs two unpinned shard threads.
	Mode handler.Mode
	// Pin, when the process may run on two or more CPUs, pins the
	// sender's thread to the first of them (on a veth the kernel's receive
	// work, XDP included, runs in softirq on the sender's CPU) and the
	// handler's receive thread to the last (PinCPUs), so that the two do
	// not take turns on one CPU.
	Pin bool
	// Spin is how long the receive thread polls its rings before it
	// blocks (rx.Config.Spin; AF_XDP only): spinning, a packet needs no
	// scheduler wakeup to reach the handler.
	Spin time.Duration
	// RingSize is the receive ring size (rx.Config.RingSize; 0: the
	// backend's default, 4096 frames with AF_XDP). The demo uses 16384:
	// about a quarter second of both lines at its rate, so that a handler
	// losing its CPU for tens of milliseconds on a shared machine shows
	// in the latency, not as packets the kernel dropped on both lines.
	RingSize int
	// Hold is how long the arbiter waits for the other line to fill a
	// range missing on one (0: 200 ms). The tests use a second, so that
	// a receive thread that a loaded CI machine starves for a few hundred
	// milliseconds between line A's packets and line B's copies shows as
	// latency, not as a gap on both lines.
	Hold time.Duration
	// RTPriority, above 0, runs the handler's hot threads under SCHED_FIFO
	// at this priority (handler.Config.RTPriority); refused, they run
	// under normal scheduling and the result's stats say so.
	RTPriority int
}

// Result is what a run saw.
type Result struct {
	Backend     string
	Depth       int // levels per side published and compared
	Stats       handler.Stats
	Sender      exchange.Stats
	SendTime    time.Duration
	Instruments int      // instruments compared
	Mismatches  []string // instruments whose published book differs from the reference
	Stale       int      // instruments published with the PossiblyStale flag
	Top         []TopOfBook
	Gaps        []moldudp64.Range
	HostileSent *atomic.Uint64 // datagrams the hostile sender wrote
	// XDPAfterStop is what `ip link show` said of the receiving interface
	// after the handler stopped, when it still mentions an XDP program.
	XDPAfterStop string
	// RxSwitches are the receive thread's context switches while the
	// sender ran, from /proc: voluntary (it slept in poll(2), or Go parked
	// it for a preemption hand-off) and involuntary (the kernel gave its
	// CPU to another thread), over RxSwitchSecs seconds.
	RxSwitches   [2]uint64
	RxSwitchSecs float64
	// RxRun and RxWait are the receive thread's time on its CPU and its
	// time runnable but waiting for it (other threads ran there), over the
	// same seconds, from /proc's schedstat; both 0 where the kernel has
	// none. The rest of the interval it slept.
	RxRun, RxWait time.Duration
	// ShmPerm and ShmGid are the shm file's permission bits and group,
	// read when the books were compared.
	ShmPerm os.FileMode
	ShmGid  int
}

// TopOfBook is one instrument's best levels as published.
type TopOfBook struct {
	Symbol   string
	Messages uint64
	Bids     []shm.Level
	Asks     []shm.Level
	State    bookfb.TradingState
	Flags    bookfb.Flags
}

// Lab addresses of the two lines.
var (
	GroupA = netip.MustParseAddrPort("239.77.1.1:26477")
	GroupB = netip.MustParseAddrPort("239.77.1.2:26478")
)

// Run executes one end-to-end run in a fresh lab and tears it down.
func Run(ctx context.Context, o Options) (_ *Result, err error) {
	if o.Day == nil {
		return nil, errors.New("demo: no day")
	}
	if o.Rate == 0 {
		o.Rate = 30000
	}
	if o.ShmName == "" {
		o.ShmName = "fhdemo"
	}
	if o.Depth == 0 {
		o.Depth = 10
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	if !o.LineA.IsValid() {
		o.LineA = GroupA
	}
	if !o.LineB.IsValid() {
		o.LineB = GroupB
	}
	if o.Flap != nil && o.StartAtSeq > 0 {
		return nil, errors.New("demo: a flap needs the handler started first (StartAtSeq 0)")
	}
	lab, err := netlab.New(netlab.Options{Prefix: "fhd"})
	if err != nil {
		return nil, err
	}
	defer lab.Close()

	ifB, srcB := lab.DstIf, ""
	if o.Flap != nil && o.Flap.LineA {
		// Line B on a link of its own, sent by a sender of its own (one
		// sender's lines share a socket, and so its interface).
		if srcB, ifB, err = lab.AddPair("10.98.0.1/24", "10.98.0.2/24"); err != nil {
			return nil, err
		}
	}
	hc := handler.Config{
		Receive: rx.Config{
			Lines: []rx.LineConfig{
				{Name: "A", Interface: lab.DstIf, Group: o.LineA.Addr(), Port: o.LineA.Port()},
				{Name: "B", Interface: ifB, Group: o.LineB.Addr(), Port: o.LineB.Port()},
			},
			Backend:  o.Backend,
			Spin:     o.Spin,
			RingSize: o.RingSize,
			Log:      o.Log,
		},
		Session: o.Day.Session,
		// The lab's sender writes the A and B copies of a packet in one
		// sendmmsg, so B's copy of a packet lost on A follows within
		// microseconds. The hold is only a backstop for a receive thread
		// that loses its CPU on this shared 2-core machine between the
		// two copies; it delays nothing while both lines flow.
		Arbiter:     handler.ArbiterConfig{Hold: cmp.Or(o.Hold, 200*time.Millisecond), MaxPending: 1 << 15},
		ReceiveCore: -1,
		RTPriority:  o.RTPriority,
		Mode:        o.Mode,
		Depth:       o.Depth,
		Book:        smallBooks(),
		ShmName:     o.ShmName,
		ShmSlots:    o.ShmSlots,
		ShmMode:     o.ShmMode,
		ShmGroup:    o.ShmGroup,
		Log:         o.Log,
		Open: func(c rx.Config) (r rx.Receiver, err error) {
			err = lab.Do(lab.Dst, func() error {
				r, err = rx.Open(c)
				return err
			})
			return r, err
		},
	}
	dir, err := leftover.MkdirTemp("fhdemo") // a killed demo's: removed by the next
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	progress := filepath.Join(dir, "progress")
	rl, err := startRecovery(lab, &o, &hc, progress)
	defer rl.close()
	if err != nil {
		return nil, err
	}
	if o.Mode == handler.ModeSharded {
		hc.ShardCores = []int{-1, -1}
	}
	senderCPU, receiveCPU, twoCPUs := PinCPUs()
	pin := o.Pin && twoCPUs
	if pin {
		hc.ReceiveCore = receiveCPU
	}
	if o.Configure != nil {
		o.Configure(&hc)
	}
	res := &Result{Depth: o.Depth}
	var h *handler.Handler
	var rxThread handler.ThreadSched
	var rxCS0 [2]uint64
	var rxRun0, rxWait0 time.Duration
	var rxT0 time.Time
	startHandler := func() error {
		var err error
		h, err = handler.Start(hc)
		if err != nil {
			return err
		}
		res.Backend = h.Backend()
		rxThread = h.Stats().ReceiveThread
		rxCS0[0], rxCS0[1], _ = rxThread.Switches()
		rxRun0, rxWait0, _ = rxThread.CPUTime()
		rxT0 = time.Now()
		return nil
	}
	if o.StartAtSeq == 0 {
		if err := startHandler(); err != nil {
			return nil, err
		}
	}
	defer shm.Remove(o.ShmName)
	stopped := false
	defer func() {
		if !stopped && h != nil {
			h.Stop()
		}
	}()

	pkts := o.Day.Packets
	var onlyA map[int][][]byte // by index in pkts
	if len(o.Drop) > 0 || len(o.Extra) > 0 || len(o.ExtraA) > 0 {
		pkts = make([][]byte, 0, len(o.Day.Packets))
		onlyA = map[int][][]byte{}
		for i, p := range o.Day.Packets {
			pkts = append(pkts, o.Extra[i]...)
			if len(o.ExtraA[i]) > 0 {
				onlyA[len(pkts)] = o.ExtraA[i]
			}
			if !o.Drop[i] {
				pkts = append(pkts, p)
			}
		}
	}
	scfg := exchange.Config{
		Interface: lab.SrcIf,
		Lines: []exchange.Line{
			{Group: o.LineA.Addr(), Port: o.LineA.Port(), Loss: o.LossA, Dup: o.DupA, Reorder: o.ReorderA},
			{Group: o.LineB.Addr(), Port: o.LineB.Port(), Loss: o.LossB, Dup: o.DupB, Reorder: o.ReorderB, Lag: o.LagB},
		},
		Rate: o.Rate,
		Seed: cmp.Or(o.SendSeed, 7),
		// Pace by deadline, sleeping in clock_nanosleep with 1 ns timer
		// slack: a spinning sender would take a whole CPU of this small
		// lab from the handler it measures, and Go's timers overshoot
		// into bursts.
		Deadline: true,
		Pin:      pin,
		CPU:      senderCPU,
	}
	if o.Hostile != nil {
		hs, err := startHostile(lab, &o)
		if err != nil {
			return res, err
		}
		defer hs.close()
		res.HostileSent = &hs.Sent
	}
	var flapGates []gate
	if o.Flap != nil {
		// Line A's sender (the sender, when one sends both lines) waits
		// at the flap's sequence number until the link is down, and
		// halfway between the flap and the end of the day until the flap
		// is over. The first: taking the link down may wait long for the
		// RTNL lock on a loaded machine (other tests' namespaces), and a
		// sender that went on meanwhile could reach the second before the
		// link went down, which then waited for the sender to send
		// Flap.MinMessages more (CI, uring/300ms: 'handler did not finish
		// in 1m0s: delivered 622073 of 1000000'). The second: the link
		// may pass traffic again only well after it was set up
		// (linkwatch), and a sender that got to the end by then leaves
		// nothing to show that the line receives again.
		var down string
		if dn, at := flapGateAt(pkts, o.Flap.AtSeq); at >= 0 {
			down = filepath.Join(dir, "flap-down")
			flapGates = []gate{{Path: down, At: dn}, {Path: filepath.Join(dir, "flap-done"), At: at}}
		}
		stop, done := make(chan struct{}), make(chan error, 1)
		go func() {
			err := o.Flap.run(lab, progress, down, stop, h.Stats)
			for _, g := range flapGates {
				os.WriteFile(g.Path, nil, 0o600) // open, whatever the flap's end
			}
			done <- err
		}()
		defer func() {
			close(stop)
			if ferr := <-done; ferr != nil && err == nil {
				err = ferr
			}
		}()
	}
	start := time.Now()
	if o.StartAtSeq > 0 {
		type sent struct {
			st  exchange.Stats
			err error
		}
		done := make(chan sent, 1)
		// The sender holds the session's end back until the handler is
		// started (senderJob.Gate): a day shorter than the handler's
		// setup would otherwise be sent whole before it joins, and it
		// would wait for lines gone silent until the timeout. A sender
		// waiting there has sent all it will before the end (StartAtSeq
		// may be in a packet dropped on both lines).
		gatePath := filepath.Join(dir, "handler-started")
		openGate := func() { os.WriteFile(gatePath, nil, 0o600) }
		go func() {
			st, err := sendGated(ctx, lab, dir, pkts, scfg, progress, []gate{{Path: gatePath}}, onlyA)
			done <- sent{st, err}
		}()
	wait:
		for readProgress(progress) < o.StartAtSeq {
			if _, err := os.Stat(gatePath + ".waiting"); err == nil {
				break
			}
			select {
			case <-time.After(time.Millisecond):
			case r := <-done:
				return res, fmt.Errorf("demo: the sender finished (%v) before the handler started", r.err)
			case <-ctx.Done():
				openGate()
				<-done
				break wait
			}
		}
		serr := startHandler()
		openGate()
		if serr != nil {
			<-done
			return res, serr
		}
		r := <-done
		res.Sender, err = r.st, r.err
	} else {
		res.Sender, err = sendLines(ctx, lab, dir, pkts, scfg, progress, srcB, flapGates, onlyA)
	}
	res.SendTime = time.Since(start)
	if vol, invol, err := rxThread.Switches(); err == nil && h != nil {
		res.RxSwitches = [2]uint64{vol - rxCS0[0], invol - rxCS0[1]}
		res.RxSwitchSecs = time.Since(rxT0).Seconds()
		if run, wait, err := rxThread.CPUTime(); err == nil {
			res.RxRun, res.RxWait = run-rxRun0, wait-rxWait0
		}
	}
	if err != nil {
		res.Stats = h.Stats()
		return res, fmt.Errorf("demo: send: %w", err)
	}

	// Wait until the session's end was seen, the shards applied
	// everything routed to them, and published it: a change of the books'
	// stale flag (a recovery's end) is republished a chunk a batch
	// (ShardStats.Sweeping), so the shm file still showed hundreds of
	// books flagged after the stats had cleared it, when the receive
	// thread was slow to go round (TestCaptureRerequestAnswers, in CI on
	// a loaded machine: '709 instruments flagged possibly stale without a
	// gap').
	deadline := time.Now().Add(o.Timeout)
	for {
		st := h.Stats()
		if st.Ended && st.Applied() == st.Routed && st.Routed > 0 && !sweeping(&st) &&
			st.Recovery.State != handler.StateRerequesting && st.Recovery.State != handler.StateSnapshot {
			break
		}
		if time.Now().After(deadline) {
			res.Stats = st
			return res, fmt.Errorf("demo: handler did not finish in %v: delivered %d of %d messages, next seq %d, ended %v, recovery %s (%s)",
				o.Timeout, st.Arbiter.Delivered, o.Day.Messages, st.NextSeq, st.Ended, st.Recovery.State, st.Recovery)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	// A shard counts messages applied after publishing their batch, so
	// every book is in shared memory now.
	res.Stats = h.Stats()
	if o.Reference != nil {
		ref := *o.Day
		ref.Books = o.Reference(res)
		o.Day = &ref
	}
	if err := compare(res, o); err != nil {
		return res, err
	}
	stopped = true
	if err := h.Stop(); err != nil {
		return res, err
	}
	res.Stats = h.Stats()
	out, err := lab.Exec(lab.Dst, "ip", "link", "show", "dev", lab.DstIf)
	if err != nil {
		return res, err
	}
	if strings.Contains(string(out), "xdp") {
		res.XDPAfterStop = string(out)
	}
	return res, nil
}

// sendLines sends pkts as cfg says, with line B (cfg.Lines[1]) from a
// sender of its own on interface srcB when that is set: two processes,
// the progress file written by line A's. The stats have both lines.
// gates hold line A's sender back (a link flap's; line B's goes on); onlyA
// are datagrams line A's sender sends alone (senderJob.OnlyA).
func sendLines(ctx context.Context, lab *netlab.Lab, dir string, pkts [][]byte, cfg exchange.Config, progress, srcB string, gates []gate, onlyA map[int][][]byte) (exchange.Stats, error) {
	if srcB == "" {
		return sendGated(ctx, lab, dir, pkts, cfg, progress, gates, onlyA)
	}
	cfgA, cfgB := cfg, cfg
	cfgA.Lines, cfgB.Lines = cfg.Lines[:1], cfg.Lines[1:2]
	cfgB.Interface, cfgB.Pin = srcB, false
	dirB := filepath.Join(dir, "b")
	if err := os.Mkdir(dirB, 0o700); err != nil {
		return exchange.Stats{}, err
	}
	type sent struct {
		st  exchange.Stats
		err error
	}
	done := make(chan sent, 1)
	progressB := filepath.Join(dirB, "progress")
	go func() {
		st, err := send(ctx, lab, dirB, pkts, cfgB, progressB)
		done <- sent{st, err}
	}()
	// Line A's sender starts once line B's has sent a packet. Two senders
	// started together may start a second apart on this loaded machine
	// (CI once saw line B's first packet 1.2 s late), and line A ahead of
	// line B turns line A's flap into a gap on both lines. Line B ahead is
	// what a flap of line A needs: line B carries what line A misses.
	for readProgress(progressB) == 0 {
		select {
		case b := <-done:
			return b.st, errors.Join(errors.New("demo: line B's sender ended before it sent a packet"), b.err)
		case <-ctx.Done():
			b := <-done
			return b.st, errors.Join(ctx.Err(), b.err)
		case <-time.After(time.Millisecond):
		}
	}
	st, err := sendGated(ctx, lab, dir, pkts, cfgA, progress, gates, onlyA)
	b := <-done
	st.Lines = append(st.Lines, b.st.Lines...)
	return st, errors.Join(err, b.err)
}

// Compare reads the books published in shared memory feed shmName back and
// compares them to depth levels with the day's reference books (the
// replay of its messages): a Result with Instruments, Mismatches, Stale
// and Top filled in.
func Compare(shmName string, day *Day, depth int) (*Result, error) {
	res := &Result{Depth: depth}
	return res, compare(res, Options{ShmName: shmName, Day: day, Depth: depth})
}

// compare reads every instrument back through the reader library and
// compares it with the reference books to the published depth.
func compare(res *Result, o Options) error {
	r, err := shm.Open(o.ShmName)
	if err != nil {
		return err
	}
	defer r.Close()
	fi, err := os.Stat(shm.Path(o.ShmName))
	if err != nil {
		return err
	}
	res.ShmPerm = fi.Mode().Perm()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		res.ShmGid = int(st.Gid)
	}
	buf := make([]byte, r.Info().MaxSnapshot)
	published := map[string]bool{}
	var top []TopOfBook
	for _, inst := range r.Instruments() {
		v, err := r.Read(inst.Locate, buf)
		if err != nil {
			return fmt.Errorf("demo: read %s: %w", inst.Symbol, err)
		}
		published[inst.Symbol] = true
		res.Instruments++
		if v.Flags()&bookfb.FlagsPossiblyStale != 0 {
			res.Stale++
		}
		tb := TopOfBook{Symbol: inst.Symbol, Messages: v.Messages(), State: v.TradingState(), Flags: v.Flags()}
		for i := 0; ; i++ {
			l, ok := v.Bid(i)
			if !ok {
				break
			}
			tb.Bids = append(tb.Bids, l)
		}
		for i := 0; ; i++ {
			l, ok := v.Ask(i)
			if !ok {
				break
			}
			tb.Asks = append(tb.Asks, l)
		}
		b := o.Day.Books.Book(inst.Locate)
		if b == nil && v.Flags()&bookfb.FlagsPossiblyStale != 0 {
			// A book a rebuild retired (a new session announced no
			// instrument at its locate): its last version, flagged, as
			// the journal's readers are told (TestFollowerLearnsOfRetirement).
			continue
		}
		if b == nil {
			res.Mismatches = append(res.Mismatches, inst.Symbol+": not in the reference books")
			continue
		}
		if d := diff(b, tb, o.Depth); d != "" {
			res.Mismatches = append(res.Mismatches, inst.Symbol+": "+d)
		}
		top = append(top, tb)
	}
	// Every reference instrument with resting orders must be published
	// (every subscribed one, with a symbol filter).
	subscribed := func(string) bool { return true }
	if o.Configure != nil {
		var hc handler.Config
		o.Configure(&hc)
		if len(hc.Symbols) > 0 {
			subscribed = func(s string) bool { return slices.Contains(hc.Symbols, s) }
		}
	}
	for name := range published {
		if !subscribed(name) {
			res.Mismatches = append(res.Mismatches, name+": published but not subscribed")
		}
	}
	for b := range o.Day.Books.All() {
		if b.Orders() > 0 && subscribed(b.Name()) && !published[b.Name()] {
			res.Mismatches = append(res.Mismatches, b.Name()+": has resting orders but was never published")
		}
	}
	sort.Slice(top, func(i, j int) bool { return top[i].Messages > top[j].Messages })
	if len(top) > 5 {
		top = top[:5]
	}
	res.Top = top
	return nil
}

func diff(b *book.Book, tb TopOfBook, depth int) string {
	for _, side := range []book.Side{book.Bid, book.Ask} {
		want := b.AppendDepth(side, nil, depth)
		got := tb.Bids
		name := "bids"
		if side == book.Ask {
			got, name = tb.Asks, "asks"
		}
		if len(want) != len(got) {
			return fmt.Sprintf("%s: %d levels published, %d in the reference", name, len(got), len(want))
		}
		for i := range want {
			if shm.Level(want[i]) != got[i] {
				return fmt.Sprintf("%s level %d: published %+v, reference %+v", name, i, got[i], want[i])
			}
		}
	}
	return ""
}

// PinCPUs returns the CPUs Options.Pin pins to: the sender to the first
// CPU the process may run on (its affinity mask: a container's or a
// taskset's cpuset need not start at CPU 0), the handler's receive thread
// to the last; ok is false when it may run on fewer than two.
func PinCPUs() (sender, receive int, ok bool) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, 0, false
	}
	return pinCPUsOf(&set)
}

func pinCPUsOf(set *unix.CPUSet) (sender, receive int, ok bool) {
	if set.Count() < 2 {
		return 0, 0, false
	}
	sender = -1
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			if sender < 0 {
				sender = c
			}
			receive = c
		}
	}
	return sender, receive, true
}

// sweeping reports whether a shard is republishing its books (a change of
// their stale flag not yet in the shm file for all).
func sweeping(st *handler.Stats) bool {
	for _, sh := range st.Shards {
		if sh.Sweeping {
			return true
		}
	}
	return false
}
