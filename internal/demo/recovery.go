package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/internal/exchange"
	"github.com/marketfeed/feedhandler/internal/netlab"
)

// RerequestPort is the lab re-request server's UDP port (on the sender's
// side of the lab).
const RerequestPort = 26400

// Recovery adds the lab's recovery servers to a run. The re-request
// server runs on the sender's side of the lab and serves the whole day
// (what the exchange sent, including what was dropped on both lines).
type Recovery struct {
	Rerequest    bool          // run a re-request server and point the handler at it
	MaxPerAnswer int           // most messages per answer (0: as asked)
	AnswerLoss   float64       // probability to lose each answer packet
	AnswerDelay  time.Duration // delay before each answer
	Refuse       bool          // the server reads requests and never answers
	// AnswerShuffle sends an answer's packets in random order, of at
	// most AnswerMaxPacket bytes (0: as a line's).
	AnswerShuffle   bool
	AnswerMaxPacket int
	// Timeout and Retries of the handler's client (0: defaults).
	Timeout time.Duration
	Retries int
	// MaxRequestMessages of the handler's client (0: default).
	MaxRequestMessages int
	// Snapshot runs a GLIMPSE snapshot server serving the books at the
	// position the sender has reached.
	Snapshot bool
	// MaxRerequestGap and LateJoin of the handler (0, "": defaults).
	MaxRerequestGap uint64
	LateJoin        string
	// SnapshotDown: the handler's first SnapshotDown fetches dial a port
	// of the snapshot server's address where nothing listens (the server
	// down: the kernel refuses the connection); the later ones reach it.
	SnapshotDown int
	// SnapshotLag: the snapshot server serves the books this many
	// sequence numbers behind the position the sender reached (a server
	// lagging the feed), until the sender has sent the day's last
	// message.
	SnapshotLag uint64
}

// SnapshotPort is the lab snapshot server's TCP port.
const SnapshotPort = 26401

// Lab snapshot server account.
const (
	snapUser = "demo"
	snapPass = "lab-only"
)

// recoveryLab is what startRecovery started.
type recoveryLab struct {
	rr       *exchange.RerequestServer
	snap     *exchange.SnapshotServer
	served   chan error
	progress string   // the sender's progress file
	ends     []uint64 // by packet: its last sequence number
	drop     map[int]bool
}

func (l *recoveryLab) close() {
	if l.rr != nil {
		l.rr.Close()
	}
	if l.snap != nil {
		l.snap.Close()
		<-l.served
	}
}

// position returns the sequence number the exchange has reached: what the
// sender sent, plus the packets right after it that the lab dropped on
// both lines (the exchange sent them; the network lost them).
func (l *recoveryLab) position() uint64 {
	pos := readProgress(l.progress)
	i := sort.Search(len(l.ends), func(i int) bool { return l.ends[i] > pos })
	for ; i < len(l.ends) && l.drop[i]; i++ {
		pos = l.ends[i]
	}
	return pos
}

// lagging returns position less lag, as a snapshot server lagging the
// feed serves; once the exchange has sent the day's last message the
// server has caught up: a constant lag would leave a gap in the day's last
// lag messages beyond every snapshot, for ever.
func (l *recoveryLab) lagging(lag uint64) uint64 {
	p := l.position()
	if n := len(l.ends); n > 0 && p >= l.ends[n-1] {
		return p
	}
	return p - min(p, lag)
}

// startRecovery starts the servers o.Recovery asks for and fills in the
// handler's recovery config.
func startRecovery(lab *netlab.Lab, o *Options, hc *handler.Config, progress string) (*recoveryLab, error) {
	rl := &recoveryLab{progress: progress, drop: o.Drop}
	for _, b := range o.Day.Packets {
		p, _ := moldudp64.Parse(b)
		if p.Messages() > 0 {
			rl.ends = append(rl.ends, p.Next()-1)
		}
	}
	ro := o.Recovery
	if ro == nil {
		return rl, nil
	}
	hist := dayHistory(o.Day)
	hc.Recovery.Do = func(fn func() error) error { return lab.Do(lab.Dst, fn) }
	if ro.Rerequest {
		err := lab.Do(lab.Src, func() error {
			var err error
			rl.rr, err = exchange.NewRerequestServer(exchange.RerequestConfig{
				Listen:      netip.AddrPortFrom(lab.SrcIP, RerequestPort),
				Session:     o.Day.Session,
				Message:     hist.Message,
				MaxMessages: ro.MaxPerAnswer,
				Loss:        ro.AnswerLoss,
				Delay:       ro.AnswerDelay,
				Refuse:      ro.Refuse,
				Shuffle:     ro.AnswerShuffle,
				MaxPacket:   ro.AnswerMaxPacket,
				Seed:        11,
			})
			return err
		})
		if err != nil {
			return rl, fmt.Errorf("demo: re-request server: %w", err)
		}
		hc.Recovery.Rerequest = rerequest.Config{
			Servers:            []netip.AddrPort{rl.rr.Addr()},
			Timeout:            ro.Timeout,
			Retries:            ro.Retries,
			MaxRequestMessages: ro.MaxRequestMessages,
		}
	}
	if ro.Snapshot {
		err := lab.Do(lab.Src, func() error {
			var err error
			rl.snap, err = exchange.NewSnapshotServer(exchange.SnapshotConfig{
				Listen:   netip.AddrPortFrom(lab.SrcIP, SnapshotPort).String(),
				Username: snapUser, Password: snapPass,
				Session:  o.Day.Session.String(),
				Messages: func(seq uint64) ([]byte, bool) { return hist.Message(nil, seq) },
				Position: func() uint64 { return rl.lagging(ro.SnapshotLag) },
			})
			return err
		})
		if err != nil {
			return rl, fmt.Errorf("demo: snapshot server: %w", err)
		}
		rl.served = make(chan error, 1)
		go func() { rl.served <- rl.snap.Serve() }()
		fetchAt := func(addr string) handler.SnapshotFunc {
			return handler.GlimpseSnapshot(glimpse.Config{
				Addr: addr, Username: snapUser, Password: snapPass,
				ConnectTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second,
			})
		}
		up := fetchAt(rl.snap.Addr().String())
		down := fetchAt(netip.AddrPortFrom(lab.SrcIP, SnapshotPort+1).String())
		var fetches atomic.Int64
		fetch := func(ctx context.Context, s moldudp64.Session, fn func([]byte) error) (handler.Snapshot, error) {
			if fetches.Add(1) <= int64(ro.SnapshotDown) {
				return down(ctx, s, fn)
			}
			return up(ctx, s, fn)
		}
		// The TCP connection must be made from the handler's side of the
		// lab: the address exists nowhere else.
		hc.Recovery.Snapshot = func(ctx context.Context, s moldudp64.Session, fn func([]byte) error) (snap handler.Snapshot, err error) {
			derr := lab.Do(lab.Dst, func() error {
				snap, err = fetch(ctx, s, fn)
				return nil
			})
			return snap, errors.Join(derr, err)
		}
		hc.Recovery.SnapshotRetry = 200 * time.Millisecond
	}
	hc.Recovery.MaxRerequestGap = ro.MaxRerequestGap
	hc.Recovery.LateJoin = ro.LateJoin
	return rl, nil
}

// dayHistory records every message of the day for the lab's servers.
func dayHistory(d *Day) *exchange.History {
	h := new(exchange.History)
	for _, p := range d.Packets {
		h.Record(p)
	}
	return h
}

// Hostile sends datagrams of a foreign MoldUDP64 session to both lines'
// groups: Before consistent packets (one message each, sequence numbers
// from 1) before the feed starts, then, while it runs, one datagram with a
// random sequence number every During.
type Hostile struct {
	Before int
	During time.Duration
}

// HostileSession is the foreign session's name.
const HostileSession = "STRAY"

// hostileSender writes the hostile datagrams from the sender's side.
type hostileSender struct {
	conns   []*net.UDPConn
	stop    chan struct{}
	done    chan struct{}
	started bool
	Sent    atomic.Uint64
}

func startHostile(lab *netlab.Lab, o *Options) (*hostileSender, error) {
	hs := &hostileSender{stop: make(chan struct{}), done: make(chan struct{})}
	err := lab.Do(lab.Src, func() error {
		for _, g := range []netip.AddrPort{o.LineA, o.LineB} {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(g))
			if err != nil {
				return err
			}
			hs.conns = append(hs.conns, c)
		}
		return nil
	})
	if err != nil {
		hs.close()
		return nil, fmt.Errorf("demo: hostile sender: %w", err)
	}
	s := moldudp64.NewSession(HostileSession)
	b := moldudp64.NewBuilder(s, 1, 0)
	msg := make([]byte, 12)
	for range o.Hostile.Before {
		b.Add(msg)
		p := b.Flush()
		for _, c := range hs.conns {
			c.Write(p)
			hs.Sent.Add(1)
		}
		time.Sleep(100 * time.Microsecond)
	}
	hs.started = true
	go func() {
		defer close(hs.done)
		if o.Hostile.During <= 0 {
			return
		}
		rng := rand.New(rand.NewPCG(5, 6))
		t := time.NewTicker(o.Hostile.During)
		defer t.Stop()
		for {
			select {
			case <-hs.stop:
				return
			case <-t.C:
				p := moldudp64.AppendHeader(nil, s, 1+rng.Uint64N(1<<40), 0)
				hs.conns[rng.IntN(len(hs.conns))].Write(p)
				hs.Sent.Add(1)
			}
		}
	}()
	return hs, nil
}

func (hs *hostileSender) close() {
	if hs == nil {
		return
	}
	if hs.started {
		close(hs.stop)
		<-hs.done
	}
	for _, c := range hs.conns {
		c.Close()
	}
}

// DropOnBoth picks runs of packets to drop on both lines, spread over the
// day: runs of 1 to 3 packets, the first at the very first packet and the
// last at the last data packet before the end of session (when runs >= 2).
func DropOnBoth(d *Day, runs int) map[int]bool {
	drop := map[int]bool{}
	lastData := len(d.Packets) - 1
	for lastData > 0 {
		if p, err := moldudp64.Parse(d.Packets[lastData]); err == nil && p.Messages() > 0 {
			break
		}
		lastData--
	}
	if runs <= 0 || lastData <= 0 {
		return drop
	}
	drop[0] = true
	if runs == 1 {
		return drop
	}
	drop[lastData] = true
	for i := 1; i < runs-1; i++ {
		at := lastData * i / (runs - 1)
		for k := range 1 + i%3 {
			if at+k < lastData {
				drop[at+k] = true
			}
		}
	}
	return drop
}

// Flap is a link flap of the receiving interface: once the sender has
// sent sequence number AtSeq, the interface is set down for Down, then up
// again, while the sender goes on. By default the interface carries both
// lines (what the sender sends meanwhile is lost on both); with LineA it
// carries line A only, and line B, on a link of its own (a second veth
// pair, and a sender of its own), carries the feed alone meanwhile. The
// flap is over once both ends of the link are operationally up again;
// the sender of the flapped link waits for that halfway between AtSeq and
// the end of the day (Run), so that part of the day always goes over the
// link after it is back.
type Flap struct {
	AtSeq uint64
	Down  time.Duration
	LineA bool
	// MinMessages, above 0, keeps the link down past Down until the
	// sender has sent this many sequence numbers since it went down: how
	// many it sends in Down depends on the CPU it gets (a loaded machine
	// gave the 300 ms flap 39,000 to 48,000 at 10,000 packets a second,
	// and in one CI run fewer than 2,000), and a test that needs a gap
	// of some size says so here.
	MinMessages uint64
	// DownSeq and UpSeq are what the sender had sent when the link went
	// down and when it was operationally up again; Lines the handler's
	// line counters then, and Link and Groups what `ip link show` and `ip
	// maddr show` said of the interface, once it was up (run fills them
	// in).
	DownSeq, UpSeq uint64
	Lines          [2]handler.LineStats
	Link, Groups   string
}

// Joined reports whether groups, what `ip maddr show` says of an
// interface, lists the IPv4 group addr as joined, by one socket or more
// ("inet  239.77.1.1", or "... users 2": under AF_XDP a line's spare
// socket joins its group too).
func Joined(groups, addr string) bool {
	for l := range strings.Lines(groups) {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "inet" && f[1] == addr {
			return true
		}
	}
	return false
}

// waitOperUp waits until dev of namespace ns is operationally up (`ip
// link` says state UP), or fails once stop is closed or a minute passed.
func waitOperUp(lab *netlab.Lab, ns, dev string, stop <-chan struct{}) error {
	for deadline := time.Now().Add(time.Minute); ; {
		out, err := lab.Exec(ns, "ip", "-o", "link", "show", "dev", dev)
		if err == nil && strings.Contains(string(out), "state UP") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: flap: %s not operationally up a minute after it was set up: %s (%v)", dev, out, err)
		}
		select {
		case <-stop:
			return fmt.Errorf("demo: flap: the run ended before %s was operationally up", dev)
		case <-time.After(time.Millisecond):
		}
	}
}

// flapGateAt returns the index of the first packet of pkts that starts
// after sequence number atSeq (down), where a link flap at atSeq holds the
// sender back until the link is down, and the index of the packet halfway
// between it and the last (at), where it holds it back until the link
// passes traffic again (Run); at is -1 when atSeq is in one of the last
// two packets or beyond.
func flapGateAt(pkts [][]byte, atSeq uint64) (down, at int) {
	for i, b := range pkts {
		if p, err := moldudp64.Parse(b); err == nil && p.Seq > atSeq {
			if i >= len(pkts)-1 {
				return -1, -1
			}
			return i, (i + len(pkts)) / 2
		}
	}
	return -1, -1
}

// run waits for the sender to reach f.AtSeq, then flaps the link. down,
// when set, is the gate the sender waits at there (Run): run waits for the
// sender to be at it (down+".waiting"), takes the link down and opens it
// (the file down); else it watches the sender's progress. It returns when
// done, or with an error when stop is closed first (the sender finished
// before AtSeq).
func (f *Flap) run(lab *netlab.Lab, progress, down string, stop <-chan struct{}, stats func() handler.Stats) error {
	for {
		if down != "" {
			if _, err := os.Stat(down + ".waiting"); err == nil {
				break
			}
		} else if readProgress(progress) >= f.AtSeq {
			break
		}
		select {
		case <-stop:
			return fmt.Errorf("demo: flap: the run ended before sequence number %d was sent", f.AtSeq)
		case <-time.After(time.Millisecond):
		}
	}
	if err := lab.SetLink(lab.Dst, lab.DstIf, false); err != nil {
		return fmt.Errorf("demo: flap: %w", err)
	}
	f.DownSeq = readProgress(progress)
	if down != "" {
		if err := os.WriteFile(down, nil, 0o600); err != nil {
			return fmt.Errorf("demo: flap: %w", err)
		}
	}
	time.Sleep(f.Down)
	for deadline := time.Now().Add(time.Minute); readProgress(progress) < f.DownSeq+f.MinMessages; {
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: flap: the sender sent %d sequence numbers in the minute after the link went down, want %d", readProgress(progress)-f.DownSeq, f.MinMessages)
		}
		select {
		case <-stop:
			return fmt.Errorf("demo: flap: the run ended %d sequence numbers after the link went down, before %d", readProgress(progress)-f.DownSeq, f.MinMessages)
		case <-time.After(time.Millisecond):
		}
	}
	if err := lab.SetLink(lab.Dst, lab.DstIf, true); err != nil {
		return fmt.Errorf("demo: flap: %w", err)
	}
	// Set up is not passing traffic yet: the kernel gives the sending
	// end its queueing discipline back later, from linkwatch, a work
	// item that handles such events at most once a second for the whole
	// machine (other tests' links count) and needs the RTNL lock.
	// Measured here with links changing twice a second: the sending end
	// state UP 3 to 709 ms after `ip link set up` returned. Until then
	// the sender's packets are dropped on its side.
	for _, l := range [][2]string{{lab.Dst, lab.DstIf}, {lab.Src, lab.SrcIf}} {
		if err := waitOperUp(lab, l[0], l[1], stop); err != nil {
			return err
		}
	}
	f.UpSeq = readProgress(progress)
	st := stats()
	copy(f.Lines[:], st.Arbiter.Lines[:2])
	link, err := lab.Exec(lab.Dst, "ip", "link", "show", "dev", lab.DstIf)
	if err != nil {
		return fmt.Errorf("demo: flap: %w", err)
	}
	groups, err := lab.Exec(lab.Dst, "ip", "maddr", "show", "dev", lab.DstIf)
	if err != nil {
		return fmt.Errorf("demo: flap: %w", err)
	}
	f.Link, f.Groups = string(link), string(groups)
	return nil
}
