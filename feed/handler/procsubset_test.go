package handler

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/marketfeed/feedhandler/internal/proctest"
)

// TestStandardUnderProcSubsetPid: under a /proc mounted with subset=pid
// (systemd's ProcSubset=pid), without /proc/stat, both formats have every
// process_ family of standard, process_start_time_seconds too, and the
// same start time. The text format took the boot time from the clocks
// (procstat) while client_golang's collector, which counts from
// /proc/stat's btime, left the family out of the protobuf format. The
// child runs in a mount namespace of its own, /proc mounted anew there
// (as internal/procstat's TestOpenUnderProcSubsetPid).
func TestStandardUnderProcSubsetPid(t *testing.T) {
	if proctest.InSubsetPid() {
		standardSubsetChild(t)
		return
	}
	proctest.RunInSubsetPid(t, "TestStandardUnderProcSubsetPid")
}

func standardSubsetChild(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("/proc/stat under subset=pid: %v, want it missing", err)
	}
	h, _, _, _ := startScripted(t, ModeRunToCompletion, nil, 1_000, nil, -1)
	defer h.Stop()
	waitFor(t, "the script applied", func() bool { return h.Stats().Arbiter.Delivered == 1_000 })
	reg := prometheus.NewRegistry()
	RegisterStandard(reg, h)
	gathered, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	text, err := parser.TextToMetricFamilies(bytes.NewReader(NewExposition(h).AppendText(nil)))
	if err != nil {
		t.Fatal(err)
	}
	collected := map[string]bool{}
	for _, f := range gathered {
		collected[f.GetName()] = true
		if f.GetName() != startTimeName {
			continue
		}
		tf := text[startTimeName]
		if tf == nil || len(tf.GetMetric()) != 1 || len(f.GetMetric()) != 1 {
			t.Fatalf("%s: text %v, protobuf %v", startTimeName, tf, f)
		}
		if g, w := tf.GetMetric()[0].GetGauge().GetValue(), f.GetMetric()[0].GetGauge().GetValue(); g != w || g <= 0 {
			t.Errorf("%s: text %v, protobuf %v", startTimeName, g, w)
		}
	}
	for _, m := range standard {
		if strings.HasPrefix(m.name, "process_") && (!collected[m.name] || text[m.name] == nil) {
			t.Errorf("%s under ProcSubset=pid: in the protobuf format %v, in the text %v", m.name, collected[m.name], text[m.name] != nil)
		}
	}
}
