package itchgen

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
)

// PacketStats counts what WritePcap wrote.
type PacketStats struct {
	Messages   int // ITCH messages
	Packets    int // MoldUDP64 packets per line carrying messages, before fault injection
	Heartbeats int // heartbeat packets per line
	Frames     int // frames written to the capture, all lines, after fault injection
	Dropped    int // packets dropped by Loss, all lines
	Duplicated int // packets written twice by Dup
	Reordered  int // packets overtaken by their successor (Reorder delays a packet by 200 µs)
	NextSeq    uint64
}

// packetGap is how long a sender waits for more messages before sending a
// packet that is not full.
const packetGap = 50_000 // ns

// heartbeatEvery is the heartbeat interval of an idle feed.
const heartbeatEvery = uint64(time.Second)

// reorderDelay is how long Reorder delays a packet: a packet sent within
// that time overtakes it.
const reorderDelay = 200_000 // ns

// line holds one line's pending packet for reorder injection.
type line struct {
	dst     netip.AddrPort
	rnd     rng
	held    []byte
	heldTS  int64
	holding bool
}

// WritePcap writes the remaining day as MoldUDP64 packets (at most
// MaxPacket bytes of UDP payload each) in Ethernet/IPv4/UDP frames to a pcap
// on w: messages are batched until a packet is full or the feed pauses for
// 50 µs, heartbeats fill idle seconds, and three end-of-session packets
// close the day. With Lines 2 every packet is written for line A and then
// for line B; Loss, Dup and Reorder faults are injected per line (Reorder
// delays a packet by 200 µs, so that the packets sent meanwhile overtake
// it).
func (g *Generator) WritePcap(w io.Writer) (PacketStats, error) {
	var st PacketStats
	pw, err := pcap.NewWriter(w)
	if err != nil {
		return st, fmt.Errorf("generate itch pcap: %w", err)
	}
	midnight := time.Date(g.cfg.Date.Year(), g.cfg.Date.Month(), g.cfg.Date.Day(), 0, 0, 0, 0, newYork()).UnixNano()
	lines := []*line{{dst: g.cfg.Group, rnd: rng{s: mix64(g.cfg.Seed ^ 0xA)}}}
	if g.cfg.Lines == 2 {
		lines = append(lines, &line{dst: g.cfg.GroupB, rnd: rng{s: mix64(g.cfg.Seed ^ 0xB)}})
	}
	b := moldudp64.NewBuilder(moldudp64.NewSession(g.cfg.Session), 1, g.cfg.MaxPacket)
	send := func(ts uint64, pkt []byte) error {
		at := midnight + int64(ts) + 20_000 // 20 µs from matching engine to wire
		// Delayed packets that nothing overtook go out first, in time order.
		for _, l := range lines {
			if l.holding && l.heldTS+reorderDelay < at {
				l.holding = false
				st.Frames++
				if err := pw.WriteUDP(l.heldTS+reorderDelay, g.cfg.Source, l.dst, l.held); err != nil {
					return fmt.Errorf("generate itch pcap: %w", err)
				}
			}
		}
		for i, l := range lines {
			if err := g.emitPacket(pw, l, at+int64(i)*3_000, pkt, &st); err != nil {
				return err
			}
		}
		return nil
	}
	var pendingTS, lastSent uint64 // timestamp of the newest message in the pending packet; of the last packet sent
	lastSent = StartMessages
	flush := func() error {
		if pkt := b.Flush(); pkt != nil {
			st.Packets++
			lastSent = pendingTS
			return send(pendingTS, pkt)
		}
		return nil
	}
	for m, ok := g.Next(); ok; m, ok = g.Next() {
		ts := m.Timestamp()
		if b.Pending() > 0 && (ts-pendingTS > packetGap || !b.Fits(len(m))) {
			if err := flush(); err != nil {
				return st, err
			}
		}
		for b.Pending() == 0 && ts > lastSent+heartbeatEvery {
			lastSent += heartbeatEvery
			st.Heartbeats++
			if err := send(lastSent, b.Heartbeat()); err != nil {
				return st, err
			}
		}
		if err := b.Add(m); err != nil {
			if !errors.Is(err, moldudp64.ErrFull) {
				return st, fmt.Errorf("generate itch pcap: %w", err)
			}
			if err := flush(); err != nil {
				return st, err
			}
			if err := b.Add(m); err != nil {
				return st, fmt.Errorf("generate itch pcap: %w", err)
			}
		}
		pendingTS = ts
		st.Messages++
	}
	if err := flush(); err != nil {
		return st, err
	}
	for i := range 3 {
		if err := send(lastSent+uint64(i+1)*heartbeatEvery, b.EndOfSession()); err != nil {
			return st, err
		}
	}
	for i, l := range lines {
		if l.holding {
			if err := pw.WriteUDP(l.heldTS+reorderDelay, g.cfg.Source, l.dst, l.held); err != nil {
				return st, fmt.Errorf("generate itch pcap: line %d: %w", i, err)
			}
			st.Frames++
		}
	}
	st.NextSeq = b.Seq()
	if err := pw.Flush(); err != nil {
		return st, fmt.Errorf("generate itch pcap: %w", err)
	}
	return st, nil
}

// emitPacket writes one packet on one line, applying the faults.
func (g *Generator) emitPacket(pw *pcap.Writer, l *line, at int64, pkt []byte, st *PacketStats) error {
	write := func(ts int64, p []byte) error {
		st.Frames++
		if err := pw.WriteUDP(ts, g.cfg.Source, l.dst, p); err != nil {
			return fmt.Errorf("generate itch pcap: %w", err)
		}
		return nil
	}
	if g.cfg.Loss > 0 && l.rnd.float() < g.cfg.Loss {
		st.Dropped++
		return nil
	}
	if l.holding {
		// This packet overtakes the delayed one (WritePcap wrote it already
		// when its delay had passed).
		l.holding = false
		st.Reordered++
		if err := write(at, pkt); err != nil {
			return err
		}
		return write(at+1, l.held)
	}
	if g.cfg.Reorder > 0 && l.rnd.float() < g.cfg.Reorder {
		l.held = append(l.held[:0], pkt...)
		l.heldTS = at
		l.holding = true
		return nil
	}
	if err := write(at, pkt); err != nil {
		return err
	}
	if g.cfg.Dup > 0 && l.rnd.float() < g.cfg.Dup {
		st.Duplicated++
		return write(at+1, pkt)
	}
	return nil
}

// newYork is US Eastern time, the clock of ITCH timestamps. Without a time
// zone database it falls back to EST.
func newYork() *time.Location {
	if loc, err := time.LoadLocation("America/New_York"); err == nil {
		return loc
	}
	return time.FixedZone("EST", -5*3600)
}
