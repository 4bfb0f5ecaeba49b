// Package rx is the one receive interface shared by every backend: AF_XDP
// (package xsk with the steering program of package bpf), io_uring (package
// uring) and plain sockets with recvmmsg. Open picks a backend; in auto mode
// it tries AF_XDP, then io_uring, then recvmmsg, logging why each step fell
// back.
//
// The contract is batch-oriented, modelled on wireguard-go's conn.Bind:
//
//	n, err := r.Receive(pkts)   // fills pkts[:n] with views into backend memory
//	... use pkts[:n] ...
//	r.Release(pkts[:n])         // hand the buffers back to the kernel
//
// Packet.Data is valid from Receive until Release. A backend may hold only a
// bounded number of unreleased packets; callers release every batch before
// asking for the next one.
//
// Backends:
//
//   - "socket": one UDP socket per line bound to (group, port), so the
//     kernel demultiplexes the lines; poll(2) over them, then recvmmsg(2)
//     batches into preallocated buffers (the views are reused by the next
//     Receive; Release is a no-op).
//   - "uring": the same sockets, one io_uring with a provided buffer ring
//     and one multishot RECVMSG per line socket (package uring). Buffers go
//     back to the kernel on Release; a request that ends (ENOBUFS when the
//     caller holds every buffer, cancellation) is re-armed by the next
//     Receive. Completions the kernel dropped (the wait's EBADR) have every
//     line's request cancelled, the buffers taken back and the lines
//     re-armed (uringRx.dropped). Set Config.LockedThread when Receive runs on a locked OS
//     thread: the ring then uses SINGLE_ISSUER|DEFER_TASKRUN.
//   - "xdp": AF_XDP (xdp*.go, packages xsk and bpf).
//
// In every mode each line has a socket joined to its group
// (IP_ADD_MEMBERSHIP with the line interface's index), so the host answers
// IGMP queries and a switch keeps forwarding the group. The socket
// backends set SO_RCVBUFFORCE (Config.RecvBuffer), SO_TIMESTAMPNS (Packet.RxTime
// is the kernel's receive time); Stats.Dropped is the sockets' drop counter
// (SO_MEMINFO: datagrams refused by a full socket buffer) plus truncated
// datagrams, and the busy-poll options when
// Config.BusyPoll is set. A line with LineConfig.Source accepts only
// datagrams from that address; others are counted in
// Stats.Extra.Get("source_filtered"). Receive, Release and Stats of every
// backend allocate nothing.
//
// Every backend is also a Waker: the caller may give it other file
// descriptors (the handler's re-request sockets while a request is out)
// whose readability ends Receive's wait too, with (0, nil).
package rx

import (
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Line identifies one of the redundant feed lines (index into Config.Lines).
type Line uint8

const (
	LineA Line = 0
	LineB Line = 1
)

func (l Line) String() string {
	if l < 26 {
		return string(rune('A' + l))
	}
	return "?"
}

// Packet is one received UDP payload (a MoldUDP64 packet) and where it came from.
type Packet struct {
	Data   []byte         // UDP payload; a view valid until Release
	Line   Line           // which configured line it arrived on
	Src    netip.AddrPort // source address, when the backend knows it
	RxTime int64          // receive timestamp, ns since the Unix epoch (CLOCK_REALTIME)

	handle uint64 // backend-private: UMEM address, buffer id, ...
}

// Handle returns the backend-private buffer handle. Backends use it in Release.
func (p *Packet) Handle() uint64 { return p.handle }

// SetHandle sets the backend-private buffer handle.
func (p *Packet) SetHandle(h uint64) { p.handle = h }

// LineConfig is one multicast line of a feed.
type LineConfig struct {
	Name      string     // "A", "B"
	Interface string     // interface to receive on (and to join the group on)
	Group     netip.Addr // multicast destination group
	Port      uint16     // UDP destination port
	Source    netip.Addr // optional: only accept packets from this source (invalid = any)
}

// Backend names.
const (
	BackendAuto   = "auto"
	BackendXDP    = "xdp"
	BackendUring  = "uring"
	BackendSocket = "socket"
)

// Config selects and tunes a backend.
type Config struct {
	Lines   []LineConfig
	Backend string // BackendAuto (default), BackendXDP, BackendUring, BackendSocket

	// Options; zero values pick sensible defaults.
	Queues         []int         // AF_XDP: rx queues to bind (default: queue 0)
	ZeroCopy       string        // AF_XDP: "auto" (default), "on" (required), "off"
	XDPMode        string        // AF_XDP: "auto" (default: native, then generic), "native", "generic"
	BusyPoll       bool          // SO_PREFER_BUSY_POLL + SO_BUSY_POLL (xdp, socket); NAPI busy polling of the ring (uring, Linux 6.9+)
	BusyPollUsec   int           // SO_BUSY_POLL value (default 20)
	BusyPollBudget int           // SO_BUSY_POLL_BUDGET (default 64)
	BatchSize      int           // max packets per Receive (default 64)
	RingSize       int           // ring / buffer count hint (default per backend)
	RecvBuffer     int           // SO_RCVBUF(FORCE) bytes for sockets (default 8 MiB)
	PollTimeout    time.Duration // how long Receive blocks with no traffic (default 100ms)
	// Spin: AF_XDP only. Receive first polls the rx rings in user space
	// (no syscall, no sleep) for up to this long, and only then blocks in
	// poll(2) for the rest of PollTimeout. A packet then reaches a spinning
	// thread without a scheduler wakeup (tens of microseconds on a VM), at
	// the cost of the thread's whole CPU while it spins. 0: block at once.
	// A socket whose driver asks to be woken (need_wakeup, zero-copy) gets
	// one wakeup syscall per Receive while spinning, not one per pass.
	// With BusyPoll, Receive never blocks and wakes every
	// queue on every pass, so Spin changes nothing. Other backends ignore it.
	Spin time.Duration

	// NoChecksums: AF_XDP only. Receive does not verify the IPv4 header
	// and UDP checksums of line datagrams. By default it does, and drops a
	// datagram that fails (Stats.Malformed, Extra "xdp_bad_checksum"), as
	// the kernel does before a socket sees it: an AF_XDP socket gets frames
	// as they came, and a NIC that checked them in hardware tells only the
	// kernel's stack. Turn it off only for a sender on this host whose
	// checksums are left to offload (a veth with tx checksumming on carries
	// partial ones), never for a feed from the wire.
	NoChecksums bool

	// LockedThread promises that Open, Receive, Release and Close are all
	// called from one goroutine locked to its OS thread
	// (runtime.LockOSThread), in the receiving namespace. io_uring then
	// uses SINGLE_ISSUER|DEFER_TASKRUN: completions are produced in batches
	// when Receive waits, instead of one thread wakeup per datagram.
	LockedThread bool

	// KeepP promises that the receiving thread is the process's only
	// thread that holds on to a Go P (run to completion: no shard threads).
	// The AF_XDP backend then sleeps in a raw ppoll, keeping its P, while
	// GOMAXPROCS is over 1 (checked at each sleep): when a packet wakes
	// it, it runs at once instead of waiting for a P that the runtime
	// handed away during the sleep. The other goroutines have the other
	// Ps; with more hot threads than that leaves room for they would wait
	// for sysmon's preemptions instead. Other backends ignore it.
	KeepP bool

	Log zerolog.Logger
}

// Stats are cumulative receive counters. All backends fill what they can.
type Stats struct {
	Packets   [2]uint64 // per line (A, B)
	Bytes     [2]uint64 // payload bytes per line
	Malformed uint64    // line datagrams the backend received and dropped as bad (truncated headers, wrong lengths, AF_XDP: failed checksums); not other traffic (AF_XDP: the program's per-interface count is Extra "xdp_malformed")
	Unmatched uint64    // frames that matched no configured line
	Dropped   uint64    // line datagrams lost before Receive: kernel drops (ring full, socket overflow, XDP rx_dropped), truncated (too big for a slot), XDP no_socket and fragmented where a line has no kernel socket (xdp_kernel.go). Not AF_XDP zero-copy's NIC drops for an empty fill ring (see xdpRx.Stats)
	Extra     Extra     // the backend's own counters, by name
}

// MaxExtra is how many counters Extra holds.
const MaxExtra = 40

// Extra is a backend's own counters by name ("xdp_redirected", "rearms").
// It is a fixed-size value rather than a map so that Stats allocates nothing
// (the handler copies it every 20 ms for the life of the process) and so
// that copies of it share nothing.
type Extra struct {
	n     int
	names [MaxExtra]string
	vals  [MaxExtra]uint64
}

// Get returns the counter called name; 0 when the backend has none.
func (e Extra) Get(name string) uint64 {
	for i := range e.n {
		if e.names[i] == name {
			return e.vals[i]
		}
	}
	return 0
}

// Len is the number of counters.
func (e Extra) Len() int { return e.n }

// At returns counter i (0 <= i < Len) and its name.
func (e Extra) At(i int) (name string, v uint64) { return e.names[i], e.vals[i] }

// MarshalJSON writes the counters as a JSON object, as the map they
// replace did (debug logs of Stats).
func (e Extra) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i := range e.n {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuoteToASCII(b, e.names[i])
		b = append(b, ':')
		b = strconv.AppendUint(b, e.vals[i], 10)
	}
	return append(b, '}'), nil
}

// Add adds v to the counter called name, adding the counter when it is new.
// Backends have a fixed set of names, under MaxExtra: a name past
// MaxExtra is a programming error and panics (every backend's Stats runs in
// the tests).
func (e *Extra) Add(name string, v uint64) {
	for i := range e.n {
		if e.names[i] == name {
			e.vals[i] += v
			return
		}
	}
	if e.n == MaxExtra {
		panic("rx: more than MaxExtra counters in Stats.Extra: " + name)
	}
	e.names[e.n], e.vals[e.n] = name, v
	e.n++
}

// Receiver is implemented by every backend.
type Receiver interface {
	// Receive fills pkts with up to len(pkts) packets and returns how many.
	// It blocks at most Config.PollTimeout; (0, nil) means nothing arrived.
	// After Close it returns ErrClosed.
	Receive(pkts []Packet) (int, error)
	// Release returns the buffers behind pkts to the backend. After
	// Close it does nothing.
	Release(pkts []Packet)
	// Backend reports the backend in use ("xdp", "uring", "socket") with its mode.
	Backend() string
	Stats() Stats
	// Close stops receiving and frees the backend's memory, the buffers
	// of packets not yet released included: their Data must not be read
	// after Close: under xdp and uring the memory behind it is unmapped,
	// and reading it faults (SIGSEGV, which kills the process). Copy what
	// must outlive the receiver before closing it. Close waits for a
	// Receive in progress to return. The teardown runs once: a second
	// Close, during the first or after it, returns when the first has
	// finished, with its error. Stats still works after Close and keeps
	// the last values.
	Close() error
}

var (
	// ErrClosed is returned by Receive after Close.
	ErrClosed = errors.New("receiver closed")
	// ErrNotSupported is wrapped by backends when the kernel, driver,
	// privileges or limits lack what they need (an AF_XDP UMEM or io_uring
	// rings above RLIMIT_MEMLOCK without cap_ipc_lock); the auto chain
	// falls back on it.
	ErrNotSupported = errors.New("not supported")
)

// closer runs a backend's teardown once. Every Close returns when it has
// finished, with its error: a second Close during the first waits for it
// instead of returning while the first still tears down what the caller
// may then free or reuse (the handler's Stop and capture.Close alike).
type closer struct {
	once sync.Once
	err  error
}

func (c *closer) do(teardown func() error) error {
	c.once.Do(func() { c.err = teardown() })
	return c.err
}
