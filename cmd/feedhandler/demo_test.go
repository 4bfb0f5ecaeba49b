package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/internal/demo"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// TestDemoFromFeed: demo --feed takes the feed file's shm.slots, shm.mode
// and shm.group (it ignored them before: the demo's file had 16384 slots,
// mode 0640 and the process's group whatever the YAML said), and the keys
// it took already.
func TestDemoFromFeed(t *testing.T) {
	const base = "feed: {name: lab}\nlines:\n  a: {interface: eth0, group: 239.9.0.1, port: 3001}\n  b: {interface: eth0, group: 239.9.0.2, port: 3002}\n" +
		"receive: {backend: socket}\nbook: {depth: 5}\n"
	for _, tc := range []struct {
		shm   string
		slots int
		mode  os.FileMode
		group string
		name  string
	}{
		{"shm: {name: labfile, slots: 24576, mode: \"0600\", group: 0}\n", 24576, 0o600, "0", "labfile"},
		{"", config.DefaultSHMSlots, config.DefaultSHMMode, "", "lab"},
	} {
		cfg, err := config.Parse("t.yaml", []byte(base+tc.shm))
		if err != nil {
			t.Fatal(err)
		}
		var o demo.Options
		demoFromFeed(cfg, &o)
		if o.ShmSlots != tc.slots || o.ShmMode != tc.mode || o.ShmGroup != tc.group || o.ShmName != tc.name {
			t.Errorf("%q: shm name %q slots %d mode %04o group %q, want %q %d %04o %q",
				tc.shm, o.ShmName, o.ShmSlots, o.ShmMode, o.ShmGroup, tc.name, tc.slots, tc.mode, tc.group)
		}
		if o.Backend != "socket" || o.Depth != 5 || o.LineA != netip.MustParseAddrPort("239.9.0.1:3001") || o.LineB != netip.MustParseAddrPort("239.9.0.2:3002") {
			t.Errorf("%q: backend %q depth %d lines %v %v", tc.shm, o.Backend, o.Depth, o.LineA, o.LineB)
		}
	}
}

// TestDemoFeedNeedsNoPassword: demo --feed loaded the file as run does and
// refused one naming a snapshot password not set here, though the demo's
// lab GLIMPSE server and its handler use the demo's own credentials. The
// run stops at --messages 0, after the file is loaded.
func TestDemoFeedNeedsNoPassword(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the demo needs root (namespaces, XDP)")
	}
	feed := filepath.Join(t.TempDir(), "demo.yaml")
	yaml := "feed: {name: nopw}\nlines:\n  a: {interface: fhdemo254, group: 239.77.1.1, port: 26477}\n" +
		"recovery:\n  snapshot: {server: 10.1.2.3:26401, username: u, password_env: FEEDHANDLER_TEST_UNSET_PW_H254}\n"
	if err := os.WriteFile(feed, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runCommand(t, "demo", "--feed", feed, "--messages", "0")
	if err == nil || !strings.Contains(errOut, "message count 0 must be positive") {
		t.Errorf("demo --feed (password variable unset) --messages 0: %v\n%s\nwant it to load the file and stop at the message count", err, errOut)
	}
}

// TestDemoOneCPU: on one CPU (taskset -c 0, or a cgroup's cpuset of one)
// the demo does not pin, so it asks for no SCHED_FIFO and does not spin
// unless told: before, its default --rt-priority 10 was refused with a
// warning ("hot thread under normal scheduling: SCHED_FIFO refused ... not
// given to an unpinned thread") at every run, and the summary said so.
func TestDemoOneCPU(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the demo needs root (namespaces, XDP)")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		t.Skip("taskset not installed (Debian package util-linux)")
	}
	dir := t.TempDir()
	name := shmtest.Name(t, "fhdemo1cpu")
	feed := filepath.Join(dir, "demo.yaml")
	yaml := "feed: {name: onecpu}\nlines:\n  a: {interface: fhdemo1, group: 239.77.1.1, port: 26477}\n  b: {interface: fhdemo1, group: 239.77.1.2, port: 26478}\n" +
		"shm: {name: " + name + "}\nlog: {level: info, format: console}\n"
	if err := os.WriteFile(feed, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := boundedCommand(t, "taskset", "-c", "0", os.Args[0], "demo", "--feed", feed, "--messages", "20000", "--symbols", "50")
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("taskset -c 0 feedhandler demo: %v\n%s\n%s", err, e.String(), o.String())
	}
	var problems []string
	if strings.Contains(e.String(), "SCHED_FIFO refused") {
		problems = append(problems, "logged SCHED_FIFO refused")
	}
	for _, want := range []string{"receive thread       normal scheduling, unpinned", "the receive thread sleeps in poll(2) between packets", "MATCH",
		"/dev/shm/" + name + ": ", "removed at exit (`feedhandler replay --shm NAME` keeps one for bookview)"} {
		if !strings.Contains(o.String(), want) {
			problems = append(problems, fmt.Sprintf("summary lacks %q", want))
		}
	}
	// The summary's word: the file is gone (a reader started now gets
	// "feed does not exist").
	if _, err := os.Stat(shm.Path(name)); !errors.Is(err, os.ErrNotExist) {
		problems = append(problems, fmt.Sprintf("%s after the demo: %v, want it removed", shm.Path(name), err))
	}
	if len(problems) > 0 {
		t.Errorf("taskset -c 0 feedhandler demo: %s\nstderr:\n%s\nstdout:\n%s", strings.Join(problems, "; "), e.String(), o.String())
	}
}

// TestDemoNoRealtimeRuntime: in a cgroup without real-time runtime (a
// child of cgroup v1's cpu controller, whose cpu.rt_runtime_us is 0 unless
// set, as a container's often is) the kernel refuses SCHED_FIFO to a
// process that holds cap_sys_nice, so the demo asks for none by default
// and its summary says why. Before, its default --rt-priority 10 was
// refused at every run with a warning ('hot thread under normal
// scheduling: SCHED_FIFO refused ... no real-time runtime for its cgroup').
func TestDemoNoRealtimeRuntime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the demo needs root (namespaces, XDP)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"); err != nil {
		t.Skip("no cgroup v1 cpu controller with real-time group scheduling here")
	}
	cg := fmt.Sprintf("/sys/fs/cgroup/cpu/fhdemort%d", os.Getpid())
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	if b, err := os.ReadFile(cg + "/cpu.rt_runtime_us"); err != nil || strings.TrimSpace(string(b)) != "0" {
		t.Skipf("a new cgroup's cpu.rt_runtime_us is %q (%v), not 0", b, err)
	}
	name := shmtest.Name(t, "fhdemort")
	feed := filepath.Join(t.TempDir(), "demo.yaml")
	yaml := "feed: {name: nort}\nlines:\n  a: {interface: fhdemo1, group: 239.77.1.1, port: 26477}\n  b: {interface: fhdemo1, group: 239.77.1.2, port: 26478}\n" +
		"shm: {name: " + name + "}\nlog: {level: info, format: console}\n"
	if err := os.WriteFile(feed, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := boundedCommand(t, "sh", "-c", `echo $$ > "$0"/cgroup.procs && exec "$@"`, cg, os.Args[0], "demo", "--feed", feed, "--messages", "20000", "--symbols", "50")
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("feedhandler demo in a cgroup without real-time runtime: %v\n%s\n%s", err, e.String(), o.String())
	}
	var problems []string
	if strings.Contains(e.String(), "SCHED_FIFO refused") {
		problems = append(problems, "logged SCHED_FIFO refused")
	}
	for _, want := range []string{"receive thread       normal scheduling (SCHED_FIFO not granted here (", "MATCH"} {
		if !strings.Contains(o.String(), want) {
			problems = append(problems, fmt.Sprintf("summary lacks %q", want))
		}
	}
	if len(problems) > 0 {
		t.Errorf("feedhandler demo in a cgroup without real-time runtime: %s\nstderr:\n%s\nstdout:\n%s", strings.Join(problems, "; "), e.String(), o.String())
	}
}

// TestDemoUsageMistakes: the newcomer's mistakes with `feedhandler demo`
// fail at once with one line saying what to do: run outside the
// repository's top directory (the default --feed feeds/demo.yaml is
// relative to it; before: 'load feed config: open feeds/demo.yaml: no such
// file or directory'), and a feed file given as an argument (before:
// ignored, the demo ran with the default file).
func TestDemoUsageMistakes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		// The test's directory, cmd/feedhandler, has no feeds/demo.yaml.
		{nil, `feedhandler demo: no feeds/demo.yaml in `},
		{[]string{"feeds/demo.yaml"}, `feedhandler demo: unexpected argument "feeds/demo.yaml": demo takes its flags only (a feed file: --feed FILE)`},
	} {
		_, errOut, err := runCommand(t, append([]string{"demo"}, tc.args...)...)
		if err == nil || !strings.Contains(errOut, tc.want) {
			t.Errorf("feedhandler demo %q: %v, stderr:\n%s\nwant an error with %q", tc.args, err, errOut, tc.want)
		}
	}
	if _, errOut, _ := runCommand(t, "demo"); !strings.Contains(errOut, "run the demo from there (make demo), or give --feed FILE") {
		t.Errorf("feedhandler demo outside the repository's top directory does not say what to do:\n%s", errOut)
	}
}
