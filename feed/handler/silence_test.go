package handler

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestEveryLineSilent: both lines deliver a day, then nothing comes (the
// receiver idles, as a real one does with both links down): once every
// line has been silent for allSilentAfter the stats say so and the log
// says it once. Both lines stopped together, so neither is a line silent
// while the other delivers.
func TestEveryLineSilent(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		var logs bytes.Buffer // read once the handler stopped
		h, _, _, _ := startScriptedLog(t, mode, shards, 2000, nil, -1, zerolog.New(zerolog.SyncWriter(&logs)))
		waitFor(t, "every line silent", func() bool { st := h.Stats(); return st.AllSilent })
		st := h.Stats()
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		if st.LineSilent[0] || st.LineSilent[1] {
			t.Errorf("line silent while another delivers: %v, after both stopped together", st.LineSilent)
		}
		if n := strings.Count(logs.String(), "every line silent"); n != 1 {
			t.Errorf("every line silent logged %d times, want once:\n%s", n, logs.String())
		}
		if strings.Contains(logs.String(), "line silent while another line delivers") {
			t.Errorf("a line logged silent while another delivers, after both stopped together:\n%s", logs.String())
		}
	})
}
