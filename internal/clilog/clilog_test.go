package clilog

import (
	"bufio"
	"os"
	"regexp"
	"testing"
	"time"
)

// TestConsoleSubSecond: a console line carries the milliseconds of its
// time, not .000.
func TestConsoleSubSecond(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Away from a whole second, so a real fraction cannot be .000.
	for ms := time.Now().Nanosecond() / 1e6; ms < 10 || ms > 990; ms = time.Now().Nanosecond() / 1e6 {
		time.Sleep(time.Millisecond)
	}
	l := Console(w)
	l.Info().Msg("x")
	w.Close()
	line, _ := bufio.NewReader(r).ReadString('\n')
	if m := regexp.MustCompile(`^\d\d:\d\d:\d\d\.(\d\d\d) `).FindStringSubmatch(line); m == nil || m[1] == "000" {
		t.Errorf("console line %q: milliseconds missing or .000", line)
	}
}
