package exchange

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/tshark"
)

// recorder is a TCP proxy that keeps what each side sent, in order.
type recorder struct {
	mu   sync.Mutex
	segs []recSeg
}

type recSeg struct {
	fromServer bool
	b          []byte
}

func (r *recorder) pipe(dst, src net.Conn, fromServer bool, wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.segs = append(r.segs, recSeg{fromServer, append([]byte(nil), buf[:n]...)})
			r.mu.Unlock()
			dst.Write(buf[:n]) //nolint:errcheck
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite() //nolint:errcheck
			}
			return
		}
	}
}

// TestSnapshotTshark records a real fetch from the lab server through a
// proxy, writes it as a pcap, and has Wireshark's SoupBinTCP dissector
// decode the whole conversation: every byte falls into a packet it
// recognises, with the types and counts we sent.
func TestSnapshotTshark(t *testing.T) {
	ts := tshark.New(t)
	day := genDay(t, 30_000, 20)
	s := startServer(t, SnapshotConfig{Messages: dayFunc(day), Position: func() uint64 { return 12_000 }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rec := &recorder{}
	var wg sync.WaitGroup
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			c.Close()
			return
		}
		wg.Add(2)
		go rec.pipe(up, c, false, &wg)
		go rec.pipe(c, up, true, &wg)
	}()
	cfg := clientCfg(s)
	cfg.Addr = ln.Addr().String()
	res, err := glimpse.Fetch(context.Background(), cfg, func([]byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	wg.Wait()

	path := filepath.Join(t.TempDir(), "glimpse.pcap")
	if p := os.Getenv("KEEP_PCAP"); p != "" {
		path = p
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	// Each direction's bytes, cut into frames of at most 1448 bytes but never
	// inside a packet's 3-byte header: tshark 4.0's SoupBinTCP dissector
	// misreads a length field split across TCP segments (its limitation;
	// our reader handles any split, see the fuzz and reader tests). Frames
	// go out as: the client's login, the server's stream, the rest of the
	// client's.
	var stream [2][]byte
	for _, sg := range rec.segs {
		d := 0
		if sg.fromServer {
			d = 1
		}
		stream[d] = append(stream[d], sg.b...)
	}
	total := [2]int{len(stream[0]), len(stream[1])}
	seq := [2]uint32{1000, 5000}
	frame := 0
	emit := func(d int, p []byte) {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IPv4(127, 0, 0, 1), DstIP: net.IPv4(127, 0, 0, 1)}
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
		frame++
		if err := w.WriteFrame(int64(frame)*1000, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		seq[d] += uint32(len(p))
	}
	cli := segment(stream[0])
	emit(0, cli[0])
	for _, p := range segment(stream[1]) {
		emit(1, p)
	}
	for _, p := range cli[1:] {
		emit(0, p)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := ts.Output("-r", path, "-d", "tcp.port==26500,soupbintcp", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;",
		"-e", "soupbintcp.packet_type", "-e", "soupbintcp.packet_length", "-e", "_ws.malformed", "-e", "_ws.expert.severity")
	types := map[string]int{}
	var bytes [2]int
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		cols := strings.Split(line, "\t")
		if len(cols) < 4 {
			continue
		}
		if cols[2] != "" {
			t.Fatalf("tshark marks a frame malformed: %q", line)
		}
		if cols[0] == "" {
			continue
		}
		ts, ls := strings.Split(cols[0], ";"), strings.Split(cols[1], ";")
		for i, ty := range ts {
			ty = strings.Trim(ty, "'")
			types[ty]++
			l, _ := strconv.Atoi(ls[i])
			if strings.ContainsAny(ty, "LRO") {
				bytes[0] += l + 2
			} else {
				bytes[1] += l + 2
			}
		}
	}
	if types["L"] != 1 || types["A"] != 1 || types["O"] != 1 || uint64(types["S"]) != res.Messages+1 {
		t.Fatalf("tshark saw %v; we fetched %d messages", types, res.Messages)
	}
	if bytes != total {
		t.Fatalf("tshark accounts for %v bytes (client, server), the conversation has %v", bytes, total)
	}
	t.Logf("tshark decoded %v over %d frames, %v bytes", types, frame, total)
}

// segment cuts a SoupBinTCP byte stream into TCP payloads of at most 1448
// bytes, each starting either at a packet or past the first three bytes
// of one, and the first ending after the first packet.
func segment(b []byte) (frames [][]byte) {
	bad := map[int]bool{} // offsets a cut must avoid: inside a 3-byte header
	first := len(b)
	for o := 0; o+2 <= len(b); o += 2 + (int(b[o])<<8 | int(b[o+1])) {
		bad[o+1], bad[o+2] = true, true
		if o > 0 && first == len(b) {
			first = o
		}
	}
	off := 0
	for off < len(b) {
		n := min(len(b)-off, 1448)
		if off == 0 {
			n = min(n, first)
		}
		for n > 1 && bad[off+n] {
			n--
		}
		frames = append(frames, b[off:off+n])
		off += n
	}
	return frames
}
