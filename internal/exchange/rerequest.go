package exchange

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// History keeps every message of the packets handed to Record, by sequence
// number, for a re-request or snapshot server. It is safe for concurrent
// use: the sender records while servers read.
type History struct {
	mu      sync.RWMutex
	session moldudp64.Session
	first   uint64   // sequence number of data[0]
	offs    []uint64 // message i's offset in data (past 4 GiB on a real day's file)
	data    []byte
}

// Record adds the messages of one MoldUDP64 packet (others are ignored).
// Packets must come in sequence order (as the sender sends them);
// a packet that does not continue the history starts it afresh.
func (h *History) Record(pkt []byte) {
	p, err := moldudp64.Parse(pkt)
	if err != nil || p.Messages() == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	end := h.first + uint64(len(h.offs))
	switch {
	case p.Session != h.session || len(h.offs) == 0 || p.Seq > end:
		// A new session (or a jump): start afresh.
		h.session, h.first, h.offs, h.data = p.Session, p.Seq, h.offs[:0], h.data[:0]
	case p.Seq < end:
		return // a repeat of what is recorded
	}
	it := p.Iter()
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		h.offs = append(h.offs, uint64(len(h.data)))
		h.data = binary.BigEndian.AppendUint16(h.data, uint16(len(m)))
		h.data = append(h.data, m...)
	}
}

// Session returns the session recorded.
func (h *History) Session() moldudp64.Session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.session
}

// Next returns the sequence number after the last recorded message (0
// before anything was recorded).
func (h *History) Next() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.offs) == 0 {
		return 0
	}
	return h.first + uint64(len(h.offs))
}

// Message returns a copy of message seq appended to dst, and whether it
// was recorded.
func (h *History) Message(dst []byte, seq uint64) ([]byte, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if seq < h.first || seq-h.first >= uint64(len(h.offs)) {
		return dst, false
	}
	off := h.offs[seq-h.first]
	n := uint64(binary.BigEndian.Uint16(h.data[off:]))
	return append(dst, h.data[off+2:off+2+n]...), true
}

// RerequestConfig shapes a RerequestServer. Zero values pick the defaults.
type RerequestConfig struct {
	Listen  netip.AddrPort // UDP address to serve on (port 0: any)
	Session moldudp64.Session
	// Message returns message seq appended to dst and whether it can be
	// served (History.Message).
	Message func(dst []byte, seq uint64) ([]byte, bool)

	MaxMessages int           // most messages per answer (0: as asked, up to moldudp64.MaxCount)
	MaxPacket   int           // answer packet size limit (default moldudp64.MaxPayload); a longer message goes alone in a packet of its size
	Loss        float64       // probability to drop each answer packet
	Delay       time.Duration // wait before answering
	Refuse      bool          // read requests but never answer
	Shuffle     bool          // send an answer's packets in random order
	Seed        uint64
}

// RerequestStats count what the server did.
type RerequestStats struct {
	Requests    uint64 // valid requests read
	BadRequests uint64 // not 20 bytes, another session, count 0
	Answered    uint64 // answer packets sent
	Messages    uint64 // messages in those
	Lost        uint64 // answer packets dropped by Loss
	Refused     uint64 // requests not answered (Refuse, or nothing to serve)
	SendErrors  uint64
}

// RerequestServer is the lab's MoldUDP64 re-request server: it answers a
// request with downstream packets carrying the asked messages it has,
// from the first asked on, sent back to the requester.
type RerequestServer struct {
	cfg  RerequestConfig
	conn *net.UDPConn
	done chan struct{}

	requests, bad, answered, messages, lost, refused, sendErrs atomic.Uint64
}

// NewRerequestServer listens on cfg.Listen and serves until Close.
func NewRerequestServer(cfg RerequestConfig) (*RerequestServer, error) {
	if cfg.Message == nil {
		return nil, errors.New("new rerequest server: no message source")
	}
	if !(cfg.Loss >= 0 && cfg.Loss <= 1) { // NaN too, which lost nothing
		return nil, fmt.Errorf("new rerequest server: loss %v outside [0, 1]", cfg.Loss)
	}
	if cfg.MaxPacket != 0 && (cfg.MaxPacket < moldudp64.HeaderLen+2 || cfg.MaxPacket > math.MaxUint16) {
		// moldudp64.NewBuilder panics on it, in serve: at the first
		// request, the process down.
		return nil, fmt.Errorf("new rerequest server: answer packet size %d outside [%d, %d]", cfg.MaxPacket, moldudp64.HeaderLen+2, math.MaxUint16)
	}
	if cfg.MaxMessages <= 0 || cfg.MaxMessages > moldudp64.MaxCount {
		cfg.MaxMessages = moldudp64.MaxCount
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(cfg.Listen))
	if err != nil {
		return nil, fmt.Errorf("new rerequest server: %w", err)
	}
	s := &RerequestServer{cfg: cfg, conn: conn, done: make(chan struct{})}
	go s.serve()
	return s, nil
}

// Addr returns the address served on.
func (s *RerequestServer) Addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close stops serving.
func (s *RerequestServer) Close() error {
	err := s.conn.Close()
	<-s.done
	return err
}

// Stats returns the counters.
func (s *RerequestServer) Stats() RerequestStats {
	return RerequestStats{Requests: s.requests.Load(), BadRequests: s.bad.Load(), Answered: s.answered.Load(),
		Messages: s.messages.Load(), Lost: s.lost.Load(), Refused: s.refused.Load(), SendErrors: s.sendErrs.Load()}
}

func (s *RerequestServer) serve() {
	defer close(s.done)
	rng := rand.New(rand.NewPCG(s.cfg.Seed, s.cfg.Seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 2048)
	var msg, one []byte
	for {
		n, from, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		req, err := moldudp64.ParseRequest(buf[:n])
		if err != nil || req.Session != s.cfg.Session || req.Count == 0 || req.Seq == 0 {
			s.bad.Add(1)
			continue
		}
		s.requests.Add(1)
		if s.cfg.Refuse {
			s.refused.Add(1)
			continue
		}
		if s.cfg.Delay > 0 {
			time.Sleep(s.cfg.Delay)
		}
		count := min(int(req.Count), s.cfg.MaxMessages)
		b := moldudp64.NewBuilder(s.cfg.Session, req.Seq, s.cfg.MaxPacket)
		sent := 0
		var shuffled [][]byte
		write := func(p []byte) {
			if _, err := s.conn.WriteToUDPAddrPort(p, from); err != nil {
				s.sendErrs.Add(1)
				return
			}
			s.answered.Add(1)
		}
		send := func(p []byte) {
			if p == nil {
				return
			}
			if s.cfg.Loss > 0 && rng.Float64() < s.cfg.Loss {
				s.lost.Add(1)
				return
			}
			if s.cfg.Shuffle {
				shuffled = append(shuffled, slices.Clone(p))
				return
			}
			write(p)
		}
		for seq := req.Seq; seq < answerEnd(req.Seq, count); seq++ {
			var ok bool
			msg, ok = s.cfg.Message(msg[:0], seq)
			if !ok {
				break
			}
			err := b.Add(msg)
			if errors.Is(err, moldudp64.ErrFull) {
				send(b.Flush())
				err = b.Add(msg)
			}
			if errors.Is(err, moldudp64.ErrTooLarge) && moldudp64.HeaderLen+2+len(msg) <= maxUDPPayload {
				// Longer than MaxPacket leaves room for: alone in a
				// packet of its own size, as a line may have carried it.
				send(b.Flush())
				one = binary.BigEndian.AppendUint16(moldudp64.AppendHeader(one[:0], s.cfg.Session, seq, 1), uint16(len(msg)))
				one = append(one, msg...)
				send(one)
				b.Reset(s.cfg.Session, seq+1, s.cfg.MaxPacket)
				err = nil
			}
			if err != nil {
				// Not in any packet: the answer stops before it, so no
				// later message is numbered as this one.
				break
			}
			sent++
		}
		send(b.Flush())
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for _, p := range shuffled {
			write(p)
		}
		if sent == 0 {
			s.refused.Add(1)
		}
		s.messages.Add(uint64(sent))
	}
}

// maxUDPPayload is the largest UDP payload an IPv4 datagram carries.
const maxUDPPayload = 65507

// answerEnd is the sequence number after the count messages from first
// an answer holds at most, never past 2^64-1, where every sequence ends:
// a request running past it asks for what there is.
func answerEnd(first uint64, count int) uint64 {
	if first > math.MaxUint64-uint64(count) {
		return math.MaxUint64
	}
	return first + uint64(count)
}
