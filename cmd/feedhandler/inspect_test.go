package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/dayfile"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/pcap"
	"github.com/marketfeed/feedhandler/internal/itchgen"
)

func genDayFile(t *testing.T, cfg itchgen.Config, asPcap bool) (string, itchgen.PacketStats) {
	t.Helper()
	g, err := itchgen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "day")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st itchgen.PacketStats
	if asPcap {
		st, err = g.WritePcap(f)
	} else {
		err = g.Write(f)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path, st
}

func inspectJSON(t *testing.T, args ...string) inspectReport {
	t.Helper()
	var out bytes.Buffer
	if err := inspect(args, &out); err != nil {
		t.Fatal(err)
	}
	var rep inspectReport
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	if dec.More() {
		t.Fatal("more than one JSON value")
	}
	return rep
}

func TestInspectBinaryFile(t *testing.T) {
	path, _ := genDayFile(t, itchgen.Config{Messages: 80_000, Symbols: 100, Seed: 2}, false)
	// Count independently.
	want := map[string]uint64{}
	f, _ := os.Open(path)
	defer f.Close()
	r := dayfile.NewReader(f)
	var first, last uint64
	n := uint64(0)
	for m, err := r.Next(); err == nil; m, err = r.Next() {
		want[string(rune(m[0]))]++
		ts := uint64(m[5])<<40 | uint64(m[6])<<32 | uint64(m[7])<<24 | uint64(m[8])<<16 | uint64(m[9])<<8 | uint64(m[10])
		if n == 0 {
			first = ts
		}
		last = ts
		n++
	}
	for _, args := range [][]string{{"--json", path}, {path, "--json"}} {
		rep := inspectJSON(t, args...)
		if rep.Messages != 80_000 || rep.Messages != n || rep.Format != "binaryfile" || rep.Capture != nil {
			t.Fatalf("report %+v", rep)
		}
		if len(rep.ByType) != 23 || len(rep.ByType) != len(want) {
			t.Fatalf("by_type has %d types, want 23", len(rep.ByType))
		}
		for k, v := range want {
			if rep.ByType[k] != v {
				t.Errorf("by_type[%s] = %d, want %d", k, rep.ByType[k], v)
			}
		}
		if rep.FirstTimestamp != first || rep.LastTimestamp != last || rep.FirstTime != "04:00:00.000000000" || rep.LastTime != "20:05:00.000000000" {
			t.Errorf("timestamps %d %d %s %s", rep.FirstTimestamp, rep.LastTimestamp, rep.FirstTime, rep.LastTime)
		}
	}
	// The text form names the same total.
	var out bytes.Buffer
	if err := inspect([]string{path}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "messages    80000") || !strings.Contains(out.String(), "AddOrder") {
		t.Fatalf("text report:\n%s", out.String())
	}
}

func TestInspectPcap(t *testing.T) {
	cfg := itchgen.Config{Messages: 40_000, Symbols: 60, Seed: 3, Lines: 2, Loss: 0.2, MaxPacket: 500}
	path, gst := genDayFile(t, cfg, true)
	// Independent view of the capture: packets, sequence numbers present.
	f, _ := os.Open(path)
	defer f.Close()
	r, err := pcap.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	present := map[uint64]bool{}
	var datagrams, heartbeats, eos, dataPackets uint64
	for {
		fr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		datagrams++
		p, err := moldudp64.Parse(fr.Payload)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case p.EndOfSession():
			eos++
		case p.Heartbeat():
			heartbeats++
		default:
			dataPackets++
		}
		for i := range p.Messages() {
			present[p.Seq+uint64(i)] = true
		}
	}
	var gaps, missing uint64
	for seq := uint64(1); seq <= 40_000; seq++ {
		if !present[seq] {
			missing++
			if seq == 1 || present[seq-1] {
				gaps++
			}
		}
	}
	if gaps == 0 {
		t.Fatal("want losses on both lines")
	}
	rep := inspectJSON(t, "--json", path)
	c := rep.Capture
	if rep.Format != "pcap" || rep.Messages != 40_000-missing || c == nil || len(rep.Sessions) != 1 {
		t.Fatalf("report %+v", rep)
	}
	s := rep.Sessions[0]
	if s.Session != "GEN0000001" || s.FirstSeq != 1 || s.LastSeq != 40_000 || s.NextSeq != 40_001 || s.Messages != rep.Messages {
		t.Fatalf("session %+v", s)
	}
	if s.Gaps != gaps || s.GapMessages != missing || uint64(len(s.GapRanges)) != gaps || c.Gaps != gaps {
		t.Fatalf("gaps %d/%d (%d ranges), want %d/%d", s.Gaps, s.GapMessages, len(s.GapRanges), gaps, missing)
	}
	if c.Frames != uint64(gst.Frames) || c.Packets != datagrams || s.Packets != datagrams || s.EndOfSession != eos {
		t.Fatalf("capture %+v session %+v, want %d frames, %d packets, %d end of session", c, s, gst.Frames, datagrams, eos)
	}
	// Every data packet and heartbeat beyond the first copy is a duplicate,
	// except the ones filling in for the other line.
	if s.Heartbeats != heartbeats || s.Duplicates == 0 || s.Duplicates >= dataPackets {
		t.Fatalf("heartbeats %d (want %d), duplicates %d", s.Heartbeats, heartbeats, s.Duplicates)
	}
	if len(c.Lines) != 2 || c.Lines[0].Dst != "233.54.12.111:26477" || c.Lines[0].Packets+c.Lines[1].Packets != datagrams || c.Lines[0].First == 0 || c.Lines[1].First == 0 {
		t.Fatalf("lines %+v", c.Lines)
	}
	// Line A alone.
	a := inspectJSON(t, "--json", "--group", "233.54.12.111", "--port", "26477", path)
	if a.Capture.Filtered == 0 || a.Sessions[0].GapMessages <= missing {
		t.Fatalf("line A: %+v", a.Capture)
	}
}

func TestInspectErrors(t *testing.T) {
	if err := inspect([]string{"--json"}, io.Discard); err == nil {
		t.Error("no file accepted")
	}
	if err := inspect([]string{filepath.Join(t.TempDir(), "missing")}, io.Discard); err == nil {
		t.Error("missing file accepted")
	}
	path, _ := genDayFile(t, itchgen.Config{Messages: 3000, Symbols: 10, Seed: 1}, false)
	data, _ := os.ReadFile(path)
	os.WriteFile(path, data[:len(data)-3], 0o644)
	var out bytes.Buffer
	err := inspect([]string{"--json", path}, &out)
	if err == nil || !errors.Is(err, dayfile.ErrTruncated) {
		t.Fatalf("truncated file: %v", err)
	}
	if !strings.Contains(out.String(), `"messages":2999`) {
		t.Fatalf("report of the readable part: %s", out.String())
	}
}
