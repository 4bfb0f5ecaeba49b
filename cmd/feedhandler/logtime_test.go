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

// TestDocLogDurationUnit: a duration field (took, retry_in, ...) is logged
// as milliseconds with a fraction, and docs/OPERATIONS.md says so; it said
// nothing, and 'took=26.479822' was a bare number.
func TestDocLogDurationUnit(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	log := newLogger(config.Log{Format: "json", Level: "info"})
	log.Info().Dur("took", 26479822*time.Nanosecond).Msg("x")
	os.Stderr = old
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	r.Close()
	var m struct{ Took float64 }
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.Took != 26.479822 {
		t.Errorf("json log line %q (%v): want took 26.479822 (milliseconds)", line, err)
	}
	if want := "is in milliseconds, with a fraction: `took=26.479822` (`\"took\":26.479822` in JSON) is 26.48 ms"; !strings.Contains(operationsText(t), want) {
		t.Errorf("docs/OPERATIONS.md does not say %q", want)
	}
}

// operationsText is docs/OPERATIONS.md with every run of white space one
// space, so that a sentence is found wherever its lines break.
func operationsText(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(doc)), " ")
}
