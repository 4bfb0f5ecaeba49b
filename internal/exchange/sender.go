package exchange

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// Line is one destination with its fault injection. Probabilities are in
// [0, 1] and independent per packet.
type Line struct {
	Group netip.Addr // destination: a multicast group (or, for tests, a unicast address)
	Port  uint16

	Loss    float64 // drop the packet on this line
	Dup     float64 // send the packet twice in a row
	Reorder float64 // hold the packet back and send it after the next one
	// Lag delays the line by this many of its input packets: the copies
	// one input packet put on the line (the packet, its duplicate, a
	// packet held back by Reorder released after it) go out together once
	// Lag more input packets put copies behind them (the rest at the end),
	// so that the line trails the others (a line B on a longer path) as
	// it would send without Lag: a duplicate right after its packet, a
	// reordered packet right after the one it went behind. (Delayed by
	// datagrams, they went out an input packet apart each, 100 µs at 10,000
	// packets a second: a line reordering its packets by more than the
	// arbiter's grace.)
	Lag int
}

// Config shapes a Sender. Zero values pick the defaults shown.
type Config struct {
	Interface string     // egress interface for multicast (IP_MULTICAST_IF); "" = routing table
	Source    netip.Addr // optional local address to bind
	Lines     []Line     // one per feed line (A, B, ...)

	Rate     float64       // input packets per second; 0 = as fast as possible
	Burst    int           // token bucket depth in packets (default: Rate/2000, within [1, 32])
	Count    int           // stop after this many input packets; 0 = until the input ends
	Duration time.Duration // stop after this long; 0 = no limit

	// Deadline paces by absolute deadlines instead of the token bucket:
	// input packet i is due at start + i/Rate. The sending goroutine locks
	// its OS thread, sets the thread's timer slack to 1 ns (the default
	// 50 µs delays every wakeup by up to that much) and sleeps in
	// clock_nanosleep(TIMER_ABSTIME) until the next packet is due; it never
	// spins. The packets that came due while it slept (a late wakeup) go
	// out together in one sendmmsg, at most Burst of them: the only
	// bursts, and bounded. A sender more than Burst packets behind moves
	// its schedule on (Stats.Slips) rather than catch up. Unpaced (Rate 0),
	// every sendmmsg carries Burst input packets. Packets wait for their
	// sendmmsg as copies in a buffer NewSender allocates (Burst packets of
	// moldudp64.MaxPayload, at least 64 KiB), not in the source's memory.
	Deadline bool
	// Pin, with CPU, pins the sending thread to one CPU for the Send (on a
	// veth, the receiving side's XDP and socket work runs in softirq on
	// the sender's CPU too).
	Pin bool
	CPU int

	TTL  int   // multicast TTL (default 1)
	Loop bool  // IP_MULTICAST_LOOP (default off)
	Seed int64 // PRNG seed for injection (line i uses Seed+i)
}

// LineStats counts what one line did.
type LineStats struct {
	Sent       uint64 // datagrams written, duplicates included
	Bytes      uint64 // payload bytes written
	Dropped    uint64 // input packets dropped by Loss
	Duplicated uint64 // input packets sent twice
	Reordered  uint64 // input packets sent after their successor (a packet held at the end goes out last, in order, and is not counted)
	Errors     uint64 // writes that failed (e.g. ENOBUFS); the packet is lost
}

// Stats summarise a Send.
type Stats struct {
	Input   uint64 // input packets taken
	Elapsed time.Duration
	Lines   []LineStats
	// Deadline pacing: writes (sendmmsg calls) that carried more than one
	// input packet because a late wakeup left several due, and the most
	// input packets one write carried.
	Bursts   uint64
	MaxBurst int
	// Slips counts the times deadline pacing found itself more than Burst
	// packets behind its schedule (its thread had lost the CPU) and moved
	// the schedule on instead of catching up: the rate reached is then
	// below Rate.
	Slips uint64
}

// Sender writes packets to its lines. It is not safe for concurrent use.
type Sender struct {
	cfg   Config
	lines []lineState
	batch *batch        // the current input packet's copies, written with one sendmmsg
	arena []byte        // Deadline: copies of the input packets queued in batch (see sendTimed)
	sent  atomic.Uint64 // highest MoldUDP64 sequence number offered to the lines
}

// maxDatagram is the largest UDP payload: the arena always holds one.
const maxDatagram = 1<<16 - 1

// Sent returns the highest MoldUDP64 sequence number of a message the
// sender has offered to its lines so far (0 before any), read from the
// packets' headers. Safe to call from any goroutine while Send runs; a
// snapshot server uses it as its position.
func (s *Sender) Sent() uint64 { return s.sent.Load() }

// notePosition records the last sequence number of MoldUDP64 packet p.
func (s *Sender) notePosition(p []byte) {
	if last := lastSeq(p); last > s.sent.Load() {
		s.sent.Store(last)
	}
}

// lastSeq returns the sequence number of the last message of MoldUDP64
// packet p, 0 for a heartbeat, an end of session or a short packet.
func lastSeq(p []byte) uint64 {
	if len(p) < 20 {
		return 0
	}
	seq := binary.BigEndian.Uint64(p[10:18])
	n := binary.BigEndian.Uint16(p[18:20])
	if n == 0 || n == 0xFFFF || seq == 0 {
		return 0 // heartbeat or end of session
	}
	return seq + uint64(n) - 1
}

type lineState struct {
	Line
	idx  int
	q    *batch
	fd   int
	rng  *rand.Rand
	held []byte   // packet held back by Reorder
	lag  [][]byte // copies delayed by Lag, oldest first
	// lagIn: per copy in lag, the input packet that put it there
	// (inputs counts the offers); lagInputs: how many input packets
	// have copies in lag.
	lagIn     []uint64
	inputs    uint64
	lagInputs int
	st        LineStats
}

// NewSender opens one UDP socket per line, connected to its destination;
// every line's copies go out through line 0's socket, addressed per line,
// in one sendmmsg per input packet.
func NewSender(cfg Config) (*Sender, error) {
	if len(cfg.Lines) == 0 {
		return nil, errors.New("new sender: no lines")
	}
	if !(cfg.Rate >= 0) || cfg.Count < 0 || cfg.Duration < 0 { // !(>= 0): NaN too, which paced nothing, forever
		return nil, fmt.Errorf("new sender: rate %v, count %d or duration %v negative or not a number", cfg.Rate, cfg.Count, cfg.Duration)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 1
	}
	if cfg.Burst <= 0 {
		// Small bursts: a veth's 256-entry ring drops larger ones.
		cfg.Burst = max(1, min(32, int(cfg.Rate/2000)))
	}
	ifindex := 0
	if cfg.Interface != "" {
		ifi, err := net.InterfaceByName(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("new sender: %w", err)
		}
		ifindex = ifi.Index
	}
	s := &Sender{cfg: cfg}
	for i, l := range cfg.Lines {
		for _, p := range []float64{l.Loss, l.Dup, l.Reorder} {
			if !(p >= 0 && p <= 1) { // NaN too
				s.Close()
				return nil, fmt.Errorf("new sender: line %d: probability %v outside [0, 1]", i, p)
			}
		}
		fd, err := openSocket(&cfg, l, ifindex)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("new sender: line %d (%s:%d): %w", i, l.Group, l.Port, err)
		}
		seed := uint64(cfg.Seed) + uint64(i)
		s.lines = append(s.lines, lineState{Line: l, idx: i, fd: fd, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))})
	}
	perWrite := 1
	if cfg.Deadline {
		perWrite = cfg.Burst
		s.arena = make([]byte, max(cfg.Burst*moldudp64.MaxPayload, maxDatagram))
	}
	fds, err := s.lineSockets()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("new sender: %w", err)
	}
	s.batch = newBatch(fds, cfg.Lines, perWrite)
	for i := range s.lines {
		s.lines[i].q = s.batch
	}
	return s, nil
}

func openSocket(cfg *Config, l Line, ifindex int) (int, error) {
	if !l.Group.Is4() {
		return -1, fmt.Errorf("destination %s is not IPv4", l.Group)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %w", what, err)
	}
	if l.Group.IsMulticast() {
		if ifindex != 0 {
			if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifindex)}); err != nil {
				return fail("IP_MULTICAST_IF", err)
			}
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, cfg.TTL); err != nil {
			return fail("IP_MULTICAST_TTL", err)
		}
		loop := 0
		if cfg.Loop {
			loop = 1
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, loop); err != nil {
			return fail("IP_MULTICAST_LOOP", err)
		}
	}
	if cfg.Source.IsValid() {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: cfg.Source.As4()}); err != nil {
			return fail("bind "+cfg.Source.String(), err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: l.Group.As4(), Port: int(l.Port)}); err != nil {
		return fail("connect", err)
	}
	return fd, nil
}

// lineSockets returns, by line, the socket its datagrams are written on:
// line 0's when the line's socket has line 0's source address, else its
// own (see batch). Before, every line went through line 0's socket, so a
// line routed out of another interface left through line 0's, from line
// 0's address.
func (s *Sender) lineSockets() ([]int, error) {
	fds := make([]int, len(s.lines))
	var first netip.Addr
	for i := range s.lines {
		a, err := s.LocalAddr(i)
		if err != nil {
			return nil, err
		}
		fds[i] = s.lines[i].fd
		if i == 0 {
			first = a.Addr()
		} else if a.Addr() == first {
			fds[i] = s.lines[0].fd
		}
	}
	return fds, nil
}

// LocalAddr returns the source address of line i's datagrams.
func (s *Sender) LocalAddr(i int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(s.lines[i].fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("sender line %d local address: %w", i, err)
	}
	in, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("sender line %d local address: not IPv4", i)
	}
	return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), uint16(in.Port)), nil
}

// Close closes the line sockets.
func (s *Sender) Close() error {
	var errs []error
	for i := range s.lines {
		if s.lines[i].fd >= 0 {
			errs = append(errs, unix.Close(s.lines[i].fd))
			s.lines[i].fd = -1
		}
	}
	return errors.Join(errs...)
}

// Packets adapts a slice of payloads to Send's input.
func Packets(pkts [][]byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for _, p := range pkts {
			if !yield(p) {
				return
			}
		}
	}
}

// Send offers every input packet to every line, paced at Config.Rate, until
// the input ends, Config.Count packets were taken, Config.Duration passed or
// ctx is done. Packets held back for reordering are flushed at the end.
// Send is done with an input slice when it asks for the next one, so a
// source may reuse its buffer: a packet that waits (a held one, or with
// Deadline one queued for the next sendmmsg) is a copy.
func (s *Sender) Send(ctx context.Context, pkts iter.Seq[[]byte]) (Stats, error) {
	if s.cfg.Pin || s.cfg.Deadline {
		restore, err := s.lockThread()
		if err != nil {
			return Stats{}, fmt.Errorf("send: %w", err)
		}
		defer restore()
	}
	if s.cfg.Deadline {
		return s.sendTimed(ctx, pkts)
	}
	st := Stats{}
	start := time.Now()
	var deadline time.Time
	if s.cfg.Duration > 0 {
		deadline = start.Add(s.cfg.Duration)
	}
	var err error
	pace := newBucket(s.cfg.Rate, s.cfg.Burst, start)
	for p := range pkts {
		if s.cfg.Count > 0 && st.Input >= uint64(s.cfg.Count) {
			break
		}
		if err = ctx.Err(); err != nil {
			break
		}
		if !pace.wait(ctx, deadline) {
			break
		}
		st.Input++
		for i := range s.lines {
			s.lines[i].offer(p)
		}
		s.batch.write(s.lines)
		s.notePosition(p)
	}
	return s.finish(st, start, err)
}

// finish flushes held packets and returns the Send's statistics.
func (s *Sender) finish(st Stats, start time.Time, err error) (Stats, error) {
	for i := range s.lines {
		s.lines[i].flush()
	}
	s.batch.write(s.lines)
	for i := range s.lines {
		st.Lines = append(st.Lines, s.lines[i].st)
		s.lines[i].st = LineStats{}
	}
	st.Elapsed = time.Since(start)
	if err != nil {
		return st, fmt.Errorf("send: %w", err)
	}
	return st, nil
}

func (l *lineState) offer(p []byte) {
	l.inputs++
	if l.Loss > 0 && l.rng.Float64() < l.Loss {
		l.st.Dropped++
		return
	}
	copies := 1
	if l.Dup > 0 && l.rng.Float64() < l.Dup {
		l.st.Duplicated++
		copies = 2
	}
	if l.held == nil && l.Reorder > 0 && l.rng.Float64() < l.Reorder {
		l.held = append(make([]byte, 0, len(p)), p...)
		if copies == 2 {
			l.write(p) // the duplicate goes out now, the held copy later
		}
		return
	}
	for range copies {
		l.write(p)
	}
	if l.held != nil {
		l.st.Reordered++ // counted once it really went out after its successor
		l.write(l.held)
		l.held = nil
	}
}

func (l *lineState) flush() {
	if l.held != nil {
		l.write(l.held)
		l.held = nil
	}
	for _, p := range l.lag {
		l.q.add(l.idx, p)
	}
	l.lag, l.lagIn, l.lagInputs = nil, nil, 0
}

// write queues p for this line in the input packet's batch (see batch),
// or, with Lag, a copy of it behind the line's delayed ones, releasing the
// oldest input packet's copies, together, once more than Lag input packets
// have copies waiting.
func (l *lineState) write(p []byte) {
	if l.Lag <= 0 {
		l.q.add(l.idx, p)
		return
	}
	if n := len(l.lagIn); n == 0 || l.lagIn[n-1] != l.inputs {
		l.lagInputs++
	}
	l.lag = append(l.lag, append([]byte(nil), p...))
	l.lagIn = append(l.lagIn, l.inputs)
	for l.lagInputs > l.Lag {
		first := l.lagIn[0]
		for len(l.lag) > 0 && l.lagIn[0] == first {
			l.q.add(l.idx, l.lag[0])
			l.lag, l.lagIn = l.lag[1:], l.lagIn[1:]
		}
		l.lagInputs--
	}
}

// spinBelow is the wait under which the bucket polls the clock instead of
// sleeping: Go timers wake tens of microseconds late, which at 100k
// packets/s would turn pacing into bursts.
const spinBelow = 100 * time.Microsecond

// bucket is a token bucket: rate tokens per second, at most burst saved.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	timer  *time.Timer
}

func newBucket(rate float64, burst int, now time.Time) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// wait takes one token, sleeping until one is available; false when
// deadline (if set) passes or ctx ends first.
func (b *bucket) wait(ctx context.Context, deadline time.Time) bool {
	now := time.Now()
	if !deadline.IsZero() && !now.Before(deadline) {
		return false
	}
	if b.rate <= 0 {
		return true
	}
	for {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
		if b.tokens >= 1 {
			b.tokens--
			return true
		}
		d := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
		if !deadline.IsZero() && now.Add(d).After(deadline) {
			return false
		}
		if d > spinBelow {
			// Sleep most of the wait (timers overshoot), spin the rest.
			d -= spinBelow / 2
			if b.timer == nil {
				b.timer = time.NewTimer(d)
			} else {
				b.timer.Reset(d)
			}
			select {
			case <-ctx.Done():
				return false
			case <-b.timer.C:
			}
		}
		now = time.Now()
	}
}
