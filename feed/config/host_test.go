package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/feed/glimpse"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/credtest"
	"github.com/marketfeed/feedhandler/internal/netlab"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/internal/skmem"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// hostFile is a feed file whose names exist on every Linux host: lo.
const hostFile = `feed:
  name: hostcheck
lines:
  a:
    interface: lo
    group: 239.1.1.1
    port: 26477
  b:
    interface: lo
    group: 239.1.1.2
    port: 26477
receive:
  backend: socket
metrics:
  listen: 127.0.0.1:9100
`

func hostEdit(t *testing.T, old, new string) string {
	t.Helper()
	if strings.Count(hostFile, old) != 1 {
		t.Fatalf("%q is not once in hostFile", old)
	}
	return strings.Replace(hostFile, old, new, 1)
}

// haveInterfaces names the interfaces of the calling thread's network
// namespace, as CheckHost's errors list them.
func haveInterfaces() (string, error) {
	all, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	var names []string
	for _, i := range all {
		names = append(names, i.Name)
	}
	return strings.Join(names, ", "), nil
}

// doIn runs fn on a thread switched into network namespace ns
// (netlab.Do), failing the test when the switch fails. fn must not call
// t.Fatal (it runs on another goroutine): it reports through its
// closure's variables.
func doIn(t *testing.T, ns string, fn func()) {
	t.Helper()
	if err := netlab.Do(ns, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// checkHostIn is c.CheckHost run in network namespace ns (a test's own,
// netlab.Namespace): its moment's bind of metrics.listen
// (checkListenAllowed), its interface lookups and the sysctl it reads are
// the namespace's, never the host's.
func checkHostIn(t *testing.T, ns string, c *Config) (err error) {
	t.Helper()
	doIn(t, ns, func() { err = c.CheckHost() })
	return err
}

// What a config names on the host is checked against the host, one line
// per problem naming file, line and field (issue 12). The host here is a
// network namespace of the test's own, lo its only interface: CheckHost
// binds metrics.listen there.
func TestCheckHost(t *testing.T) {
	ns := netlab.Namespace(t, "fhcfghost")
	var have string
	var haveErr, loErr error
	doIn(t, ns, func() {
		have, haveErr = haveInterfaces()
		_, loErr = net.InterfaceByName("lo")
	})
	if haveErr != nil {
		t.Fatal(haveErr)
	}
	if loErr != nil {
		t.Fatalf("namespace %s has no lo: %v", ns, loErr)
	}
	queues, ok := rxQueues("lo")
	if !ok {
		t.Fatal("no /sys/class/net/lo/queues on this host")
	}
	notDir := t.TempDir() + "/file"
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, file string
		want       []string // one error line each; none = valid
	}{
		{"valid", hostFile, nil},
		{"interface missing on line a", hostEdit(t, "  a:\n    interface: lo", "  a:\n    interface: ens1f0"),
			[]string{`h.yaml:5: lines.a.interface: no interface "ens1f0" on this host (have: ` + have + `)`}},
		{"interface missing on both lines", strings.ReplaceAll(hostFile, "interface: lo", "interface: fhnope0"),
			[]string{
				`h.yaml:5: lines.a.interface: no interface "fhnope0" on this host (have: ` + have + `)`,
				`h.yaml:9: lines.b.interface: no interface "fhnope0" on this host (have: ` + have + `)`,
			}},
		{"queue the interface lacks", hostEdit(t, "  backend: socket", fmt.Sprintf("  backend: auto\n  queues: [0, %d]", queues)),
			[]string{fmt.Sprintf("h.yaml:14: receive.queues: queue %d does not exist on lo (line A), which has %d receive queue%s (0..%d)",
				queues, queues, plural(queues), queues-1)}},
		{"queues ignored by the socket backend", hostEdit(t, "  backend: socket", fmt.Sprintf("  backend: socket\n  queues: [%d]", queues)), nil},
		// Bound with IP_FREEBIND at start, answering once it is up: not
		// refused (cmd/feedhandler's TestRunMetricsAddressNotUpYet).
		{"metrics address not on the host yet", hostEdit(t, "127.0.0.1:9100", "192.0.2.1:9100"), nil},
		{"metrics on every address", hostEdit(t, "127.0.0.1:9100", "0.0.0.0:9100"), nil},
		{"metrics by name", hostEdit(t, "127.0.0.1:9100", "localhost:9100"), nil},
		// Before, these were found when the shm file was created, or after
		// setup: a start that failed with exit status 1, restarted by
		// systemd, and no file line.
		{"shm group missing", hostFile + "shm:\n  group: fh-no-such-group\n",
			[]string{`h.yaml:17: shm.group: look up group "fh-no-such-group": no such group on this host (groupadd --system fh-no-such-group`}},
		{"shm group by gid", hostFile + "shm:\n  group: 0\n", nil},
		{"shm group root", hostFile + "shm:\n  group: root\n", nil},
		{"user root", hostFile + "user: root\n", nil},
		{"capture directory", hostFile + "capture:\n  path: " + t.TempDir() + "/feed.pcap\n", nil},
		{"capture directory missing", hostFile + "capture:\n  path: /nonexistent-fh/feed.pcap\n",
			[]string{`h.yaml:17: capture.path: directory /nonexistent-fh: stat /nonexistent-fh: no such file or directory`}},
		{"capture directory a file", hostFile + "capture:\n  path: " + notDir + "/feed.pcap\n",
			[]string{`h.yaml:17: capture.path: ` + notDir + ` is not a directory`}},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, struct {
			name, file string
			want       []string
		}{"user missing", hostFile + "user: fh-no-such-user\n",
			[]string{`h.yaml:16: user: no such user named "fh-no-such-user" on this host (useradd --system fh-no-such-user`}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("h.yaml", []byte(tc.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = checkHostIn(t, ns, c)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("CheckHost: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("CheckHost accepted it")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("got %d lines, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("line %d:\n got %s\nwant %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// Groups that cannot be a feed's are rejected by Parse with file, line and
// field, before anything touches the host.
func TestBadGroup(t *testing.T) {
	for _, tc := range []struct{ group, want string }{
		{"10.1.1.1", `h.yaml:6: lines.a.group: "10.1.1.1" is not an IPv4 multicast address`},
		{"239.1.1", `h.yaml:6: lines.a.group: "239.1.1" is not an IPv4 multicast address`},
		{"239.1.1.256", `h.yaml:6: lines.a.group: "239.1.1.256" is not an IPv4 multicast address`},
		{"ff02::1", `h.yaml:6: lines.a.group: "ff02::1" is not an IPv4 multicast address`},
		{"224.0.0.5", `h.yaml:6: lines.a.group: "224.0.0.5" is in 224.0.0.0/24, the local network control block (routing protocols), not a feed group`},
		{`""`, `h.yaml:6: lines.a.group: "" is not an IPv4 multicast address`},
	} {
		_, err := Parse("h.yaml", []byte(hostEdit(t, "group: 239.1.1.1", "group: "+tc.group)))
		if err == nil || err.Error() != tc.want {
			t.Errorf("group %s:\n got %v\nwant %s", tc.group, err, tc.want)
		}
	}
}

// A hot thread's core that this process may not run on (a CPU the host
// lacks, or one outside its affinity: the unit's CPUAffinity=) is a config
// error, as a missing interface is, not a warning "thread not pinned" and
// a handler running unpinned; so is, sharded, a receive core that is also
// a shard's. Unset is "not pinned".
func TestCheckHostCores(t *testing.T) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for cpu := 0; cpu < 8*len(all); cpu++ {
		if all.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	first, beyond := cpus[0], cpus[len(cpus)-1]+1
	ns := netlab.Namespace(t, "fhcfgcores")
	checkHost := func(c *Config) error { return checkHostIn(t, ns, c) }
	check := func(t *testing.T, cores string, want ...string) {
		t.Helper()
		c, err := Parse("h.yaml", []byte(hostFile+cores))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		err = checkHost(c)
		if len(want) == 0 {
			if err != nil {
				t.Errorf("%q: CheckHost: %v", cores, err)
			}
			return
		}
		if err == nil || !errors.Is(err, ErrInvalid) {
			t.Fatalf("%q: CheckHost: %v, want %q", cores, err, want)
		}
		got := strings.Split(err.Error(), "\n")
		if len(got) != len(want) {
			t.Fatalf("%q: got %d lines, want %d:\n%v", cores, len(got), len(want), err)
		}
		for i := range got {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Errorf("%q: line %d:\n got %s\nwant %s", cores, i, got[i], want[i])
			}
		}
	}
	check(t, "")
	check(t, fmt.Sprintf("cores:\n  receive: %d\n", first))
	check(t, fmt.Sprintf("cores:\n  receive: %d\n", beyond),
		fmt.Sprintf("h.yaml:17: cores.receive: CPU %d is not one this process may run on (CPUs %s:", beyond, cpuList(&all)))
	check(t, fmt.Sprintf("cores:\n  shards: [%d, %d]\n", first, beyond),
		fmt.Sprintf("h.yaml:17: cores.shards[1]: CPU %d is not one this process may run on", beyond))
	// One shard core: run to completion, the core is unused (not checked).
	check(t, fmt.Sprintf("cores:\n  receive: %d\n  shards: [%d]\n", first, beyond))
	if len(cpus) < 2 {
		t.Skipf("this process may run on CPU %d only: the affinity and shared-core cases need two", first)
	}
	second := cpus[1]
	check(t, fmt.Sprintf("cores:\n  receive: %d\n  shards: [%d, %d]\n", second, first, second),
		fmt.Sprintf("h.yaml:18: cores.shards[1]: CPU %d is also cores.receive", second))
	// Online but outside the affinity (CPUAffinity=): the checking
	// thread's only, the one switched into the namespace. Should its
	// affinity not go back, it stays locked once more than Do locked it,
	// and ends with Do's goroutine rather than run others on one CPU.
	checkHost = func(c *Config) (err error) {
		var one unix.CPUSet
		one.Set(first)
		var affErr error
		doIn(t, ns, func() {
			if affErr = unix.SchedSetaffinity(0, &one); affErr != nil {
				return
			}
			err = c.CheckHost()
			if unix.SchedSetaffinity(0, &all) != nil {
				runtime.LockOSThread()
			}
		})
		if affErr != nil {
			t.Fatal(affErr)
		}
		return err
	}
	check(t, fmt.Sprintf("cores:\n  receive: %d\n", second),
		fmt.Sprintf("h.yaml:17: cores.receive: CPU %d is not one this process may run on (CPUs %d:", second, first))
}

// Books larger than the memory this process can have are a config error
// naming book.max_orders, the bytes asked and the bytes available, not an
// out-of-memory kill at every start; realistic sizes pass.
func TestCheckHostBookMemory(t *testing.T) {
	ns := netlab.Namespace(t, "fhcfgbooks")
	check := func(file string) error {
		t.Helper()
		c, err := Parse("h.yaml", []byte(file))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		return checkHostIn(t, ns, c)
	}
	have, what := hostMemory()
	if have <= 0 {
		t.Fatal("hostMemory read nothing on this host")
	}
	t.Logf("this process can have %d MiB (%s)", have>>20, what)
	if err := check(hostFile); err != nil {
		t.Errorf("the default book.max_orders: %v", err)
	}
	// The largest max_orders book.New takes: about 40 GiB of tables.
	huge := hostFile + fmt.Sprintf("book:\n  max_orders: %d\n", book.MaxOrdersLimit)
	c, _ := Parse("h.yaml", []byte(huge))
	need, err := c.BookConfig().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if need > have {
		err := check(huge)
		want := fmt.Sprintf("h.yaml:17: book.max_orders: %d orders (max_locates %d, 1 shard(s)) need %d bytes (%d MiB) of book tables; with what the rest of the process holds from its start (%s) that is %d bytes (%d MiB), and this process can have %d bytes (%d MiB, %s): lower book.max_orders"+hostFileGrowth,
			book.MaxOrdersLimit, DefaultMaxLocates, need, need>>20, hostFileRest, need+hostFileStart, (need+hostFileStart)>>20, have, have>>20, what)
		if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
			t.Errorf("max_orders %d on this host:\n got %v\nwant %s", book.MaxOrdersLimit, err, want)
		}
	} else {
		t.Logf("this host has the %d MiB that max_orders %d needs", need>>20, book.MaxOrdersLimit)
	}
	// Above book.New's limit: refused by Parse, not by the start.
	_, err = Parse("h.yaml", []byte(hostFile+fmt.Sprintf("book:\n  max_orders: %d\n", book.MaxOrdersLimit+1)))
	if err == nil || !strings.HasPrefix(err.Error(), "h.yaml:17: book.max_orders: ") {
		t.Errorf("max_orders %d: Parse: %v", book.MaxOrdersLimit+1, err)
	}

	// A cgroup limit of 600 MiB: one default book fits, two shards' do not.
	defer func(f func() (int64, string)) { hostMemory = f }(hostMemory)
	hostMemory = func() (int64, string) { return 600 << 20, "cgroup test" }
	if err := check(hostFile); err != nil {
		t.Errorf("the default book.max_orders in 600 MiB: %v", err)
	}
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for cpu := 0; cpu < 8*len(all) && len(cpus) < 2; cpu++ {
		if all.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	if len(cpus) < 2 {
		t.Skip("two shards need two CPUs this process may run on")
	}
	err = check(hostFile + fmt.Sprintf("cores:\n  shards: [%d, %d]\n", cpus[0], cpus[1]))
	def, _ := Parse("h.yaml", []byte(hostFile))
	per, _ := def.BookConfig().Bytes()
	rest := hostFileRest + ", shard rings and tables 14 MiB (2 shards, 7 MiB each)"
	other := hostFileStart + 2*ShardBytes
	want := fmt.Sprintf("h.yaml: book.max_orders: %d orders (max_locates %d, 2 shard(s)) need %d bytes (%d MiB) of book tables; with what the rest of the process holds from its start (%s) that is %d bytes (%d MiB), and this process can have %d bytes (600 MiB, cgroup test): lower book.max_orders"+hostFileGrowth,
		DefaultMaxOrders, DefaultMaxLocates, 2*per, 2*per>>20, rest, 2*per+other, (2*per+other)>>20, 600<<20)
	if err == nil || err.Error() != want {
		t.Errorf("two shards in 600 MiB:\n got %v\nwant %s", err, want)
	}
}

// hostFile's needs besides its book tables (socket backend, two lines,
// the default shm.slots, book.depth and recovery.spill), as
// checkBookMemory counts them: held from the start (hostFileStart, its
// parts as the error names them) and grown under load (its parts).
var (
	hostFileStart = shm.FileSize(shm.Config{Instruments: DefaultSHMSlots, Depth: DefaultDepth}) + 64<<20
	hostFileRest  = fmt.Sprintf("shm file %d MiB, receive rings 0 MiB, Go runtime and tables 64 MiB",
		shm.FileSize(shm.Config{Instruments: DefaultSHMSlots, Depth: DefaultDepth})>>20)
	hostFileGrowth = " (under load it can grow by 96 MiB more: socket buffers 32 MiB, held packets 64 MiB)"
)

// TestCheckHostMemoryBesidesBooks: the books must leave room for the rest
// of the process holds from its start: the shm file, the receive rings
// (none here; AF_XDP UMEMs under auto and xdp, io_uring's buffer ring)
// and the Go runtime. Books that fit alone in the memory this process can have, but
// not with the rest, are a config error at start, not an out-of-memory
// kill once the shm file or the rings are touched.
func TestCheckHostMemoryBesidesBooks(t *testing.T) {
	defer func(f func() (int64, string)) { hostMemory = f }(hostMemory)
	ns := netlab.Namespace(t, "fhcfgbesides")
	c, err := Parse("h.yaml", []byte(hostFile))
	if err != nil {
		t.Fatal(err)
	}
	books, err := c.BookConfig().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		have int64
		ok   bool
	}{
		{"books and 1 MiB", books + 1<<20, false},
		{"one byte short", books + hostFileStart - 1, false},
		{"exactly", books + hostFileStart, true},
	} {
		hostMemory = func() (int64, string) { return tc.have, "cgroup test" }
		err := checkHostIn(t, ns, c)
		want := ""
		if !tc.ok {
			want = fmt.Sprintf("h.yaml: book.max_orders: %d orders (max_locates %d, 1 shard(s)) need %d bytes (%d MiB) of book tables; with what the rest of the process holds from its start (%s) that is %d bytes (%d MiB), and this process can have %d bytes (%d MiB, cgroup test): lower book.max_orders"+hostFileGrowth,
				DefaultMaxOrders, DefaultMaxLocates, books, books>>20, hostFileRest, books+hostFileStart, (books+hostFileStart)>>20, tc.have, tc.have>>20)
		}
		if got := fmt.Sprint(err); (err == nil) != tc.ok || (!tc.ok && got != want) {
			t.Errorf("%s (%d bytes): CheckHost\n got %v\nwant %s", tc.name, tc.have, err, cmp.Or(want, "<nil>"))
		}
	}
	// The receive rings mapped and touched at open count from the start:
	// the AF_XDP UMEMs, io_uring's buffer ring (receive.ring_size x
	// 2112 bytes); under auto the larger of the two (one backend's at a
	// time: the fallback opens its own once the AF_XDP attempt has
	// unmapped its UMEMs). One interface, lo, one queue: ring_size 16384
	// makes 64 MiB of UMEM, above 33 MiB of io_uring buffers; under uring,
	// ring_size 32768 makes 66 MiB. The socket buffers only grow under load.
	for _, tc := range []struct {
		name, edit string
		rings      func(c *Config) int64
	}{
		{"auto, the larger ring", "backend: auto\n  ring_size: 16384", func(c *Config) int64 {
			return max(rx.XDPLockedBytes(c.RxConfig(zerolog.Nop())), 16384*2112)
		}},
		{"uring, its buffer ring", "backend: uring\n  ring_size: 32768", func(c *Config) int64 {
			return 32768 * 2112
		}},
	} {
		c, err := Parse("h.yaml", []byte(hostEdit(t, "backend: socket", tc.edit)))
		if err != nil {
			t.Fatal(err)
		}
		rings := tc.rings(c)
		need := books + hostFileStart + rings
		hostMemory = func() (int64, string) { return need - 1, "cgroup test" }
		if err := checkHostIn(t, ns, c); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("receive rings %d MiB", rings>>20)) {
			t.Errorf("backend %s, one byte short: %v, want receive rings %d MiB", tc.name, err, rings>>20)
		}
		hostMemory = func() (int64, string) { return need, "cgroup test" }
		if err := checkHostIn(t, ns, c); err != nil {
			t.Errorf("backend %s, room for receive rings of %d MiB: %v", tc.name, rings>>20, err)
		}
	}
}

// TestCheckHostListenLinkLocal: a link-local metrics.listen address names
// its interface as a zone, "[fe80::1%eth0]:9100", which net.Listen binds;
// CheckHost compared it, zone and all, with the host's addresses, which
// carry none, and refused it ("no address fe80::1%eth0 on this host (have:
// ..., fe80::1)"), a config error at every start. The zone's interface
// must have the address. The link is the test's own, in a network
// namespace of its own: a veth pair there, fe80::1 on one end, so that
// neither the host's interfaces nor its addresses are needed or touched.
func TestCheckHostListenLinkLocal(t *testing.T) {
	ns := netlab.Namespace(t, "fhcfgll")
	const ifname, peer = "fhll0", "fhll1"
	ll := netip.MustParseAddr("fe80::1")
	for _, args := range [][]string{
		{"link", "add", ifname, "type", "veth", "peer", "name", peer},
		// Only the address given here: none of the kernel's making.
		{"link", "set", ifname, "addrgenmode", "none"},
		{"link", "set", peer, "addrgenmode", "none"},
		// Without duplicate address detection: a tentative address
		// cannot be bound.
		{"addr", "add", ll.String() + "/64", "dev", ifname, "nodad"},
		{"link", "set", ifname, "up"},
		{"link", "set", peer, "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
		}
	}
	zoned := ll.WithZone(ifname)
	parse := func(listen netip.AddrPort) *Config {
		t.Helper()
		c, err := Parse("h.yaml", []byte(hostEdit(t, "127.0.0.1:9100", `"`+listen.String()+`"`)))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	onLink, onLo, noZoneCfg := parse(netip.AddrPortFrom(zoned, 9100)), parse(netip.AddrPortFrom(ll.WithZone("lo"), 9100)), parse(netip.AddrPortFrom(ll, 9100))
	var bindErr, noZoneErr error
	var fine, notLo, noZone error
	doIn(t, ns, func() {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(zoned, 0).String())
		if bindErr = err; err != nil {
			return
		}
		ln.Close()
		fine, notLo = onLink.CheckHost(), onLo.CheckHost()
		// Without its zone a link-local address cannot be bound
		// (EINVAL, which a start exits 1 on, restarted, never fixed):
		// a config error naming the zoned address to give.
		if ln, err := net.Listen("tcp", netip.AddrPortFrom(ll, 0).String()); err == nil {
			ln.Close()
			noZoneErr = fmt.Errorf("%s without a zone bound", ll)
			return
		}
		noZone = noZoneCfg.CheckHost()
	})
	if bindErr != nil {
		t.Fatalf("%s, set up on the test's own link, cannot be bound: %v", zoned, bindErr)
	}
	if noZoneErr != nil {
		t.Fatal(noZoneErr)
	}
	if fine != nil {
		t.Errorf("metrics.listen %s, an address of %s: %v", zoned, ifname, fine)
	}
	want := fmt.Sprintf("h.yaml:15: metrics.listen: no address %s on lo (have: ", ll)
	if notLo == nil || !strings.Contains(notLo.Error(), want) {
		t.Errorf("metrics.listen %s, not an address of lo: %v, want %q", ll.WithZone("lo"), notLo, want)
	}
	want = fmt.Sprintf("h.yaml:15: metrics.listen: %s is link-local, which cannot be bound without its interface", ll)
	if noZone == nil || !strings.Contains(noZone.Error(), want) || !strings.Contains(noZone.Error(), netip.AddrPortFrom(zoned, 9100).String()) {
		t.Errorf("metrics.listen %s, link-local without a zone: %v, want %q naming %s", netip.AddrPortFrom(ll, 9100), noZone, want, netip.AddrPortFrom(zoned, 9100))
	}
}

// TestCheckHostListenPrivilegedPort: a metrics.listen port below
// net.ipv4.ip_unprivileged_port_start is a config error for a process
// without cap_net_bind_service (here a thread of this one without it), so
// that check and run both refuse it, file:line: metrics.listen, with the
// remedy; with the capability it is not. The check runs in a network
// namespace of the test's own, the sysctl its (1024 in a new one): the
// thread is switched into it first, then its cap_net_bind_service dropped
// (privilege.WithoutOnLockedThread) and put back before it switches back.
// The reverse, Do inside privilege.WithoutOnThread, checks on Do's own
// goroutine and thread, which kept the capability.
func TestCheckHostListenPrivilegedPort(t *testing.T) {
	ns := netlab.Namespace(t, "fhcfgport")
	var b []byte
	var err error
	doIn(t, ns, func() { b, err = os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start") })
	if err != nil {
		t.Skipf("net.ipv4.ip_unprivileged_port_start: %v", err)
	}
	start, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || start == 0 {
		t.Skipf("net.ipv4.ip_unprivileged_port_start %q: every port is unprivileged here", b)
	}
	// checkWithout is c.CheckHost on a thread in ns without
	// cap_net_bind_service.
	checkWithout := func(c *Config) (without, dropErr error) {
		doIn(t, ns, func() {
			dropErr = privilege.WithoutOnLockedThread(privilege.NetBindService, func() { without = c.CheckHost() })
		})
		return without, dropErr
	}
	c, err := Parse("h.yaml", []byte(hostEdit(t, "127.0.0.1:9100", fmt.Sprintf("127.0.0.1:%d", start-1))))
	if err != nil {
		t.Fatal(err)
	}
	without, err := checkWithout(c)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("h.yaml:15: metrics.listen: port %d is below net.ipv4.ip_unprivileged_port_start (%d) and this process lacks cap_net_bind_service: use a port of %d or above", start-1, start, start)
	if without == nil || !strings.Contains(without.Error(), want) {
		t.Errorf("without cap_net_bind_service: %v, want %q", without, want)
	}
	if eff, err := privilege.Effective(); err != nil || eff&privilege.NetBindService == 0 {
		return // the case with it needs it
	}
	if err := checkHostIn(t, ns, c); err != nil {
		t.Errorf("with cap_net_bind_service: %v", err)
	}
	high, err := Parse("h.yaml", []byte(hostEdit(t, "127.0.0.1:9100", fmt.Sprintf("127.0.0.1:%d", start))))
	if err != nil {
		t.Fatal(err)
	}
	if without, err := checkWithout(high); err != nil || without != nil {
		t.Errorf("port %d without cap_net_bind_service: %v %v", start, err, without)
	}
}

// TestCheckHostShardRings: sharded, each shard has a ring from the receive
// thread (65536 slots of 80 bytes, touched at start) besides its books,
// about 6 MiB a shard measured (a real start's resident set, 2 shards
// against run to completion). The fixed 64 MiB for the Go runtime counted
// them, so past about 6 shards the bound passed books the process could
// not hold with them. They are counted per shard.
func TestCheckHostShardRings(t *testing.T) {
	defer func(f func() (int64, string)) { hostMemory = f }(hostMemory)
	const shards = 16
	list := make([]string, shards)
	for i := range list {
		list[i] = strconv.Itoa(i)
	}
	c, err := Parse("h.yaml", []byte(hostFile+"book:\n  max_orders: 65536\ncores:\n  shards: ["+strings.Join(list, ", ")+"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	per, err := c.BookConfig().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	// What the bound counted before: the books and the rest, the rings
	// in its fixed reserve. A process with just that cannot hold the
	// rings too.
	before := shards*per + hostFileStart
	for _, tc := range []struct {
		name string
		have int64
		ok   bool
	}{
		{"room for all but the rings", before, false},
		{"room for all but one byte", before + shards*ShardBytes - 1, false},
		{"room for the rings too", before + shards*ShardBytes, true},
	} {
		hostMemory = func() (int64, string) { return tc.have, "cgroup test" }
		var errs []string
		c.checkBookMemory(func(path, format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) })
		want := fmt.Sprintf("shard rings and tables %d MiB (%d shards, %d MiB each)", shards*ShardBytes>>20, shards, ShardBytes>>20)
		switch {
		case tc.ok && len(errs) > 0:
			t.Errorf("%s (%d bytes): %v, want no error", tc.name, tc.have, errs)
		case !tc.ok && (len(errs) != 1 || !strings.Contains(errs[0], want)):
			t.Errorf("%s (%d bytes): %v, want the books refused, naming %q", tc.name, tc.have, errs, want)
		}
	}
}

// TestCheckHostCaptureRing: with capture.path set the capture's ring
// (capture.buffer rounded up to a power of two, 64 MiB by default, up to
// 1 GiB) is mapped and touched at start: a real start's resident set grew
// 64 MiB with the default. The bound left it out, so books that fit
// without it passed and the start failed or was killed once the ring was
// touched. It is counted when capture.path is set.
func TestCheckHostCaptureRing(t *testing.T) {
	defer func(f func() (int64, string)) { hostMemory = f }(hostMemory)
	c, err := Parse("h.yaml", []byte(hostFile+"capture:\n  path: /var/lib/feedhandler/feed.pcap\n  buffer: 600MiB\n"))
	if err != nil {
		t.Fatal(err)
	}
	books, err := c.BookConfig().Bytes()
	if err != nil {
		t.Fatal(err)
	}
	const ring = 1 << 30 // 600 MiB rounded up
	before := books + hostFileStart
	for _, tc := range []struct {
		name string
		have int64
		ok   bool
	}{
		{"room for all but the ring", before, false},
		{"one byte short", before + ring - 1, false},
		{"room for the ring too", before + ring, true},
	} {
		hostMemory = func() (int64, string) { return tc.have, "cgroup test" }
		var errs []string
		c.checkBookMemory(func(path, format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) })
		const want = "capture ring 1024 MiB"
		switch {
		case tc.ok && len(errs) > 0:
			t.Errorf("%s (%d bytes): %v, want no error", tc.name, tc.have, errs)
		case !tc.ok && (len(errs) != 1 || !strings.Contains(errs[0], want)):
			t.Errorf("%s (%d bytes): %v, want the books refused, naming %q", tc.name, tc.have, errs, want)
		}
	}
}

// TestCheckHostMemoryCommittedAtStart: the bound refuses books that, with
// what the rest of the process holds from its start, do not fit, and no
// longer counts what only grows under load as held at start: the socket
// buffers (receive.recv_buffer a line, filled only when the receive
// thread falls behind) and the held packets' arena (recovery.spill x
// 2 KiB, never touched at start, filled by a long recovery). Counting a
// full spill and full socket buffers, it refused the defaults under a
// 512 MiB cgroup (548 MiB counted under auto) where a real start holds
// about 430-450 MiB (VmRSS: 433 MiB socket, 442 uring, 451 auto on lo).
// What can grow past the limit is a warning (Config.Memory, logged at
// start and by check), naming each part.
func TestCheckHostMemoryCommittedAtStart(t *testing.T) {
	defer func(f func() (int64, string)) { hostMemory = f }(hostMemory)
	hostMemory = func() (int64, string) { return 512 << 20, "cgroup test" }
	ns := netlab.Namespace(t, "fhcfgstart")
	for _, backend := range []string{"socket", "uring", "auto"} {
		c, err := Parse("h.yaml", []byte(hostEdit(t, "backend: socket", "backend: "+backend)))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkHostIn(t, ns, c); err != nil {
			t.Errorf("backend %s, the defaults in a 512 MiB cgroup: %v, want them started", backend, err)
			continue
		}
		m := c.Memory()
		const growth = "socket buffers 32 MiB, held packets 64 MiB"
		if m.Fits() || !strings.Contains(m.Warning(), growth) {
			t.Errorf("backend %s, 512 MiB: warning %q, want one naming %q", backend, m.Warning(), growth)
		}
	}
}

// TestCheckHostRerequestBuffers: the re-request sockets (one a server, on
// every backend; two after a session change or sequence restart, the old
// one kept to drop late answers) fill their recovery.rerequest.recv_buffer
// with an answer the receive thread has not read yet. Memory counts them
// with what can grow under load: 2 servers x 2 sockets x 16 MiB (twice
// the buffer asked, socketHeld), 64 MiB, and a limit with room for the
// rest but not for them warns. Before, they were left out.
func TestCheckHostRerequestBuffers(t *testing.T) {
	defer func(f func() (int64, string)) { hostMemory = f }(hostMemory)
	without, err := Parse("h.yaml", []byte(hostFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("h.yaml", []byte(hostFile+"recovery:\n  rerequest:\n    servers: [10.1.1.1:26400, 10.1.1.2:26400]\n    recv_buffer: 8MiB\n"))
	if err != nil {
		t.Fatal(err)
	}
	before := without.Memory()
	hostMemory = func() (int64, string) { return before.Books + before.Start + before.Growth, "cgroup test" }
	m := c.Memory()
	const want = "re-request socket buffers 64 MiB (2 server(s), 2 sockets each after a restart, 16 MiB each)"
	if m.Growth-before.Growth != 64<<20 || !strings.Contains(m.GrowthParts, want) {
		t.Fatalf("growth %d MiB (%s), want 64 MiB more than without re-request (%d MiB), naming %q", m.Growth>>20, m.GrowthParts, before.Growth>>20, want)
	}
	if !without.Memory().Fits() || m.Fits() || !strings.Contains(m.Warning(), want) {
		t.Fatalf("with room for all but the re-request sockets' buffers: fits %v, warning %q; want a warning naming %q", m.Fits(), m.Warning(), want)
	}
}

// TestSocketHeldMeasured: a UDP socket asked a receive buffer of 1 MiB
// (SO_RCVBUFFORCE), in a network namespace of its own, flooded with 3000
// datagrams of 1400 bytes it does not read, holds about twice that
// (SO_MEMINFO's RMEM_ALLOC: the kernel's limit is twice the size asked).
// socketHeld, what Memory counts for each line socket and re-request
// socket, bounds it. Before, Memory counted the size asked: half of what
// a full socket holds.
func TestSocketHeldMeasured(t *testing.T) {
	lab := netlab.ForTest(t, netlab.Options{Prefix: "h178sh"})
	fd, addr := lab.BoundUDPSocket(t, lab.Dst)
	const asked = 1 << 20
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, asked); err != nil {
		t.Fatalf("SO_RCVBUFFORCE (needs cap_net_admin): %v", err)
	}
	payload := make([]byte, 1400)
	if err := <-netlab.SendPaced(lab.UDPSocket(t, lab.Src), addr, 3000, 100*time.Microsecond, func(int) []byte { return payload }); err != nil {
		t.Fatal(err)
	}
	var info skmem.Info
	if n := skmem.Read(fd, &info); n <= unix.SK_MEMINFO_DROPS {
		t.Fatalf("SO_MEMINFO: %d fields", n)
	}
	held, drops := int64(info[unix.SK_MEMINFO_RMEM_ALLOC]), info[unix.SK_MEMINFO_DROPS]
	if drops == 0 || held <= asked || held > socketHeld(asked) {
		t.Fatalf("a socket asked %d bytes, flooded (%d datagrams dropped: want some), holds %d: want above what was asked and at most socketHeld's %d",
			asked, drops, held, socketHeld(asked))
	}
}

// TestCheckHostSnapshotBuffer: with recovery.snapshot.server set, a
// snapshot's download buffer (up to glimpse.BufferBytes of the books'
// orders and locates: a snapshot of full books) grows under load, twice
// with capture.path (the capture's writer holds the last one while the
// next downloads). Memory left it out: a late join to full books on a
// host with room for the rest only was an out-of-memory kill without a
// warning.
func TestCheckHostSnapshotBuffer(t *testing.T) {
	defer func(f func() (int64, string)) { hostMemory = f }(hostMemory)
	t.Setenv("FH_TEST_GLIMPSE_PASSWORD", "secret")
	const snap = "recovery:\n  snapshot:\n    server: 10.1.1.1:26401\n    username: lab\n    password_env: FH_TEST_GLIMPSE_PASSWORD\n"
	const capt = "capture:\n  path: /var/lib/feedhandler/feed.pcap\n"
	for _, tc := range []struct {
		name, without, with string
		bufs                int64
	}{
		{"snapshot", hostFile, hostFile + snap, 1},
		{"snapshot and capture", hostFile + capt, hostFile + snap + capt, 2},
		{"snapshot, 2 shards", hostFile + "cores:\n  receive: 0\n  shards: [0, 1]\n", hostFile + snap + "cores:\n  receive: 0\n  shards: [0, 1]\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			without, err := Parse("h.yaml", []byte(tc.without))
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse("h.yaml", []byte(tc.with))
			if err != nil {
				t.Fatal(err)
			}
			bc := c.BookConfig()
			buf := glimpse.BufferBytes(int64(bc.MaxOrders)*int64(c.BookShards()), int64(bc.MaxLocates))
			if c.SnapshotBufferBytes() != buf || buf < int64(bc.MaxOrders)*int64(c.BookShards())*42 {
				t.Fatalf("SnapshotBufferBytes %d, glimpse.BufferBytes %d; want the same, at least 42 bytes an order of %d x %d", c.SnapshotBufferBytes(), buf, bc.MaxOrders, c.BookShards())
			}
			before := without.Memory()
			hostMemory = func() (int64, string) { return before.Books + before.Start + before.Growth, "cgroup test" }
			m := c.Memory()
			want := "snapshot download buffer " + mibs(buf)
			if m.Growth-before.Growth != tc.bufs*buf || !strings.Contains(m.GrowthParts, want) {
				t.Fatalf("growth %d MiB (%s), want %d x %d MiB more than without a snapshot server (%d MiB), naming %q", m.Growth>>20, m.GrowthParts, tc.bufs, buf>>20, before.Growth>>20, want)
			}
			if !without.Memory().Fits() || m.Fits() || !strings.Contains(m.Warning(), want) {
				t.Fatalf("with room for all but the snapshot's buffer: fits %v, warning %q; want a warning naming %q", m.Fits(), m.Warning(), want)
			}
		})
	}
}

// TestUserNotSwitched: not started as root, the handler cannot switch to
// the account user: names, and said nothing of it: it ran as another user
// than the file says. UserNotSwitched, which run logs at start and check
// warns of, says so at user:'s line, unless the process runs as that
// account already (a unit's User= as the file says) or is root.
func TestUserNotSwitched(t *testing.T) {
	for _, tc := range []struct{ user, want string }{
		{"root", `h.yaml:16: user: "root" (uid 0) not switched to: the handler switches user only when started as root, and this one runs as uid 65534 (nobody), so it stays that user`},
		{"0", `h.yaml:16: user: "0" (uid 0) not switched to`},
		{"fh-no-such-user-h262", `h.yaml:16: user: "fh-no-such-user-h262": no such user on this host, and not switched to anyway`},
		{"nobody", ""},
		{"65534", ""},
	} {
		c, err := Parse("h.yaml", []byte(hostFile+"user: "+tc.user+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.UserNotSwitched(); err != nil {
			t.Errorf("user: %s, as root: %v, want nil (root switches)", tc.user, err)
		}
		credtest.AsUser(t, 65534, 65534, func() {
			err := c.UserNotSwitched()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("user: %s, as nobody: %v, want nil (it runs as that user)", tc.user, err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Errorf("user: %s, as nobody: %v, want %q...", tc.user, err, tc.want)
			}
		})
	}
}
