package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// sample is one run of one backend.
type sample struct {
	backend   string // rx.Receiver.Backend()
	sent      uint64 // datagrams the sender wrote
	sendErrs  uint64 // writes that failed at the sender
	vethDrops uint64 // sender veth tx_dropped + receiver veth rx_dropped
	rxDrops   uint64 // drops the backend saw (socket overflow, XDP ring full)
	received  uint64
	rxSeconds float64 // first to last packet
	threadNs  uint64  // CPU of the receiving thread
	napiNs    uint64  // CPU of the NAPI kthread(s)

	// Diagnostics, for a run that went wrong (not in the table): the
	// sender veth's tx_dropped and the receiver's rx_dropped apart
	// (vethDrops is their sum), the receiver's loop, the backend's
	// description and own counters, and both ends' ethtool -S
	// (the veth's per-queue XDP counters) as the run ended.
	srcTxDropped, dstRxDropped uint64
	calls, empty               uint64 // Receive calls, those that returned nothing
	backendStats               string // rx.Stats, non-zero counters
	ethtool                    string
}

func (s sample) pps() float64 {
	if s.rxSeconds <= 0 {
		return 0
	}
	return float64(s.received) / s.rxSeconds
}

func (s sample) lossPct() float64 {
	offered := s.sent + s.sendErrs
	if offered == 0 {
		return 0
	}
	return 100 * float64(offered-min(offered, s.received)) / float64(offered)
}

// unaccounted is loss that no counter explains (sent but neither received
// nor counted as dropped by the veth or the receiving socket/ring).
func (s sample) unaccounted() float64 {
	return float64(int64(s.sent) - int64(s.received) - int64(s.vethDrops) - int64(s.rxDrops))
}

func (s sample) nsPerPkt() float64 {
	if s.received == 0 {
		return 0
	}
	return float64(s.threadNs+s.napiNs) / float64(s.received)
}

var (
	group = netip.MustParseAddr("239.77.1.1")
	port  = uint16(26477)
)

// bench builds the lab and runs every backend o.runs times, interleaved so
// drifting machine load spreads over all of them.
func bench(o options) (map[string][]sample, error) {
	// The sender stops after o.duration only: with none it floods the
	// lab forever, and with no run the table is empty.
	if o.duration <= 0 {
		return nil, fmt.Errorf("-duration %v: want a positive sending time per run", o.duration)
	}
	if o.runs < 1 {
		return nil, fmt.Errorf("-runs %d: want at least 1", o.runs)
	}
	lab, err := netlab.New(netlab.Options{Prefix: "rxb", Threaded: true})
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	napi, err := lab.NAPIThreads()
	if err != nil {
		return nil, err
	}
	if len(napi) == 0 {
		return nil, fmt.Errorf("no napi/%s-* kthread: threaded NAPI did not start", lab.DstIf)
	}
	for _, pid := range napi {
		if err := pin(pid, o.rxCPU); err != nil {
			return nil, fmt.Errorf("pin napi kthread %d: %w", pid, err)
		}
	}
	res := map[string][]sample{}
	for run := range o.runs {
		for _, b := range o.backendList() {
			s, err := measure(o, lab, napi, b)
			if err != nil {
				return nil, fmt.Errorf("run %d backend %s: %w", run+1, b, err)
			}
			o.log.Info().Int("run", run+1).Str("backend", s.backend).Uint64("sent", s.sent).
				Uint64("received", s.received).Float64("pps", s.pps()).Float64("ns_per_pkt", s.nsPerPkt()).Msg("run done")
			res[b] = append(res[b], s)
		}
	}
	return res, nil
}

func pin(tid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(tid, &set)
}

// enterNS switches the calling (locked) thread into namespace ns for good.
func enterNS(ns string) error {
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// cpuNs is the CPU time of a thread in ns (/proc/.../schedstat).
func cpuNs(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s: empty", path)
	}
	return strconv.ParseUint(f[0], 10, 64)
}

func napiNs(pids []int) (uint64, error) {
	var sum uint64
	for _, pid := range pids {
		v, err := cpuNs(fmt.Sprintf("/proc/%d/schedstat", pid))
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// vethDrops reads the sender veth's tx_dropped and the receiver veth's
// rx_dropped.
func vethDrops(lab *netlab.Lab) (tx, rx uint64, err error) {
	var v [2]uint64
	for i, c := range []struct{ ns, ifname, stat string }{
		{lab.Src, lab.SrcIf, "tx_dropped"}, {lab.Dst, lab.DstIf, "rx_dropped"},
	} {
		out, err := lab.Exec(c.ns, "cat", "/sys/class/net/"+c.ifname+"/statistics/"+c.stat)
		if err != nil {
			return 0, 0, err
		}
		if v[i], err = strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64); err != nil {
			return 0, 0, err
		}
	}
	return v[0], v[1], nil
}

// ethtoolStats is both veth ends' non-zero ethtool -S counters, one
// line, for a failure message.
func ethtoolStats(lab *netlab.Lab) string {
	var b strings.Builder
	for _, c := range []struct{ ns, ifname string }{{lab.Src, lab.SrcIf}, {lab.Dst, lab.DstIf}} {
		fmt.Fprintf(&b, "%s:", c.ifname)
		out, err := lab.Exec(c.ns, "ethtool", "-S", c.ifname)
		if err != nil {
			fmt.Fprintf(&b, " %v;", err)
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(l), ": ")
			if ok && v != "0" {
				fmt.Fprintf(&b, " %s=%s", k, v)
			}
		}
		b.WriteString(";")
	}
	return b.String()
}

type rxResult struct {
	s   sample
	err error
}

// measure runs one backend once.
func measure(o options, lab *netlab.Lab, napi []int, backend string) (sample, error) {
	cfg := rx.Config{
		Lines:        []rx.LineConfig{{Name: "A", Interface: lab.DstIf, Group: group, Port: port}},
		Backend:      backend,
		BatchSize:    o.batch,
		BusyPoll:     o.busyPoll,
		PollTimeout:  50 * time.Millisecond,
		LockedThread: o.locked,
		Log:          o.log,
	}
	opened := make(chan error, 1)
	ready := make(chan struct{})
	done := make(chan rxResult, 1)
	var senderDone, stop atomic.Bool
	go receiver(o, lab, cfg, opened, ready, done, &senderDone, &stop)
	if err := <-opened; err != nil {
		return sample{}, err
	}
	if err := probe(lab, ready); err != nil {
		stop.Store(true)
		if r := <-done; r.err != nil {
			err = fmt.Errorf("%w (receiver: %w)", err, r.err)
		} else {
			err = fmt.Errorf("%w (receiver: %s)", err, r.s.backendStats)
		}
		return sample{}, err
	}
	tx0, rx0, err := vethDrops(lab)
	if err != nil {
		return sample{}, err
	}
	napi0, err := napiNs(napi)
	if err != nil {
		return sample{}, err
	}
	st, err := send(o, lab)
	senderDone.Store(true)
	r := <-done
	if err != nil {
		return sample{}, err
	}
	if r.err != nil {
		return sample{}, r.err
	}
	napi1, err := napiNs(napi)
	if err != nil {
		return sample{}, err
	}
	tx1, rx1, err := vethDrops(lab)
	if err != nil {
		return sample{}, err
	}
	s := r.s
	s.sent, s.sendErrs = st.Lines[0].Sent, st.Lines[0].Errors
	s.napiNs = napi1 - napi0
	s.srcTxDropped, s.dstRxDropped = tx1-tx0, rx1-rx0
	s.vethDrops = s.srcTxDropped + s.dstRxDropped
	s.ethtool = ethtoolStats(lab)
	return s, nil
}

// receiver runs on its own OS thread, moved into the receiving namespace
// and pinned next to the NAPI kthread, so that the io_uring requests and
// the receive work belong to this thread. The thread is discarded at the
// end (it stays locked). It reports on opened once the backend is open,
// closes ready once a probe (probe) came through it, and then counts the
// sender's datagrams until the run is drained (drainQuiet). stop ends it
// before a probe came.
func receiver(o options, lab *netlab.Lab, cfg rx.Config, opened chan<- error, ready chan<- struct{}, done chan<- rxResult, senderDone, stop *atomic.Bool) {
	runtime.LockOSThread()
	fail := func(err error) { opened <- err }
	if err := enterNS(lab.Dst); err != nil {
		fail(fmt.Errorf("enter %s: %w", lab.Dst, err))
		return
	}
	if err := pin(0, o.rxCPU); err != nil {
		fail(fmt.Errorf("pin receiver: %w", err))
		return
	}
	r, err := rx.Open(cfg)
	if err != nil {
		fail(err)
		return
	}
	defer r.Close()
	opened <- nil
	s, err := receive(o, r, senderDone, stop, ready)
	done <- rxResult{s, err}
}

// receive is the open receiver's part of a run: the probe, then the
// count of the sender's datagrams and the CPU time that took.
func receive(o options, r rx.Receiver, senderDone, stop *atomic.Bool, ready chan<- struct{}) (sample, error) {
	s := sample{backend: r.Backend()}
	pkts := make([]rx.Packet, o.batch)
	if err := awaitProbe(r, pkts, stop); err != nil {
		return s, err
	}
	if stop.Load() {
		s.backendStats = statsString(r.Stats())
		return s, nil
	}
	self := fmt.Sprintf("/proc/self/task/%d/schedstat", unix.Gettid())
	cpu0, err := cpuNs(self)
	if err != nil {
		return s, err
	}
	close(ready)
	first, last, err := count(r, pkts, senderDone, time.Now().Add(o.duration+drainCap), &s)
	if err != nil {
		return s, err
	}
	cpu1, err := cpuNs(self)
	if err != nil {
		return s, err
	}
	s.threadNs = cpu1 - cpu0
	s.rxSeconds = last.Sub(first).Seconds()
	st := r.Stats()
	s.rxDrops = st.Dropped
	s.backendStats = statsString(st)
	o.log.Debug().Interface("stats", st).Uint64("receive_calls", s.calls).Uint64("empty", s.empty).Msg("receiver stats")
	return s, nil
}

// source is what the receiving loop needs of an rx.Receiver.
type source interface {
	Receive([]rx.Packet) (int, error)
	Release([]rx.Packet)
}

// isProbe tells a probe datagram (sequence number 0) from the sender's
// (numbered from 1).
func isProbe(p []byte) bool {
	return len(p) >= 8 && binary.BigEndian.Uint64(p) == 0
}

// awaitProbe receives until a probe arrives, or stop is set.
func awaitProbe(r source, pkts []rx.Packet, stop *atomic.Bool) error {
	for !stop.Load() {
		n, err := r.Receive(pkts)
		if err != nil {
			return err
		}
		probed := false
		for _, p := range pkts[:n] {
			probed = probed || isProbe(p.Data)
		}
		r.Release(pkts[:n])
		if probed {
			return nil
		}
	}
	return nil
}

// drainQuiet and drainEmpty end a run: once the sender is done, the
// receiver stops after drainQuiet without a datagram, counted from the
// later of its last datagram and the moment it saw the sender done, and
// after drainEmpty Receive calls in a row that returned nothing.
//
// Both, because a receiver thread kept off its CPU through the whole send
// (under load in CI: 'xdp: sent 4551, received 0', 4299 dropped by the
// veth, its ring's 256 never read) sees the sender done on its first look,
// in a Receive that returns at once (its poll deadline passed while it
// waited for the CPU), with the NAPI kthread that would fill its ring
// waiting for the same CPU: it stopped there, before any datagram. A
// second Receive sleeps in poll, which lets the kthread run.
const (
	drainQuiet = 300 * time.Millisecond
	drainEmpty = 3
)

// drainCap is how long past the run's sending time count may go on
// before it gives up on the run draining (errNotDrained).
const drainCap = 10 * time.Second

// errNotDrained: the receiver still got datagrams at count's deadline, a
// backend that never runs dry (or a sender that never stops).
var errNotDrained = errors.New("receiver not drained")

// count receives the sender's datagrams into s (received, calls, empty)
// until the run is drained: see drainQuiet. Probes are not counted. A
// run still receiving at deadline fails with errNotDrained: only a
// Receive that returns nothing can end it otherwise, and one that keeps
// returning datagrams (probes too) would keep it going for ever.
func count(r source, pkts []rx.Packet, senderDone *atomic.Bool, deadline time.Time, s *sample) (first, last time.Time, err error) {
	var doneSeen time.Time
	emptyRun := 0
	for {
		s.calls++
		n, err := r.Receive(pkts)
		if err != nil {
			return first, last, err
		}
		if n > 0 {
			now := time.Now()
			if now.After(deadline) {
				r.Release(pkts[:n])
				return first, last, fmt.Errorf("count: %w: still receiving at the deadline, %d datagrams counted in %d Receive calls (%d empty)", errNotDrained, s.received, s.calls, s.empty)
			}
			for _, p := range pkts[:n] {
				if isProbe(p.Data) {
					continue
				}
				if first.IsZero() {
					first = now
				}
				last = now
				s.received++
			}
			r.Release(pkts[:n])
			emptyRun = 0
			continue
		}
		s.empty++
		emptyRun++
		if !senderDone.Load() {
			continue
		}
		if doneSeen.IsZero() {
			doneSeen = time.Now()
		}
		// Idle: stop once the sender finished and the queues are drained.
		if emptyRun >= drainEmpty && time.Since(later(last, doneSeen)) > drainQuiet {
			return first, last, nil
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// probeTimeout bounds the wait for the first probe.
const probeTimeout = 10 * time.Second

// probe sends probe datagrams (a payload of 8 zero bytes: sequence number
// 0) from the sending namespace to the lab's group, one every 10 ms, until
// ready is closed: the receiver has one through its backend, so the
// whole receive path (XDP program, socket, NAPI) delivers before the
// measured run starts. It fails after probeTimeout without one.
func probe(lab *netlab.Lab, ready <-chan struct{}) error {
	fd, err := lab.OpenUDPSocket(lab.Src)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrInet4{Addr: group.As4(), Port: int(port)}
	payload := make([]byte, 8)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var sent, errs int
	var lastErr error
	for deadline := time.Now().Add(probeTimeout); time.Now().Before(deadline); {
		if err := unix.Sendto(fd, payload, 0, to); err != nil {
			errs, lastErr = errs+1, err
		} else {
			sent++
		}
		select {
		case <-ready:
			return nil
		case <-tick.C:
		}
	}
	return fmt.Errorf("no probe received in %v: %d sent, %d failed (last: %v)", probeTimeout, sent, errs, lastErr)
}

// send runs the sender on a thread in the sending namespace pinned to
// o.txCPU, for o.duration.
func send(o options, lab *netlab.Lab) (exchange.Stats, error) {
	type result struct {
		st  exchange.Stats
		err error
	}
	resc := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // thread discarded at the end: it stays in lab.Src
		if err := enterNS(lab.Src); err != nil {
			resc <- result{err: err}
			return
		}
		if err := pin(0, o.txCPU); err != nil {
			resc <- result{err: err}
			return
		}
		s, err := exchange.NewSender(exchange.Config{
			Interface: lab.SrcIf,
			Lines:     []exchange.Line{{Group: group, Port: port}},
			Rate:      o.rate,
			Duration:  o.duration,
		})
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer s.Close()
		st, err := s.Send(context.Background(), numbered(o.size))
		resc <- result{st, err}
	}()
	r := <-resc
	if r.err != nil {
		return r.st, fmt.Errorf("send: %w", r.err)
	}
	if len(r.st.Lines) != 1 {
		return r.st, errors.New("send: no line stats")
	}
	return r.st, nil
}

// numbered yields an endless stream of size-byte packets carrying a
// sequence number (one buffer rewritten in place).
func numbered(size int) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		p := make([]byte, max(size, 8))
		for seq := uint64(1); ; seq++ {
			binary.BigEndian.PutUint64(p, seq)
			if !yield(p) {
				return
			}
		}
	}
}

// statsString is a backend's non-zero counters, for a failure message.
func statsString(st rx.Stats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "packets=%v dropped=%d malformed=%d unmatched=%d", st.Packets, st.Dropped, st.Malformed, st.Unmatched)
	for i := range st.Extra.Len() {
		if k, v := st.Extra.At(i); v != 0 {
			fmt.Fprintf(&b, " %s=%d", k, v)
		}
	}
	return b.String()
}
