package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/leftover"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/internal/shmtest"
	"github.com/marketfeed/feedhandler/proto/shm"
	"time"
)

// TestConfigErrorExitStatus: deploy/feedhandler@.service names the exit
// status of a config error in RestartPreventExitStatus= so that systemd
// does not restart the handler in a loop on one. Every config error (a
// malformed feed file, a missing one, a missing --feed) must therefore exit
// with a status the unit lists, and a crash (a Go panic) with one it does
// not: Restart=on-failure must restart a crash.
func TestConfigErrorExitStatus(t *testing.T) {
	if os.Getenv("FEEDHANDLER_TEST_PANIC") == "1" {
		panic("a crash")
	}
	prevent := unitRestartPreventExitStatus(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("feed:\n  name: t\n  nmae: x\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A group this host lacks (config.CheckHost): before, the start failed
	// creating the shm file, with exit status 1, and systemd restarted it.
	noGroup := filepath.Join(dir, "nogroup.yaml")
	if err := os.WriteFile(noGroup, []byte("feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\nshm:\n  group: fh-no-such-group\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown field", []string{"--feed", bad}, "feed.nmae: unknown field"},
		{"no such file", []string{"--feed", filepath.Join(dir, "none.yaml")}, "no such file"},
		{"no --feed", []string{"run"}, "--feed is required"},
		// Before, these exited 2, the Go runtime's crash status, which
		// Restart=on-failure restarts.
		{"mistyped command", []string{"runn", "--feed", bad}, `feedhandler: unknown command "runn"`},
		{"no command", nil, "usage: feedhandler --feed FILE.yaml"},
		// Before, ignored: the handler ran the file (here: its error).
		{"argument after the flags", []string{"--feed", bad, "check"}, `unexpected argument "check": run takes its flags only`},
		{"argument after check's flags", []string{"check", "--feed", bad, "other.yaml"}, `unexpected argument "other.yaml": check takes its flags only`},
		{"unknown shm.group", []string{"--feed", noGroup}, noGroup + ":9: shm.group: look up group \"fh-no-such-group\": no such group"},
	} {
		_, errOut, err := runCommand(t, tc.args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s: %v, want exit status %d\n%s", tc.name, err, exitConfig, errOut)
		}
		if ee.ExitCode() != exitConfig || !slices.Contains(prevent, ee.ExitCode()) {
			t.Errorf("%s: exit status %d, want %d, in the unit's RestartPreventExitStatus=%v\n%s", tc.name, ee.ExitCode(), exitConfig, prevent, errOut)
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: stderr lacks %q:\n%s", tc.name, tc.want, errOut)
		}
	}

	// A panic, in a child process (this test binary, panicking above).
	cmd := boundedCommand(t, os.Args[0], "-test.run=^TestConfigErrorExitStatus$")
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_PANIC=1")
	var ee *exec.ExitError
	if out, err := cmd.CombinedOutput(); !errors.As(err, &ee) || !strings.Contains(string(out), "panic: a crash") {
		t.Fatalf("panicking child: %v\n%s", err, out)
	}
	if slices.Contains(prevent, ee.ExitCode()) {
		t.Errorf("a Go panic exits %d, which the unit's RestartPreventExitStatus=%v lists: a crash would not be restarted", ee.ExitCode(), prevent)
	}
}

// unitRestartPreventExitStatus returns the exit statuses of
// deploy/feedhandler@.service's RestartPreventExitStatus=.
func unitRestartPreventExitStatus(t *testing.T) []int {
	t.Helper()
	b, err := os.ReadFile("../../deploy/feedhandler@.service")
	if err != nil {
		t.Fatal(err)
	}
	var codes []int
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "RestartPreventExitStatus=")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(v) {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("RestartPreventExitStatus=%s: %q is not a number", v, f)
			}
			codes = append(codes, n)
		}
	}
	if len(codes) == 0 {
		t.Fatal("deploy/feedhandler@.service has no RestartPreventExitStatus=")
	}
	return codes
}

// TestHelpExitsZero: -h on a command prints its flags and exits 0, not as
// an error (a config error's status would stop systemd's restarts).
func TestHelpExitsZero(t *testing.T) {
	for _, cmd := range []string{"run", "replay", "send"} {
		_, errOut, err := runCommand(t, cmd, "-h")
		if err != nil {
			t.Errorf("%s -h: %v\n%s", cmd, err, errOut)
		}
		if !strings.Contains(errOut, "\n  -") {
			t.Errorf("%s -h printed no usage:\n%s", cmd, errOut)
		}
	}
}

// TestRunMetricsPortNotAllowed: a metrics.listen port this process may not
// bind (below net.ipv4.ip_unprivileged_port_start, without
// cap_net_bind_service: here root with the capability taken out of its
// bounding set) is a config error, file:line: metrics.listen, exit 78,
// which the unit does not restart: no restart gives the capability.
// Before, 'feedhandler run: listen tcp ...: bind: permission denied', exit
// 1, restarted until the unit's start limit. check, the unit's
// ExecStartPre=, says the same line with the same status: before, it
// printed a FAIL finding without the remedy and exited 1, where run
// exited 78.
func TestRunMetricsPortNotAllowed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the command as root without cap_net_bind_service")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed (Debian package util-linux)")
	}
	// In a network namespace of the test's own: check binds the port
	// and opens the line's socket. The sysctl is the namespace's.
	ns := loNetns(t, "fhport")
	var b []byte
	if err := netlab.Do(ns, func() (err error) {
		b, err = os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	start, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || start == 0 {
		t.Skipf("net.ipv4.ip_unprivileged_port_start %q: every port is unprivileged here", b)
	}
	path := filepath.Join(t.TempDir(), "feed.yaml")
	cfg := fmt.Sprintf("feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\nreceive:\n  backend: socket\nmetrics:\n  listen: 127.0.0.1:%d\nshm:\n  name: %s\n", start-1, shmtest.Name(t, "fhport"))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s:11: metrics.listen: port %d is below net.ipv4.ip_unprivileged_port_start (%d) and this process lacks cap_net_bind_service: use a port of %d or above (the unit grants no cap_net_bind_service: least privilege, docs/OPERATIONS.md section 1)", path, start-1, start, start)
	for _, args := range [][]string{{"--feed", path}, {"check", "--feed", path}} {
		cmd := inNetns(t, ns, "setpriv", append([]string{"--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service", "--", os.Args[0]}, args...)...)
		cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitConfig || !strings.Contains(string(out), want) {
			t.Errorf("%v: %v, want exit status %d and %q:\n%s", args, err, exitConfig, want, out)
		}
	}
	// With the capability, both go on past it (check: ok, not a config
	// error).
	cmd := inNetns(t, ns, os.Args[0], "check", "--feed", path)
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	if out, _ := cmd.CombinedOutput(); strings.Contains(string(out), "metrics.listen: port") {
		t.Errorf("check with cap_net_bind_service refused the port:\n%s", out)
	}
}

// TestRunMetricsPortRefusedByPolicy: a metrics.listen port this process
// may bind by its capabilities (above net.ipv4.ip_unprivileged_port_start)
// refused all the same by a policy, as SELinux or AppArmor refuse a port
// with EACCES: here a BPF program on a cgroup's bind hook of the test's
// own, setting EACCES for that port alone, the children started in the
// cgroup. run and check refuse it alike, file:line: metrics.listen, saying
// it is a policy's refusal and what to do, exit 78. Before, run blamed a
// missing cap_net_bind_service ('a port below
// net.ipv4.ip_unprivileged_port_start (1024 by default) needs
// cap_net_bind_service; use a higher one'), and check printed a bare
// 'FAIL  metrics   metrics.listen ...: bind: permission denied', exit 1.
func TestRunMetricsPortRefusedByPolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loads a BPF program on a cgroup of its own")
	}
	const port = 9187
	cg := bindRefusingCgroup(t, port)
	ns := loNetns(t, "fhpolicy") // the handler's sockets there, not the host's
	path := filepath.Join(t.TempDir(), "feed.yaml")
	cfg := fmt.Sprintf("feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\nreceive:\n  backend: socket\nmetrics:\n  listen: 127.0.0.1:%d\nshm:\n  name: %s\n", port, shmtest.Name(t, "fhpolicy"))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%s:11: metrics.listen: listen tcp 127.0.0.1:%d: bind: permission denied: refused by a policy, not for want of a capability (the port needs none here): a security module (SELinux: the port's type, semanage port -l; AppArmor: the profile's network rules; the audit log names the denial) or a BPF program on the cgroup's bind hook; allow this port there", path, port)
	for _, args := range [][]string{{"--feed", path}, {"check", "--feed", path}} {
		cmd := inNetns(t, ns, os.Args[0], args...)
		cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cg
		// check's FAIL line on stdout, run's error on stderr.
		code, out, errOut := runExit(t, cmd)
		if errOut = out + errOut; code != exitConfig || !strings.Contains(errOut, want) {
			t.Errorf("%v: exit %d, want %d and %q:\n%s", args, code, exitConfig, want, errOut)
		}
	}
}

// bindRefusingCgroup makes a cgroup (v2) of the test's own whose BPF bind
// program refuses binds of IPv4 port with EACCES (bpf_set_retval, Linux
// 5.18+) and allows the others, and returns an open descriptor of it for
// SysProcAttr.CgroupFD; the test's cleanup removes it all.
func bindRefusingCgroup(t *testing.T, port uint16) int {
	t.Helper()
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	root := ""
	for l := range strings.Lines(string(mounts)) {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "cgroup2" {
			root = f[1]
			break
		}
	}
	if root == "" {
		t.Skip("no cgroup2 file system mounted")
	}
	// Named after this process (internal/leftover): a later run removes
	// the cgroup of one killed before its cleanup.
	leftover.SweepOnce(root, "fh-bindpolicy")
	dir := filepath.Join(root, "fh-bindpolicy-"+leftover.Self().String())
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("a cgroup of the test's own: %v", err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	nport := int32(port>>8 | port&0xff<<8) // bpf_sock_addr.user_port: network byte order
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.CGroupSockAddr, AttachType: ebpf.AttachCGroupInet4Bind, License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 24, asm.Word), // user_port
			asm.JNE.Imm(asm.R2, nport, "allow"),
			asm.Mov.Imm(asm.R1, -int32(unix.EACCES)),
			asm.FnSetRetval.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
			asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
			asm.Return(),
		}})
	if err != nil {
		t.Skipf("a cgroup bind program setting EACCES (bpf_set_retval, Linux 5.18+): %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupInet4Bind, Program: prog})
	if err != nil {
		t.Fatalf("attach the bind program to %s: %v", dir, err)
	}
	t.Cleanup(func() { l.Close() })
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestRunMetricsAddressDADFailed: a metrics.listen address whose duplicate
// address detection failed (another host on the link has it: here a veth
// peer in a namespace of its own) fails the bind with EADDRNOTAVAIL as a
// tentative one does, but no restart fixes it (the kernel keeps it
// dadfailed until it is added again): a config error, exit 78, not exit 1
// with "not usable yet" until the unit's start limit.
func TestRunMetricsAddressDADFailed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, tool := range []string{"unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	// fhtb, the peer, goes to a namespace of its own (a sleep's) and has
	// the address first; fhta's detection then finds it there. fhtb comes
	// back without it (a move drops a device's addresses) before the
	// sleep is killed: its namespace would take the veth pair with it.
	script := `ip link add fhta type veth peer name fhtb || exit 99
unshare --net sleep 60 & P=$!
for i in $(seq 50); do N=$(readlink /proc/$P/ns/net) && [ -n "$N" ] && [ "$N" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.1; done
ip link set fhtb netns $P && nsenter -t $P -n ip link set fhtb up && nsenter -t $P -n ip addr add fd00:fe::1/64 dev fhtb nodad &&
ip link set fhta up && ip addr add fd00:fe::1/64 dev fhta || { kill $P; exit 99; }
for i in $(seq 100); do ip -6 addr show dev fhta | grep -q dadfailed && break; sleep 0.1; done
nsenter -t $P -n ip link set fhtb netns $$; kill $P
ip -6 addr show dev fhta | grep -q dadfailed || { echo "address not dadfailed"; ip -6 addr show dev fhta; exit 99; }
exec "$0" "$@"`
	ee, out := runWithListenFd00(t, script, 78)
	err := error(ee)
	want := "feed.yaml:11: metrics.listen: listen tcp [fd00:fe::1]:9100: bind: cannot assign requested address: duplicate address detection failed for it"
	if ee.ExitCode() != 78 || !strings.Contains(string(out), want) {
		t.Errorf("a dadfailed metrics.listen address: %v, want exit status 78 and %q:\n%s", err, want, out)
	}
	// check, run before the start (ExecStartPre), agrees: a FAIL, not the
	// warning for an address not up yet that run binds with IP_FREEBIND.
	// Exit 78, as run's: before, 1.
	ee, out = runWithListenFd00(t, script, exitConfig, "check")
	want = "FAIL  metrics   metrics.listen [fd00:fe::1]:9100: listen tcp [fd00:fe::1]:9100: bind: cannot assign requested address: duplicate address detection failed for it"
	if ee.ExitCode() != exitConfig || !strings.Contains(string(out), want) {
		t.Errorf("feedhandler check, a dadfailed metrics.listen address: %v, want exit status %d and %q:\n%s", ee, exitConfig, want, out)
	}
}

// runWithListenFd00 runs the handler (or command, such as check) on a feed whose metrics.listen is
// [fd00:fe::1]:9100 in a network namespace of its own, after script (sh)
// has set up the namespace; script exits 99 when the lab cannot be set up
// (the test is skipped) and ends with exec "$0" "$@". It returns how the
// handler exited (want: the status the test wants, for the message).
func runWithListenFd00(t *testing.T, script string, want int, command ...string) (*exec.ExitError, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "feed.yaml")
	cfg := "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\nreceive:\n  backend: socket\nmetrics:\n  listen: \"[fd00:fe::1]:9100\"\nshm:\n  name: " + shmtest.Name(t, "fhdad") + "\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append(killedWithScript("--net"), "sh", "-c", script, os.Args[0]), command...)
	cmd := boundedCommand(t, "unshare", append(args, "--feed", path)...)
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%v, want exit status %d:\n%s", err, want, out)
	}
	if ee.ExitCode() == 99 {
		t.Skipf("lab setup: %s", out)
	}
	return ee, out
}

// TestRunSharedMemoryErrors: a feed file the start cannot create in
// /dev/shm is one line naming the feed file's shm key and what to do, and
// exits 1 where a restart may succeed (a live writer under the name,
// another handler or an instance still stopping; a full /dev/shm) and 78
// where none does (a read-only /dev/shm or one this process may not write,
// a directory or another user's file at the name, an shm.group it may not
// give the file to). Before, each was the bare error ('feedhandler run:
// start handler: create shm ...'), exit 1, and a permission error blamed
// the backend's capabilities. feedhandler check, the unit's ExecStartPre=,
// exits as run does: before, it printed a FAIL line and exited 1 for the
// five run refused with 78 (config.CheckHost now refuses them for both,
// before anything opens). The /dev/shm cases run in mount namespaces of
// their own, each on a fresh tmpfs (never a remount of the host's); the
// permission cases as root without the capability that would override
// the refusal, in a tmpfs another uid owns.
func TestRunSharedMemoryErrors(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs over /dev/shm in a mount namespace")
	}
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package util-linux)", tool)
		}
	}
	// The starts that get past the config's check open the line's
	// socket: in a network namespace of the test's own.
	ns := loNetns(t, "fhshmerr")
	live := shmtest.Name(t, "fhshmerr")
	w, err := shm.Create(shm.Config{Name: live, Instruments: 16, Depth: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// A live writer beats: without, its heartbeat went stale (1 s) while
	// the first commands ran under load, and check took the file for a
	// dead writer's ('a live writer under the name, check: exit 0').
	beating, stopped := make(chan struct{}), make(chan struct{})
	defer func() { close(beating); <-stopped }()
	go func() {
		defer close(stopped)
		for {
			select {
			case <-beating:
				return
			case <-time.After(50 * time.Millisecond):
				w.Heartbeat()
			}
		}
	}()
	feedFor := func(name, group string) string {
		f := filepath.Join(t.TempDir(), "t.yaml")
		yaml := "feed: {name: shmerr}\nlines:\n  a: {interface: lo, group: 239.77.46.9, port: 26149}\nreceive: {backend: socket}\nbook: {max_orders: 65536}\nshm:\n  name: " + name + "\n"
		if group != "" {
			yaml += "  group: " + group + "\n"
		}
		if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	const name = "fhshmerr-own" // only ever in the cases' own tmpfs
	// What docs/SHM.md ("Entitlements") quotes of a group the handler may
	// not give the file to. Before, it quoted the writer's own error ('set
	// group G (gid N; a writer that is not root must be a member)'), which
	// the start no longer reaches: the config's check refuses it first.
	const shmGroupRefused = "is not a member and lacks cap_chown, so it cannot give the feed file to the group"
	if doc, err := os.ReadFile("../../docs/SHM.md"); err != nil || !strings.Contains(strings.Join(strings.Fields(string(doc)), " "), shmGroupRefused) {
		t.Errorf("docs/SHM.md does not quote the start's error for an shm.group the handler may not give the file to, %q (%v)", shmGroupRefused, err)
	}
	for _, tc := range []struct {
		what  string
		shm   string
		group string // shm.group
		mount string // tmpfs options; "": the host's /dev/shm
		prep  string
		drop  string // capabilities taken from root, setpriv's list
		code  int
		field string // the key the line names
		want  string // in run's line and check's output
		check string // in check's output when not want
	}{
		{what: "a live writer under the name", shm: live, code: 1, field: "shm.name",
			want:  "another handler publishes /dev/shm/" + live + "; stop it, or give this feed another shm.name",
			check: "FAIL  shm       /dev/shm/" + live + ": writer pid "},
		{what: "a full /dev/shm", shm: name, mount: "mode=1777,size=64k", code: 1, field: "shm.name",
			want:  "free space there, raise the tmpfs's size",
			check: "FAIL  shm       /dev/shm has 0.1 MiB free and the feed file needs 10.5 MiB"},
		{what: "a read-only /dev/shm", shm: name, mount: "mode=1777,ro,size=1m", code: exitConfig, field: "shm.name",
			want: "/dev/shm is read-only to this process"},
		{what: "a /dev/shm this process may not write", shm: name, mount: "mode=0755,uid=1,size=64m", drop: "-dac_override,-dac_read_search,-fowner",
			code: exitConfig, field: "shm.name", want: "this process (uid 0) may not create files in /dev/shm (permission denied), which is normally mode 1777"},
		{what: "a directory at the name", shm: name, mount: "mode=1777,size=64m", prep: "mkdir /dev/shm/" + name + " && ", code: exitConfig, field: "shm.name",
			want: "/dev/shm/" + name + " is a directory, not a feed file"},
		{what: "another user's file at the name", shm: name, mount: "mode=1777,uid=1,size=64m", prep: "touch /dev/shm/" + name + " && chown 2 /dev/shm/" + name + " && ",
			drop: "-fowner", code: exitConfig, field: "shm.name",
			want: "/dev/shm/" + name + " is owned by uid 2 and this process (uid 0) cannot replace it: /dev/shm is sticky and it lacks cap_fowner"},
		{what: "an shm.group this process may not give the file to", shm: name, group: "1", mount: "mode=1777,size=64m", drop: "-chown",
			code: exitConfig, field: "shm.group", want: "1 (gid 1): this process (uid 0) " + shmGroupRefused},
	} {
		feed := feedFor(tc.shm, tc.group)
		line := map[bool]int{false: 7, true: 8}[tc.field == "shm.group"]
		for _, command := range []string{"run", "check"} {
			args := []string{os.Args[0], command, "--feed", feed}
			if tc.drop != "" {
				args = append([]string{"setpriv", "--clear-groups", "--bounding-set=" + tc.drop, "--inh-caps=" + tc.drop, "--"}, args...)
			}
			var cmd *child
			if tc.mount == "" {
				cmd = inNetns(t, ns, args[0], args[1:]...)
			} else {
				cmd = inNetns(t, ns, "unshare", append([]string{"-m", "--propagation", "private", "sh", "-c",
					"mount -t tmpfs -o " + tc.mount + " tmpfs /dev/shm && " + tc.prep + `exec "$0" "$@"`}, args...)...)
			}
			cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			cmd.Run()
			code := cmd.ProcessState.ExitCode()
			text := ""
			for l := range strings.Lines(out.String()) {
				if !strings.Contains(l, " INF ") && !strings.Contains(l, " WRN ") {
					text += l
				}
			}
			// run's line, and check's when it is a config error (check's
			// FAIL line otherwise).
			wants := []string{fmt.Sprintf("%s:%d: %s: ", feed, line, tc.field), tc.want}
			if command == "check" && tc.check != "" {
				wants = []string{tc.check}
			}
			for _, want := range wants {
				if code != tc.code || !strings.Contains(text, want) {
					t.Errorf("%s, %s: exit %d, %q; want exit %d and %q", tc.what, command, code, strings.TrimSpace(text), tc.code, want)
				}
			}
		}
	}
}

// TestRunMissingCapability: a receive backend (or receive.busy_poll) whose
// capabilities the process lacks fails the start as a config error at the
// key that asks for them, exit 78: no restart grants a capability. Before,
// the same line without the key, exit 1, which the unit restarted until its
// start limit. Root here, with the capability taken out of its bounding
// set.
func TestRunMissingCapability(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the command as root without a capability")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed (Debian package util-linux)")
	}
	ns := loNetns(t, "fhcaps") // the sockets opened before a refusal
	for _, tc := range []struct {
		receive, drop, want string
	}{
		// AF_XDP sockets need cap_net_raw (docs/OPERATIONS.md section 1).
		{"receive:\n  backend: xdp\n", "net_raw", ":9: receive.backend: "},
		// SO_PREFER_BUSY_POLL needs cap_net_admin, on every backend.
		{"receive:\n  backend: socket\n  busy_poll: true\n", "net_admin", ":10: receive.busy_poll: "},
		// auto falls back to io_uring without AF_XDP's capabilities
		// (cap_sys_admin would do for cap_bpf): busy polling fails.
		{"receive:\n  busy_poll: true\n", "net_admin,-net_raw,-bpf,-perfmon,-sys_admin", ":9: receive.busy_poll: "},
	} {
		path := filepath.Join(t.TempDir(), "feed.yaml")
		name := shmtest.Name(t, "fhcaps")
		cfg := "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.77.46.8\n    port: 26148\n" + tc.receive + "shm:\n  name: " + name + "\nbook:\n  max_orders: 65536\n"
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := inNetns(t, ns, "setpriv", "--bounding-set=-"+tc.drop, "--inh-caps=-"+tc.drop, "--", os.Args[0], "--feed", path)
		cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
		var e bytes.Buffer
		cmd.Stderr = &e
		err := cmd.Run()
		var ee *exec.ExitError
		want := path + tc.want
		lacks := "cap_" + strings.Split(tc.drop, ",")[0]
		if !errors.As(err, &ee) || ee.ExitCode() != exitConfig || !strings.Contains(e.String(), want) || !strings.Contains(e.String(), lacks) {
			t.Errorf("without cap_%s: %v, want exit status %d and %q naming cap_%s:\n%s", tc.drop, err, exitConfig, want, tc.drop, e.String())
		}
	}
}

// TestRunInterfaceTakenByAnotherHandler: a second handler with AF_XDP on
// an interface a first one receives on (its queue bound, its XDP program
// attached) fails with one line naming receive.backend, what holds the
// interface and what to do, exit 1: an instance still stopping frees it.
// Before: 'feedhandler run: start handler: open receiver (auto): ... bind
// (flags 0xc): device or resource busy', nothing more.
func TestRunInterfaceTakenByAnotherHandler(t *testing.T) {
	// Both in a network namespace of the test's own: its lo is theirs.
	ns := loNetns(t, "fhbusy")
	feed := func(port int) string {
		path := filepath.Join(t.TempDir(), "feed.yaml")
		cfg := fmt.Sprintf("feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.77.46.7\n    port: %d\nreceive:\n  backend: xdp\nshm:\n  name: %s\nbook:\n  max_orders: 65536\n", port, shmtest.Name(t, "fhbusy"))
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	first := boundedCommand(t, "ip", "netns", "exec", ns, os.Args[0], "--feed", feed(26150))
	first.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	first.Stderr = pw
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	defer func() {
		first.Process.Signal(os.Interrupt)
		first.Wait()
	}()
	// Receiving: its socket is bound and its program attached.
	var log strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(log.String(), " receiving ") {
		n, err := pr.Read(buf)
		if err != nil {
			t.Fatalf("the first handler did not start: %v\n%s", err, log.String())
		}
		log.Write(buf[:n])
	}
	go io.Copy(io.Discard, pr)
	second := feed(26151)
	cmd := boundedCommand(t, "ip", "netns", "exec", ns, os.Args[0], "--feed", second)
	cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
	var e bytes.Buffer
	cmd.Stderr = &e
	err = cmd.Run()
	var ee *exec.ExitError
	want := second + ":9: receive.backend: "
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(e.String(), want) || !strings.Contains(e.String(), "give one of them receive.backend: uring") {
		t.Errorf("a second AF_XDP handler on lo: %v, want exit status 1 and %q saying what to do:\n%s", err, want, e.String())
	}
}

// TestRunInterfaceHeldInTheOtherMode: the receiver's error when another
// handler's XDP program holds the interface in the other mode (EEXIST,
// wrapped with rx.ErrXDPInUse: TestXDPInterfaceHeld makes it for real) is
// explained as EBUSY is, at receive.backend. A second handler with the
// default mode (native, else generic) against one attached natively, on
// another queue, fails this way; before, only its 'file exists' came out.
func TestRunInterfaceHeldInTheOtherMode(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte("feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.77.46.7\n    port: 26150\nreceive:\n  backend: auto\nshm:\n  name: t\n"))
	if err != nil {
		t.Fatal(err)
	}
	held := fmt.Errorf("open receiver (auto): open xdp backend: attach xdp program to ifindex 2 (generic): create link: file exists: %w, program 7 \"xdp_steer\" in native mode", rx.ErrXDPInUse)
	got := capsError(cfg, held).Error()
	if !strings.HasPrefix(got, "t.yaml:9: receive.backend: ") || !strings.Contains(got, "give one of them receive.backend: uring") {
		t.Errorf("capsError = %q; want it at receive.backend saying what to do", got)
	}
}

// TestHelpUsageLine: every subcommand's -h (and the usage a flag mistake
// prints) starts with how to type it, "usage: feedhandler ...". run, check
// and demo printed flag's "Usage of run:" (after 'feedhandler --feed' without
// its file, a command the user never typed).
func TestHelpUsageLine(t *testing.T) {
	for name := range commands {
		_, errOut, err := runCommand(t, name, "-h")
		if err != nil {
			t.Errorf("%s -h: %v", name, err)
		}
		if first, _, _ := strings.Cut(errOut, "\n"); !strings.HasPrefix(first, "usage: feedhandler ") {
			t.Errorf("feedhandler %s -h starts %q, want \"usage: feedhandler ...\"", name, first)
		}
	}
}

// TestHelpCommand: `feedhandler help` prints the usage and `feedhandler
// help COMMAND` the command's (what -h prints), exit 0; help for a command
// there is not is a usage error (78). Before, help was an unknown command,
// exit 78.
func TestHelpCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"help"}, 0, "usage: feedhandler"},
		{[]string{"help", "replay"}, 0, "usage: feedhandler replay"},
		{[]string{"help", "nosuch"}, exitConfig, "usage: feedhandler"},
	} {
		_, errOut, err := runCommand(t, tc.args...)
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("feedhandler %s: exit %d, want %d and %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, errOut)
		}
	}
}

// TestUnknownCommandHint: a mistyped command says which it resembles, and a
// feed file given as the command says to give it with --feed; both still
// exit 78 with the usage. Before: 'feedhandler: unknown command "chek"'
// and nothing more.
func TestUnknownCommandHint(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"chek", `feedhandler: unknown command "chek" (did you mean "check"?)`},
		{"replya", `feedhandler: unknown command "replya" (did you mean "replay"?)`},
		{"feeds/nasdaq.yaml", `feedhandler: unknown command "feeds/nasdaq.yaml" (a feed file goes with --feed: feedhandler --feed feeds/nasdaq.yaml)`},
	} {
		_, errOut, err := runCommand(t, tc.arg)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitConfig || !strings.Contains(errOut, tc.want+"\n") {
			t.Errorf("feedhandler %s: %v, want exit %d and %q:\n%s", tc.arg, err, exitConfig, tc.want, errOut)
		}
	}
}

// TestRunMetricsAddressNotUpYet: a literal metrics.listen address the host
// does not have yet (a service address that keepalived or the network
// manager adds after the unit starts) or cannot bind yet (an IPv6 address
// still tentative: duplicate address detection, or, as here, a link
// without a carrier) does not keep the feed down: the port is bound with
// IP_FREEBIND (IPV6_FREEBIND), a warning names the address, and it answers
// once the address is up. Before, a missing address was a config error
// (exit 78, never restarted: the feed stayed down for a metrics address)
// and a tentative one exit 1, restarted every RestartSec= until the unit's
// start limit failed it for good if the link stayed down that long. Each
// run is in a network namespace of its own (unshare); the script waits a
// bounded time for the start, adds the address, asks /healthz, then stops
// the handler with SIGINT.
func TestRunMetricsAddressNotUpYet(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, tool := range []string{"unshare", "ip", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	for _, tc := range []struct {
		name, listen, setup, up, url, answer string
	}{
		{"IPv4 added after the start", "10.141.0.1:9100", "ip link set lo up", "ip addr add 10.141.0.1/32 dev lo",
			"http://10.141.0.1:9100/healthz", "alive\n"},
		// fhta's peer stays down: no carrier, the address stays tentative
		// and unreachable; the start is what is checked.
		{"IPv6 tentative", "[fd00:fe::1]:9100", "ip link set lo up && ip link add fhta type veth peer name fhtb && ip link set fhta up && ip addr add fd00:fe::1/64 dev fhta && { ip -6 addr show dev fhta | grep -q tentative || { echo 'address not tentative'; exit 99; }; }",
			"true", "", ""},
		// A link-local address names its interface (a zone); on a link
		// without a carrier it stays tentative as well.
		{"IPv6 link-local tentative", "[fe80::1234%fhta]:9100", "ip link set lo up && ip link add fhta type veth peer name fhtb && ip link set fhta up && ip addr add fe80::1234/64 dev fhta && { ip -6 addr show dev fhta | grep -q 'fe80::1234.*tentative' || { echo 'address not tentative'; exit 99; }; }",
			"true", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "feed.yaml")
			cfg := "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\nreceive:\n  backend: socket\nmetrics:\n  listen: \"" + tc.listen + "\"\nshm:\n  name: " + shmtest.Name(t, "fhfreebind") + "\n"
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			logf := filepath.Join(dir, "log")
			script := tc.setup + ` || exit 99
"$0" "$@" >` + logf + ` 2>&1 &
pid=$!
i=0
until grep -q "privileges after setup" ` + logf + `; do
	i=$((i+1)); [ $i -gt 300 ] && { echo "not set up after 30 s"; kill -INT $pid; wait $pid; echo "exit $?"; exit 1; }
	kill -0 $pid 2>/dev/null || { wait $pid; echo "handler exit $?"; exit 1; }
	sleep 0.1
done
` + tc.up + ` || exit 99
if [ -n "` + tc.url + `" ]; then curl -s --max-time 5 "` + tc.url + `" >` + dir + `/answer; fi
kill -INT $pid; wait $pid; echo "handler exit $?"`
			cmd := boundedCommand(t, "unshare", append(killedWithScript("--net"), "sh", "-c", script, os.Args[0], "--feed", path)...)
			cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
			out, err := cmd.CombinedOutput()
			log, _ := os.ReadFile(logf)
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == 99 {
				t.Skipf("lab setup: %s", out)
			}
			answer, _ := os.ReadFile(filepath.Join(dir, "answer"))
			warn := "metrics.listen " + tc.listen + " is not an address this host can bind yet"
			if err != nil || !strings.Contains(string(out), "handler exit 0") || !strings.Contains(string(log), warn) || string(answer) != tc.answer {
				t.Errorf("metrics.listen %s not up at the start: %v, /healthz %q; want the handler started with a warning %q, stopped with exit 0, and %q once the address is up:\n%s\nhandler's log:\n%s",
					tc.listen, err, answer, warn, tc.answer, out, log)
			}
		})
	}
}

// TestRunMetricsAddressNotUpYetPortInUse: a literal metrics.listen address
// the host does not have yet whose port another process holds on the
// wildcard address (node_exporter's 9100 on 0.0.0.0): the bind with
// IP_FREEBIND fails with EADDRINUSE, and the start says so, exit 1 as for
// any port in use (an instance still stopping frees it), rather than the
// first bind's EADDRNOTAVAIL as 'not an address of this host', exit 78,
// never restarted; check fails it alike instead of the warning for an
// address not up yet. In a network namespace of its own; python3 holds
// the port.
func TestRunMetricsAddressNotUpYetPortInUse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, tool := range []string{"unshare", "ip", "ss", "python3", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "feed.yaml")
	cfg := "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\nreceive:\n  backend: socket\nmetrics:\n  listen: \"10.148.0.1:9100\"\nshm:\n  name: " + shmtest.Name(t, "fhinuse") + "\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `ip link set lo up || exit 99
python3 -c 'import socket,time
s=socket.socket()
s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(("0.0.0.0",9100))
s.listen()
time.sleep(60)' & P=$!
i=0
until ss -ltnH 'sport = :9100' | grep -q .; do i=$((i+1)); [ $i -gt 100 ] && { kill $P; echo "port not held"; exit 99; }; sleep 0.1; done
timeout -s INT 30 "$0" "$@"; rc=$?
kill $P
exit $rc`
	for _, c := range []struct {
		command []string
		status  int
		want    string
	}{
		{nil, 1, ":11: metrics.listen: listen tcp 10.148.0.1:9100: bind: address already in use: another process listens on this port"},
		{[]string{"check"}, 1, "FAIL  metrics   metrics.listen 10.148.0.1:9100: listen tcp 10.148.0.1:9100: bind: address already in use"},
	} {
		args := append(append(killedWithScript("--net"), "sh", "-c", script, os.Args[0]), c.command...)
		cmd := boundedCommand(t, "unshare", append(args, "--feed", path)...)
		cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 99 {
			t.Skipf("lab setup: %s", out)
		}
		if ee == nil || ee.ExitCode() != c.status || !strings.Contains(string(out), c.want) {
			t.Errorf("feedhandler %v, metrics.listen not up yet, its port in use: %v, want exit status %d and %q:\n%s", c.command, err, c.status, c.want, out)
		}
	}
}

// TestRunBackendNotSupported: a receive backend asked for by name that this
// host's kernel or driver cannot run as the file asks (lo has no native XDP
// and no AF_XDP zero-copy) fails the start as a config error at the key
// that asks for it, exit 78: no restart changes the driver. Before, exit 1
// and a line without the key, which the unit restarted until its start
// limit, each start allocating the books again. In a network namespace
// of the test's own: its lo is the handler's. So is an AF_XDP UMEM above
// RLIMIT_MEMLOCK in a process without cap_ipc_lock (root without it in its
// bounding set, under prlimit): before, exit 1 with the bare ENOBUFS.
func TestRunBackendNotSupported(t *testing.T) {
	ns := loNetns(t, "helper169nsup")
	for _, tc := range []struct {
		receive, want string
		wrap          []string // runs the command under these
	}{
		{receive: "receive:\n  backend: xdp\n  xdp_mode: native\n", want: ":10: receive.xdp_mode: "},
		{receive: "receive:\n  backend: xdp\n  zero_copy: on\n", want: ":10: receive.zero_copy: "},
		{receive: "receive:\n  backend: xdp\n", want: ":9: receive.backend: start handler: open xdp backend: interface lo: ",
			wrap: []string{"prlimit", "--memlock=4194304", "--", "setpriv", "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock", "--"}},
	} {
		if len(tc.wrap) > 0 && !utilLinuxWrappers() {
			t.Logf("prlimit or setpriv not installed (Debian package util-linux): %q not run", tc.receive)
			continue
		}
		path := filepath.Join(t.TempDir(), "feed.yaml")
		cfg := "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.77.46.9\n    port: 26169\n" + tc.receive +
			"shm:\n  name: " + shmtest.Name(t, "fhnsup") + "\nbook:\n  max_orders: 65536\n"
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		args := append(append([]string{"netns", "exec", ns}, tc.wrap...), os.Args[0], "--feed", path)
		cmd := boundedCommand(t, "ip", args...)
		cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
		var e bytes.Buffer
		cmd.Stderr = &e
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitConfig || !strings.Contains(e.String(), path+tc.want) {
			t.Errorf("%q on lo: %v, want exit status %d and %q:\n%s", tc.receive, err, exitConfig, path+tc.want, e.String())
		}
		if want := "AF_XDP charges its UMEMs (16 MiB) to RLIMIT_MEMLOCK, 4096 KiB here"; len(tc.wrap) > 0 && !strings.Contains(e.String(), want) {
			t.Errorf("%q under a 4 MiB RLIMIT_MEMLOCK without cap_ipc_lock: no %q:\n%s", tc.receive, want, e.String())
		}
	}
}

// killedWithScript is unshare's flags for a script (sh, after them) that
// leaves processes in the background (the handler it stops itself, a
// port's holder, a namespace's): with flags, a PID namespace of its own
// whose init is the script, which unshare forks and kills when it dies
// (--kill-child), unshare being killed with the test binary
// (boundedCommand): the kernel then kills every process of the namespace.
// Before, a test binary killed mid-script left them running. /proc is the
// namespace's (the script's pids are).
func killedWithScript(flags ...string) []string {
	return append(flags, "--pid", "--fork", "--kill-child", "--mount-proc")
}

// loNetns adds a network namespace with its lo up for the test
// (netlab.Namespace: named after prefix and the test's pid, deleted when
// the test ends) and returns its name; it skips the test unless root (a
// network namespace needs it, as AF_XDP does) and ip are there.
func loNetns(t *testing.T, prefix string) string {
	t.Helper()
	return netlab.Namespace(t, prefix)
}

// inNetns is boundedCommand for name with args run in network namespace
// ns (ip netns exec).
func inNetns(t *testing.T, ns, name string, args ...string) *child {
	t.Helper()
	return boundedCommand(t, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// listenIn listens on a free TCP port of 127.0.0.1 in network namespace
// ns.
func listenIn(t *testing.T, ns string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := netlab.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ln
}

// listenUDPIn opens a UDP socket on a free port of 127.0.0.1 in network
// namespace ns.
func listenUDPIn(t *testing.T, ns string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := netlab.Do(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// utilLinuxWrappers reports whether prlimit and setpriv, which
// TestRunBackendNotSupported runs the command under, are on PATH. The
// names are literals: TestSetupInstallsLookedUpTools follows them to
// .ci/setup's list.
func utilLinuxWrappers() bool {
	_, err1 := exec.LookPath("prlimit")
	_, err2 := exec.LookPath("setpriv")
	return err1 == nil && err2 == nil
}

// TestIOUringRefused: a host that refuses io_uring to the handler
// (kernel.io_uring_disabled 1 or 2, a container runtime's seccomp profile;
// here a seccomp filter in the child: the sysctl is global, and setting it
// would refuse io_uring to every other test of the host meanwhile). Backend
// uring: run and check refuse the start alike, one line at
// receive.backend saying why, exit 78. Before, check said nothing and
// exited 0 where run exited 78. Auto, without AF_XDP's capabilities: the
// start falls back to the sockets and logs why, check warns so.
func TestIOUringRefused(t *testing.T) {
	ns := loNetns(t, "h188uring")
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed (Debian package util-linux)")
	}
	feed := func(backend string) string {
		path := filepath.Join(t.TempDir(), "feed.yaml")
		cfg := "feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.77.46.9\n    port: 26171\nreceive:\n  backend: " + backend +
			"\nshm:\n  name: " + shmtest.Name(t, "fhuring") + "\nbook:\n  max_orders: 65536\n"
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const why = "a seccomp filter (a container runtime's default profile, systemd's SystemCallFilter=) or a security module refuses io_uring_setup to this process"
	command := func(args ...string) *child {
		cmd := boundedCommand(t, "ip", append([]string{"netns", "exec", ns}, args...)...)
		cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1", "FEEDHANDLER_TEST_DENY_IO_URING=1")
		return cmd
	}
	uring := feed("uring")
	for _, args := range [][]string{{"--feed", uring}, {"check", "--feed", uring}} {
		code, out, errOut := runExit(t, command(append([]string{os.Args[0]}, args...)...))
		errOut = out + errOut // check's FAIL line on stdout, run's error on stderr
		if want := uring + ":9: receive.backend: "; code != exitConfig || !strings.Contains(errOut, want) || !strings.Contains(errOut, why) {
			t.Errorf("backend uring, io_uring refused, %v: exit %d, want %d with %q and %q:\n%s", args, code, exitConfig, want, why, errOut)
		}
	}
	// auto as root without AF_XDP's capabilities: it falls back from
	// AF_XDP, then from io_uring, to the sockets.
	noXDP := "-" + strings.ReplaceAll(capList(privilege.Required("xdp", false)), ",", ",-")
	asNoXDP := func(args ...string) *child {
		return command(append([]string{"setpriv", "--bounding-set=" + noXDP, "--inh-caps=" + noXDP, "--", os.Args[0]}, args...)...)
	}
	auto := feed("auto")
	code, out, errOut := runExit(t, asNoXDP("check", "--feed", auto))
	if want := "backend auto, falling back from AF_XDP, would fall back to the sockets (recvmmsg) too"; code != 0 || !strings.Contains(out, "warn  uring     ") || !strings.Contains(out, want) || !strings.Contains(out, why) {
		t.Errorf("check, backend auto, io_uring refused: exit %d, want 0 and a warn uring line with %q and %q:\n%s%s", code, want, why, out, errOut)
	}
	started, logs := startsThroughSetup(t, asNoXDP("--feed", auto))
	if !started || !strings.Contains(logs, "rx: uring backend unavailable here, falling back to socket") || !strings.Contains(logs, why) {
		t.Errorf("backend auto, io_uring refused: through setup %v, want the fall back to the sockets logged with %q:\n%s", started, why, logs)
	}
}

// TestConfigErrorsCapped: a feed file with thousands of problems (50,000
// duplicate symbols) prints the first 100 and how many more, from run and
// check alike; before, 49,999 "listed twice" lines (3.3 MB).
func TestConfigErrorsCapped(t *testing.T) {
	const n = 50000
	var b strings.Builder
	b.WriteString("feed:\n  name: t\nlines:\n  a:\n    interface: lo\n    group: 239.1.1.1\n    port: 26477\nsymbols:\n")
	for range n {
		b.WriteString("  - AAPL\n")
	}
	f := filepath.Join(t.TempDir(), "dup.yaml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--feed", f}, {"check", "--feed", f}} {
		_, errOut, err := runCommand(t, args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitConfig {
			t.Fatalf("%v: %v, want exit status %d", args, err, exitConfig)
		}
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		want := fmt.Sprintf("%s: ... and %d more problems", f, n-1-100)
		if len(lines) != 101 || lines[100] != want {
			t.Fatalf("%v: %d lines (%d bytes) on stderr, want 100 then %q; the last: %q", args, len(lines), len(errOut), want, lines[len(lines)-1])
		}
	}
}

// TestRunFeedFileUnreadable: a feed file the process may not read, or one
// under a directory it may not enter, fails run and check with exit 78 and
// says what refused it (the file or the directory, its mode and owner, the
// process's ids) and what the unit's install does. Before: 'load feed
// config: open FILE: permission denied' alone. Root here, without
// cap_dac_override and cap_dac_read_search, the files another uid's.
func TestRunFeedFileUnreadable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs the command as root without cap_dac_override")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not installed (Debian package util-linux)")
	}
	base := t.TempDir()
	yaml := []byte("feed: {name: unreadable}\nlines:\n  a: {interface: lo, group: 239.77.46.10, port: 26150}\n")
	file := filepath.Join(base, "own.yaml")
	dir := filepath.Join(base, "closed")
	inDir := filepath.Join(dir, "feed.yaml")
	if err := os.WriteFile(file, yaml, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inDir, yaml, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, dir} {
		if err := os.Chown(p, 2, 2); err != nil {
			t.Fatal(err)
		}
	}
	const drop = "-dac_override,-dac_read_search"
	for _, tc := range []struct{ feed, want string }{
		{file, "may not read " + file + " (mode 0600, owner uid 2, group gid 2): give the handler's user read access"},
		{inDir, "may not enter " + dir + " (mode 0700, owner uid 2, group gid 2): give the handler's user read access"},
	} {
		for _, command := range []string{"run", "check"} {
			cmd := boundedCommand(t, "setpriv", "--clear-groups", "--bounding-set="+drop, "--inh-caps="+drop, "--", os.Args[0], command, "--feed", tc.feed)
			cmd.Env = append(os.Environ(), "FEEDHANDLER_TEST_AS_COMMAND=1")
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != exitConfig || !strings.Contains(string(out), tc.want) {
				t.Errorf("%s --feed %s: exit %d, %q; want exit %d and %q", command, tc.feed, code, strings.TrimSpace(string(out)), exitConfig, tc.want)
			}
		}
	}
}
