package itchgen_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/tshark"
)

// TestTshark has Wireshark's MoldUDP64 dissector read a generated capture
// and checks that it sees the same packets (session, sequence number,
// message count, message lengths) as our parser, and valid IPv4 checksums.
func TestTshark(t *testing.T) {
	ts := tshark.New(t)
	cfg := itchgen.Config{Messages: 20_000, Symbols: 30, Seed: 5, Lines: 2, Session: "TSHARK0001", Dup: 0.01, Loss: 0.01}
	g, err := itchgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "day.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WritePcap(f); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Ours.
	var want []string
	f, _ = os.Open(path)
	defer f.Close()
	r, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for {
		fr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p, err := moldudp64.Parse(fr.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var lens []string
		it := p.Iter()
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			lens = append(lens, fmt.Sprint(len(m)))
		}
		want = append(want, fmt.Sprintf("1\t%s\t%d\t%d\t%s", p.Session, p.Seq, p.Count, strings.Join(lens, ",")))
	}

	port := fmt.Sprint(g.Config().Group.Port())
	out := ts.Output("-r", path, "-o", "ip.check_checksum:TRUE", "-d", "udp.port=="+port+",moldudp64",
		"-T", "fields", "-e", "ip.checksum.status", "-e", "moldudp64.session", "-e", "moldudp64.sequence",
		"-e", "moldudp64.count", "-e", "moldudp64.msglen")
	var got []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		got = append(got, sc.Text())
	}
	if len(got) != len(want) {
		t.Fatalf("tshark saw %d packets, we saw %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("packet %d: tshark %q, ours %q", i+1, got[i], want[i])
		}
	}
}
