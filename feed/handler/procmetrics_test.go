package handler

import (
	"bytes"
	"strings"
	"testing"
)

// TestProcessMetricsReadableGauge: a process whose /proc/self cannot be
// read (a hardened /proc, or one without the process) exports no process_
// family, and says so: feedhandler_process_metrics_readable 0, where a
// readable one has every process_ family and 1. Before, the families were
// left out with nothing saying why (client_golang's collector leaves out
// what it could not read the same way).
func TestProcessMetricsReadableGauge(t *testing.T) {
	h, _, _, _ := startScripted(t, ModeRunToCompletion, nil, 1_000, nil, -1)
	defer h.Stop()
	waitFor(t, "the script applied", func() bool { return h.Stats().Arbiter.Delivered == 1_000 })
	e := NewExposition(h)
	const gauge = `feedhandler_process_metrics_readable{feed=""} `
	text := e.AppendText(nil)
	if !bytes.Contains(text, []byte(gauge+"1\n")) || !bytes.Contains(text, []byte("\nprocess_resident_memory_bytes{")) {
		t.Fatalf("/proc/self readable: want %s1 and the process_ families:\n%s", gauge, text)
	}
	e.mu.Lock()
	e.rt.proc = nil // as newRuntimeSample leaves it when procstat.Self fails
	e.mu.Unlock()
	text = e.AppendText(nil)
	if !bytes.Contains(text, []byte(gauge+"0\n")) {
		t.Errorf("/proc/self unreadable: want %s0:\n%s", gauge, text)
	}
	for _, l := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(l, "process_") {
			t.Errorf("/proc/self unreadable, exposed: %s", l)
		}
	}
}
