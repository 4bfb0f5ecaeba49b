package preflight

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/credtest"
	"github.com/marketfeed/feedhandler/internal/privilege"
)

// The tests below give Run a file tree of their own for /proc and /sys, to
// have what this host lacks (isolated cores, a NIC with interrupts and a
// NUMA node, reserved huge pages). Process state (capabilities, limits,
// affinity, /dev/shm) stays this process's: the command's test
// (cmd/feedhandler, TestCheck) covers it on the real host.

// tree writes files (path relative to the root: contents) under a new
// root directory; a path ending in "/" is a directory.
func tree(t *testing.T, files map[string]string) Host {
	t.Helper()
	root := t.TempDir()
	for p, body := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Host{Root: root}
}

// feedConfig parses a feed file whose lines are on ifname, with extra
// YAML appended.
func feedConfig(t *testing.T, ifname, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(fmt.Sprintf(`feed: {name: preflight-test}
lines:
  a: {interface: %s, group: 239.1.1.1, port: 26477}
  b: {interface: %s, group: 239.1.1.2, port: 26477}
%s`, ifname, ifname, extra)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// topic returns the findings of one topic, as strings.
func topic(fs []Finding, name string) []string {
	var out []string
	for _, f := range fs {
		if f.Topic == name {
			out = append(out, f.String())
		}
	}
	return out
}

// expect checks that the topic's findings are exactly one line at level l
// containing each of subs.
func expect(t *testing.T, fs []Finding, name string, l Level, subs ...string) {
	t.Helper()
	got := topic(fs, name)
	if len(got) != 1 {
		t.Fatalf("%s: %d findings, want 1: %q", name, len(got), got)
	}
	if !strings.HasPrefix(got[0], l.String()+" ") {
		t.Errorf("%s: %q, want level %s", name, got[0], l)
	}
	for _, s := range subs {
		if !strings.Contains(got[0], s) {
			t.Errorf("%s: %q lacks %q", name, got[0], s)
		}
	}
}

// allowedCPU returns a CPU this process may run on.
func allowedCPU(t *testing.T) int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	for cpu := 0; cpu < 1024; cpu++ {
		if set.IsSet(cpu) {
			return cpu
		}
	}
	t.Fatal("no CPU allowed")
	return -1
}

func TestCPUList(t *testing.T) {
	for in, want := range map[string]string{"": "none", "(null)": "none", "3": "3", "0-3,8,10-11": "0-3,8,10-11", "1,2,3,5": "1-3,5"} {
		s, err := parseCPUList(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if s.String() != want {
			t.Errorf("%q: %s, want %s", in, s, want)
		}
	}
	for _, bad := range []string{"a", "3-1", "1-", ",2"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestCores(t *testing.T) {
	cpu := allowedCPU(t)
	sys := func(isolated, nohz string) Host {
		return tree(t, map[string]string{
			"sys/devices/system/cpu/online":    fmt.Sprintf("0-%d", cpu+1),
			"sys/devices/system/cpu/isolated":  isolated,
			"sys/devices/system/cpu/nohz_full": nohz,
		})
	}
	at := func(core int) *config.Config {
		return feedConfig(t, "eth9", fmt.Sprintf("cores: {receive: %d}\n", core))
	}
	id := fmt.Sprint(cpu)
	expect(t, Run(at(cpu), sys(id, id)), "cores", OK, "CPU "+id+" is isolated and nohz_full")
	expect(t, Run(at(cpu), sys(id, "(null)")), "cores", Warn, "isolated but not nohz_full", "nohz_full: none")
	expect(t, Run(at(cpu), sys("", "")), "cores", Warn, "is not isolated (isolated: none)", "isolcpus=")
	expect(t, Run(feedConfig(t, "eth9", ""), sys(id, id)), "cores", Warn, "cores.receive is not set")

	// Sharded: every shard's core is checked. (A core this process may not
	// run on, and one given to two hot threads, are config errors:
	// TestCheckHostCores, TestBadConfigs.)
	fs := Run(feedConfig(t, "eth9", fmt.Sprintf("cores: {receive: %d, shards: [%d, %d]}\n", cpu, cpu+1, cpu+2)), sys(id, id))
	got := strings.Join(topic(fs, "cores"), "\n")
	for _, want := range []string{"cores.receive: CPU " + id + " is isolated and nohz_full", fmt.Sprintf("cores.shards[0]: CPU %d is not isolated", cpu+1), fmt.Sprintf("cores.shards[1]: CPU %d is not isolated", cpu+2)} {
		if !strings.Contains(got, want) {
			t.Errorf("sharded: %q lacks %q", got, want)
		}
	}
}

func TestNUMA(t *testing.T) {
	cpu := allowedCPU(t)
	h := func(nicNode string) Host {
		return tree(t, map[string]string{
			"sys/class/net/eth9/device/numa_node":                   nicNode,
			fmt.Sprintf("sys/devices/system/cpu/cpu%d/node0/", cpu): "",
		})
	}
	cfg := feedConfig(t, "eth9", fmt.Sprintf("cores: {receive: %d}\n", cpu))
	expect(t, Run(cfg, h("1")), "numa", Warn, "eth9 is on NUMA node 1", "on node 0", "pick a core of node 1")
	expect(t, Run(cfg, h("0")), "numa", OK, "NUMA node 0")
	if got := topic(Run(cfg, h("-1")), "numa"); got != nil {
		t.Errorf("no NUMA node: %q, want nothing", got)
	}
}

func TestIRQ(t *testing.T) {
	cpu := allowedCPU(t)
	interrupts := `            CPU0       CPU1
  24:          0          0   PCI-MSIX-0000:00:05.0   0-edge      virtio0-config
  45:     120071          3   IR-PCI-MSI 524288-edge      eth9-TxRx-0
  46:          1          0   IR-PCI-MSI 524289-edge      eth9
  47:          1          0   IR-PCI-MSI 524290-edge      eth90-TxRx-0
  60:          1          0   IR-PCI-MSI 524290-edge      mlx5_comp0@pci:0000:3b:00.0
 NMI:          0          0   Non-maskable interrupts
`
	h := func(aff string, files map[string]string) Host {
		m := map[string]string{
			"proc/interrupts":               interrupts,
			"proc/irq/45/smp_affinity_list": aff,
			"proc/irq/46/smp_affinity_list": fmt.Sprint(cpu + 1),
			"proc/irq/47/smp_affinity_list": fmt.Sprint(cpu),
			"proc/irq/60/smp_affinity_list": aff,
			"sys/class/net/eth9/device/":    "",
		}
		for k, v := range files {
			m[k] = v
		}
		return tree(t, m)
	}
	cfg := feedConfig(t, "eth9", fmt.Sprintf("cores: {receive: %d}\n", cpu))
	// By name (no msi_irqs): 45 and 46 are eth9's; 47 is eth90's, on the
	// receive core but not this interface's.
	expect(t, Run(cfg, h(fmt.Sprintf("%d-%d", cpu, cpu+1), nil)), "irq", Warn, "interrupt 45 (eth9-TxRx-0", "smp_affinity_list")
	expect(t, Run(cfg, h(fmt.Sprint(cpu+1), nil)), "irq", OK, "2 interrupt(s) (45 46)")
	busy := feedConfig(t, "eth9", fmt.Sprintf("cores: {receive: %d}\nreceive: {busy_poll: true}\n", cpu))
	expect(t, Run(busy, h(fmt.Sprint(cpu), nil)), "irq", OK, "busy polling")
	// By the device's MSI vectors, whatever the driver calls them (mlx5).
	msi := map[string]string{"sys/class/net/eth9/device/msi_irqs/60": "msix"}
	expect(t, Run(cfg, h(fmt.Sprint(cpu), msi)), "irq", Warn, "interrupt 60 (mlx5_comp0@pci:0000:3b:00.0", "kernel-managed affinity")
	expect(t, Run(cfg, h(fmt.Sprint(cpu+1), msi)), "irq", OK, "1 interrupt(s) (60)")
	// A device with none found is said, not passed over.
	none := tree(t, map[string]string{"proc/interrupts": interrupts, "sys/class/net/eth7/device/": ""})
	expect(t, Run(feedConfig(t, "eth7", fmt.Sprintf("cores: {receive: %d}\n", cpu)), none), "irq", Warn, "eth7: no interrupts found")
	// A virtual interface (no device) has none of its own: nothing to say.
	if got := topic(Run(feedConfig(t, "veth0", fmt.Sprintf("cores: {receive: %d}\n", cpu)), none), "irq"); got != nil {
		t.Errorf("virtual interface: %q", got)
	}

	for name, want := range map[string]bool{"eth9-TxRx-0": true, "eth9": true, "i40e-eth9-TxRx-0": true, "ice-eth9-TxRx-3": true,
		"eth90-TxRx-0": false, "xeth9": false, "eth9x": false} {
		if ifaceIRQ(name, "eth9") != want {
			t.Errorf("ifaceIRQ(%q, eth9) = %v", name, !want)
		}
	}
}

func TestHugePagesForUMEM(t *testing.T) {
	h := func(total, free, rsvd int) Host {
		return tree(t, map[string]string{"proc/meminfo": fmt.Sprintf("MemTotal:       24000000 kB\nHugePages_Total:      %d\nHugePages_Free:       %d\nHugePages_Rsvd:       %d\nHugepagesize:       2048 kB\n", total, free, rsvd)})
	}
	umem := func(fs []Finding) []Finding {
		var out []Finding
		for _, f := range fs {
			if f.Topic == "pages" && strings.Contains(f.Msg, "UMEM") {
				out = append(out, f)
			}
		}
		return out
	}
	// 1024 frames of 4 KiB on one interface and queue: 4 MiB, two pages.
	cfg := feedConfig(t, "eth9", "receive: {backend: xdp, ring_size: 1024}\n")
	expect(t, umem(Run(cfg, h(1, 1, 0))), "pages", Warn, "(4 MiB, 1 interface(s)) need 2 huge pages of 2048 kB and 1 are free", "echo 2 > /proc/sys/vm/nr_hugepages")
	expect(t, umem(Run(cfg, h(2, 2, 0))), "pages", OK, "2 huge pages of 2048 kB free for the AF_XDP UMEMs (4 MiB, 2 page(s))")
	// Reserved pages are promised to others: 3 free less 2 reserved is 1.
	expect(t, umem(Run(cfg, h(3, 3, 2))), "pages", Warn, "and 1 are free", "echo 4 >")
	// Two interfaces of 512 KiB each: one page each, not one for both.
	two, err := config.Parse("two.yaml", []byte(`feed: {name: two}
lines:
  a: {interface: eth8, group: 239.1.1.1, port: 26477}
  b: {interface: eth9, group: 239.1.1.2, port: 26477}
receive: {backend: xdp, ring_size: 128}
`))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, umem(Run(two, h(1, 1, 0))), "pages", Warn, "(1 MiB, 2 interface(s)) need 2 huge pages")
	sock := feedConfig(t, "eth9", "receive: {backend: socket}\n")
	if got := umem(Run(sock, h(0, 0, 0))); got != nil {
		t.Errorf("socket backend: %v, want no UMEM finding", got)
	}
	// A value missing from meminfo is no finding, not a panic.
	bad := tree(t, map[string]string{"proc/meminfo": "HugePages_Free:\nHugepagesize:       2048 kB\n"})
	if got := umem(Run(cfg, bad)); got != nil {
		t.Errorf("empty HugePages_Free: %v", got)
	}
}

func TestBusyPollSettings(t *testing.T) {
	h := func(deferIRQs, flush string) Host {
		return tree(t, map[string]string{
			"sys/class/net/eth9/napi_defer_hard_irqs": deferIRQs,
			"sys/class/net/eth9/gro_flush_timeout":    flush,
		})
	}
	cfg := feedConfig(t, "eth9", "receive: {busy_poll: true}\n")
	expect(t, Run(cfg, h("0", "0")), "busypoll", Warn, "eth9: napi_defer_hard_irqs 0, gro_flush_timeout 0")
	expect(t, Run(cfg, h("2", "200000")), "busypoll", OK)
	if got := topic(Run(feedConfig(t, "eth9", ""), h("0", "0")), "busypoll"); got != nil {
		t.Errorf("without busy_poll: %q", got)
	}
}

func TestRecoveryConfigured(t *testing.T) {
	expect(t, Run(feedConfig(t, "eth9", ""), Host{Root: t.TempDir()}), "recovery", Warn, "never repaired")
	cfg := feedConfig(t, "eth9", "recovery: {rerequest: {servers: [\"192.0.2.7:26400\"]}}\n")
	if got := topic(Run(cfg, Host{Root: t.TempDir()}), "recovery"); got != nil {
		t.Errorf("with a re-request server: %q", got)
	}
}

func TestChecksumsOff(t *testing.T) {
	expect(t, Run(feedConfig(t, "eth9", "receive: {verify_checksums: false}\n"), Host{Root: t.TempDir()}), "checksums", Warn, "applies a corrupted datagram")
	if got := topic(Run(feedConfig(t, "eth9", ""), Host{Root: t.TempDir()}), "checksums"); got != nil {
		t.Errorf("default: %q", got)
	}
	if got := topic(Run(feedConfig(t, "eth9", "receive: {backend: uring, verify_checksums: false}\n"), Host{Root: t.TempDir()}), "checksums"); got != nil {
		t.Errorf("uring (the kernel checks): %q", got)
	}
}

// TestVLANLines: a line on a VLAN device is checked on its lower device,
// which must not strip VLAN tags before XDP (rx-vlan-offload); a VLAN
// device the xdp backend refuses (QinQ) is a fallback under auto and a
// failure under xdp. The kernel here may have no VLAN devices: the
// resolver is played, on lo.
func TestVLANLines(t *testing.T) {
	oldResolve, oldOffload := resolveXDPDevice, vlanOffload
	defer func() { resolveXDPDevice, vlanOffload = oldResolve, oldOffload }()
	lo := rx.XDPDevice{Name: "lo", Index: 1, VLAN: 100}
	resolveXDPDevice = func(string) (rx.XDPDevice, error) { return lo, nil }
	offload := true
	vlanOffload = func(string) (bool, error) { return offload, nil }
	expect(t, Run(feedConfig(t, "lo", ""), Host{Root: t.TempDir()}), "vlan", Warn, "rx-vlan-offload is on", "ethtool -K lo rxvlan off")
	offload = false
	expect(t, Run(feedConfig(t, "lo", ""), Host{Root: t.TempDir()}), "vlan", OK, "rx-vlan-offload is off")
	if got := topic(Run(feedConfig(t, "lo", "receive: {backend: uring}\n"), Host{Root: t.TempDir()}), "vlan"); got != nil {
		t.Errorf("uring (the kernel takes the tag): %q", got)
	}

	resolveXDPDevice = func(name string) (rx.XDPDevice, error) {
		return rx.XDPDevice{}, fmt.Errorf("interface %s: %w: QinQ", name, rx.ErrNotSupported)
	}
	expect(t, Run(feedConfig(t, "lo", ""), Host{Root: t.TempDir()}), "vlan", Warn, "QinQ", "fall back to io_uring")
	expect(t, Run(feedConfig(t, "lo", "receive: {backend: xdp}\n"), Host{Root: t.TempDir()}), "vlan", Fail, "QinQ", "would not start")

	lo.VLAN = 0
	resolveXDPDevice = func(string) (rx.XDPDevice, error) { return lo, nil }
	if got := topic(Run(feedConfig(t, "lo", ""), Host{Root: t.TempDir()}), "vlan"); got != nil {
		t.Errorf("no VLAN line: %q", got)
	}
}

// TestSharedMemoryFree: a /dev/shm without room for the feed file beside
// the old one is a FAIL (exit 1: run's is 1 too, as a restart may find the
// room freed); one with room is ok. What no restart fixes (read-only, not
// writable, a directory or another user's file at the name, shm.group)
// config.CheckHost refuses before (TestRunSharedMemoryErrors).
func TestSharedMemoryFree(t *testing.T) {
	cfg := feedConfig(t, "eth9", "shm: {name: fh-preflight-free}\n")
	expect(t, sharedMemoryOn(t, cfg, "size=64k"), "shm", Fail, "/dev/shm has 0.1 MiB free and the feed file needs 10.5 MiB")
	expect(t, sharedMemoryOn(t, cfg, "size=64m"), "shm", OK, "/dev/shm/fh-preflight-free: 10.5 MiB")
}

// sharedMemoryOn runs the shm check with a tmpfs mounted over /dev/shm
// with opts: in a mount namespace of a thread of its own, which the check
// runs on.
func sharedMemoryOn(t *testing.T, cfg *config.Config, opts string) []Finding {
	t.Helper()
	type result struct {
		skip string
		err  error
		fs   []Finding
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread in its own namespace exits with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			res <- result{skip: "unshare a mount namespace (needs CAP_SYS_ADMIN): " + err.Error()}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			res <- result{err: fmt.Errorf("make mounts private: %w", err)}
			return
		}
		if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", 0, opts); err != nil {
			res <- result{err: fmt.Errorf("mount tmpfs %s: %w", opts, err)}
			return
		}
		defer unix.Unmount("/dev/shm", unix.MNT_DETACH)
		ck := &checker{cfg: cfg}
		ck.sharedMemory()
		res <- result{fs: ck.out}
	}()
	r := <-res
	if r.skip != "" {
		t.Skip(r.skip)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.fs
}

// TestReversePathLines: a line whose configured source the kernel would
// drop on its interface (rx.CheckReversePath, stubbed here; its lab test
// is TestReversePathWarning in feed/rx) is a warning naming the remedy, on
// every backend; none when the kernel takes every line's source. The
// stub gets the config's lines, sources included.
func TestReversePathLines(t *testing.T) {
	old := reversePath
	defer func() { reversePath = old }()
	var got []rx.LineConfig
	reversePath = func(lines []rx.LineConfig) []error {
		got = lines
		return []error{fmt.Errorf("line A: the kernel drops datagrams from 10.9.9.9 to 239.1.1.1 arriving on lo")}
	}
	for _, backend := range []string{"", "receive: {backend: uring}\n"} {
		cfg := feedConfig(t, "lo", backend)
		expect(t, Run(cfg, Host{Root: t.TempDir()}), "rp_filter", Warn, "line A: the kernel drops datagrams from 10.9.9.9",
			"socket backends (and AF_XDP's fallback sockets) would receive nothing", "rp_filter to 2",
			"net.ipv4.conf.all.rp_filter no higher")
	}
	cfg := feedConfig(t, "lo", "")
	cfg.Lines[0].Source = netip.MustParseAddr("10.9.9.9")
	Run(cfg, Host{Root: t.TempDir()})
	if len(got) != 2 || got[0].Source != cfg.Lines[0].Source {
		t.Errorf("CheckReversePath got lines %+v, want both, A's source 10.9.9.9", got)
	}
	reversePath = func([]rx.LineConfig) []error { return nil }
	if f := topic(Run(feedConfig(t, "lo", ""), Host{Root: t.TempDir()}), "rp_filter"); f != nil {
		t.Errorf("every source taken: %q", f)
	}
}

// TestLinks: an interface of a line that is down, or up without its link
// (no carrier), is a warning naming what to do; one up with its link, or
// whose state cannot be read, says nothing. The sysfs files are played.
func TestLinks(t *testing.T) {
	for _, tc := range []struct {
		flags, operstate string
		want             string // "": no finding
	}{
		{"0x1002", "down", "eth9 is down: the handler receives nothing on it until it is up (ip link set dev eth9 up)"},
		{"0x1003", "down", "eth9 is up but its link is not (operstate down: no carrier"},
		{"0x1003", "lowerlayerdown", "operstate lowerlayerdown"},
		{"0x1003", "up", ""},
		{"0x9", "unknown", ""}, // lo
	} {
		root := t.TempDir()
		dir := filepath.Join(root, "sys/class/net/eth9")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "flags"), []byte(tc.flags+"\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "operstate"), []byte(tc.operstate+"\n"), 0o644)
		fs := Run(feedConfig(t, "eth9", ""), Host{Root: root})
		if tc.want == "" {
			if got := topic(fs, "link"); got != nil {
				t.Errorf("flags %s, operstate %s: %q, want nothing", tc.flags, tc.operstate, got)
			}
			continue
		}
		expect(t, fs, "link", Warn, tc.want)
	}
	if got := topic(Run(feedConfig(t, "eth9", ""), Host{Root: t.TempDir()}), "link"); got != nil {
		t.Errorf("no sysfs: %q, want nothing", got)
	}
}

// TestSourceSpecificGroup: a line's group in 232.0.0.0/8 without the
// line's source is a warning (routers running PIM-SSM ignore a join of
// any source there: the line would receive nothing across a router);
// with its source, or outside that range, nothing.
func TestSourceSpecificGroup(t *testing.T) {
	cfg := feedConfig(t, "lo", "")
	cfg.Lines[1].Group = netip.MustParseAddr("232.1.1.2")
	expect(t, Run(cfg, Host{Root: t.TempDir()}), "group", Warn,
		"lines.b.group 232.1.1.2 is in 232.0.0.0/8, source-specific multicast (RFC 4607), and lines.b.source is not set", "set lines.b.source")
	cfg.Lines[1].Source = netip.MustParseAddr("198.51.100.10")
	if got := topic(Run(cfg, Host{Root: t.TempDir()}), "group"); got != nil {
		t.Errorf("with its source: %q, want nothing", got)
	}
	if got := topic(Run(feedConfig(t, "lo", ""), Host{Root: t.TempDir()}), "group"); got != nil {
		t.Errorf("239.1.1.x groups: %q, want nothing", got)
	}
}

// TestMetricsWildcardWarns: a metrics.listen on every address of the
// host (":PORT", 0.0.0.0, [::]) serves the unauthenticated endpoints to
// whoever reaches the host: check warns. A named address does not.
func TestMetricsWildcardWarns(t *testing.T) {
	for _, tc := range []struct {
		listen string
		warn   bool
	}{
		{`":39464"`, true},
		{`"0.0.0.0:39464"`, true},
		{`"[::]:39464"`, true},
		{`"127.0.0.1:39464"`, false},
	} {
		var warned bool
		for _, f := range Run(feedConfig(t, "lo", "metrics: {listen: "+tc.listen+"}\n"), Host{Root: t.TempDir()}) {
			if f.Topic == "metrics" && f.Level == Warn && strings.Contains(f.String(), "binds every address") {
				warned = true
			}
		}
		if warned != tc.warn {
			t.Errorf("metrics.listen %s: warned %v, want %v", tc.listen, warned, tc.warn)
		}
	}
}

// TestUringDisabledOne: under kernel.io_uring_disabled 1 a process with
// cap_sys_admin (this one, root) may create rings, a user without it (the
// unit's) only in kernel.io_uring_group: check, run as root before the
// unit starts, warns of it under uring and auto; not under socket, nor
// with the setting at 0. Before, it said nothing (the sysctls are read
// from a tree of the test's: the host's are global).
func TestUringDisabledOne(t *testing.T) {
	if eff, _ := privilege.Effective(); eff&(1<<unix.CAP_SYS_ADMIN) == 0 {
		t.Skip("the warning is for a process that holds cap_sys_admin")
	}
	probeUring = func() error { return nil }
	t.Cleanup(func() { probeUring = rx.ProbeUring })
	for _, tc := range []struct {
		backend, disabled string
		want              string // "": no uring line
	}{
		{"uring", "1", "kernel.io_uring_disabled is 1 (kernel.io_uring_group -1): this process may use io_uring only because it holds cap_sys_admin; a user without it, as under deploy/feedhandler@.service, may not, and there backend uring would not start (exit 78)"},
		{"auto", "1", "there backend auto would fall back to the sockets where AF_XDP falls back"},
		{"socket", "1", ""},
		{"uring", "0", ""},
	} {
		h := tree(t, map[string]string{"proc/sys/kernel/io_uring_disabled": tc.disabled + "\n", "proc/sys/kernel/io_uring_group": "-1\n"})
		got := topic(Run(feedConfig(t, "lo", "receive: {backend: "+tc.backend+"}\n"), h), "uring")
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s, io_uring_disabled %s: %q, want no uring line", tc.backend, tc.disabled, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want) || !strings.HasPrefix(got[0], "warn")):
			t.Errorf("%s, io_uring_disabled %s: %q, want a warning with %q", tc.backend, tc.disabled, got, tc.want)
		}
	}
}

// TestAccountNotRoot: check run as another user than root, the unit's or
// an operator's, warns at user:'s line that the handler will not switch to
// the account the file names (before, it said nothing of an account that
// exists, and the handler ran on as another user than the file says), and
// not when it runs as that account.
func TestAccountNotRoot(t *testing.T) {
	for _, tc := range []struct{ user, want string }{
		{"root", `warn  user      test.yaml:5: user: "root" (uid 0) not switched to: the handler switches user only when started as root, and this one runs as uid 65534 (nobody)`},
		{"fh-no-such-user-h262", `warn  user      test.yaml:5: user: "fh-no-such-user-h262": no such user on this host, and not switched to anyway`},
		{"nobody", ""},
	} {
		c := &checker{cfg: feedConfig(t, "lo", "user: "+tc.user+"\n")}
		credtest.AsUser(t, 65534, 65534, c.account)
		got := topic(c.out, "user")
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("user: %s, as nobody: %q, want no finding (it runs as that user)", tc.user, got)
		case tc.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.want)):
			t.Errorf("user: %s, as nobody: %q, want one finding %q...", tc.user, got, tc.want)
		}
	}
}
