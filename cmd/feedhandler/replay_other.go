package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/marketfeed/feedhandler/feed/pcap"
)

// maxOtherFlows bounds the flows (destination and source) otherDatagrams
// counts apart: a capture of a busy segment's every flow counts those
// after the first maxOtherFlows in none (their datagrams in Other still).
const maxOtherFlows = 4096

// otherFlow is a datagram's destination and source address.
type otherFlow struct {
	dst netip.AddrPort
	src netip.Addr
}

// otherDatagrams counts replay --feed's datagrams to no line of the feed
// (arbitratedReport.Other) by flow, for the report's unmatched: what they
// were, against the feed's lines.
type otherDatagrams map[otherFlow]uint64

func (o *otherDatagrams) add(fr *pcap.Frame) {
	if *o == nil {
		*o = otherDatagrams{}
	}
	f := otherFlow{fr.Dst, fr.Src.Addr()}
	if _, ok := (*o)[f]; ok || len(*o) < maxOtherFlows {
		(*o)[f]++
	}
}

// top returns, of the flows keep keeps, the key (by) with the most
// datagrams (the least key of a tie) and their count.
func top[K interface {
	comparable
	Compare(K) int
}](o otherDatagrams, keep func(otherFlow) bool, by func(otherFlow) K) (K, uint64) {
	sums := map[K]uint64{}
	for f, n := range o {
		if keep(f) {
			sums[by(f)] += n
		}
	}
	var best K
	var n uint64
	for k, c := range sums {
		if c > n || c == n && k.Compare(best) < 0 {
			best, n = k, c
		}
	}
	return best, n
}

// unmatchedReport says, when a line of the feed got no datagram or most
// datagrams went to no line (a capture of another group or port, or whose
// source the lines' source: filter refuses), what those datagrams were:
// replay --feed reported 'datagrams A 0, B 0, other 178001', exit 0, and
// nothing said why.
type unmatchedReport struct {
	Destination      string `json:"destination"`       // the most common destination group:port of the other datagrams
	DestinationCount uint64 `json:"destination_count"` // its datagrams
	Source           string `json:"source"`            // their most common source address
	SourceCount      uint64 `json:"source_count"`      // its datagrams
	// Lines are the feed's lines, what replay matched and what of the
	// other datagrams went to their group and port.
	Lines []unmatchedLine `json:"lines"`
	// Why is the text report's line.
	Why string `json:"why"`
}

// unmatchedLine is a line of the feed in unmatchedReport.
type unmatchedLine struct {
	Line   string `json:"line"`             // "A", "B"
	Group  string `json:"group"`            // group:port
	Source string `json:"source,omitempty"` // the line's source filter ("" any)
	// Refused: the other datagrams to its group and port (from another
	// source than the line's), RefusedSource their most common source.
	Refused       uint64 `json:"refused"`
	RefusedSource string `json:"refused_source,omitempty"`
}

// unmatched returns the report's unmatched, or nil when every line of
// the feed got datagrams and fewer than half went to none.
func (a *arbitrated) unmatched() *unmatchedReport {
	lines := a.fc.Lines[:min(len(a.fc.Lines), len(a.rep.Datagrams))]
	starved := false
	var matched uint64
	for i := range lines {
		starved = starved || a.rep.Datagrams[i] == 0
		matched += a.rep.Datagrams[i]
	}
	if a.rep.Other == 0 || !starved && a.rep.Other <= matched {
		return nil
	}
	all := func(otherFlow) bool { return true }
	dst, dn := top(a.others, all, func(f otherFlow) netip.AddrPort { return f.dst })
	src, sn := top(a.others, all, func(f otherFlow) netip.Addr { return f.src })
	u := &unmatchedReport{Destination: dst.String(), DestinationCount: dn, Source: src.String(), SourceCount: sn}
	var said []string
	for _, l := range lines {
		group := netip.AddrPortFrom(l.Group, l.Port)
		ul := unmatchedLine{Line: l.Name, Group: group.String()}
		from := "any source"
		if l.Source.IsValid() {
			ul.Source, from = l.Source.String(), fmt.Sprintf("from %s (lines.%s.source)", l.Source, strings.ToLower(l.Name))
		}
		for f, n := range a.others {
			if f.dst == group {
				ul.Refused += n
			}
		}
		what := "none of them to its group and port"
		if ul.Refused > 0 {
			rs, rn := top(a.others, func(f otherFlow) bool { return f.dst == group }, func(f otherFlow) netip.Addr { return f.src })
			ul.RefusedSource = rs.String()
			what = fmt.Sprintf("%d of them to its group and port, from another source, most from %s (%d)", ul.Refused, rs, rn)
		}
		u.Lines = append(u.Lines, ul)
		said = append(said, fmt.Sprintf("line %s %s %s: %s", ul.Line, group, from, what))
	}
	u.Why = fmt.Sprintf("%d datagrams went to no line of the feed (A %d, B %d), most to %s (%d) and from %s (%d);\n  %s",
		a.rep.Other, a.rep.Datagrams[0], a.rep.Datagrams[1], u.Destination, dn, u.Source, sn, strings.Join(said, "; "))
	return u
}
