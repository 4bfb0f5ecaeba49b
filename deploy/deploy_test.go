package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/privilege"
)

const unitFile = "feedhandler@.service"

func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package %s)", name, pkg)
	}
	return p
}

// TestUnitVerifies runs systemd-analyze verify on the unit, instantiated
// for the feed "nasdaq", with ExecStart pointing at an existing executable.
func TestUnitVerifies(t *testing.T) {
	text, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("as shipped", func(t *testing.T) { verifyUnit(t, string(text)) })
	// As its comments say to set it up for cores.rt_priority 10.
	rt := strings.Replace(string(text), "#LimitRTPRIO=10\n", "LimitRTPRIO=10\n", 1)
	rt = strings.Replace(rt, "RestrictRealtime=yes\n", "RestrictRealtime=no\n", 1)
	if !strings.Contains(rt, "\nLimitRTPRIO=10\n") || !strings.Contains(rt, "\nRestrictRealtime=no\n") {
		t.Fatal("the unit no longer has the commented LimitRTPRIO=10 and RestrictRealtime=yes lines its comments describe")
	}
	t.Run("rt_priority", func(t *testing.T) { verifyUnit(t, rt) })
	// With the pre-start check docs/OPERATIONS.md adds by a drop-in.
	ops, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	var pre string
	for _, l := range strings.Split(string(ops), "\n") {
		if strings.HasPrefix(l, "ExecStartPre=") {
			pre = l
		}
	}
	if !strings.Contains(pre, " check ") {
		t.Fatal("docs/OPERATIONS.md no longer shows the ExecStartPre= line of feedhandler check")
	}
	withCheck := strings.Replace(string(text), "\nExecStart=", "\n"+pre+"\nExecStart=", 1)
	t.Run("check pre-start", func(t *testing.T) { verifyUnit(t, withCheck) })
}

func verifyUnit(t *testing.T, text string) {
	sa := tool(t, "systemd-analyze", "systemd")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(text, "/usr/local/bin/feedhandler", exe)
	path := filepath.Join(t.TempDir(), "feedhandler@nasdaq.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The sandbox's exposure, as systemd rates it offline: fail if a
	// setting is lost (the unit scores 3.9 "OK").
	out, err = exec.Command(sa, "security", "--offline=yes", "--threshold=50", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: exposure above 5.0: %v\n%s", err, out)
	}
}

// unitSettings parses the [Service] section: key -> values (repeated keys
// appended); the [Unit] section's keys are prefixed "Unit.".
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		if l[0] == '[' {
			section = l
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		switch {
		case ok && section == "[Service]":
			m[k] = append(m[k], v)
		case ok && section == "[Unit]":
			m["Unit."+k] = append(m["Unit."+k], v)
		}
	}
	return m
}

// TestUnitMatchesMeasurements: the unit grants exactly the measured set of
// the xdp backend (the most demanding), its CPU affinity covers the cores of
// the shipped feed file, its memlock limit holds the default UMEM, it
// restarts on failure but stops a crash loop, has no ExecReload (the handler has no reload),
// sets no PrivateDevices= or PrivateIPC= (never run under systemd here), and
// says RemoveIPC=no (yes, or DynamicUser=yes, would remove the feed file at
// every stop).
func TestUnitMatchesMeasurements(t *testing.T) {
	s := unitSettings(t)
	one := func(k string) string {
		if len(s[k]) != 1 {
			t.Fatalf("%s: %q, want exactly one", k, s[k])
		}
		return s[k][0]
	}
	want := strings.Fields(strings.ToUpper(strings.ReplaceAll(privilege.Required("xdp", false).String(), ",", " ")))
	slices.Sort(want)
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		got := strings.Fields(one(k))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s=%v, measured set %v", k, got, want)
		}
	}
	t.Setenv("FEEDHANDLER_GLIMPSE_PASSWORD", "example") // the example's snapshot password_env
	cfg, err := config.Load("../feeds/nasdaq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	aff := map[int]bool{}
	for _, f := range strings.Fields(one("CPUAffinity")) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("CPUAffinity %q: %v", f, err)
		}
		aff[n] = true
	}
	for _, c := range append([]int{cfg.Cores.Receive}, cfg.Cores.Shards...) {
		if c >= 0 && !aff[c] {
			t.Errorf("CPUAffinity=%s lacks core %d of feeds/nasdaq.yaml", one("CPUAffinity"), c)
		}
	}
	if len(aff) <= 1+len(cfg.Cores.Shards) {
		t.Errorf("CPUAffinity=%s: no core left for the Go runtime besides the pipeline's", one("CPUAffinity"))
	}
	memlock := one("LimitMEMLOCK")
	n, err := strconv.Atoi(strings.TrimSuffix(memlock, "M"))
	if err != nil || !strings.HasSuffix(memlock, "M") {
		t.Fatalf("LimitMEMLOCK=%s: want NNNM", memlock)
	}
	// The xdp backend registers one UMEM per interface, of ring frames of
	// 4 KiB per queue (rx.XDPLockedBytes, checked against the backend in
	// feed/rx); the kernel counts them all against RLIMIT_MEMLOCK (the
	// user's locked_vm).
	if umem := rx.XDPLockedBytes(cfg.RxConfig(zerolog.Nop())); int64(n)<<20 < umem+(1<<20) {
		t.Errorf("LimitMEMLOCK=%s below the UMEMs of feeds/nasdaq.yaml (%d bytes) plus 1 MiB", memlock, umem)
	}
	for k, v := range map[string]string{"Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "RemoveIPC": "no",
		"PrivateTmp": "yes", "ReadWritePaths": "/dev/shm", "User": "feedhandler",
		"Unit.StartLimitIntervalSec": "10min", "Unit.StartLimitBurst": "5"} {
		if got := one(k); got != v {
			t.Errorf("%s=%s, want %s", k, got, v)
		}
	}
	// Real-time scheduling: granted (an RLIMIT_RTPRIO, no capability)
	// exactly when the feed file asks for it.
	if p := cfg.Cores.RTPriority; p > 0 {
		if n, err := strconv.Atoi(one("LimitRTPRIO")); err != nil || n < p {
			t.Errorf("LimitRTPRIO=%s below cores.rt_priority %d", one("LimitRTPRIO"), p)
		}
		if got := one("RestrictRealtime"); got != "no" {
			t.Errorf("RestrictRealtime=%s refuses the SCHED_FIFO of cores.rt_priority %d", got, p)
		}
	} else {
		if got := one("RestrictRealtime"); got != "yes" {
			t.Errorf("RestrictRealtime=%s: feeds/nasdaq.yaml uses no real-time scheduling", got)
		}
		if v, ok := s["LimitRTPRIO"]; ok {
			t.Errorf("LimitRTPRIO=%s: feeds/nasdaq.yaml uses no real-time scheduling", v)
		}
	}
	for _, k := range []string{"ExecReload", "PrivateDevices", "PrivateIPC"} {
		if _, ok := s[k]; ok {
			t.Errorf("%s= set: the handler has no reload; PrivateDevices= and PrivateIPC= were never run under systemd (docs/OPERATIONS.md)", k)
		}
	}
	// DynamicUser=yes implies RemoveIPC=yes, which removes the user's
	// POSIX shared memory, the feed file, at every stop.
	if v, ok := s["DynamicUser"]; ok && !slices.Equal(v, []string{"no"}) {
		t.Errorf("DynamicUser=%s: it implies RemoveIPC=yes, which removes the feed file from /dev/shm at every stop, and a new uid a start cannot replace an earlier one's file", v)
	}
}

// TestDocUnitCapabilitiesRow: docs/OPERATIONS.md's row for the unit's
// capability lines says, for each backend that needs none of its own,
// what receive.busy_poll adds (privilege.Required). Before, the row said
// "empty both for uring or socket", which, with feeds/nasdaq.yaml's
// busy_poll: true, is a start that fails on SO_PREFER_BUSY_POLL; the
// unit's own comment said so.
func TestDocUnitCapabilitiesRow(t *testing.T) {
	doc, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for line := range strings.SplitSeq(string(doc), "\n") {
		if strings.HasPrefix(line, "| `AmbientCapabilities=`") {
			row = line
		}
	}
	if row == "" {
		t.Fatal("docs/OPERATIONS.md: no row for AmbientCapabilities=")
	}
	for _, b := range []string{"uring", "socket"} {
		if privilege.Required(b, false) != 0 {
			t.Fatalf("backend %s needs %v: the row's premise changed", b, privilege.Required(b, false))
		}
		busy := strings.ToUpper(strings.ReplaceAll(privilege.Required(b, true).String(), ",", " "))
		if !strings.Contains(row, "`"+b+"`") || !strings.Contains(row, "receive.busy_poll") || !strings.Contains(row, "`"+busy+"`") {
			t.Errorf("docs/OPERATIONS.md's row for the capabilities:\n%s\nwant it to say that %s needs %s with receive.busy_poll", row, b, busy)
		}
	}
}

// TestAlertRules checks and unit-tests the alerting rules with promtool.
func TestAlertRules(t *testing.T) {
	pt := tool(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		if out, err := exec.Command(pt, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestUnitPassesSnapshotPassword: feeds/nasdaq.yaml reads its GLIMPSE
// password from the environment (recovery.snapshot.password_env) and fails
// to load without it, so the unit must hand the service that variable:
// Environment= naming it, or an EnvironmentFile= the operator fills.
func TestUnitPassesSnapshotPassword(t *testing.T) {
	s := unitSettings(t)
	t.Setenv("FEEDHANDLER_GLIMPSE_PASSWORD", "example")
	cfg, err := config.Load("../feeds/nasdaq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := cfg.Recovery.Snapshot.PasswordEnv
	if env == "" {
		return
	}
	if len(s["EnvironmentFile"]) > 0 {
		return
	}
	for _, v := range s["Environment"] {
		if strings.Contains(v, env+"=") {
			return
		}
	}
	t.Errorf("feeds/nasdaq.yaml reads recovery.snapshot.password_env %s, but the unit sets neither Environment=%s=... nor EnvironmentFile=: the service fails to start", env, env)
}
