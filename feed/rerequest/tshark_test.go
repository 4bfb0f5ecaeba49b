package rerequest_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/tshark"
)

// TestTsharkRequest has Wireshark's MoldUDP64 dissector read the request
// packets the client sends (moldudp64.Request) and checks it sees the
// session, first sequence number and message count that were asked.
func TestTsharkRequest(t *testing.T) {
	ts := tshark.New(t)
	reqs := []moldudp64.Request{
		{Session: moldudp64.NewSession("20261202A"), Seq: 1, Count: 1},
		{Session: moldudp64.NewSession("RRTEST"), Seq: 1 << 40, Count: 2000},
		{Session: moldudp64.NewSession("0123456789"), Seq: 123456789, Count: moldudp64.MaxCount},
	}
	path := filepath.Join(t.TempDir(), "requests.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddrPort("10.0.0.2:40000"), netip.MustParseAddrPort("10.0.0.1:26400")
	var want []string
	for i, r := range reqs {
		b := r.Append(nil)
		if len(b) != moldudp64.RequestLen {
			t.Fatalf("request of %d bytes", len(b))
		}
		if err := w.WriteUDP(int64(i+1)*1000, src, dst, b); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s\t%d\t%d", string(r.Session[:]), r.Seq, r.Count)) // tshark shows the padding
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := ts.Output("-r", path, "-d", "udp.port==26400,moldudp64",
		"-T", "fields", "-e", "moldudp64.session", "-e", "moldudp64.sequence", "-e", "moldudp64.count")
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(got) != len(want) {
		t.Fatalf("tshark saw %d packets, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: tshark %q, sent %q", i, got[i], want[i])
		}
	}
}
