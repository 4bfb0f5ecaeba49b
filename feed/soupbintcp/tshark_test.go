package soupbintcp_test

import (
	"encoding/xml"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/feed/soupbintcp"
	"github.com/marketfeed/feedhandler/internal/tshark"
)

// tcpCapture writes a pcap of one TCP conversation between 127.0.0.1:40001
// (client) and 127.0.0.1:26500 (server): each element of segs is one TCP
// segment's payload, fromServer says its direction.
func tcpCapture(t *testing.T, segs [][]byte, fromServer []bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "soup.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcap.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	seq := [2]uint32{1000, 5000} // client, server
	for i, p := range segs {
		d := 0
		if fromServer[i] {
			d = 1
		}
		cli, srv := net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 1)
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: cli, DstIP: srv}
		tcp := &layers.TCP{SrcPort: 40001, DstPort: 26500, Seq: seq[0], Ack: seq[1], ACK: true, PSH: true, Window: 65535}
		if d == 1 {
			tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack = 26500, 40001, seq[1], seq[0]
		}
		tcp.SetNetworkLayerForChecksum(ip)
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(p)); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFrame(int64(i+1)*1_000_000, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		seq[d] += uint32(len(p))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTshark has Wireshark's SoupBinTCP dissector decode every packet type
// this package writes, and checks the fields it sees.
func TestTshark(t *testing.T) {
	ts := tshark.New(t)
	add := itch.AddOrderFields{Header: itch.Header{Locate: 7, Timestamp: 34_200_000_000_000}, OrderRef: 42, Side: 'B', Shares: 100, Stock: itch.NewSymbol("AAPL"), Price: 1_500_000}
	addMsg := add.Append(nil)
	type seg struct {
		b          []byte
		fromServer bool
		want       string // type|length|username|password|session|req_seq|next_seq|reject|text
	}
	segs := []seg{
		{soupbintcp.AppendLoginRequest(nil, soupbintcp.LoginRequest{Username: "lab", Password: "secret", Session: "GEN0000001", Sequence: 1}), false,
			"L|47|lab|secret|GEN0000001|1|||"},
		{soupbintcp.AppendLoginAccepted(nil, "GEN0000001", 1), true, "A|31|||GEN0000001||1||"},
		{soupbintcp.AppendPacket(nil, soupbintcp.TypeSequencedData, addMsg), true, "S|37|||||||"},
		{soupbintcp.AppendPacket(nil, soupbintcp.TypeServerHeartbeat, nil), true, "H|1|||||||"},
		{soupbintcp.AppendPacket(nil, soupbintcp.TypeClientHeartbeat, nil), false, "R|1|||||||"},
		{soupbintcp.AppendPacket(nil, soupbintcp.TypeDebug, []byte("hello")), true, "+|6||||||| hello"},
		{soupbintcp.AppendPacket(nil, soupbintcp.TypeUnsequencedData, []byte{1, 2, 3}), true, "U|4|||||||"},
		{soupbintcp.AppendLoginRejected(nil, soupbintcp.RejectSessionUnavailable), true, "J|2||||||S|"},
		{soupbintcp.AppendPacket(nil, soupbintcp.TypeEndOfSession, nil), true, "Z|1|||||||"},
		{soupbintcp.AppendPacket(nil, soupbintcp.TypeLogoutRequest, nil), false, "O|1|||||||"},
	}
	var bufs [][]byte
	var dirs []bool
	for _, s := range segs {
		bufs = append(bufs, s.b)
		dirs = append(dirs, s.fromServer)
	}
	// The login request again, with full-width alpha fields, blank session
	// and a 10-digit sequence number (tshark 4.0 parses the field as a
	// signed 32-bit number, so this is about its largest).
	bufs = append(bufs, soupbintcp.AppendLoginRequest(nil, soupbintcp.LoginRequest{Username: "abcdef", Password: "0123456789", Sequence: 2000000000}))
	dirs = append(dirs, false)
	// And with a session shorter than its field: right-justified, as
	// Login Accepted shows it ("Left padded with spaces").
	bufs = append(bufs, soupbintcp.AppendLoginRequest(nil, soupbintcp.LoginRequest{Username: "lab", Password: "secret", Session: "GEN1", Sequence: 1}))
	dirs = append(dirs, false)
	path := tcpCapture(t, bufs, dirs)
	// -T pdml: the dissector stores the sequence numbers as the string "X"
	// and shows the number it parsed (strtou32 of the whole 20-byte field,
	// which fails on right padding) only in the field's showname.
	out := ts.Output("-r", path, "-d", "tcp.port==26500,soupbintcp", "-T", "pdml")
	var doc struct {
		Packets []struct {
			Protos []struct {
				Name   string      `xml:"name,attr"`
				Fields []pdmlField `xml:"field"`
			} `xml:"proto"`
		} `xml:"packet"`
	}
	if err := xml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, p := range doc.Packets {
		f := map[string]string{}
		for _, pr := range p.Protos {
			if pr.Name == "soupbintcp" {
				collect(pr.Fields, f)
			}
		}
		lines = append(lines, strings.Join([]string{strings.Trim(f["soupbintcp.packet_type"], "'"), f["soupbintcp.packet_length"],
			f["soupbintcp.username"], f["soupbintcp.password"], f["soupbintcp.session"], f["soupbintcp.req_seq_num"],
			f["soupbintcp.next_seq_num"], strings.Trim(f["soupbintcp.reject_code"], "'"), f["soupbintcp.text"], f["invalid"]}, "|"))
	}
	if len(lines) != len(bufs) {
		t.Fatalf("tshark decoded %d frames, want %d:\n%s", len(lines), len(bufs), out)
	}
	norm := func(s string) string {
		f := strings.Split(s, "|")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		return strings.Join(f, "|")
	}
	for i, s := range segs {
		if got, want := norm(lines[i]), norm(s.want)+"|"; got != want {
			t.Errorf("frame %d: tshark says %q, want %q", i+1, got, want)
		}
	}
	if got, want := norm(lines[len(segs)]), "L|47|abcdef|0123456789||2000000000||||"; got != want {
		t.Errorf("second login: tshark says %q, want %q", got, want)
	}
	if got, want := strings.Split(lines[len(segs)+1], "|")[4], "      GEN1"; got != want {
		t.Errorf("third login: tshark's session %q, want %q", got, want)
	}
	// A right-padded sequence number (the wrong alignment) is what tshark
	// flags as invalid: the check above is a real check of our padding.
	bad := soupbintcp.AppendLoginRequest(nil, soupbintcp.LoginRequest{Username: "lab"})
	copy(bad[len(bad)-20:], "7                   ")
	path = tcpCapture(t, [][]byte{bad}, []bool{false})
	out = ts.Output("-r", path, "-d", "tcp.port==26500,soupbintcp", "-T", "pdml")
	if !strings.Contains(string(out), "req_seq_num.invalid") && !strings.Contains(string(out), "next_seq_num.invalid") {
		t.Errorf("tshark accepted a right-padded sequence number; the alignment check proves nothing")
	}
	// Padding and alignment, as raw bytes: tshark's fields are untrimmed
	// substrings of fixed offsets, so check our padding direction directly.
	l := soupbintcp.AppendLoginRequest(nil, soupbintcp.LoginRequest{Username: "lab", Password: "secret", Sequence: 1})
	if want := "\x00\x2fLlab   secret              " + strings.Repeat(" ", 19) + "1"; string(l) != want {
		t.Errorf("login request bytes %q, want %q", l, want)
	}
	a := soupbintcp.AppendLoginAccepted(nil, "S1", 42) // the session "Left padded with spaces"
	if want := "\x00\x1fA        S1" + strings.Repeat(" ", 18) + "42"; string(a) != want {
		t.Errorf("login accepted bytes %q, want %q", a, want)
	}
}

type pdmlField struct {
	Name     string      `xml:"name,attr"`
	Show     string      `xml:"show,attr"`
	Showname string      `xml:"showname,attr"`
	Fields   []pdmlField `xml:"field"`
}

// collect records each field's value; for the sequence numbers, the number
// from the showname; an *.invalid field under "invalid".
func collect(fs []pdmlField, into map[string]string) {
	for _, f := range fs {
		v := f.Show
		switch {
		case strings.HasSuffix(f.Name, "seq_num"):
			if i := strings.LastIndex(f.Showname, ": "); i >= 0 {
				v = f.Showname[i+2:]
			}
		case strings.HasSuffix(f.Name, ".invalid"):
			into["invalid"] = f.Name
		}
		if f.Name != "" {
			into[f.Name] = v
		}
		collect(f.Fields, into)
	}
}
