// Command itchgen writes a synthetic, deterministic Nasdaq TotalView-ITCH 5.0
// trading day as a BinaryFILE and/or a pcap of MoldUDP64 packets.
//
//	itchgen -n 10000000 -symbols 500 -seed 1 -o /tmp/day.itch
//	itchgen -n 100000 -pcap /tmp/day.pcap -session TEST000001 -group 233.54.12.111 -port 26477 -lines 2
//
// See package github.com/marketfeed/feedhandler/internal/itchgen for the
// model of the day.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/clilog"
	"github.com/marketfeed/feedhandler/internal/itchgen"
)

func main() {
	log := clilog.Console(os.Stderr)
	if err := run(os.Args[1:], log); err != nil {
		log.Error().Err(err).Msg("itchgen failed")
		os.Exit(1)
	}
}

func run(args []string, log zerolog.Logger) error {
	fs := flag.NewFlagSet("itchgen", flag.ContinueOnError)
	var cfg itchgen.Config
	fs.IntVar(&cfg.Messages, "n", 1_000_000, "total messages in the day")
	fs.IntVar(&cfg.Symbols, "symbols", 500, "listed symbols")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed (same seed, same bytes)")
	out := fs.String("o", "", "write a BinaryFILE here")
	pcapOut := fs.String("pcap", "", "write a pcap of MoldUDP64 packets here")
	fs.StringVar(&cfg.Session, "session", "GEN0000001", "MoldUDP64 session name (up to 10 characters)")
	group := fs.String("group", "233.54.12.111", "line A multicast group")
	groupB := fs.String("group-b", "", "line B multicast group (default: group + 1)")
	port := fs.Uint("port", 26477, "UDP destination port")
	src := fs.String("src", "10.0.0.1:50000", "source address:port")
	fs.IntVar(&cfg.Lines, "lines", 1, "lines to write: 1 (A) or 2 (A and B copies)")
	fs.IntVar(&cfg.MaxPacket, "max-packet", 1400, "largest MoldUDP64 packet (UDP payload) in bytes")
	date := fs.String("date", "2026-11-24", "trading day (pcap timestamps)")
	fs.Float64Var(&cfg.Loss, "loss", 0, "probability of dropping a packet (per line)")
	fs.Float64Var(&cfg.Dup, "dup", 0, "probability of duplicating a packet (per line)")
	fs.Float64Var(&cfg.Reorder, "reorder", 0, "probability of delaying a packet by 200µs so that later ones overtake it (per line)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // -h: the usage is printed, no failure
		}
		return err
	}
	if *out == "" && *pcapOut == "" {
		return fmt.Errorf("parse flags: give -o FILE and/or -pcap FILE")
	}
	var err error
	if cfg.Date, err = time.Parse(time.DateOnly, *date); err != nil {
		return fmt.Errorf("parse -date: %w", err)
	}
	if *port == 0 || *port > 65535 {
		return fmt.Errorf("parse -port: %d outside 1..65535", *port)
	}
	ga, err := netip.ParseAddr(*group)
	if err != nil {
		return fmt.Errorf("parse -group: %w", err)
	}
	cfg.Group = netip.AddrPortFrom(ga, uint16(*port))
	if *groupB != "" {
		gb, err := netip.ParseAddr(*groupB)
		if err != nil {
			return fmt.Errorf("parse -group-b: %w", err)
		}
		cfg.GroupB = netip.AddrPortFrom(gb, uint16(*port))
	}
	if cfg.Source, err = netip.ParseAddrPort(*src); err != nil {
		return fmt.Errorf("parse -src: %w", err)
	}
	for _, job := range []struct {
		path string
		pcap bool
	}{{*out, false}, {*pcapOut, true}} {
		if job.path == "" {
			continue
		}
		g, err := itchgen.New(cfg)
		if err != nil {
			return err
		}
		f, err := os.Create(job.path)
		if err != nil {
			return fmt.Errorf("create output: %w", err)
		}
		start := time.Now()
		ev := log.Info().Str("file", job.path)
		if job.pcap {
			st, err := g.WritePcap(f)
			if err != nil {
				f.Close()
				return err
			}
			ev = ev.Int("packets", st.Packets).Int("heartbeats", st.Heartbeats).Int("frames", st.Frames).
				Int("dropped", st.Dropped).Int("duplicated", st.Duplicated).Int("reordered", st.Reordered)
		} else if err := g.Write(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close output: %w", err)
		}
		el := time.Since(start)
		ev.Int("messages", g.Emitted()).Dur("took", el).
			Float64("msgs_per_sec", float64(g.Emitted())/el.Seconds()).Msg("wrote")
	}
	return nil
}
