package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/internal/itchgen"
	"golang.org/x/sys/unix"
)

// TestReplayFileAndPcap replays the same generated day from a BinaryFILE and
// from a MoldUDP64 pcap (two lines, A/B) and checks the reports and that the
// books written are identical.
func TestReplayFileAndPcap(t *testing.T) {
	dir := t.TempDir()
	const messages = 200_000
	write := func(name string, pcap bool) string {
		g, err := itchgen.New(itchgen.Config{Messages: messages, Symbols: 50, Seed: 3, Lines: 2})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if pcap {
			_, err = g.WritePcap(f)
		} else {
			err = g.Write(f)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var books [2][]byte
	for i, in := range []string{write("day.itch", false), write("day.pcap", true)} {
		out := filepath.Join(dir, "books.json")
		var stdout, stderr bytes.Buffer
		pct, lim := gcSettings()
		if err := replay([]string{"--json", "--books-out", out, "--max-orders", "65536", "--quiet", in}, &stdout, &stderr); err != nil {
			t.Fatalf("replay %s: %v\n%s", in, err, stderr.String())
		}
		// replay turns the collector off for its loop, and back on after.
		if pct2, lim2 := gcSettings(); pct2 != pct || lim2 != lim {
			t.Errorf("replay %s left GC percent %d, memory limit %d; before: %d, %d", in, pct2, lim2, pct, lim)
		}
		var rep replayReport
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("report: %v\n%s", err, stdout.String())
		}
		if rep.Messages != messages || rep.Inconsistent != 0 || rep.Orders == 0 || rep.Latency.Samples != messages/latencySampleEvery || rep.InputGaps != 0 {
			t.Errorf("%s: report %+v", in, rep)
		}
		if rep.Latency.P50 > rep.Latency.P99 || rep.Latency.P99 > rep.Latency.P999 {
			t.Errorf("%s: latency %+v", in, rep.Latency)
		}
		if rep.SettleMs != float64(defaultSettle.Milliseconds()) {
			t.Errorf("%s: settle %v ms, want the default %v", in, rep.SettleMs, defaultSettle)
		}
		if ok, mode := book.HugePages(); rep.HugePages != mode && (ok || rep.HugePages != "off: "+mode) {
			t.Errorf("%s: huge_pages %q; book.HugePages says %v %q", in, rep.HugePages, ok, mode)
		}
		if rep.AnonKB <= 0 || rep.HugeKB < 0 || rep.HugeKB > rep.AnonKB {
			t.Errorf("%s: anonymous memory %d KiB, %d KiB of it in huge pages", in, rep.AnonKB, rep.HugeKB)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]map[string][][3]uint64
		if err := json.Unmarshal(b, &doc); err != nil || len(doc) != rep.WithOrders {
			t.Fatalf("%s: books-out has %d symbols, report %d: %v", in, len(doc), rep.WithOrders, err)
		}
		books[i] = b
	}
	if !bytes.Equal(books[0], books[1]) {
		t.Error("books from the BinaryFILE and from the pcap differ")
	}

	// --depth 1 keeps one level per side.
	out := filepath.Join(dir, "top.json")
	var stdout bytes.Buffer
	if err := replay([]string{"--depth", "1", "--books-out", out, "--max-orders", "65536", filepath.Join(dir, "day.itch")}, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	var doc map[string]map[string][][3]uint64
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for sym, sides := range doc {
		if len(sides["bids"]) > 1 || len(sides["asks"]) > 1 {
			t.Errorf("%s: more than one level with --depth 1", sym)
		}
	}
	if !bytes.Contains(stdout.Bytes(), []byte("ns/msg")) {
		t.Errorf("text report: %s", stdout.String())
	}
}

// gcSettings reads the GC percent and the memory limit.
func gcSettings() (pct int, limit int64) {
	pct = debug.SetGCPercent(-1)
	debug.SetGCPercent(pct)
	return pct, debug.SetMemoryLimit(-1)
}

// TestApplyFileMatchesScanner checks that applyFile, which frames blocks
// itself, applies the same messages, counts the same odd blocks and stops
// with the same error as a plain itch.Scanner loop, on a stream with an
// unknown type, a long and a short message, an empty block and a truncated
// end between valid messages, and unknown types at the start, back to back
// and within the prefetch cursor's lookahead; one message in
// latencySampleEvery is timed. The tails include a message of the right
// length for its type one byte short of the end, which an off-by-one in
// applyFile's bounds would apply, and a bare length prefix; each input is also replayed from the end
// of a mapping whose next page is PROT_NONE, so that a read past the input
// faults.
func TestApplyFileMatchesScanner(t *testing.T) {
	g, err := itchgen.New(itchgen.Config{Messages: 5000, Symbols: 20, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	k := 0
	err = g.Stream(func(m itch.Msg) error {
		k++
		switch k {
		case 1, 16, 17, 33, 34, 47: // near the start, back to back, within the lookahead
			data = itch.AppendBlock(data, []byte{'z', 1, 2, 3})
		case 1000:
			data = itch.AppendBlock(data, []byte{'z', 1, 2, 3}) // unknown type
		case 2000:
			data = itch.AppendBlock(data, append(append([]byte(nil), m...), 9, 9)) // long
		case 3000:
			data = append(data, 0, 0) // empty block
		case 4000:
			data = itch.AppendBlock(data, m[:len(m)-1]) // short
		}
		data = itch.AppendBlock(data, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := book.Config{MaxOrders: 1 << 16, MaxLocates: 64, MaxLevels: 1 << 14}
	short := []byte{0, 12, 'S', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // 'S' is 12 bytes; 11 are there
	for _, tail := range [][]byte{nil, {0, 36, 'A', 0}, {0}, {0, 12}, short} {
		in := append(append([]byte(nil), data...), tail...)

		want, ws, wantN := scanApply(cfg, in)

		got, _ := book.New(cfg)
		rp := replayer{bs: got, quiet: true}
		var gs itch.Scanner
		gotErr := rp.applyFile(in, &gs)

		if rp.hist.n != uint64(wantN/latencySampleEvery) {
			t.Errorf("tail %v: %d latency samples, want one in %d of %d messages", tail, rp.hist.n, latencySampleEvery, wantN)
		}
		if rp.n != uint64(wantN) || got.Stats() != want.Stats() {
			t.Errorf("tail %v: applied %d, want %d; stats %+v, want %+v", tail, rp.n, wantN, got.Stats(), want.Stats())
		}
		if gs.Unknown != ws.Unknown || gs.Short != ws.Short || gs.Long != ws.Long || gs.Truncated != ws.Truncated {
			t.Errorf("tail %v: counters %+v, want %+v", tail, gs.Counters, ws.Counters)
		}
		if fmt.Sprint(gotErr) != fmt.Sprint(ws.Err()) {
			t.Errorf("tail %v: error %v, want %v", tail, gotErr, ws.Err())
		}
		// applyFile prefetches ahead of Apply: the books must not depend on it.
		var gotBooks, wantBooks bytes.Buffer
		if err := got.WriteJSON(&gotBooks, 0); err != nil {
			t.Fatal(err)
		}
		if err := want.WriteJSON(&wantBooks, 0); err != nil {
			t.Fatal(err)
		}
		if gotBooks.Len() < 100 || !bytes.Equal(gotBooks.Bytes(), wantBooks.Bytes()) {
			t.Errorf("tail %v: books differ from a plain Apply loop (%d bytes, want %d)", tail, gotBooks.Len(), wantBooks.Len())
		}

		guarded := guardedCopy(t, in)
		got2, _ := book.New(cfg)
		rp2 := replayer{bs: got2, quiet: true}
		var gs2 itch.Scanner
		gotErr2 := rp2.applyFile(guarded, &gs2)
		if rp2.n != uint64(wantN) || got2.Stats() != want.Stats() || gs2.Unknown != ws.Unknown || gs2.Short != ws.Short || gs2.Long != ws.Long || gs2.Truncated != ws.Truncated || fmt.Sprint(gotErr2) != fmt.Sprint(ws.Err()) {
			t.Errorf("tail %v, before a PROT_NONE page: applied %d, want %d; counters %+v, want %+v; error %v, want %v",
				tail, rp2.n, wantN, gs2.Counters, ws.Counters, gotErr2, ws.Err())
		}
	}
}

// scanApply applies to new books of cfg every message a plain
// itch.Scanner loop returns from data (going on after each block it
// skips), as applyFile must; it returns the books, the scanner and the
// number of messages applied.
func scanApply(cfg book.Config, data []byte) (*book.Books, *itch.Scanner, int) {
	bs, _ := book.New(cfg)
	s := new(itch.Scanner)
	s.Reset(data)
	n := 0
	for {
		for m, ok := s.Next(); ok; m, ok = s.Next() {
			bs.Apply(m)
			n++
		}
		if !s.Resume() {
			return bs, s, n
		}
	}
}

// guardedCopy returns a copy of data that ends where a PROT_NONE page
// starts, so that a read past its end faults (a panic, with
// debug.SetPanicOnFault, that fails the test).
func guardedCopy(t *testing.T, data []byte) []byte {
	t.Helper()
	page := os.Getpagesize()
	size := (len(data) + page - 1) / page * page
	mem, err := unix.Mmap(-1, 0, size+page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("map guarded copy: %v", err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	if err := unix.Mprotect(mem[size:], unix.PROT_NONE); err != nil {
		t.Fatalf("protect guard page: %v", err)
	}
	prev := debug.SetPanicOnFault(true)
	t.Cleanup(func() { debug.SetPanicOnFault(prev) })
	out := mem[size-len(data) : size : size]
	copy(out, data)
	return out
}

// TestReplaySettle: --settle is the pause before the timer, reported as
// settle_ms, and outside the loop's wall time; a negative one is refused.
func TestReplaySettle(t *testing.T) {
	in, _ := genDayFile(t, itchgen.Config{Messages: 2000, Symbols: 5, Seed: 3}, false)
	var stdout, stderr bytes.Buffer
	if err := replay([]string{"--json", "--quiet", "--settle", "50ms", in}, &stdout, &stderr); err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	var rep replayReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.SettleMs != 50 || rep.WallMs >= 50 || rep.Messages != 2000 {
		t.Errorf("settle %v ms, wall %v ms, %d messages: want 50 ms, a loop well under it, 2000", rep.SettleMs, rep.WallMs, rep.Messages)
	}
	err := replay([]string{"--settle", "-1s", in}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--settle") {
		t.Errorf("--settle -1s: %v, want an error naming the flag", err)
	}
}

// TestReplayGzipBinaryFile: a gzipped BinaryFILE (as Nasdaq publishes its
// day files) replays the same messages and books as the plain file; the
// input detection inflates it, and the mapped fast path must not scan the
// compressed bytes. Zero padding after it is ignored and counted
// (input_gzip_padding). A gzip stream cut short is an error naming the cut.
func TestReplayGzipBinaryFile(t *testing.T) {
	dir := t.TempDir()
	const messages = 20_000
	plain := generatedDay(t, itchgen.Config{Messages: messages, Symbols: 20, Seed: 5}, false)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	if _, err := zw.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	const padding = 4096
	padded := append(bytes.Clone(zipped.Bytes()), make([]byte, padding)...)
	files := map[string][]byte{"day.itch": plain, "day.itch.gz": zipped.Bytes(), "padded.itch.gz": padded, "cut.itch.gz": zipped.Bytes()[:zipped.Len()/2]}
	books := map[string][]byte{}
	for _, name := range []string{"day.itch", "day.itch.gz", "padded.itch.gz"} {
		in, out := filepath.Join(dir, name), filepath.Join(dir, name+".books.json")
		if err := os.WriteFile(in, files[name], 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if err := replay([]string{"--json", "--quiet", "--settle", "0", "--books-out", out, in}, &stdout, &stderr); err != nil {
			t.Fatalf("replay %s: %v\n%s", name, err, stderr.String())
		}
		var rep replayReport
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("%s: report: %v\n%s", name, err, stdout.String())
		}
		if rep.Messages != messages || rep.Inconsistent != 0 || rep.InputShort != 0 || rep.InputUnknown != 0 {
			t.Fatalf("%s: %d messages (want %d), %d inconsistencies, %d short, %d unknown", name, rep.Messages, messages, rep.Inconsistent, rep.InputShort, rep.InputUnknown)
		}
		if want := uint64(len(files[name]) - len(padded) + padding); name == "padded.itch.gz" && rep.InputGzipPadding != want {
			t.Errorf("%s: input_gzip_padding %d, want %d", name, rep.InputGzipPadding, want)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		books[name] = b
	}
	if !bytes.Equal(books["day.itch"], books["day.itch.gz"]) || !bytes.Equal(books["day.itch"], books["padded.itch.gz"]) {
		t.Error("books from the gzipped BinaryFILE, or of it with zero padding after, differ from the plain file's")
	}
	in := filepath.Join(dir, "cut.itch.gz")
	if err := os.WriteFile(in, files["cut.itch.gz"], 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	err := replay([]string{"--quiet", "--settle", "0", in}, &stdout, &stdout)
	if err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Fatalf("gzip cut short: %v, want an unexpected EOF", err)
	}
}

// TestReplayBadInputReports: an input that stops early (a pcap cut
// mid-record, a BinaryFILE whose last block overruns the file) is an error,
// and the report of what was applied until then is still printed, with the
// reason: the messages, books and counters of a capture cut when it was
// copied are what the replay is for.
func TestReplayBadInputReports(t *testing.T) {
	dir := t.TempDir()
	const messages = 5_000
	cfg := itchgen.Config{Messages: messages, Symbols: 20, Seed: 6}
	day, capture := generatedDay(t, cfg, false), generatedDay(t, cfg, true)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"cut.pcap", capture[:len(capture)-7], "unexpected EOF"},
		{"cut.itch", day[:len(day)-7], "truncated block"},
	} {
		in := filepath.Join(dir, c.name)
		if err := os.WriteFile(in, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		err := replay([]string{"--json", "--quiet", "--settle", "0", in}, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
		var rep replayReport
		if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
			t.Fatalf("%s: no report with the error %q: %v\n%s", c.name, err, jerr, stdout.String())
		}
		if rep.Messages < messages-1 || rep.Error != err.Error() || rep.Instruments != 20 {
			t.Fatalf("%s: report of %d messages, %d instruments, error %q (returned %q)", c.name, rep.Messages, rep.Instruments, rep.Error, err)
		}
		stdout.Reset()
		if err := replay([]string{"--quiet", "--settle", "0", in}, &stdout, &stderr); err == nil || !strings.Contains(stdout.String(), "stopped       "+err.Error()) {
			t.Fatalf("%s: text report without the reason %v:\n%s", c.name, err, stdout.String())
		}
	}
}

// TestReplayCaptureSkipsCounted: a capture's frames that are not IPv4/UDP
// and UDP datagrams that are not MoldUDP64 carry messages replay does not
// apply; the report counts both (JSON input_frames_skipped and
// input_bad_packets, and the text's input line). Before, a capture whose
// first 100 frames were TCP replayed without a word of them.
func TestReplayCaptureSkipsCounted(t *testing.T) {
	b := generatedDay(t, itchgen.Config{Messages: 5_000, Symbols: 20, Seed: 7}, true)
	if !bytes.Equal(b[:4], []byte{0x4d, 0x3c, 0xb2, 0xa1}) {
		t.Fatalf("pcap magic % x: want little-endian nanosecond pcap", b[:4])
	}
	const tcp, bad = 100, 3
	off := 24
	for i := range tcp + bad {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		frame := b[off+16 : off+16+incl] // Ethernet, IPv4 (20 bytes), UDP, MoldUDP64
		if i < tcp {
			frame[14+9] = 6 // IP protocol TCP
		} else {
			binary.BigEndian.PutUint16(frame[14+20+8+18:], 0xfffe) // message count past the datagram
		}
		off += 16 + incl
	}
	in := filepath.Join(t.TempDir(), "mangled.pcap")
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := replay([]string{"--json", "--quiet", "--settle", "0", in}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	var rep map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep["input_frames_skipped"] != float64(tcp) || rep["input_bad_packets"] != float64(bad) {
		t.Fatalf("input_frames_skipped %v (want %d), input_bad_packets %v (want %d)", rep["input_frames_skipped"], tcp, rep["input_bad_packets"], bad)
	}
	stdout.Reset()
	if err := replay([]string{"--quiet", "--settle", "0", in}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d frames skipped (not UDP %d), %d datagrams not MoldUDP64", tcp, tcp, bad); !strings.Contains(stdout.String(), want) {
		t.Fatalf("text report lacks %q:\n%s", want, stdout.String())
	}
}

// TestReplayCaptureSnapped: a capture whose every frame its snaplen cut
// (tcpdump -s 60) holds no datagram: replay says so, an error naming the
// reason, where it reported a replay of 0 messages as a success and the
// frames as "not IPv4/UDP". The report counts them by reason.
func TestReplayCaptureSnapped(t *testing.T) {
	b := generatedDay(t, itchgen.Config{Messages: 2_000, Symbols: 20, Seed: 7}, true)
	if !bytes.Equal(b[:4], []byte{0x4d, 0x3c, 0xb2, 0xa1}) {
		t.Fatalf("pcap magic % x: want little-endian nanosecond pcap", b[:4])
	}
	const snaplen = 60
	snapped := append([]byte(nil), b[:24]...)
	binary.LittleEndian.PutUint32(snapped[16:], snaplen)
	frames := 0
	for off := 24; off < len(b); frames++ {
		incl := int(binary.LittleEndian.Uint32(b[off+8:]))
		keep := min(incl, snaplen)
		rec := append([]byte(nil), b[off:off+16+keep]...)
		binary.LittleEndian.PutUint32(rec[8:], uint32(keep))
		snapped = append(snapped, rec...)
		off += 16 + incl
	}
	in := filepath.Join(t.TempDir(), "snapped.pcap")
	if err := os.WriteFile(in, snapped, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := replay([]string{"--json", "--quiet", "--settle", "0", in}, &stdout, &stderr)
	if want := fmt.Sprintf("no IPv4/UDP datagram in the capture's %d frames (skipped: truncated %d)", frames, frames); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("a capture of %d frames cut to %d bytes: %v, want an error saying %q", frames, snaplen, err, want)
	}
	var rep replayReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	if rep.InputFramesSkipped != uint64(frames) || rep.InputSkippedBy["truncated"] != uint64(frames) || rep.Error == "" {
		t.Fatalf("report: %d frames skipped, by reason %v, error %q; want %d truncated", rep.InputFramesSkipped, rep.InputSkippedBy, rep.Error, frames)
	}
}

// TestReplayEmptyInput: an empty file is an error, not a report of a
// successful replay of 0 messages.
func TestReplayEmptyInput(t *testing.T) {
	in := filepath.Join(t.TempDir(), "empty.itch")
	if err := os.WriteFile(in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := replay([]string{"--quiet", "--settle", "0", in}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty input: %v, want an error saying it is empty\n%s", err, stdout.String())
	}
}

// generatedDay returns the day cfg describes as a BinaryFILE, or as a pcap.
func generatedDay(t *testing.T, cfg itchgen.Config, pcap bool) []byte {
	t.Helper()
	g, err := itchgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if pcap {
		_, err = g.WritePcap(&b)
	} else {
		err = g.Write(&b)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestReplayFIFO: a day piped in (a FIFO, /dev/stdin, <(zcat day.gz))
// replays every message. The BinaryFILE path mapped the file by its size,
// 0 for a pipe, after the reader had taken the first MiB from it: a
// replay of 0 messages reported as a success.
func TestReplayFIFO(t *testing.T) {
	const messages = 5_000
	day := generatedDay(t, itchgen.Config{Messages: messages, Symbols: 20, Seed: 8}, false)
	fifo, wrote := writeFIFO(t, day)
	var stdout, stderr bytes.Buffer
	err := replay([]string{"--json", "--quiet", "--settle", "0", fifo}, &stdout, &stderr)
	werr := wrote()
	if err != nil {
		t.Fatalf("replay a FIFO: %v\n%s", err, stderr.String())
	}
	var rep replayReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	if rep.Messages != messages || rep.Format != "binaryfile" || werr != nil {
		t.Fatalf("a FIFO of a %d-message BinaryFILE: %d messages, format %s (writer: %v)", messages, rep.Messages, rep.Format, werr)
	}
}

// writeFIFO makes a FIFO and writes data to it from a goroutine once a
// reader opens it. wrote returns the writer's error once the reader is
// done with the FIFO: a writer still waiting for a reader (one that failed
// before it opened the FIFO) is let go by opening and closing the other
// end; a write cut short by the reader's close fails.
func writeFIFO(t *testing.T, data []byte) (path string, wrote func() error) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "in.fifo")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Write(data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		done <- err
	}()
	return path, func() error {
		if f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		return await(t, "the fifo writer's end ("+path+")", done)
	}
}

// TestApplyFileCutBlockOnHeap gives applyFile a file whose one block says 36
// bytes where 14 follow, in a heap buffer of its size class (16 bytes), 100
// times: it stops at the block as the scanner does. Under -race (checkptr)
// the loop made the message's slice before it checked that the block fits:
// 'fatal error: checkptr: unsafe.Slice result straddles multiple
// allocations' (the replay's files are mapped, and guardedCopy's memory too,
// where checkptr does not look).
func TestApplyFileCutBlockOnHeap(t *testing.T) {
	for range 100 {
		in := make([]byte, 16)
		copy(in, []byte{0, 36, 'A'})
		bs, err := book.New(book.Config{MaxOrders: 1 << 10, MaxLocates: 8, MaxLevels: 1 << 10})
		if err != nil {
			t.Fatal(err)
		}
		_, ws, wantN := scanApply(book.Config{MaxOrders: 1 << 10, MaxLocates: 8, MaxLevels: 1 << 10}, in)
		var s itch.Scanner
		rp := replayer{bs: bs, quiet: true}
		err = rp.applyFile(in, &s)
		if rp.n != uint64(wantN) || fmt.Sprint(err) != fmt.Sprint(ws.Err()) || err == nil {
			t.Fatalf("applied %d, error %v, want %d and %v", rp.n, err, wantN, ws.Err())
		}
	}
}
