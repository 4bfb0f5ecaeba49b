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

func vethDrops(lab *netlab.Lab) (uint64, error) {
	var sum uint64
	for _, c := range []struct{ ns, ifname, stat string }{
		{lab.Src, lab.SrcIf, "tx_dropped"}, {lab.Dst, lab.DstIf, "rx_dropped"},
	} {
		out, err := lab.Exec(c.ns, "cat", "/sys/class/net/"+c.ifname+"/statistics/"+c.stat)
		if err != nil {
			return 0, err
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
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
	ready := make(chan error, 1)
	done := make(chan rxResult, 1)
	var senderDone atomic.Bool
	go receiver(o, lab, cfg, ready, done, &senderDone)
	if err := <-ready; err != nil {
		return sample{}, err
	}
	veth0, err := vethDrops(lab)
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
	veth1, err := vethDrops(lab)
	if err != nil {
		return sample{}, err
	}
	s := r.s
	s.sent, s.sendErrs = st.Lines[0].Sent, st.Lines[0].Errors
	s.napiNs = napi1 - napi0
	s.vethDrops = veth1 - veth0
	return s, nil
}

// receiver runs on its own OS thread, moved into the receiving namespace
// and pinned next to the NAPI kthread, so that the io_uring requests and
// the receive work belong to this thread. The thread is discarded at the
// end (it stays locked).
func receiver(o options, lab *netlab.Lab, cfg rx.Config, ready chan<- error, done chan<- rxResult, senderDone *atomic.Bool) {
	runtime.LockOSThread()
	fail := func(err error) { ready <- err }
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
	self := fmt.Sprintf("/proc/self/task/%d/schedstat", unix.Gettid())
	cpu0, err := cpuNs(self)
	if err != nil {
		fail(err)
		return
	}
	ready <- nil
	var s sample
	s.backend = r.Backend()
	pkts := make([]rx.Packet, o.batch)
	var first, last time.Time
	var calls, empty uint64
	for {
		calls++
		n, err := r.Receive(pkts)
		if err != nil {
			done <- rxResult{err: err}
			return
		}
		if n > 0 {
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			last = now
			s.received += uint64(n)
			r.Release(pkts[:n])
			continue
		}
		empty++
		// Idle: stop once the sender finished and the queues are drained.
		if senderDone.Load() && (last.IsZero() || time.Since(last) > 300*time.Millisecond) {
			break
		}
	}
	cpu1, err := cpuNs(self)
	if err != nil {
		done <- rxResult{err: err}
		return
	}
	s.threadNs = cpu1 - cpu0
	s.rxSeconds = last.Sub(first).Seconds()
	st := r.Stats()
	s.rxDrops = st.Dropped
	o.log.Debug().Interface("stats", st).Uint64("receive_calls", calls).Uint64("empty", empty).Msg("receiver stats")
	done <- rxResult{s: s}
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
