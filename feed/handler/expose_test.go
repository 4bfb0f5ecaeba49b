package handler

import (
	"bytes"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/procstat"
	"github.com/marketfeed/feedhandler/internal/race"
)

// TestExpositionMatchesCollector: the allocation-free text exposition
// carries every family, label set and value that the client_golang
// Collector does (classic buckets for the histograms), in both modes, and
// writes every HELP and TYPE line and every sample's name and labels as
// the same text as expfmt's text format does for the Collector's metrics:
// a label value spelt differently (le="1" against le="1.0") is another
// series to Prometheus although it parses to the same float.
func TestExpositionMatchesCollector(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		h, _, _, _ := startScripted(t, mode, shards, 20_000, nil, -1)
		defer h.Stop()
		waitFor(t, "the script applied", func() bool { st := h.Stats(); return st.Applied() == st.Routed && st.Arbiter.Delivered == 20_000 })
		waitFor(t, "the stats copied", func() bool { st := h.Stats(); return st.Routed == st.Applied() && st.Arbiter.Delivered == 20_000 })

		// The shm slot gauges come from the writer: every book of the
		// script registered, none retired.
		if st := h.Stats(); st.Shm.Capacity != 16384 || st.Shm.Used == 0 || st.Shm.Retired != 0 {
			t.Errorf("shm slots %+v", st.Shm)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(NewCollector(h))
		RegisterStandard(reg, h)
		gathered, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		// client_golang's collectors have more standard families than
		// the text format renders (every go_memstats_ one): those of
		// standard are compared.
		var want []*dto.MetricFamily
		for _, f := range gathered {
			if strings.HasPrefix(f.GetName(), "feedhandler_") || standardNamed(f.GetName()) {
				want = append(want, f)
			}
		}
		text := NewExposition(h).AppendText(nil)
		parser := expfmt.NewTextParser(model.LegacyValidation)
		got, err := parser.TextToMetricFamilies(bytes.NewReader(text))
		if err != nil {
			t.Fatalf("parse the exposition: %v\n%s", err, text)
		}
		// cgroup_memory_limit_bytes has no sample, so no family, where
		// no cgroup v2 limit is set (a cgroup v1 host, as this
		// project's machines are).
		defined := len(exported) + len(standard)
		if c, _ := procstat.SelfCgroupMemory(); cgroupLimits(c) == [...]uint64{procstat.NoLimit, procstat.NoLimit} {
			defined--
		}
		if len(got) != len(want) || len(want) != defined {
			t.Errorf("%d families exposed, %d collected, %d defined", len(got), len(want), defined)
		}
		for _, wf := range want {
			gf := got[wf.GetName()]
			if gf == nil {
				t.Errorf("%s: not exposed", wf.GetName())
				continue
			}
			if gf.GetType() != wf.GetType() || gf.GetHelp() != wf.GetHelp() {
				t.Errorf("%s: type %v help %q, collected %v %q", wf.GetName(), gf.GetType(), gf.GetHelp(), wf.GetType(), wf.GetHelp())
			}
			timed := strings.HasSuffix(wf.GetName(), "silence_seconds") || strings.HasSuffix(wf.GetName(), "heartbeat_age_seconds") ||
				standardNamed(wf.GetName()) && !steadyStandard[wf.GetName()]
			if g, w := samples(gf, timed), samples(wf, timed); g != w {
				t.Errorf("%s:\nexposed   %s\ncollected %s", wf.GetName(), g, w)
			}
		}
		var ref bytes.Buffer
		for _, wf := range want {
			if _, err := expfmt.MetricFamilyToText(&ref, wf); err != nil {
				t.Fatal(err)
			}
		}
		g, w := seriesLines(text), seriesLines(ref.Bytes())
		for _, l := range onlyIn(g, w) {
			t.Errorf("exposed, not so by expfmt: %s", l)
		}
		for _, l := range onlyIn(w, g) {
			t.Errorf("written by expfmt, not so exposed: %s", l)
		}
		if len(g) != len(w) || len(w) < len(want) {
			t.Errorf("%d lines exposed, %d written by expfmt for %d families", len(g), len(w), len(want))
		}
		if t.Failed() {
			t.Logf("exposition:\n%s", text)
		}
	})
}

// standardNamed reports whether name is one of standard's families.
func standardNamed(name string) bool {
	for _, m := range standard {
		if m.name == name {
			return true
		}
	}
	return false
}

// steadyStandard are the standard families whose value does not change
// between two readings of a test's process: compared by value, the
// others (CPU time, memory, goroutines, ...) by their series alone.
var steadyStandard = map[string]bool{
	"process_max_fds": true, "process_virtual_memory_max_bytes": true, "process_start_time_seconds": true,
	"go_gc_gogc_percent": true, "go_gc_gomemlimit_bytes": true,
}

// seriesLines returns the lines of a text exposition, each sample's
// without its value (its name and label text), sorted.
func seriesLines(text []byte) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		if !strings.HasPrefix(l, "#") {
			l = l[:max(0, strings.LastIndexByte(l, ' '))] // values hold no space; label values may
		}
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// onlyIn returns the lines of a that b lacks (counting repeats).
func onlyIn(a, b []string) []string {
	n := map[string]int{}
	for _, l := range b {
		n[l]++
	}
	var out []string
	for _, l := range a {
		if n[l] > 0 {
			n[l]--
		} else {
			out = append(out, l)
		}
	}
	return out
}

// samples renders a family's metrics as sorted "labels value" lines;
// timed gauges (ages in seconds) only by their labels.
func samples(f *dto.MetricFamily, timed bool) string {
	var out []string
	for _, m := range f.GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		s := strings.Join(ls, ",")
		switch {
		case timed:
		case m.Counter != nil:
			s += fmt.Sprint(" ", m.Counter.GetValue())
		case m.Gauge != nil:
			s += fmt.Sprint(" ", m.Gauge.GetValue())
		case m.Histogram != nil:
			hg := m.Histogram
			s += fmt.Sprint(" count ", hg.GetSampleCount(), " sum ", math.Round(hg.GetSampleSum()*1e9))
			for _, b := range hg.GetBucket() {
				if !math.IsInf(b.GetUpperBound(), 1) { // the text format spells out +Inf, client_golang implies it
					s += fmt.Sprint(" ", b.GetUpperBound(), ":", b.GetCumulativeCount())
				}
			}
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// lastLine is a writer that keeps only the last line written, in a fixed
// buffer: a log sink that allocates nothing.
type lastLine struct {
	mu    sync.Mutex
	buf   [8192]byte
	n     int
	lines int
}

func (w *lastLine) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.n = copy(w.buf[:], p)
	w.lines++
	w.mu.Unlock()
	return len(p), nil
}

func (w *lastLine) last() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf[:w.n]), w.lines
}

// TestScrapeAndStatsLineAllocateNothing: in steady state a metrics scrape
// (the Stats copy and its rendering) and a stats log line (with the JSON
// logger) allocate nothing, so that neither makes the garbage collector
// run. What net/http allocates to serve a scrape is logged, not asserted:
// it is the standard library's.
func TestScrapeAndStatsLineAllocateNothing(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode Mode, shards []int) {
		sink := &lastLine{}
		h, _, _, _ := startScriptedLog(t, mode, shards, 20_000, nil, -1, zerolog.New(sink).With().Timestamp().Logger())
		defer h.Stop()
		waitFor(t, "the script applied", func() bool { st := h.Stats(); return st.Applied() == st.Routed && st.Arbiter.Delivered == 20_000 })

		e := NewExposition(h)
		buf := e.AppendText(nil)
		if n, exact := race.AllocsPerRun(t, 50, func() { buf = e.AppendText(buf[:0]) }); exact && n != 0 {
			t.Errorf("a metrics scrape allocates %.1f times", n)
		}
		if !bytes.Contains(buf, []byte("feedhandler_delivered_messages_total{feed=\"\"} 20000\n")) {
			t.Errorf("the exposition lacks the delivered count:\n%s", buf)
		}
		h.LogStats(false)
		if n, exact := race.AllocsPerRun(t, 50, func() { h.LogStats(false) }); exact && n != 0 {
			t.Errorf("a stats line allocates %.1f times", n)
		}
		if line, n := sink.last(); n < 51 || !strings.Contains(line, `"delivered":20000`) || !strings.Contains(line, `"message":"stats"`) {
			t.Errorf("%d lines, the last: %s", n, line)
		}

		// The whole scrape over HTTP, on a kept-alive connection: what
		// the server side of net/http allocates per request.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: e}
		go srv.Serve(ln)
		defer srv.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		req := []byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
		resp := make([]byte, 1<<20)
		scrape := func() {
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			n := 0
			for !bytes.HasSuffix(resp[:n], []byte("\r\n0\r\n\r\n")) { // the last chunk
				m, err := c.Read(resp[n:])
				if err != nil {
					t.Fatal(err)
				}
				n += m
			}
		}
		scrape()
		if n, exact := race.AllocsPerRun(t, 50, scrape); exact {
			t.Logf("%s: a scrape over HTTP allocates %.0f times (net/http's request and response state)", mode, n)
		}
	})
}

// stalledWriter is a scraper that stops reading: its Write blocks until
// release is closed.
type stalledWriter struct {
	header  http.Header
	writing chan struct{}
	release chan struct{}
}

func (w *stalledWriter) Header() http.Header { return w.header }
func (w *stalledWriter) WriteHeader(int)     {}
func (w *stalledWriter) Write(b []byte) (int, error) {
	close(w.writing)
	<-w.release
	return len(b), nil
}

// TestScrapeDoesNotWaitForSlowScraper: a scrape whose client stopped
// reading holds its own buffer, not the Exposition, so other scrapes are
// answered meanwhile, each with a whole exposition; the stalled scrape's
// buffer goes back to the free list when it ends.
func TestScrapeDoesNotWaitForSlowScraper(t *testing.T) {
	h, _, _, _ := startScripted(t, ModeRunToCompletion, nil, 1_000, nil, -1)
	defer h.Stop()
	waitFor(t, "the script applied", func() bool { return h.Stats().Arbiter.Delivered == 1_000 })
	e := NewExposition(h)

	slow := &stalledWriter{header: http.Header{}, writing: make(chan struct{}), release: make(chan struct{})}
	slowDone := make(chan struct{})
	go func() { e.ServeHTTP(slow, nil); close(slowDone) }()
	<-slow.writing

	done := make(chan *httptest.ResponseRecorder)
	go func() {
		for i := 0; i < 3; i++ {
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, nil)
			done <- rec
		}
	}()
	for i := 0; i < 3; i++ {
		select {
		case rec := <-done:
			if !bytes.Contains(rec.Body.Bytes(), []byte("feedhandler_delivered_messages_total{feed=\"\"} 1000\n")) {
				t.Fatalf("scrape %d lacks the delivered count:\n%s", i, rec.Body.Bytes())
			}
		case <-time.After(10 * time.Second):
			close(slow.release)
			t.Fatal("a scrape waited for a scraper that stopped reading")
		}
	}
	close(slow.release)
	<-slowDone
	if n := freeBuffers(e); n != 2 {
		t.Errorf("%d buffers free after two concurrent scrapes ended, want 2", n)
	}
}

func freeBuffers(e *Exposition) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.free)
}

// TestSessionEndedGauge: session_ended follows Stats.Ended, which the
// line-silence alert reads to stay quiet after the session's end.
func TestSessionEndedGauge(t *testing.T) {
	for _, ended := range []bool{false, true} {
		st := Stats{Ended: ended}
		if got, want := scalar(t, &st, "session_ended"), map[bool]uint64{false: 0, true: 1}[ended]; got != want {
			t.Errorf("ended %v: session_ended %d, want %d", ended, got, want)
		}
	}
}
