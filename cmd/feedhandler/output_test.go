package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/itchgen"
	"github.com/marketfeed/feedhandler/internal/leftover"
	"github.com/marketfeed/feedhandler/internal/seccomptest"
)

// TestMain lets a test run this test binary as the feedhandler command
// (runCommand), so the tests see exactly what a user's terminal and pipes
// would: stdout and stderr of the real process.
func TestMain(m *testing.M) {
	if os.Getenv("FEEDHANDLER_TEST_AS_COMMAND") == "1" {
		if hold := os.Getenv("FEEDHANDLER_TEST_HOLD_SETUP"); hold != "" {
			holdSetup(hold == "step") // TestRunSignalDuringSetup
		}
		if os.Getenv("FEEDHANDLER_TEST_DENY_IO_URING") == "1" {
			// TestIOUringRefused: io_uring_setup refused (EPERM), as a
			// container's seccomp profile or kernel.io_uring_disabled does.
			if err := seccomptest.DenyIOUringSetup(true); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(99)
			}
		}
		main()
		os.Exit(0)
	}
	if os.Getenv("FEEDHANDLER_TEST_ISOLATE_GOMAXPROCS") == "1" {
		os.Exit(isolateGOMAXPROCSChild()) // before m.Run sets GOMAXPROCS (see there)
	}
	// A killed run's directories (leftover.MkdirTemp's, named with its
	// pid), whichever tests this run selects.
	for _, prefix := range []string{"fhbuild", "fhpriv", "fhlink", "fhcheck", "fh-setup"} {
		leftover.SweepOnce(os.TempDir(), prefix)
	}
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// runCommand runs "feedhandler args..." in a child process and returns its
// stdout and stderr.
func runCommand(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := boundedCommand(t, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// runCommandIn is runCommand in network namespace ns.
func runCommandIn(t *testing.T, ns string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := inNetns(t, ns, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// decodeOne checks that s is exactly one JSON object and nothing else.
func decodeOne(t *testing.T, what, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: stdout is not one JSON object: %v\n%s", what, err, s)
	}
	if dec.More() || strings.TrimSpace(s[dec.InputOffset():]) != "" {
		t.Fatalf("%s: stdout has more than the JSON object:\n%s", what, s)
	}
}

// Subcommands print their result on stdout and nothing else, and log at
// info by default: a successful inspect or quiet replay has nothing to say
// on stderr (the "DBG inspected" line used to be printed there).
func TestOutputStdoutIsTheResult(t *testing.T) {
	cfg := itchgen.Config{Messages: 20_000, Symbols: 20, Seed: 7}
	day, _ := genDayFile(t, cfg, false)
	capture, _ := genDayFile(t, cfg, true)

	for _, file := range []string{day, capture} {
		out, errOut, err := runCommand(t, "inspect", "--json", file)
		if err != nil {
			t.Fatalf("inspect --json: %v\n%s", err, errOut)
		}
		var rep inspectReport
		decodeOne(t, "inspect --json", out, &rep)
		if rep.Messages != uint64(cfg.Messages) {
			t.Errorf("inspect --json %s: %d messages, want %d", file, rep.Messages, cfg.Messages)
		}
		if errOut != "" {
			t.Errorf("inspect --json %s logged on stderr (nothing at info or above expected):\n%s", file, errOut)
		}

		out, errOut, err = runCommand(t, "inspect", file)
		if err != nil {
			t.Fatalf("inspect: %v\n%s", err, errOut)
		}
		if !strings.HasPrefix(out, "file ") || !strings.Contains(out, "by type:") {
			t.Errorf("inspect %s: stdout is not the table:\n%s", file, out)
		}
		if errOut != "" {
			t.Errorf("inspect %s logged on stderr (nothing at info or above expected):\n%s", file, errOut)
		}
	}

	out, errOut, err := runCommand(t, "replay", "--json", "--quiet", day)
	if err != nil {
		t.Fatalf("replay --json: %v\n%s", err, errOut)
	}
	var rep replayReport
	decodeOne(t, "replay --json", out, &rep)
	if rep.Messages != uint64(cfg.Messages) {
		t.Errorf("replay --json: %d messages, want %d", rep.Messages, cfg.Messages)
	}
	if errOut != "" {
		t.Errorf("replay --json --quiet wrote on stderr:\n%s", errOut)
	}
}

// A failing subcommand says why on stderr in one line and leaves stdout
// empty; logs written to a pipe carry no colour escapes.
func TestOutputErrorsOnStderr(t *testing.T) {
	out, errOut, err := runCommand(t, "inspect", "--json", "/nonexistent/day.itch")
	if err == nil {
		t.Fatal("inspect of a missing file succeeded")
	}
	if out != "" {
		t.Errorf("stdout of a failed inspect: %q", out)
	}
	if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 || !strings.Contains(errOut, "/nonexistent/day.itch") {
		t.Errorf("want one line naming the file on stderr, got:\n%s", errOut)
	}
	if strings.Contains(errOut, "\x1b[") {
		t.Errorf("colour escapes on a pipe: %q", errOut)
	}
}

// The feed handler on a host without the configured interfaces fails at once
// with one line per problem, file:line: field: what, and tries no backend
// (issue 12: it used to walk xdp -> uring -> socket and warn twice).
func TestRunConfigNamesMissingInterface(t *testing.T) {
	// The example names its GLIMPSE password by an environment variable,
	// which Parse resolves; give it one so the host check is what fails.
	t.Setenv("FEEDHANDLER_GLIMPSE_PASSWORD", "example")
	data, err := os.ReadFile("../../feeds/nasdaq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fhnope0", "fhnope1"} {
		if _, err := net.InterfaceByName(name); err == nil {
			t.Fatalf("this host has an interface %s; the test needs a name that does not exist", name)
		}
	}
	s := strings.Replace(strings.Replace(string(data), "interface: ens1f0", "interface: fhnope0", 1), "interface: ens1f1", "interface: fhnope1", 1)
	// The example's group and account, which this host may lack (also a
	// config error), are ones every host has.
	s = strings.Replace(strings.Replace(s, "group: marketdata ", "group: root       ", 1), "user: feedhandler ", "user: root        ", 1)
	// Its receive core, which this host may lack (also a config error),
	// one this process may run on.
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		t.Fatal(err)
	}
	for cpu := 0; cpu < 10; cpu++ {
		if cpus.IsSet(cpu) {
			s = strings.Replace(s, "  receive: 2 ", fmt.Sprintf("  receive: %d ", cpu), 1)
			break
		}
	}
	path := filepath.Join(t.TempDir(), "nasdaq.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	all, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, i := range all {
		have = append(have, i.Name)
	}
	// The line numbers are the example's, wherever its comments put them.
	line := func(key string) int { return strings.Count(s[:strings.Index(s, key)], "\n") + 1 }
	want := fmt.Sprintf("%[1]s:%[3]d: lines.a.interface: no interface \"fhnope0\" on this host (have: %[2]s)\n"+
		"%[1]s:%[4]d: lines.b.interface: no interface \"fhnope1\" on this host (have: %[2]s)\n",
		path, strings.Join(have, ", "), line("interface: fhnope0"), line("interface: fhnope1"))
	out, errOut, err := runCommand(t, "--feed", path)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitConfig { // a config error: no restart (deploy/feedhandler@.service)
		t.Fatalf("exit: %v, want status %d\n%s", err, exitConfig, errOut)
	}
	if errOut != want {
		t.Errorf("stderr\n got %q\nwant %q", errOut, want)
	}
	if out != "" {
		t.Errorf("stdout: %q", out)
	}
}

// TestErrorLineNamesCommandOnce: a subcommand's error is printed as
// "feedhandler NAME: error", with NAME once, also when the error already
// starts with it ("feedhandler bookview: bookview: --shm NAME is
// required" before).
func TestErrorLineNamesCommandOnce(t *testing.T) {
	for _, args := range [][]string{{"bookview", "--once"}, {"replay"}, {"replay", "--depth", "-1", "x"}, {"inspect"}} {
		_, errOut, err := runCommand(t, args...)
		if err == nil {
			t.Errorf("feedhandler %s: no error", strings.Join(args, " "))
			continue
		}
		prefix := "feedhandler " + args[0] + ": "
		last := strings.TrimSpace(errOut)
		last = last[strings.LastIndexByte(last, '\n')+1:]
		if !strings.HasPrefix(last, prefix) || strings.HasPrefix(last, prefix+args[0]+": ") {
			t.Errorf("feedhandler %s: error line %q, want %q once before the error", strings.Join(args, " "), last, prefix)
		}
	}
}
