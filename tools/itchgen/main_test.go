package main

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/input"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	day, capture := filepath.Join(dir, "day.itch"), filepath.Join(dir, "day.pcap")
	err := run([]string{"-n", "5000", "-symbols", "20", "-seed", "9", "-o", day, "-pcap", capture,
		"-session", "RUN0000001", "-group", "239.1.2.3", "-port", "30001", "-lines", "2", "-src", "10.9.8.7:4000"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{day, capture} {
		r, err := input.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		st := r.Stats()
		r.Close()
		if st.Messages != 5000 || st.ByType['R'] != 20 {
			t.Fatalf("%s: %d messages, %d directory", path, st.Messages, st.ByType['R'])
		}
		if path == capture {
			s := st.Sessions[0]
			if s.Session.String() != "RUN0000001" || st.Datagrams == 0 || s.Tracker.Duplicates == 0 {
				t.Fatalf("capture: %+v", s)
			}
		}
	}
	if err := run([]string{"-n", "10"}, zerolog.Nop()); err == nil {
		t.Error("no output accepted")
	}
	if err := run([]string{"-n", "10", "-o", day, "-group", "nonsense"}, zerolog.Nop()); err == nil {
		t.Error("bad group accepted")
	}
}

// TestRunHelp: -h prints the usage and succeeds (exit 0), as the
// feedhandler commands' -h does. Before, run returned flag.ErrHelp: an
// "ERR itchgen failed error=\"flag: help requested\"" line and exit 1 after
// the usage, to a newcomer reading README's `go run ./tools/itchgen`.
func TestRunHelp(t *testing.T) {
	if err := run([]string{"-h"}, zerolog.Nop()); err != nil {
		t.Fatalf("run -h: %v; want nil (usage printed, exit 0)", err)
	}
}
