package rx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/internal/skmem"
)

// lineSocket is the UDP socket of one line: bound to (group, port) so the
// kernel demultiplexes lines, and joined to the group on the line's
// interface. Every backend keeps one per line open, AF_XDP included, so the
// host sends its IGMP membership reports.
type lineSocket struct {
	fd     int
	line   Line
	group  netip.Addr
	port   uint16
	source netip.Addr // invalid: any source

	// The interface joined on, by name and device (see lineWatch).
	ifname       string
	ifindex      int
	gone         bool // lineWatch found no interface of that name
	rejoinFailed bool // lineWatch's last join on a new device failed (logged)

	// errs: the receive errors built so far (receiveError), by call and
	// errno.
	errs  [4]lineError
	nErrs int
}

// lineError is a receive error of a line: call op failed with errno.
type lineError struct {
	op    string
	errno unix.Errno
	err   error
}

// receiveError returns the error of call op failing with err on the
// line: "receive line A: op: err". It is built once per call and errno
// (four kept a line), not once per failure: it is returned to the receive
// thread, which allocates nothing in steady state, and a line failing on
// every call would have put an error on the heap per call.
func (ls *lineSocket) receiveError(op string, err error) error {
	errno, ok := err.(unix.Errno)
	if ok {
		for _, e := range ls.errs[:ls.nErrs] {
			if e.op == op && e.errno == errno {
				return e.err
			}
		}
	}
	err = fmt.Errorf("receive line %s: %s: %w", ls.line, op, err)
	if ok && ls.nErrs < len(ls.errs) {
		ls.errs[ls.nErrs] = lineError{op: op, errno: errno, err: err}
		ls.nErrs++
	}
	return err
}

// Sizes of the per-packet receive metadata.
const (
	nameLen    = unix.SizeofSockaddrInet4
	controlLen = 32 // SCM_TIMESTAMPNS: cmsghdr (16) + timespec (16)
)

// openLineSockets opens and joins one socket per configured line. On error
// every socket opened so far is closed.
func openLineSockets(cfg *Config) ([]lineSocket, error) {
	// Two such sockets would both get every datagram: each would arrive
	// once per line.
	for i, b := range cfg.Lines {
		for j, a := range cfg.Lines[:i] {
			if a.Interface == b.Interface && a.Group == b.Group && a.Port == b.Port &&
				(!a.Source.IsValid() || !b.Source.IsValid() || a.Source == b.Source) {
				return nil, fmt.Errorf("lines %s and %s both use %v:%d on %s with no source to tell them apart", Line(j), Line(i), b.Group, b.Port, b.Interface)
			}
		}
	}
	socks := make([]lineSocket, 0, len(cfg.Lines))
	for i := range cfg.Lines {
		s, err := openLineSocket(cfg, Line(i))
		if err != nil {
			closeLineSockets(socks)
			return nil, err
		}
		socks = append(socks, s)
	}
	warnReversePath(cfg, false)
	warnXDPSteered(cfg)
	return socks, nil
}

func closeLineSockets(socks []lineSocket) error {
	var errs []error
	for i := range socks {
		if socks[i].fd >= 0 {
			if err := unix.Close(socks[i].fd); err != nil {
				errs = append(errs, fmt.Errorf("close line %s socket: %w", socks[i].line, err))
			}
			socks[i].fd = -1
		}
	}
	return errors.Join(errs...)
}

func openLineSocket(cfg *Config, line Line) (lineSocket, error) {
	s, err := openBoundSocket(cfg, line)
	if err != nil {
		return s, err
	}
	if err := membership(s.fd, unix.IP_ADD_MEMBERSHIP, s.group, s.ifindex); err != nil {
		unix.Close(s.fd)
		s.fd = -1
		lc := &cfg.Lines[line]
		return s, fmt.Errorf("open line %s socket (%s:%d on %s): IP_ADD_MEMBERSHIP: %w", line, lc.Group, lc.Port, lc.Interface, err)
	}
	return s, nil
}

// openBoundSocket is openLineSocket without the join: the socket is bound
// to the line's group and port, and s.ifindex is the line's interface,
// but the kernel delivers it nothing until it joins the group
// (IP_MULTICAST_ALL off).
func openBoundSocket(cfg *Config, line Line) (lineSocket, error) {
	lc := &cfg.Lines[line]
	s := lineSocket{fd: -1, line: line, group: lc.Group, port: lc.Port, source: lc.Source, ifname: lc.Interface}
	op := fmt.Sprintf("open line %s socket (%s:%d on %s)", line, lc.Group, lc.Port, lc.Interface)
	if !lc.Group.Is4() || !lc.Group.IsMulticast() {
		return s, fmt.Errorf("%s: group %s is not an IPv4 multicast address", op, lc.Group)
	}
	if lc.Source.IsValid() && !lc.Source.Is4() {
		return s, fmt.Errorf("%s: source %s is not IPv4", op, lc.Source)
	}
	ifi, err := net.InterfaceByName(lc.Interface)
	if err != nil {
		return s, fmt.Errorf("%s: %w", op, err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return s, fmt.Errorf("%s: socket: %w", op, err)
	}
	s.fd = fd
	fail := func(what string, err error) (lineSocket, error) {
		unix.Close(fd)
		s.fd = -1
		return s, fmt.Errorf("%s: %s: %w", op, what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("SO_REUSEADDR", err)
	}
	// Deliver only the groups this socket joined, not every group the
	// host joined on this port.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0); err != nil {
		return fail("IP_MULTICAST_ALL", err)
	}
	// Without CAP_NET_ADMIN, SO_RCVBUF is capped by rmem_max.
	if got, err := privilege.SetRecvBuffer(fd, cfg.RecvBuffer); err != nil {
		return fail("SO_RCVBUF", err)
	} else if got > 0 && got < cfg.RecvBuffer {
		cfg.Log.Warn().Str("line", line.String()).Int("recv_buffer", cfg.RecvBuffer).Int("granted", got).
			Msg("rx: the line socket's receive buffer is capped by net.core.rmem_max (SO_RCVBUFFORCE needs cap_net_admin): a burst the receive thread does not drain in time is dropped by the kernel (receive_dropped_total); raise net.core.rmem_max or grant cap_net_admin")
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fail("SO_TIMESTAMPNS", err)
	}
	if cfg.BusyPoll {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, cfg.BusyPollUsec); err != nil {
			return fail("SO_BUSY_POLL", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL, 1); err != nil {
			return fail("SO_PREFER_BUSY_POLL", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL_BUDGET, cfg.BusyPollBudget); err != nil {
			return fail("SO_BUSY_POLL_BUDGET", err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: lc.Group.As4(), Port: int(lc.Port)}); err != nil {
		return fail("bind", err)
	}
	s.ifindex = ifi.Index
	return s, nil
}

// addrFromName decodes a struct sockaddr_in.
func addrFromName(name []byte) netip.AddrPort {
	if len(name) < nameLen || binary.NativeEndian.Uint16(name) != unix.AF_INET {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(name[4:8])), binary.BigEndian.Uint16(name[2:4]))
}

// parseControl extracts the kernel receive time (SCM_TIMESTAMPNS, ns since
// the epoch; 0 if absent).
func parseControl(b []byte) (rxTime int64) {
	for len(b) >= unix.SizeofCmsghdr {
		l := int(binary.NativeEndian.Uint64(b))
		if l < unix.SizeofCmsghdr || l > len(b) {
			return
		}
		level := int32(binary.NativeEndian.Uint32(b[8:]))
		typ := int32(binary.NativeEndian.Uint32(b[12:]))
		data := b[unix.SizeofCmsghdr:l]
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && len(data) >= 16 {
			return int64(binary.NativeEndian.Uint64(data))*1e9 + int64(binary.NativeEndian.Uint64(data[8:]))
		}
		b = b[min((l+7)&^7, len(b)):]
	}
	return
}

// counters are the statistics shared by the socket and io_uring backends;
// a receive loop adds a batch at a time so Stats may be read concurrently.
type counters struct {
	packets, bytes [2]atomic.Uint64
	malformed      atomic.Uint64
	unmatched      atomic.Uint64
	sourceFiltered atomic.Uint64
	truncated      atomic.Uint64
	// waitTimeouts, waitWoken: Receive's waits that ended with nothing,
	// by their poll timeout or by a wake file descriptor (Waker).
	waitTimeouts, waitWoken atomic.Uint64
}

// batchCounts accumulates one Receive call.
type batchCounts struct {
	packets, bytes [2]uint64
}

func (b *batchCounts) add(line Line, n int) {
	if line < 2 {
		b.packets[line]++
		b.bytes[line] += uint64(n)
	}
}

func (c *counters) addBatch(b *batchCounts) {
	for i := range b.packets {
		if b.packets[i] != 0 {
			c.packets[i].Add(b.packets[i])
			c.bytes[i].Add(b.bytes[i])
		}
	}
	*b = batchCounts{}
}

// dropGauge counts the kernel's drops of the line sockets (SO_MEMINFO,
// SK_MEMINFO_DROPS: datagrams the full socket buffer refused) while the
// sockets are open, and keeps the count after Close, safely against a
// concurrent Close.
//
// The kernel's counter is 32 bits per socket (sk_drops) and wraps after
// 2^32 drops. The gauge adds the difference from the last reading of each
// socket, modulo 2^32, so its total keeps counting across a wrap as long
// as a socket drops fewer than 2^32 datagrams between two reads (the
// handler reads every 20 ms).
type dropGauge struct {
	mu    sync.Mutex
	last  [MaxLines]uint32 // each socket's counter at the last read
	total uint64
}

// update adds the drops since the last read. A socket whose counter
// cannot be read is skipped until the next read; closed sockets (fd -1,
// set under g.mu by closeSockets) leave the total as it is.
func (g *dropGauge) update(socks []lineSocket) {
	for i := range socks {
		if i == len(g.last) || socks[i].fd < 0 {
			return
		}
		d, ok := skmem.Drops(socks[i].fd)
		if !ok {
			continue
		}
		g.total += uint64(d - g.last[i])
		g.last[i] = d
	}
}

func (g *dropGauge) read(socks []lineSocket) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.update(socks)
	return g.total
}

// closeSockets records the final drop count and closes the sockets.
func (g *dropGauge) closeSockets(socks []lineSocket) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.update(socks)
	return closeLineSockets(socks)
}

func (c *counters) stats() Stats {
	var s Stats
	for i := range s.Packets {
		s.Packets[i] = c.packets[i].Load()
		s.Bytes[i] = c.bytes[i].Load()
	}
	s.Malformed = c.malformed.Load()
	s.Unmatched = c.unmatched.Load()
	s.Extra.Add("source_filtered", c.sourceFiltered.Load())
	s.Extra.Add("truncated", c.truncated.Load())
	s.Extra.Add("wait_timeouts", c.waitTimeouts.Load())
	s.Extra.Add("wait_woken", c.waitWoken.Load())
	return s
}

// membership joins (IP_ADD_MEMBERSHIP) or leaves (IP_DROP_MEMBERSHIP) group
// on the device of index ifindex.
func membership(fd, op int, group netip.Addr, ifindex int) error {
	return unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, op, &unix.IPMreqn{Multiaddr: group.As4(), Ifindex: int32(ifindex)})
}
