package main

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/feed/config"
)

// TestLogTimestampsSubSecond: the console format prints milliseconds
// (15:04:05.000) and a JSON log is read by machines that order events of one
// second; both must carry the time below the second, not .000 and a
// whole-second RFC 3339 stamp.
func TestLogTimestampsSubSecond(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		old := os.Stderr
		os.Stderr = w
		log := newLogger(config.Log{Format: format, Level: "info"})
		// Away from a whole second, so a real fraction cannot be .000.
		for time.Now().Nanosecond()/1e6 < 10 || time.Now().Nanosecond()/1e6 > 990 {
			time.Sleep(time.Millisecond)
		}
		log.Info().Msg("x")
		os.Stderr = old
		w.Close()
		line, _ := bufio.NewReader(r).ReadString('\n')
		r.Close()
		switch format {
		case "json":
			var m struct{ Time string }
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("json log line %q: %v", line, err)
			}
			if !strings.Contains(m.Time, ".") {
				t.Errorf("json log time %q: whole seconds only", m.Time)
			}
		case "console":
			ms := regexp.MustCompile(`^\d\d:\d\d:\d\d\.(\d\d\d) `).FindStringSubmatch(line)
			if ms == nil || ms[1] == "000" {
				t.Errorf("console log line %q: milliseconds missing or always .000", line)
			}
		}
	}
}
