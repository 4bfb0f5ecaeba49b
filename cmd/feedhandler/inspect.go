package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"time"

	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/feed/itch"
)

func init() {
	register(&command{name: "inspect", summary: "summarize a BinaryFILE, pcap or pcapng (messages, types, sessions, gaps)", run: runInspect})
}

func runInspect(args []string) error { return inspect(args, os.Stdout) }

// inspectReport is the --json output.
type inspectReport struct {
	File           string            `json:"file"`
	Format         string            `json:"format"`
	Gzip           bool              `json:"gzip"`
	GzipPadding    uint64            `json:"gzip_padding,omitempty"` // zero bytes after the last gzip member, ignored as gzip -d does
	Messages       uint64            `json:"messages"`
	ByType         map[string]uint64 `json:"by_type"`
	FirstTimestamp uint64            `json:"first_timestamp"` // ns since midnight
	LastTimestamp  uint64            `json:"last_timestamp"`
	FirstTime      string            `json:"first_time"`
	LastTime       string            `json:"last_time"`
	Unknown        uint64            `json:"unknown_messages"`
	Short          uint64            `json:"short_messages"`
	Capture        *captureReport    `json:"capture,omitempty"`
	Sessions       []sessionReport   `json:"sessions,omitempty"`
}

type captureReport struct {
	Frames           uint64            `json:"frames"`
	Datagrams        uint64            `json:"udp_datagrams"`
	Reassembled      uint64            `json:"udp_datagrams_reassembled,omitempty"` // of Datagrams, reassembled from IPv4 fragments (pcap.Stats.Reassembled)
	Fragments        uint64            `json:"fragments_reassembled,omitempty"`     // the frames those took
	SkippedFrames    map[string]uint64 `json:"skipped_frames"`
	skipped          string            // the same in pcap.Reason's order, for the text report
	Filtered         uint64            `json:"filtered"`
	Packets          uint64            `json:"packets"`
	MalformedPackets uint64            `json:"malformed_packets"`
	Held             uint64            `json:"held_for_reorder"`
	Gaps             uint64            `json:"gaps"`
	GapMessages      uint64            `json:"gap_messages"`
	Duplicates       uint64            `json:"duplicates"`
	Lines            []lineReport      `json:"lines"`
	Heartbeats       uint64            `json:"heartbeats"` // not counting end-of-session packets
}

type lineReport struct {
	Dst     string `json:"dst"`
	Packets uint64 `json:"packets"`
	First   uint64 `json:"first"` // packets that delivered messages first
}

type sessionReport struct {
	Session      string      `json:"session"`
	FirstSeq     uint64      `json:"first_seq"`
	JoinedLate   bool        `json:"joined_late"` // the capture starts after sequence number 1
	LastSeq      uint64      `json:"last_seq"`
	NextSeq      uint64      `json:"next_seq"`
	Messages     uint64      `json:"messages"`
	Packets      uint64      `json:"packets"`
	Heartbeats   uint64      `json:"heartbeats"`
	EndOfSession uint64      `json:"end_of_session"`
	Duplicates   uint64      `json:"duplicates"`
	Overlaps     uint64      `json:"overlaps"`
	Late         uint64      `json:"late"`
	Gaps         uint64      `json:"gaps"` // runs of missing sequence numbers
	GapMessages  uint64      `json:"gap_messages"`
	GapRanges    [][2]uint64 `json:"gap_ranges"` // [first, count], the first input.MaxGaps
}

func inspect(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON object")
	port := fs.Uint("port", 0, "captures: only this UDP destination port")
	group := fs.String("group", "", "captures: only this destination group address")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: feedhandler inspect [--json] [--port N] [--group ADDR] FILE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 { // flags after the file name
		file := fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() != 0 {
			fs.Usage()
			return fmt.Errorf("parse arguments: want one FILE")
		}
		args = []string{file}
	} else {
		args = fs.Args()
	}
	if len(args) != 1 {
		fs.Usage()
		return fmt.Errorf("parse arguments: want one FILE")
	}
	opt := input.Options{Port: uint16(*port)}
	if *port > 65535 {
		return fmt.Errorf("parse --port: %d outside 0..65535", *port)
	}
	if *group != "" {
		g, err := netip.ParseAddr(*group)
		if err != nil {
			return fmt.Errorf("parse --group: %w", err)
		}
		opt.Group = g
	}
	start := time.Now()
	r, err := input.OpenOptions(args[0], opt)
	if err != nil {
		return err
	}
	defer r.Close()
	var readErr error
	for {
		if _, err := r.Next(); err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
	}
	st := r.Stats()
	el := time.Since(start)
	log.Debug().Uint64("messages", st.Messages).Dur("took", el).
		Float64("msgs_per_sec", float64(st.Messages)/el.Seconds()).Msg("inspected")
	rep := report(args[0], st)
	if *asJSON {
		enc := json.NewEncoder(out)
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	} else {
		printReport(out, rep)
	}
	if readErr != nil {
		return fmt.Errorf("read %s after %d messages: %w", args[0], st.Messages, readErr)
	}
	return nil
}

func report(file string, st *input.Stats) inspectReport {
	rep := inspectReport{
		File: file, Format: st.Format.String(), Gzip: st.Gzip, GzipPadding: st.GzipPadding, Messages: st.Messages, ByType: map[string]uint64{},
		FirstTimestamp: st.FirstTimestamp, LastTimestamp: st.LastTimestamp,
		FirstTime: clock(st.FirstTimestamp), LastTime: clock(st.LastTimestamp),
		Unknown: st.Codec.Unknown, Short: st.Codec.Short,
	}
	for t, n := range st.ByType {
		if n > 0 {
			rep.ByType[string(rune(t))] = n
		}
	}
	if st.Format == input.FormatBinaryFile {
		return rep
	}
	c := &captureReport{
		Frames: st.Frames.Frames, Datagrams: st.Frames.Datagrams, SkippedFrames: map[string]uint64{},
		Reassembled: st.Frames.Reassembled, Fragments: st.Frames.Fragments,
		Filtered: st.Filtered, Packets: st.Datagrams, MalformedPackets: st.Malformed, Held: st.Held,
	}
	c.Lines = []lineReport{}
	for _, l := range st.Lines {
		c.Lines = append(c.Lines, lineReport{Dst: l.Dst.String(), Packets: l.Datagrams, First: l.First})
	}
	maps.Copy(c.SkippedFrames, skippedBy(st.Frames))
	c.skipped = st.Frames.SkippedSummary()
	for _, s := range st.Sessions {
		sr := sessionReport{
			Session: s.Session.String(), FirstSeq: s.FirstSeq, JoinedLate: s.Joined, NextSeq: s.NextSeq, Messages: s.Messages,
			Packets: s.Tracker.Packets, Heartbeats: s.Tracker.Heartbeats - s.Tracker.EndOfSession, EndOfSession: s.Tracker.EndOfSession,
			Duplicates: s.Tracker.Duplicates, Overlaps: s.Tracker.Overlaps, Late: s.Tracker.Late,
			Gaps: s.Missing, GapMessages: s.Tracker.GapMessages, GapRanges: [][2]uint64{},
		}
		if s.NextSeq > 0 {
			sr.LastSeq = s.NextSeq - 1
		}
		for _, g := range s.Gaps {
			sr.GapRanges = append(sr.GapRanges, [2]uint64{g.First, g.Count})
		}
		c.Gaps += sr.Gaps
		c.GapMessages += sr.GapMessages
		c.Duplicates += sr.Duplicates
		c.Heartbeats += sr.Heartbeats
		rep.Sessions = append(rep.Sessions, sr)
	}
	rep.Capture = c
	return rep
}

// clock formats ns since midnight as HH:MM:SS.nnnnnnnnn.
func clock(ns uint64) string {
	s := ns / 1e9
	return fmt.Sprintf("%02d:%02d:%02d.%09d", s/3600, s/60%60, s%60, ns%1e9)
}

func printReport(w io.Writer, rep inspectReport) {
	format := rep.Format
	if rep.Gzip {
		format += ", gzip"
	}
	if rep.GzipPadding > 0 {
		format += fmt.Sprintf(", %d zero bytes after it ignored", rep.GzipPadding)
	}
	fmt.Fprintf(w, "file        %s (%s)\n", rep.File, format)
	fmt.Fprintf(w, "messages    %d\n", rep.Messages)
	if rep.Messages > 0 {
		fmt.Fprintf(w, "first       %s\nlast        %s\n", rep.FirstTime, rep.LastTime)
	}
	if rep.Unknown+rep.Short > 0 {
		fmt.Fprintf(w, "skipped     %d of unknown types, %d short\n", rep.Unknown, rep.Short)
	}
	fmt.Fprintln(w, "by type:")
	for _, t := range itch.Types {
		if n := rep.ByType[string(rune(t))]; n > 0 {
			fmt.Fprintf(w, "  %c %-40s %12d %7.3f%%\n", t, itch.Name(t), n, 100*float64(n)/float64(rep.Messages))
		}
	}
	c := rep.Capture
	if c == nil {
		return
	}
	reassembled := ""
	if c.Reassembled > 0 {
		reassembled = fmt.Sprintf(", %d of them reassembled from %d IPv4 fragments", c.Reassembled, c.Fragments)
	}
	fmt.Fprintf(w, "frames      %d (%d UDP datagrams%s, %d filtered out)\n", c.Frames, c.Datagrams, reassembled, c.Filtered)
	if c.skipped != "" {
		fmt.Fprintf(w, "skipped     %s\n", c.skipped) // in pcap.Reason's order, not a map's
	}
	fmt.Fprintf(w, "packets     %d MoldUDP64 (%d malformed, %d held for reordering)\n", c.Packets, c.MalformedPackets, c.Held)
	for _, l := range c.Lines {
		fmt.Fprintf(w, "line %s: %d packets, %d delivered first\n", l.Dst, l.Packets, l.First)
	}
	for _, s := range rep.Sessions {
		fmt.Fprintf(w, "session %q: seq %d..%d, %d messages, %d packets, %d heartbeats, %d end of session, %d duplicates, %d gaps (%d messages missing)\n",
			s.Session, s.FirstSeq, s.LastSeq, s.Messages, s.Packets, s.Heartbeats, s.EndOfSession, s.Duplicates, s.Gaps, s.GapMessages)
		for i, g := range s.GapRanges {
			if i == 20 {
				fmt.Fprintf(w, "  ... %d more gaps\n", len(s.GapRanges)-20)
				break
			}
			fmt.Fprintf(w, "  gap %d..%d (%d)\n", g[0], g[0]+g[1]-1, g[1])
		}
	}
}
