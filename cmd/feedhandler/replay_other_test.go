package main

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/internal/itchgen"
)

// TestReplayFeedUnmatched: a capture the generator wrote (itchgen's
// WritePcap, source 10.0.0.1, both lines) replayed with a feed whose line
// A names another source: line A gets nothing. Before, replay said only
// 'datagrams A 0, B N, other M' and exit 0; it now says on stderr (and in
// --json's unmatched) what the other datagrams were against each line.
// With the lines' sources as sent, it says nothing.
func TestReplayFeedUnmatched(t *testing.T) {
	a, b := netip.MustParseAddrPort("233.54.12.111:26477"), netip.MustParseAddrPort("233.54.12.112:26477")
	g, err := itchgen.New(itchgen.Config{Messages: 5_000, Symbols: 20, Seed: 7, Group: a, GroupB: b, Lines: 2})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	capPath := filepath.Join(dir, "day.pcap")
	f, err := os.Create(capPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.WritePcap(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	src := g.Config().Source.Addr()
	feedWith := func(name, sourceA string) string {
		p := filepath.Join(dir, name)
		cfg := fmt.Sprintf("feed: {name: h253}\nlines:\n  a: {interface: lo, group: %s, port: %d, source: %s}\n  b: {interface: lo, group: %s, port: %d}\nshm: {name: h253}\n",
			a.Addr(), a.Port(), sourceA, b.Addr(), b.Port())
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrong, right := feedWith("wrong.yaml", "10.9.9.9"), feedWith("right.yaml", src.String())
	perLine := uint64(st.Frames) / 2

	var stdout, stderr bytes.Buffer
	if err := replay([]string{"--quiet", "--settle", "0", "--feed", wrong, capPath}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("line A %s from 10.9.9.9 (lines.a.source): %d of them to its group and port, from another source, most from %s (%d)", a, perLine, src, perLine)
	if !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), fmt.Sprintf("%d datagrams went to no line of the feed (A 0, B %d)", perLine, perLine)) {
		t.Errorf("replay --feed (line A's source not the capture's): stderr\n%s\nwant it to say %q", stderr.String(), want)
	}

	u := replayFeedJSON(t, wrong, capPath).Arbitrated.Unmatched
	if u == nil || u.Destination != a.String() || u.DestinationCount != perLine || u.Source != src.String() || u.SourceCount != perLine ||
		len(u.Lines) != 2 || u.Lines[0].Refused != perLine || u.Lines[0].RefusedSource != src.String() || u.Lines[0].Source != "10.9.9.9" || u.Lines[1].Refused != 0 {
		t.Errorf("replay --json --feed: unmatched %+v; want %d datagrams to %s from %s, refused by line A", u, perLine, a, src)
	}

	stderr.Reset()
	if err := replay([]string{"--quiet", "--settle", "0", "--feed", right, capPath}, io.Discard, &stderr); err != nil {
		t.Fatal(err)
	}
	if r := replayFeedJSON(t, right, capPath); stderr.Len() != 0 || r.Arbitrated.Unmatched != nil || r.Arbitrated.Datagrams != [2]uint64{perLine, perLine} {
		t.Errorf("replay --feed with the capture's source: stderr %q, datagrams %v, unmatched %+v; want nothing said, %d on each line",
			stderr.String(), r.Arbitrated.Datagrams, r.Arbitrated.Unmatched, perLine)
	}
}
