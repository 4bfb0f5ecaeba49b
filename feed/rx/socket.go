package rx

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/clock"
)

// slotSize is the receive buffer per packet: any UDP payload of a
// 1500-byte MTU (1472) fits; larger datagrams are dropped as truncated.
const slotSize = 2048

// socketRx is the plain socket backend: poll(2) over the line sockets, then
// recvmmsg(2) batches into preallocated buffers. Its packets are views into
// one slab reused by the next Receive, so Release has nothing to return.
type socketRx struct {
	mu     sync.Mutex
	closed atomic.Bool
	closer closer
	socks  []lineSocket
	batch  int
	next   int // socket to read first (round robin between lines)

	pfds    []unix.PollFd // the lines', then wake's (Waker)
	wake    wakeSet
	timeout unix.Timespec
	ts      unix.Timespec // ppoll writes the time left back into it
	msgs    []unix.Mmsghdr
	iovs    []unix.Iovec
	names   []unix.RawSockaddrInet4
	ctrl    []byte
	slab    []byte

	counters
	bc    batchCounts
	drops dropGauge
	watch lineWatch
}

func openSocket(cfg Config) (Receiver, error) {
	socks, err := openLineSockets(&cfg)
	if err != nil {
		return nil, fmt.Errorf("open socket backend: %w", err)
	}
	return newSocketRx(cfg, socks), nil
}

// newSocketRx is the socket backend of open line sockets socks (also the
// xdp backend's fallback, see xdpRx.fallBack).
func newSocketRx(cfg Config, socks []lineSocket) *socketRx {
	s := &socketRx{
		socks:   socks,
		batch:   cfg.BatchSize,
		pfds:    make([]unix.PollFd, len(socks), len(socks)+MaxWakeFds),
		timeout: unix.NsecToTimespec(int64(cfg.PollTimeout)),
		msgs:    make([]unix.Mmsghdr, cfg.BatchSize),
		iovs:    make([]unix.Iovec, cfg.BatchSize),
		names:   make([]unix.RawSockaddrInet4, cfg.BatchSize),
		ctrl:    make([]byte, cfg.BatchSize*controlLen),
		slab:    make([]byte, cfg.BatchSize*slotSize),
		watch:   lineWatch{log: cfg.Log, every: cfg.PollTimeout},
	}
	for i := range socks {
		s.pfds[i] = unix.PollFd{Fd: int32(socks[i].fd), Events: unix.POLLIN}
	}
	for i := range s.msgs {
		s.iovs[i].Base = &s.slab[i*slotSize]
		s.iovs[i].SetLen(slotSize)
		h := &s.msgs[i].Hdr
		setMsgName(h, &s.names[i])
		h.Iov = &s.iovs[i]
		h.Iovlen = 1
		h.Control = &s.ctrl[i*controlLen]
	}
	return s
}

func (s *socketRx) Backend() string { return BackendSocket + " (recvmmsg)" }

func (s *socketRx) Stats() Stats {
	st := s.counters.stats()
	// A truncated datagram is a line datagram lost here.
	st.Dropped = s.drops.read(s.socks) + s.truncated.Load()
	s.watch.addStats(&st)
	return st
}

// WakeOn sets the file descriptors that also end Receive's wait (Waker):
// polled with the line sockets.
func (s *socketRx) WakeOn(fds []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed, err := s.wake.set(fds)
	if changed {
		s.pfds = s.pfds[:len(s.socks)+s.wake.n]
		s.wake.pollFds(s.pfds[len(s.socks):])
	}
	return err
}

// Receive reads what is queued on the line sockets; when nothing is, it
// polls them (and the wake file descriptors, Waker) for at most the
// configured timeout and reads again.
func (s *socketRx) Receive(pkts []Packet) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return 0, ErrClosed
	}
	pkts = pkts[:min(len(pkts), s.batch)]
	n, err := s.drain(pkts)
	if n > 0 {
		s.watch.busy(s.socks)
	}
	if n > 0 || err != nil {
		return n, err
	}
	// (0, nil) must mean nothing arrived for the whole timeout: callers
	// treat it as "every line drained". A poll cut short by a signal (Go's
	// preemption sends them often) polls again for the rest.
	s.watch.check(time.Now(), s.socks)
	s.ts = s.timeout
	for {
		for i := range s.pfds {
			s.pfds[i].Revents = 0
		}
		ready, err := unix.Ppoll(s.pfds, &s.ts, nil) // the kernel leaves the time not slept in s.ts
		if err != nil {
			if errors.Is(err, unix.EINTR) && !s.closed.Load() && (s.ts.Sec > 0 || s.ts.Nsec > 0) {
				continue
			}
			if errors.Is(err, unix.EINTR) {
				s.waitTimeouts.Add(1)
				return 0, nil
			}
			return 0, fmt.Errorf("receive: poll: %w", err)
		}
		if ready == 0 {
			s.waitTimeouts.Add(1)
			return 0, nil
		}
		n, err := s.drain(pkts)
		if n == 0 && err == nil && wakeReady(s.pfds[len(s.socks):]) {
			s.waitWoken.Add(1)
		}
		return n, err
	}
}

// drain reads every line socket once without blocking, starting with a
// different line each call so a busy line cannot starve the other. A line
// whose read fails does not keep the others from being read: the first
// error is returned with what they brought.
func (s *socketRx) drain(pkts []Packet) (int, error) {
	out, slot := 0, 0
	now := int64(0)
	var firstErr error
	for k := range s.socks {
		if slot >= len(pkts) {
			break
		}
		ls := &s.socks[(s.next+k)%len(s.socks)]
		want := len(pkts) - slot
		for i := slot; i < slot+want; i++ {
			s.msgs[i].Hdr.Namelen = nameLen
			s.msgs[i].Hdr.SetControllen(controlLen)
			s.msgs[i].Hdr.Flags = 0
		}
		m, err := recvmmsg(ls.fd, s.msgs[slot:slot+want], unix.MSG_DONTWAIT)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			if firstErr == nil {
				firstErr = ls.receiveError("recvmmsg", err)
			}
			continue
		}
		for i := slot; i < slot+m; i++ {
			h := &s.msgs[i].Hdr
			name := sockaddrBytes(&s.names[i], nameLen)
			rxTime := parseControl(s.ctrl[i*controlLen : i*controlLen+int(h.Controllen)])
			if h.Flags&unix.MSG_TRUNC != 0 {
				s.truncated.Add(1)
				continue
			}
			src := addrFromName(name)
			if ls.source.IsValid() && src.Addr() != ls.source {
				s.sourceFiltered.Add(1)
				continue
			}
			if rxTime == 0 {
				if now == 0 {
					now = clock.Now()
				}
				rxTime = now
			}
			size := int(s.msgs[i].Len)
			pkts[out] = Packet{Data: s.slab[i*slotSize : i*slotSize+size : i*slotSize+size], Line: ls.line, Src: src, RxTime: rxTime}
			s.bc.add(ls.line, size)
			out++
		}
		slot += m
	}
	s.next++
	s.addBatch(&s.bc)
	return out, firstErr
}

// Release is a no-op: the slab is reused by the next Receive.
func (s *socketRx) Release(pkts []Packet) {}

func (s *socketRx) Close() error { return s.closer.do(s.close) }

func (s *socketRx) close() error {
	s.closed.Store(true)
	s.mu.Lock() // wait for a Receive in progress (bounded by PollTimeout)
	defer s.mu.Unlock()
	if err := s.drops.closeSockets(s.socks); err != nil {
		return fmt.Errorf("close socket backend: %w", err)
	}
	return nil
}
