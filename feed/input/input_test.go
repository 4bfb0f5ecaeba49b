package input_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/feed/input"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/race"
)

var (
	src    = netip.MustParseAddrPort("10.0.0.1:50000")
	groupA = netip.MustParseAddrPort("233.54.12.111:26477")
	groupB = netip.MustParseAddrPort("233.54.12.112:26477")
)

func write(t testing.TB, name string, fn func(io.Writer) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := fn(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func genFile(t testing.TB, cfg itchgen.Config, asPcap bool) string {
	g, err := itchgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if asPcap {
		return write(t, "day.pcap", func(w io.Writer) error { _, err := g.WritePcap(w); return err })
	}
	return write(t, "day.itch", g.Write)
}

// readAll returns copies of every message of the file at path.
func readAll(t testing.TB, path string, opt input.Options) ([][]byte, *input.Stats) {
	t.Helper()
	r, err := input.OpenOptions(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out [][]byte
	for {
		m, err := r.Next()
		if err == io.EOF {
			return out, r.Stats()
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(m))
	}
}

func equalMsgs(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
}

var dayCfg = itchgen.Config{Messages: 60_000, Symbols: 80, Seed: 11, MaxPacket: 700}

func TestBinaryFile(t *testing.T) {
	path := genFile(t, dayCfg, false)
	got, st := readAll(t, path, input.Options{})
	// Independent read with dayfile.
	f, _ := os.Open(path)
	defer f.Close()
	d := dayfile.NewReader(f)
	var want [][]byte
	var byType [256]uint64
	for m, err := d.Next(); err == nil; m, err = d.Next() {
		want = append(want, bytes.Clone(m))
		byType[m[0]]++
	}
	equalMsgs(t, got, want)
	if st.Format != input.FormatBinaryFile || st.Messages != uint64(len(want)) || st.ByType != byType {
		t.Fatalf("stats: format %v messages %d", st.Format, st.Messages)
	}
	if st.FirstTimestamp != itch.Msg(want[0]).Timestamp() || st.LastTimestamp != itch.Msg(want[len(want)-1]).Timestamp() {
		t.Fatalf("timestamps %d..%d", st.FirstTimestamp, st.LastTimestamp)
	}
}

func TestPcapMatchesBinaryFile(t *testing.T) {
	want, _ := readAll(t, genFile(t, dayCfg, false), input.Options{})
	got, st := readAll(t, genFile(t, dayCfg, true), input.Options{})
	equalMsgs(t, got, want)
	if st.Format != input.FormatPcap || len(st.Sessions) != 1 {
		t.Fatalf("format %v, %d sessions", st.Format, len(st.Sessions))
	}
	s := st.Sessions[0]
	if s.Session != moldudp64.NewSession("GEN0000001") || s.FirstSeq != 1 || s.NextSeq != uint64(len(want))+1 || s.Messages != uint64(len(want)) {
		t.Fatalf("session %+v", s)
	}
	if s.Tracker.Gaps != 0 || s.Tracker.Duplicates != 0 || s.Tracker.Heartbeats == 0 || s.Tracker.EndOfSession != 3 {
		t.Fatalf("tracker %+v", s.Tracker)
	}
}

// TestLinesWithLoss: both lines lose packets independently; the reader keeps
// the first copy of every sequence number and reports as gaps exactly the
// sequence numbers neither line carried.
func TestLinesWithLoss(t *testing.T) {
	cfg := dayCfg
	cfg.Lines, cfg.Loss = 2, 0.1
	st := checkLines(t, cfg)
	if st.Sessions[0].Tracker.Duplicates == 0 {
		t.Fatal("no duplicates counted from the B line")
	}
	// Both lines delivered first some of the time; together they carried
	// every packet once.
	if len(st.Lines) != 2 || st.Lines[0].Dst != groupA || st.Lines[1].Dst != groupB ||
		st.Lines[0].First == 0 || st.Lines[1].First == 0 || st.Lines[0].Datagrams+st.Lines[1].Datagrams != st.Datagrams {
		t.Fatalf("lines %+v", st.Lines)
	}
}

// TestLinesRandomFaults: loss, duplication and reordering on both lines,
// several seeds; the reader against a naive model of what the capture holds.
func TestLinesRandomFaults(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		cfg := itchgen.Config{Messages: 20_000, Symbols: 30, Seed: seed, MaxPacket: 300, Lines: 2,
			Loss: 0.15 * float64(seed%3), Dup: 0.05 * float64(seed%2), Reorder: 0.03 * float64(seed)}
		t.Run(fmt.Sprint(seed), func(t *testing.T) { checkLines(t, cfg) })
	}
}

// checkLines compares the reader on a generated capture with a naive model:
// every sequence number present on any line, once, in order, and gaps
// exactly where no line carried a sequence number.
func checkLines(t *testing.T, cfg itchgen.Config) *input.Stats {
	t.Helper()
	path := genFile(t, cfg, true)
	plain := cfg
	plain.Lines, plain.Loss, plain.Dup, plain.Reorder = 1, 0, 0, 0
	full, _ := readAll(t, genFile(t, plain, false), input.Options{})

	// Which sequence numbers does the capture hold, on any line?
	present := map[uint64]bool{}
	f, _ := os.Open(path)
	pr, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for fr, err := pr.Next(); err == nil; fr, err = pr.Next() {
		p, err := moldudp64.Parse(fr.Payload)
		if err != nil {
			t.Fatal(err)
		}
		for i := range p.Messages() {
			present[p.Seq+uint64(i)] = true
		}
	}
	f.Close()
	var want [][]byte
	var gaps []moldudp64.Range
	for seq := uint64(1); seq <= uint64(len(full)); seq++ {
		if present[seq] {
			want = append(want, full[seq-1])
			continue
		}
		if n := len(gaps); n > 0 && gaps[n-1].End() == seq {
			gaps[n-1].Count++
		} else {
			gaps = append(gaps, moldudp64.Range{First: seq, Count: 1})
		}
	}
	if cfg.Loss >= 0.1 && len(gaps) == 0 {
		t.Fatal("the test wants sequence numbers lost on both lines")
	}
	got, st := readAll(t, path, input.Options{})
	equalMsgs(t, got, want)
	s := st.Sessions[0]
	if fmt.Sprint(s.Gaps) != fmt.Sprint(gaps) {
		t.Fatalf("gaps %v, want %v", s.Gaps, gaps)
	}
	if n, missing := st.Gaps(); n != uint64(len(gaps)) || missing != uint64(len(full)-len(want)) {
		t.Fatalf("Gaps() = %d, %d", n, missing)
	}
	return st
}

func TestReorderAndDuplicates(t *testing.T) {
	cfg := dayCfg
	cfg.Reorder, cfg.Dup = 0.05, 0.05
	want, _ := readAll(t, genFile(t, dayCfg, false), input.Options{})
	path := genFile(t, cfg, true)
	got, st := readAll(t, path, input.Options{})
	equalMsgs(t, got, want)
	s := st.Sessions[0]
	if st.Held == 0 || s.Tracker.Gaps != 0 || s.Tracker.Duplicates == 0 {
		t.Fatalf("held %d, tracker %+v", st.Held, s.Tracker)
	}
	// Without a reorder window the swaps become gaps and late packets.
	got, st = readAll(t, path, input.Options{ReorderWindow: -1})
	if s := st.Sessions[0]; len(got) >= len(want) || s.Tracker.Gaps == 0 || s.Tracker.Late == 0 {
		t.Fatalf("without window: %d of %d messages, tracker %+v", len(got), len(want), s.Tracker)
	}
}

func TestFilter(t *testing.T) {
	cfg := dayCfg
	cfg.Lines, cfg.Loss = 2, 0.1
	path := genFile(t, cfg, true)
	_, all := readAll(t, path, input.Options{})
	_, a := readAll(t, path, input.Options{Group: groupA.Addr(), Port: groupA.Port()})
	_, none := readAll(t, path, input.Options{Port: 1})
	if a.Filtered == 0 || a.Datagrams+a.Filtered != all.Datagrams || none.Datagrams != 0 || none.Messages != 0 {
		t.Fatalf("filtered: line A %d/%d, port 1 %d/%d, all %d", a.Datagrams, a.Filtered, none.Datagrams, none.Filtered, all.Datagrams)
	}
	if a.Sessions[0].Tracker.GapMessages <= all.Sessions[0].Tracker.GapMessages {
		t.Fatal("line A alone should miss more than both lines")
	}
}

// TestHandMadeLines: a tiny A/B capture built packet by packet.
func TestHandMadeLines(t *testing.T) {
	session := moldudp64.NewSession("HAND000001")
	msg := func(seq uint64) []byte {
		f := itch.OrderDeleteFields{Header: itch.Header{Locate: 1, Timestamp: 36000e9 + seq}, OrderRef: seq}
		return f.Append(nil)
	}
	b := moldudp64.NewBuilder(session, 1, 0)
	var pkts [][]byte
	for seq := uint64(1); seq <= 10; seq++ {
		b.Add(msg(seq))
		if seq%2 == 0 || seq == 9 {
			pkts = append(pkts, bytes.Clone(b.Flush())) // [1,2] [3,4] [5,6] [7,8] [9] [10]
		}
	}
	hb := bytes.Clone(b.Heartbeat())
	// A loses [3,4]; B loses [3,4] too and [9]; B also sends [5,6] twice.
	lineA := [][]byte{pkts[0], pkts[2], pkts[3], pkts[4], pkts[5], hb}
	lineB := [][]byte{pkts[0], pkts[2], pkts[2], pkts[3], pkts[5], hb}
	// A truncated MoldUDP64 packet and an ARP frame.
	bad := bytes.Clone(pkts[1][:len(pkts[1])-3])
	path := write(t, "hand.pcap", func(f io.Writer) error {
		w, err := pcap.NewWriter(f)
		if err != nil {
			return err
		}
		ts := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC).UnixNano()
		for i := range lineA {
			w.WriteUDP(ts, src, groupA, lineA[i])
			w.WriteUDP(ts+1, src, groupB, lineB[i])
			ts += 1000
		}
		w.WriteUDP(ts, src, groupA, bad)
		arp := pcap.AppendUDPFrame(nil, src, groupA, 1, []byte("x"))
		arp[12], arp[13] = 0x08, 0x06
		w.WriteFrame(ts, arp)
		return w.Flush()
	})
	got, st := readAll(t, path, input.Options{})
	var refs []uint64
	for _, m := range got {
		refs = append(refs, itch.OrderDelete(m).OrderRef())
	}
	if fmt.Sprint(refs) != "[1 2 5 6 7 8 9 10]" {
		t.Fatalf("delivered %v", refs)
	}
	s := st.Sessions[0]
	if fmt.Sprint(s.Gaps) != "[{3 2}]" || s.FirstSeq != 1 || s.NextSeq != 11 {
		t.Fatalf("session %+v", s)
	}
	// B's copies of 1-2, 5-6 (twice), 7-8, 10 and one heartbeat duplicate A's.
	if s.Tracker.Duplicates != 5 || s.Tracker.Heartbeats != 2 {
		t.Fatalf("tracker %+v", s.Tracker)
	}
	if st.Malformed != 1 || st.ParseErrors.Overrun+st.ParseErrors.Trailing != 1 || st.Frames.Skipped[pcap.NotIPv4] != 1 {
		t.Fatalf("malformed %d %+v, frames %+v", st.Malformed, st.ParseErrors, st.Frames)
	}
	if st.ByType['D'] != 8 {
		t.Fatalf("by type D = %d", st.ByType['D'])
	}
}

func TestPcapNG(t *testing.T) {
	pcapPath := genFile(t, dayCfg, true)
	want, _ := readAll(t, pcapPath, input.Options{})
	// Convert the capture to pcapng.
	path := write(t, "day.pcapng", func(w io.Writer) error {
		f, err := os.Open(pcapPath)
		if err != nil {
			return err
		}
		defer f.Close()
		r, err := pcapgo.NewReader(f)
		if err != nil {
			return err
		}
		ng, err := pcapgo.NewNgWriter(w, layers.LinkTypeEthernet)
		if err != nil {
			return err
		}
		for {
			data, ci, err := r.ReadPacketData()
			if err == io.EOF {
				return ng.Flush()
			}
			if err != nil {
				return err
			}
			if err := ng.WritePacket(gopacket.CaptureInfo{Timestamp: ci.Timestamp, CaptureLength: len(data), Length: len(data)}, data); err != nil {
				return err
			}
		}
	})
	got, st := readAll(t, path, input.Options{})
	equalMsgs(t, got, want)
	if st.Format != input.FormatPcapNG {
		t.Fatalf("format %v", st.Format)
	}
}

func TestTruncatedBinaryFile(t *testing.T) {
	path := genFile(t, itchgen.Config{Messages: 5000, Symbols: 10, Seed: 1}, false)
	data, _ := os.ReadFile(path)
	os.WriteFile(path, data[:len(data)-5], 0o644)
	r, err := input.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	for {
		_, err = r.Next()
		if err != nil {
			break
		}
		n++
	}
	if !errors.Is(err, dayfile.ErrTruncated) || n != 4999 {
		t.Fatalf("after %d messages: %v", n, err)
	}
}

func TestNextAllocs(t *testing.T) {
	for _, asPcap := range []bool{false, true} {
		path := genFile(t, itchgen.Config{Messages: 200_000, Symbols: 50, Seed: 1}, asPcap)
		r, err := input.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for range 1000 { // warm up buffers
			r.Next()
		}
		if a, exact := race.AllocsPerRun(t, 100_000, func() {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}); exact && a != 0 {
			t.Errorf("pcap %v: Next allocates %v times per message", asPcap, a)
		}
		r.Close()
	}
}

func BenchmarkNext(b *testing.B) {
	for _, asPcap := range []bool{false, true} {
		b.Run(map[bool]string{false: "binaryfile", true: "pcap"}[asPcap], func(b *testing.B) {
			path := genFile(b, itchgen.Config{Messages: 1_000_000, Symbols: 200, Seed: 1}, asPcap)
			r, _ := input.Open(path)
			defer r.Close()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Next(); err == io.EOF {
					r.Close()
					r, _ = input.Open(path)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/msg")
		})
	}
}

func Example() {
	dir, _ := os.MkdirTemp("", "input-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "day.pcap")
	f, _ := os.Create(path)
	g, _ := itchgen.New(itchgen.Config{Messages: 5000, Symbols: 20, Seed: 1, Lines: 2})
	g.WritePcap(f)
	f.Close()

	r, _ := input.Open(path)
	defer r.Close()
	for {
		if _, err := r.Next(); err != nil {
			break
		}
	}
	st := r.Stats()
	s := st.Sessions[0]
	fmt.Println(st.Format, st.Messages, "messages, seq", s.FirstSeq, "to", s.NextSeq-1, "gaps", len(s.Gaps))
	// Output: pcap 5000 messages, seq 1 to 5000 gaps 0
}

// fuzzCapture is a capture of a MoldUDP64 packet of an Order Delete and
// a heartbeat, a seed of the fuzz targets.
func fuzzCapture() []byte {
	var buf bytes.Buffer
	w, _ := pcap.NewWriter(&buf)
	b := moldudp64.NewBuilder(moldudp64.NewSession("FUZZ"), 1, 200)
	d := itch.OrderDeleteFields{OrderRef: 7}
	b.Add(d.Append(nil))
	w.WriteUDP(1, src, groupA, b.Flush())
	w.WriteUDP(2, src, groupA, b.Heartbeat())
	w.Flush()
	return buf.Bytes()
}

// FuzzReader: arbitrary files never panic, and a reader always ends with
// io.EOF or an error.
func FuzzReader(f *testing.F) {
	f.Add([]byte{0, 12, 'S', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'O'})
	f.Add(fuzzCapture())
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := input.NewReader(bytes.NewReader(data), input.Options{ReorderWindow: 4})
		if err != nil {
			return
		}
		for range len(data) + 1 {
			m, err := r.Next()
			if err != nil {
				return
			}
			if err := itch.Check(m); err != nil {
				t.Fatalf("delivered an invalid message: %v", err)
			}
		}
		t.Fatal("more messages than bytes")
	})
}

// TestJoinedLate: a capture that starts mid-session reports where it starts
// instead of a gap from sequence number 1.
func TestJoinedLate(t *testing.T) {
	b := moldudp64.NewBuilder(moldudp64.NewSession("LATE000001"), 500, 0)
	path := write(t, "late.pcap", func(f io.Writer) error {
		w, err := pcap.NewWriter(f)
		if err != nil {
			return err
		}
		for ref := uint64(1); ref <= 6; ref++ {
			d := itch.OrderDeleteFields{OrderRef: ref}
			b.Add(d.Append(nil))
			if ref != 3 { // refs 3 and 4 (seq 502, 503) travel together; ref 5 (seq 504) is lost
				p := b.Flush()
				if ref != 5 {
					w.WriteUDP(int64(ref), src, groupA, p)
				}
			}
		}
		return w.Flush()
	})
	got, st := readAll(t, path, input.Options{})
	s := st.Sessions[0]
	if len(got) != 5 || !s.Joined || s.FirstSeq != 500 || s.NextSeq != 506 || fmt.Sprint(s.Gaps) != "[{504 1}]" {
		t.Fatalf("%d messages, session %+v", len(got), s)
	}
}

func TestGzip(t *testing.T) {
	for _, asPcap := range []bool{false, true} {
		plain := genFile(t, itchgen.Config{Messages: 20_000, Symbols: 30, Seed: 2}, asPcap)
		want, _ := readAll(t, plain, input.Options{})
		data, err := os.ReadFile(plain)
		if err != nil {
			t.Fatal(err)
		}
		path := write(t, "day.gz", func(w io.Writer) error {
			zw := gzip.NewWriter(w)
			zw.Write(data)
			return zw.Close()
		})
		got, st := readAll(t, path, input.Options{})
		if !st.Gzip || (st.Format == input.FormatPcap) != asPcap {
			t.Fatalf("gzip %v format %v", st.Gzip, st.Format)
		}
		if len(got) != len(want) {
			t.Fatalf("%d messages, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("message %d differs", i)
			}
		}
	}
}

// TestGzipTrailingZeros: zero bytes after the last gzip member (a tape or
// block device's padding, a file preallocated larger than what was
// written) are ignored and counted, as gzip -d ignores them ("trailing
// zero bytes ignored"); any other byte after a member is an error, as
// before: not a gzip member, trailing garbage. Zeros then garbage too.
func TestGzipTrailingZeros(t *testing.T) {
	day := []byte{0, 12, 'S', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'O', 0, 12, 'S', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'C'}
	var z bytes.Buffer
	for _, part := range [][]byte{day[:14], day[14:]} { // two members
		zw := gzip.NewWriter(&z)
		zw.Write(part)
		zw.Close()
	}
	for _, tc := range []struct {
		name    string
		tail    []byte
		padding uint64
		err     string // "": the file reads whole
	}{
		{"no padding", nil, 0, ""},
		{"one zero", []byte{0}, 1, ""},
		{"512 zeros", make([]byte, 512), 512, ""},
		{"a block of zeros", make([]byte, 1<<20+3), 1<<20 + 3, ""},
		{"garbage", []byte("garbage"), 0, "trailing garbage"},
		{"zeros then garbage", append(make([]byte, 100), 'x'), 0, "trailing garbage"},
		{"half a gzip header", []byte{0x1f}, 0, "trailing garbage"},
		{"a gzip header cut", []byte{0x1f, 0x8b, 8, 0}, 0, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := input.NewReader(bytes.NewReader(append(slices.Clip(z.Bytes()), tc.tail...)), input.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var n int
			for err = nil; err == nil; n++ {
				_, err = r.Next()
			}
			n-- // the call that ended
			st := r.Stats()
			if tc.err == "" && (err != io.EOF || n != 2 || st.GzipPadding != tc.padding) {
				t.Errorf("%d messages, end %v, gzip padding %d; want 2, EOF, %d", n, err, st.GzipPadding, tc.padding)
			}
			if tc.err != "" && (err == io.EOF || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("%d messages, end %v; want an error saying %q", n, err, tc.err)
			}
		})
	}
}

func TestUnknownFormat(t *testing.T) {
	for _, data := range []string{"hello, world\n", "\x00\x05S12345", "\x00\x0cZ0123456789a"} {
		if _, err := input.NewReader(bytes.NewReader([]byte(data)), input.Options{}); !errors.Is(err, input.ErrUnknownFormat) {
			t.Errorf("%q: %v, want ErrUnknownFormat", data, err)
		}
	}
}

// TestCompressedNotGzip: a day file compressed otherwise than with gzip
// (which the reader inflates) is refused, naming the compression and how
// to read it. A bzip2 file ("BZh9": a record of 16986 bytes of type 'h')
// was read as a BinaryFILE: one message of garbage, then "truncated
// block"; xz and zstd were "not a BinaryFILE, pcap or pcapng".
func TestCompressedNotGzip(t *testing.T) {
	for _, c := range []struct{ data, want string }{
		{"BZh91AY&SY\x00\x01", "bzip2-compressed: decompress it first (bzip2 -d FILE), or pipe it in (bzip2 -dc FILE | feedhandler replay /dev/stdin)"},
		{"\xfd7zXZ\x00\x00\x04", "xz-compressed: decompress it first (xz -d FILE), or pipe it in (xz -dc FILE | feedhandler replay /dev/stdin)"},
		{"\x28\xb5\x2f\xfd\x24\x00", "zstd-compressed: decompress it first (zstd -d FILE), or pipe it in (zstd -dc FILE | feedhandler replay /dev/stdin)"},
		{"PK\x03\x04\x14\x00", "a zip archive: extract it first (unzip FILE)"},
	} {
		_, err := input.NewReader(bytes.NewReader([]byte(c.data)), input.Options{})
		if !errors.Is(err, input.ErrUnknownFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("% x: %v, want ErrUnknownFormat saying %q", c.data[:4], err, c.want)
		}
	}
}

// TestBadChecksumTakesOtherLine: line A's copy of a packet arrives first
// with a byte of its payload changed on the way and the UDP checksum the
// sender set failing (as a capture on the receiving host records it), B's
// copy after it intact. The kernel drops A's copy before a socket sees it,
// the AF_XDP path too (receive.verify_checksums): the handler delivers B's
// bytes, and so does the reader, counting A's copy (pcap.BadChecksum), as
// it does one of a failing IPv4 header checksum. It took A's copy, the
// corrupted order reference with it, counted nowhere.
func TestBadChecksumTakesOtherLine(t *testing.T) {
	b := moldudp64.NewBuilder(moldudp64.NewSession("SUM0000001"), 1, 0)
	var pkts [][]byte
	for seq := uint64(1); seq <= 3; seq++ {
		f := itch.OrderDeleteFields{Header: itch.Header{Locate: 1, Timestamp: 36000e9 + seq}, OrderRef: seq}
		b.Add(f.Append(nil))
		pkts = append(pkts, bytes.Clone(b.Flush()))
	}
	// udpSum sets the UDP checksum of an Ethernet/IPv4 frame of no options.
	udpSum := func(fr []byte) []byte {
		u := fr[34:]
		pseudo := append(bytes.Clone(fr[26:34]), 0, 17, byte(len(u)>>8), byte(len(u)))
		u[6], u[7] = 0, 0
		sum := ^pcap.IPv4Checksum(append(pseudo, u...)) // one's complement sum
		binary.BigEndian.PutUint16(u[6:], ^sum)
		return fr
	}
	corrupt := func(fr []byte, at int) []byte { fr[at] ^= 0x40; return fr }
	path := write(t, "checksums.pcap", func(f io.Writer) error {
		w, err := pcap.NewWriter(f)
		if err != nil {
			return err
		}
		for i, p := range pkts {
			a := udpSum(pcap.AppendUDPFrame(nil, src, groupA, uint16(i), p))
			switch i {
			case 1:
				a = corrupt(a, len(a)-1) // the order reference's last byte
			case 2:
				a = corrupt(a, 14+8) // the TTL: the IPv4 header checksum fails
			}
			w.WriteFrame(int64(2*i), a)
			w.WriteFrame(int64(2*i+1), udpSum(pcap.AppendUDPFrame(nil, src, groupB, uint16(i), p)))
		}
		return w.Flush()
	})
	got, st := readAll(t, path, input.Options{})
	var refs []uint64
	for _, m := range got {
		refs = append(refs, itch.OrderDelete(m).OrderRef())
	}
	if fmt.Sprint(refs) != "[1 2 3]" || st.Frames.Skipped[pcap.BadChecksum] != 2 || st.Sessions[0].Tracker.Duplicates != 1 {
		t.Fatalf("delivered references %v, frames skipped %q, duplicates %d; want [1 2 3], bad checksum 2, 1 (B's copy of 1)",
			refs, st.Frames.SkippedSummary(), st.Sessions[0].Tracker.Duplicates)
	}
}

// TestEmptyRecordCounted: a BinaryFILE record of length 0 is counted as a
// short message and passed over, its length prefix framing it, as
// replay's scan of a mapped file counts it (itch.Scanner). The reader
// stopped there with dayfile.ErrEmptyRecord: the same day gzipped or
// piped in (read by this reader) replayed 2 messages and an error where
// the file mapped replayed every one.
func TestEmptyRecordCounted(t *testing.T) {
	rec := func(m []byte) []byte { return append([]byte{byte(len(m) >> 8), byte(len(m))}, m...) }
	var day []byte
	for ref := uint64(1); ref <= 3; ref++ {
		d := itch.OrderDeleteFields{OrderRef: ref}
		day = append(day, rec(d.Append(nil))...)
		if ref == 2 {
			day = append(day, 0, 0)
		}
	}
	var s itch.Scanner
	s.Reset(day)
	for _, ok := s.Next(); ok || s.Resume(); _, ok = s.Next() {
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(day)
	zw.Close()
	for name, data := range map[string][]byte{"plain": day, "gzipped": z.Bytes()} {
		r, err := input.NewReader(bytes.NewReader(data), input.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var refs []uint64
		m, err := r.Next()
		for ; err == nil; m, err = r.Next() {
			refs = append(refs, itch.OrderDelete(m).OrderRef())
		}
		if err != io.EOF {
			t.Fatalf("%s: after %v: %v", name, refs, err)
		}
		if c := r.Stats().Codec; fmt.Sprint(refs) != "[1 2 3]" || c.Short != 1 || c.Short != s.Short {
			t.Fatalf("%s: references %v, %d short (the scanner %d); want [1 2 3], 1", name, refs, c.Short, s.Short)
		}
	}
}
