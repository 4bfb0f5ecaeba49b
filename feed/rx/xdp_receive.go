package rx

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/xsk"
)

// This file holds the AF_XDP backend's receive path: Receive and its wait
// (WakeOn), drain over the rings and the fallback sockets, a frame's time
// and line (realtime, match), and Release with the fill rings' refill and
// the driver's wakeups.

// Receive returns the next batch of line datagrams, waiting at most the poll
// timeout (poll(2) on the sockets, or busy polling). It allocates nothing.
func (r *xdpRx) Receive(pkts []Packet) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return 0, ErrClosed
	}
	max := min(len(pkts), r.batch)
	if max == 0 {
		return 0, nil
	}
	var deadline, spinUntil time.Time
	spinWoken, resumed, woke := false, false, false
	for {
		var got int
		if r.kernelDue {
			r.kernelDue = false
			var err error
			if got, err = r.drainKernel(pkts[:max]); err != nil {
				return got, err
			}
		}
		if got < max {
			if len(r.fallbacks) == 0 {
				got += r.drain(pkts[got:max])
			} else {
				k, err := r.drainWithFallbacks(pkts[got:max])
				if got += k; err != nil {
					return got, err
				}
			}
		}
		if got > 0 {
			// Busy: check too, at most once a poll timeout (see
			// busyCheckBatches), or a socket unbound while a line of
			// another device keeps the receiver busy would go unsaid
			// until every line is quiet.
			if r.batches++; r.batches%busyCheckBatches == 0 {
				r.linkEventsUnpolled()
				r.checkBoundAt(time.Now())
				r.kernelDue = len(r.kernel) > 0
			}
			return got, nil
		}
		if woke {
			// A wake file descriptor is ready and the lines, read again
			// since, had nothing.
			r.waitWoken.Add(1)
			return 0, nil
		}
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(r.timeout)
			spinUntil = now.Add(r.spin)
		} else if !now.Before(deadline) {
			r.waitTimeouts.Add(1)
			return 0, nil
		}
		r.checkBoundAt(now)
		if r.busyPoll {
			// Busy poll never sleeps, and its wakeups run the driver's
			// polling (the kernel holds the interrupt back meanwhile):
			// every pass wakes every queue, spin or not.
			if r.closed.Load() {
				return 0, ErrClosed
			}
			for _, q := range r.queues {
				if err := r.wake(q); err != nil {
					return 0, err
				}
			}
			if r.batches++; r.batches%busyCheckBatches == 0 {
				r.linkEventsUnpolled()
				r.kernelDue = len(r.kernel) > 0
			}
			if r.wakeOn.n > 0 {
				// Only while a wake set is given (the handler: a
				// re-request out), and only on a pass that found
				// nothing.
				if n, _ := unix.Poll(r.pfds[r.wakeAt:], 0); n > 0 {
					woke = true
				}
			}
			continue
		}
		if now.Before(spinUntil) {
			// Spin: read the rings again without a syscall. A driver
			// that asks to be woken (need_wakeup, zero-copy) is woken
			// once per Receive, not on every pass: a zero-copy driver
			// may keep the flag set (an empty fill ring) for the whole
			// spin, and a syscall per pass would turn the spin into a
			// syscall loop.
			if r.closed.Load() {
				return 0, ErrClosed
			}
			if !spinWoken {
				spinWoken = true
				if err := r.wakeNeeding(); err != nil {
					return 0, err
				}
			}
			continue
		}
		if !resumed {
			if err := r.wakeNeeding(); err != nil {
				return 0, err
			}
		}
		ms := int((deadline.Sub(now) + time.Millisecond - 1) / time.Millisecond)
		var n int
		var err error
		keepP := r.keepP && runtime.GOMAXPROCS(0) > 1
		if keepP {
			// Sleep keeping the P (pollKeepP), a slice at a time; a
			// slice that ends without a packet goes round the loop,
			// which returns at the deadline.
			n, err = pollKeepP(r.pfds, min(ms, int(xdpPollSlice/time.Millisecond)))
		} else {
			n, err = unix.Poll(r.pfds, ms)
		}
		if err != nil && err != unix.EINTR {
			return 0, fmt.Errorf("receive xdp: poll: %w", err)
		}
		if keepP && n == 0 {
			if err != nil {
				r.keepPIntr.Add(1)
			} else {
				r.keepPSlices.Add(1)
			}
		}
		if r.closed.Load() {
			return 0, ErrClosed
		}
		if n > 0 && r.linkPfd >= 0 && r.pfds[r.linkPfd].Revents&(unix.POLLIN|unix.POLLERR) != 0 {
			r.linkEvents()
		}
		if n > 0 && r.kernelReady() {
			r.kernelDue = true // read first in the next pass
		}
		if n > 0 && wakeReady(r.pfds[r.wakeAt:]) {
			woke = true // the lines are read once more first
		}
		if n == 0 && err == nil && !keepP {
			r.waitTimeouts.Add(1)
			return 0, nil
		}
		// A slice that ended or a signal continues the same wait: the
		// driver was woken for it already.
		resumed = keepP && n == 0
	}
}

// lineDrop is why Receive dropped a line datagram that the kernel would
// drop too (the socket backends never get it); Stats counts each in
// Malformed and in its Extra counter, lineDropExtra.
type lineDrop int

const (
	dropChecksum lineDrop = iota // its IPv4 or UDP checksum failed (bpf.Datagram.ChecksumOK)
	dropSource                   // from a source the kernel drops (bpf.Datagram.SourceOK)
	dropOptions                  // with IPv4 options the kernel refuses (bpf.Datagram.OptionsOK)
	lineDrops
)

// lineDropExtra names each lineDrop's counter in Stats.Extra.
var lineDropExtra = [lineDrops]string{"xdp_bad_checksum", "xdp_bad_source", "xdp_bad_ip_options"}

// lineDropWarning is what the first drop for each reason logs.
var lineDropWarning = [lineDrops]string{
	dropChecksum: "AF_XDP: a line datagram failed its IPv4 or UDP checksum and was dropped (counted in xdp_bad_checksum; logged once). If every one fails, the sender is on this host with checksum offload (a veth sends partial checksums): receive.verify_checksums: false, docs/TUNING.md section 6",
	dropSource:   "AF_XDP: a line datagram from a source the kernel drops (0.0.0.0, multicast, 255.255.255.255 or loopback) was dropped, as under the socket backends (counted in xdp_bad_source; logged once)",
	dropOptions:  "AF_XDP: a line datagram with IPv4 options the kernel refuses (malformed, a source route, CIPSO) was dropped, as under the socket backends (counted in xdp_bad_ip_options; logged once)",
}

// dropLine drops a datagram of line from src for why: its frame (addr)
// goes back to q's fill ring, and the first drop for why is logged,
// naming the line and the source; drain counts it. Called on the drop
// path only: the datagrams taken pay nothing for it.
func (r *xdpRx) dropLine(q *xdpQueue, addr uint64, why lineDrop, line Line, src netip.AddrPort) {
	q.pending = append(q.pending, addr)
	if !r.warned[why] {
		r.warned[why] = true
		r.log.Warn().Str("line", line.String()).Stringer("source", src).Msg(lineDropWarning[why])
	}
}

// addPfd adds fd to the file descriptors Receive polls, before the wake
// entries, and returns its index in pfds.
func (r *xdpRx) addPfd(fd int) int {
	i := r.wakeAt
	r.pfds = slices.Insert(r.pfds, i, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	r.wakeAt++
	return i
}

// WakeOn sets the file descriptors that also end Receive's wait (Waker):
// polled with the sockets. Busy polling, which never sleeps, polls them
// (without waiting) once a pass while there are any; spinning (Config.Spin)
// sees them when it stops, at most Spin later.
func (r *xdpRx) WakeOn(fds []int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed, err := r.wakeOn.set(fds)
	if changed {
		r.pfds = slices.Grow(r.pfds[:r.wakeAt], r.wakeOn.n)[:r.wakeAt+r.wakeOn.n]
		r.wakeOn.pollFds(r.pfds[r.wakeAt:])
	}
	return err
}

// xdpNeedWakeup reads a socket's need_wakeup flag. Tests replace it to play
// a zero-copy driver that keeps the flag set (veth has no zero-copy mode,
// and in copy mode the kernel never sets it).
var xdpNeedWakeup = (*xsk.Socket).NeedWakeup

// wakeNeeding wakes the sockets whose driver asks for it.
func (r *xdpRx) wakeNeeding() error {
	for _, q := range r.queues {
		if xdpNeedWakeup(q.sock) {
			if err := r.wake(q); err != nil {
				return err
			}
		}
	}
	return nil
}

// wake makes the wakeup syscall on q's socket, counted in
// Stats().Extra "xdp_wakeups". A socket the kernel unbound is not woken:
// the wakeup that finds it unbound unbinds q (and is not an error).
func (r *xdpRx) wake(q *xdpQueue) error {
	if q.unbound {
		return nil
	}
	r.wakeups.Add(1)
	if err := q.sock.Wakeup(); err != nil {
		if errors.Is(err, xsk.ErrUnbound) {
			r.unbind(q, err)
			return nil
		}
		return fmt.Errorf("receive xdp: %w", err)
	}
	return nil
}

// drainWithFallbacks is drain with fallbacks (fallBack): the rings and
// the fallback sockets take turns at being read first, as the socket
// backend's lines do, so that a line on AF_XDP that fills every batch
// (a reader behind) does not starve a line read through a socket, whose
// datagrams the kernel would drop once its buffer is full.
func (r *xdpRx) drainWithFallbacks(pkts []Packet) (int, error) {
	r.fallbackFirst = !r.fallbackFirst
	if r.fallbackFirst {
		n, err := r.drainFallbacks(pkts)
		if n < len(pkts) {
			n += r.drain(pkts[n:])
		}
		return n, err
	}
	n := r.drain(pkts)
	if n == len(pkts) {
		return n, nil
	}
	k, err := r.drainFallbacks(pkts[n:])
	return n + k, err
}

// drainFallbacks reads the fallback sockets (fallBack) into pkts, as the
// socket backend does; the first error comes with what they brought.
// Starting with a different fallback each call: with two devices fallen
// back (a driver reload of a two-port NIC gives both lines'), the first
// made, filling every batch, would starve the other.
func (r *xdpRx) drainFallbacks(pkts []Packet) (int, error) {
	r.fallbackNext++
	return drainInTurn(r.fallbacks, r.fallbackNext, pkts, "xdp fallback")
}

// drainInTurn reads the socket receivers rs into pkts, starting with
// rs[first%len(rs)]; the first error, wrapped as what's, comes with what
// they brought.
func drainInTurn(rs []*socketRx, first int, pkts []Packet, what string) (int, error) {
	n := 0
	var firstErr error
	for i := range rs {
		if n == len(pkts) {
			break
		}
		k, err := rs[(first+i)%len(rs)].drain(pkts[n:])
		n += k
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", what, err)
		}
	}
	return n, firstErr
}

// drain takes what the rx rings hold, round robin over the queues, and
// returns how many packets it put in pkts. Frames that carry no line
// datagram go straight back to the fill ring.
func (r *xdpRx) drain(pkts []Packet) int {
	n := 0
	var userTime int64
	var packets, bytes [2]uint64
	var malformed, unmatched, kernelTS, userTS uint64
	var bad [lineDrops]uint64
	nq := len(r.queues)
	for i := 0; i < nq && n < len(pkts); i++ {
		qi := (r.next + i) % nq
		q := r.queues[qi]
		k := q.sock.Receive(r.descs[:len(pkts)-n])
		if k == 0 {
			continue
		}
		for _, d := range r.descs[:k] {
			// Clear the metadata of every frame, so that stale bytes are
			// never taken for the metadata of a later frame in the buffer.
			meta := q.sock.Meta(d, r.metaLen)
			tai, stamped := bpf.ParseMeta(meta)
			if stamped {
				bpf.ClearMeta(meta)
			}
			dg, class := bpf.ParseFrame(q.sock.Data(d))
			if class != bpf.ClassUDP {
				malformed++
				q.pending = append(q.pending, d.Addr)
				continue
			}
			line, ok := r.match(q.iface, dg)
			if !ok {
				unmatched++
				q.pending = append(q.pending, d.Addr)
				continue
			}
			if !dg.SourceOK() {
				r.dropLine(q, d.Addr, dropSource, line, dg.Src)
				bad[dropSource]++
				continue
			}
			if !dg.OptionsOK() {
				r.dropLine(q, d.Addr, dropOptions, line, dg.Src)
				bad[dropOptions]++
				continue
			}
			if r.verify && !dg.ChecksumOK() {
				r.dropLine(q, d.Addr, dropChecksum, line, dg.Src)
				bad[dropChecksum]++
				continue
			}
			var rxTime int64
			if stamped {
				rxTime = r.realtime(tai)
				kernelTS++
			} else {
				if userTime == 0 {
					userTime = clock.Now()
				}
				rxTime = userTime
				userTS++
			}
			p := &pkts[n]
			p.Data, p.Line, p.Src, p.RxTime = dg.Payload, line, dg.Src, rxTime
			p.SetHandle(uint64(qi+1)<<xdpHandleShift | d.Addr)
			q.lent[d.Addr/xdpFrameSize] = true
			n++
			if line < 2 {
				packets[line]++
				bytes[line] += uint64(len(dg.Payload))
			}
		}
		r.flush(q)
	}
	r.next = (r.next + 1) % nq
	for i := range packets {
		if packets[i] != 0 {
			r.packets[i].Add(packets[i])
			r.bytes[i].Add(bytes[i])
		}
	}
	if malformed != 0 {
		r.malformed.Add(malformed)
	}
	if unmatched != 0 {
		r.unmatched.Add(unmatched)
	}
	for why, k := range bad {
		if k != 0 {
			r.bad[why].Add(k)
		}
	}
	if kernelTS != 0 {
		r.kernelTS.Add(kernelTS)
	}
	if userTS != 0 {
		r.userTS.Add(userTS)
	}
	return n
}

// realtime converts a kernel CLOCK_TAI time to CLOCK_REALTIME, re-reading
// the offset once tai is xdpTAIRefresh past the last read (or before it: a
// clock step). A failed read keeps the old offset until the next refresh.
func (r *xdpRx) realtime(tai int64) int64 {
	if d := tai - r.taiAt; d > xdpTAIRefresh || d < -xdpTAIRefresh {
		if off, err := bpf.TAIOffset(); err == nil {
			r.taiOffset = off
		}
		r.taiAt = tai
	}
	return tai - r.taiOffset
}

// match finds the line of a datagram that came in on iface as the
// steering program does: on a device with VLAN lines a line on the frame's
// VLAN (dg.VLAN, a single 802.1Q tag) first, else, for a frame without a
// tag of a VLAN ID other than 0 (dg.Tagged), the device's line of the
// group and port; the line found alone decides on the source.
func (r *xdpRx) match(iface *xdpIface, dg bpf.Datagram) (Line, bool) {
	var l *xdpLine
	if iface.vlans && dg.VLAN != 0 {
		l = r.lineOf(iface, dg.VLAN, dg.Dst)
	}
	if l == nil && !dg.Tagged {
		l = r.lineOf(iface, 0, dg.Dst)
	}
	if l == nil || l.source.IsValid() && l.source != dg.Src.Addr() {
		return 0, false
	}
	return l.line, true
}

// lineOf returns the line of group and port dst on VLAN vlan of iface (0:
// the device's own), or nil.
func (r *xdpRx) lineOf(iface *xdpIface, vlan uint16, dst netip.AddrPort) *xdpLine {
	for i := range r.lines {
		if l := &r.lines[i]; l.iface == iface && l.vlan == vlan && l.dst == dst {
			return l
		}
	}
	return nil
}

// flush gives q's pending frames back to the kernel, waking the driver
// when it ran out of fill entries and asks for it (need_wakeup; zero-copy
// drivers only).
func (r *xdpRx) flush(q *xdpQueue) {
	if len(q.pending) > 0 {
		if n := q.sock.Fill(q.pending); n < len(q.pending) {
			// No room for the rest: keep them for the next flush, or
			// the socket would lose those frames for good.
			r.fillDeferred.Add(uint64(len(q.pending) - n))
			q.pending = q.pending[:copy(q.pending, q.pending[n:])]
		} else {
			q.pending = q.pending[:0]
		}
		if xdpNeedWakeup(q.sock) {
			r.wake(q) // best effort: the next Receive wakes again
		}
	}
}

// Release returns the packets' frames to their sockets' fill rings. It
// allocates nothing.
func (r *xdpRx) Release(pkts []Packet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() {
		return
	}
	for i := range pkts {
		h := pkts[i].Handle()
		qi := int(h>>xdpHandleShift) - 1
		if qi < 0 || qi >= len(r.queues) {
			continue // a zero Packet, or released already
		}
		pkts[i].SetHandle(0)
		q := r.queues[qi]
		addr := h & xdpHandleAddrMk
		f := addr / xdpFrameSize
		if f >= uint64(len(q.lent)) || !q.lent[f] {
			r.badReleases.Add(1)
			continue
		}
		q.lent[f] = false
		if len(q.pending) == cap(q.pending) {
			r.flush(q)
		}
		q.pending = append(q.pending, addr)
		pkts[i].Data = nil
	}
	for _, q := range r.queues {
		r.flush(q)
	}
}

// xdpPollSlice bounds one pollKeepP wait: what a stop of the world waits
// for it when no preemption signal ends it (GODEBUG=asyncpreemptoff=1; a
// collection makes several stops, so it may wait a few slices). A
// variable for the test that lifts it.
var xdpPollSlice = 10 * time.Millisecond
