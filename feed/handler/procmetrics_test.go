package handler

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/internal/procstat"
	"github.com/marketfeed/feedhandler/internal/race"
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

// TestCgroupMemoryLimitExported: the cgroup's memory limits are exported,
// one sample per limit set (memory.max, memory.high), read at each scrape
// (a limit changed at run time shows at the next), and none, nor the
// family, where none is set. FeedhandlerNearMemoryLimit divides
// process_resident_memory_bytes by them. The cgroup is one laid out by
// the test (this project's machines keep the memory controller on cgroup
// v1, where the family is absent).
func TestCgroupMemoryLimitExported(t *testing.T) {
	dir := t.TempDir()
	unit := filepath.Join(dir, "cg", "system.slice", "feedhandler@nasdaq.service")
	if err := os.MkdirAll(unit, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, v string) {
		if err := os.WriteFile(filepath.Join(unit, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("memory.max", "536870912")
	write("memory.high", "max")
	os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/system.slice/feedhandler@nasdaq.service\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "mountinfo"), []byte("30 22 0:26 / "+filepath.Join(dir, "cg")+" rw shared:9 - cgroup2 cgroup2 rw\n"), 0o644)
	c, err := procstat.OpenCgroupMemoryFrom(filepath.Join(dir, "cgroup"), filepath.Join(dir, "mountinfo"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	h, _, _, _ := startScripted(t, ModeRunToCompletion, nil, 1_000, nil, -1)
	defer h.Stop()
	waitFor(t, "the script applied", func() bool { return h.Stats().Arbiter.Delivered == 1_000 })
	e := NewExposition(h)
	e.mu.Lock()
	e.rt.cgroup = c
	e.mu.Unlock()
	family := func(text []byte) []string {
		var got []string
		for _, l := range strings.Split(string(text), "\n") {
			if strings.Contains(l, "feedhandler_cgroup_memory_limit_bytes") {
				got = append(got, l)
			}
		}
		return got
	}
	want := []string{
		"# HELP feedhandler_cgroup_memory_limit_bytes " + exportedHelp("cgroup_memory_limit_bytes"),
		"# TYPE feedhandler_cgroup_memory_limit_bytes gauge",
		`feedhandler_cgroup_memory_limit_bytes{feed="",file="memory.max"} 536870912`,
	}
	if got := family(e.AppendText(nil)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("memory.max 512 MiB, memory.high max: exposed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	write("memory.high", "268435456")
	want = append(want, `feedhandler_cgroup_memory_limit_bytes{feed="",file="memory.high"} 268435456`)
	if got := family(e.AppendText(nil)); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("memory.high set to 256 MiB: exposed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	buf := e.AppendText(nil)
	if n, exact := race.AllocsPerRun(t, 20, func() { buf = e.AppendText(buf[:0]) }); exact && n != 0 {
		t.Errorf("a scrape with the cgroup's limits allocates %.1f times", n)
	}
	write("memory.max", "max")
	write("memory.high", "max")
	if got := family(e.AppendText(nil)); len(got) != 0 {
		t.Errorf("no limit set: exposed\n%s", strings.Join(got, "\n"))
	}
}

func exportedHelp(name string) string {
	for _, m := range exported {
		if m.name == name {
			return m.help
		}
	}
	return ""
}

// TestRegisterStandardLogsLimits: the start says what of the process's
// figures the metrics have: the cgroup's memory limits, or why they are
// not exported (this project's machines: the memory controller on cgroup
// v1), and nothing about /proc/self when it reads.
func TestRegisterStandardLogsLimits(t *testing.T) {
	logs := new(lockedBuffer)
	h, _, _, _ := startScriptedLog(t, ModeRunToCompletion, nil, 1_000, nil, -1, zerolog.New(logs))
	defer h.Stop()
	RegisterStandard(prometheus.NewRegistry(), h)
	want := "cgroup memory limits"
	if _, err := procstat.SelfCgroupMemory(); err != nil {
		want = "cgroup memory limit not exported"
	}
	if !strings.Contains(logs.String(), want) {
		t.Errorf("the start's log lacks %q:\n%s", want, logs)
	}
	if _, err := procstat.Self(); err == nil && strings.Contains(logs.String(), "process metrics not exported") {
		t.Errorf("/proc/self read, yet logged unreadable:\n%s", logs)
	}
}
