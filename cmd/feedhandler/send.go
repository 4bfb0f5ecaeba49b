package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"os"
	"os/signal"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/internal/exchange"
)

func init() {
	register(&command{name: "send", summary: "send a BinaryFILE, pcap or pcapng as MoldUDP64 onto multicast lines A/B (paced, with loss/dup/reorder injection)", run: runSend})
}

func runSend(args []string) error { return sendFile(args, os.Stdout) }

func sendFile(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: feedhandler send -a GROUP:PORT [-b GROUP:PORT] [flags] FILE")
		fs.PrintDefaults()
	}
	iface := fs.String("iface", "", "egress interface (IP_MULTICAST_IF); default: routing table")
	lineA := fs.String("a", "", "line A destination GROUP:PORT (required)")
	lineB := fs.String("b", "", "line B destination GROUP:PORT (optional)")
	rate := fs.Float64("rate", 0, "packets per second (0: as fast as possible)")
	count := fs.Int("count", 0, "stop after this many packets (0: whole file)")
	duration := fs.Duration("duration", 0, "stop after this long (0: no limit)")
	session := fs.String("session", "00000001", "MoldUDP64 session")
	firstSeq := fs.Uint64("first-seq", 1, "sequence number of the first message")
	maxPacket := fs.Int("max-packet", 0, "MoldUDP64 packet size limit in bytes, header included (0: default)")
	eos := fs.Bool("eos", false, "finish with an end-of-session packet")
	idle := fs.Duration("idle", time.Second, "while the re-request server lingers after the file, send a heartbeat (an end of session after -eos) on every line this often, as an exchange does (0: none)")
	ttl := fs.Int("ttl", 1, "multicast TTL, 1..255")
	seed := fs.Int64("seed", 1, "seed of the loss/dup/reorder injection")
	snap := addSnapshotFlags(fs, "snapshot-listen", true) // GLIMPSE server beside the sender (glimpse_server.go)
	var inj [2]struct{ loss, dup, reorder *float64 }
	for i, name := range []string{"a", "b"} {
		inj[i].loss = fs.Float64("loss-"+name, 0, "probability to drop a packet on line "+name)
		inj[i].dup = fs.Float64("dup-"+name, 0, "probability to send a packet twice on line "+name)
		inj[i].reorder = fs.Float64("reorder-"+name, 0, "probability to send a packet after its successor on line "+name)
	}
	rr := addRerequestFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *lineA == "" {
		fs.Usage()
		return errors.New("need -a and one input file")
	}
	if *ttl < 1 || *ttl > 255 {
		// The sender takes a TTL under 1 for its default, 1: a -ttl 0
		// meant to keep the feed on this host would have left it.
		return fmt.Errorf("-ttl %d outside 1..255", *ttl)
	}
	var lines []exchange.Line
	for i, dst := range []string{*lineA, *lineB} {
		if dst == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(dst)
		if err != nil {
			return fmt.Errorf("line %c destination: %w", 'A'+i, err)
		}
		lines = append(lines, exchange.Line{Group: ap.Addr(), Port: ap.Port(),
			Loss: *inj[i].loss, Dup: *inj[i].dup, Reorder: *inj[i].reorder})
	}
	src, err := exchange.OpenFile(fs.Arg(0), exchange.FileOptions{Session: *session, FirstSeq: *firstSeq, MaxPacket: *maxPacket, EndOfSession: *eos})
	if err != nil {
		return err
	}
	defer src.Close()
	s, err := exchange.NewSender(exchange.Config{Interface: *iface, Lines: lines, Rate: *rate, Count: *count, Duration: *duration, TTL: *ttl, Seed: *seed})
	if err != nil {
		return err
	}
	defer s.Close()
	recordSent, stopRerequest, err := rr.start(*session)
	if err != nil {
		return err
	}
	// While the re-request server lingers the lines are idle, and an
	// exchange sends heartbeats then (the handler turns not ready after
	// 5 s of silence on every line): stopIdle ends them after the linger.
	stopIdle := func() {}
	defer func() { stopIdle() }()
	defer stopRerequest(out)
	stopSnap, err := snap.start(fs.Arg(0), *session, *firstSeq, s.Sent)
	if err != nil {
		return err
	}
	defer stopSnap()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log.Info().Str("file", fs.Arg(0)).Int("lines", len(lines)).Float64("rate", *rate).Msg("send: start")
	var last moldudp64.Packet // the last packet sent: where heartbeats go on
	st, err := s.Send(ctx, recordSent(lastOf(src.Packets(), &last)))
	if err == nil {
		err = src.Err()
	}
	if err == nil && *idle > 0 && rr.lingers() && last.Session != (moldudp64.Session{}) {
		stopIdle = sendIdle(s, last, *idle) // past ctx: the linger outlives it
	}
	pps := 0.0
	if st.Elapsed > 0 {
		pps = float64(st.Input) / st.Elapsed.Seconds()
	}
	fmt.Fprintf(out, "sent %d packets (%d messages) in %v (%.0f packets/s)\n", st.Input, src.Messages, st.Elapsed.Round(time.Millisecond), pps)
	for i, l := range st.Lines {
		fmt.Fprintf(out, "line %c: sent %d datagrams %d bytes, dropped %d, duplicated %d, reordered %d, errors %d\n",
			'A'+i, l.Sent, l.Bytes, l.Dropped, l.Duplicated, l.Reordered, l.Errors)
	}
	return err
}

// lastOf passes pkts on, keeping the last MoldUDP64 packet in *last (the
// header only: the source may reuse its buffer).
func lastOf(pkts iter.Seq[[]byte], last *moldudp64.Packet) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for b := range pkts {
			if p, err := moldudp64.Parse(b); err == nil {
				*last = moldudp64.Packet{Session: p.Session, Seq: p.Seq, Count: p.Count}
			}
			if !yield(b) {
				return
			}
		}
	}
}

// sendIdle sends, every every, a heartbeat after last (the next sequence
// number), or an end of session again when last was one, on every line,
// until the returned stop is called.
func sendIdle(s *exchange.Sender, last moldudp64.Packet, every time.Duration) (stop func()) {
	count := uint16(0)
	if last.EndOfSession() {
		count = moldudp64.EndOfSessionCount
	}
	pkt := moldudp64.AppendHeader(nil, last.Session, last.Next(), count)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.Send(ctx, exchange.Packets([][]byte{pkt}))
			}
		}
	}()
	return func() { cancel(); <-done }
}
