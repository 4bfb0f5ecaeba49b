package preflight

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/book"
	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/internal/privilege"
	"github.com/marketfeed/feedhandler/proto/shm"
)

// Run checks the host against cfg, which config.Load has read and
// CheckHost has checked, and returns the findings in a fixed order.
func Run(cfg *config.Config, h Host) []Finding { return RunRefused(cfg, h, nil) }

// RunRefused is Run for a config that CheckHost (or config.LoadCheck)
// refused with refused, which is what feedhandler check does to report
// every problem in one run: each of refused's problems is a FAIL line
// first (topic "config", Finding.Config: run refuses it, exit 78), "file:line:
// field: what" as run prints it, and the checks then run, but for those
// of a field already refused, so that no problem is said twice (a
// metrics.listen port, a hot thread's core, the shm file).
func RunRefused(cfg *config.Config, h Host, refused error) []Finding {
	c := &checker{cfg: cfg, h: h, refused: map[string]bool{}}
	errs := unjoin(refused)
	// In the file's order (CheckHost's is its checks', then LoadCheck's);
	// the closing "... and N more problems", with no line, stays last.
	line := func(err error) int {
		if e := (*config.Error)(nil); errors.As(err, &e) && e.Line > 0 {
			return e.Line
		}
		return math.MaxInt
	}
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(line(a), line(b)) })
	for _, err := range errs {
		c.refuse("config", "%v", err)
		if e := (*config.Error)(nil); errors.As(err, &e) {
			c.refused[e.Field] = true
		}
	}
	c.eff, _ = privilege.Effective()
	c.cores()
	c.numa()
	c.irqs()
	c.realtime()
	c.pages()
	c.memory()
	c.backend()
	c.links()
	c.groups()
	c.sharedMemory()
	c.metrics()
	c.recovery()
	c.clock()
	c.account()
	return c.out
}

type checker struct {
	cfg *config.Config
	h   Host
	eff privilege.Caps
	out []Finding
	// refused: the fields RunRefused's errors name, whose checks say
	// nothing more.
	refused map[string]bool
}

// unjoin returns the errors err joins (errors.Join), or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func (c *checker) add(l Level, topic, format string, args ...any) {
	c.out = append(c.out, Finding{Level: l, Topic: topic, Msg: fmt.Sprintf(format, args...)})
}

// refuse adds a FAIL that run refuses as a config error (exit 78: no
// restart fixes it), Finding.Config.
func (c *checker) refuse(topic, format string, args ...any) {
	c.addOrRefuse(Fail, topic, format, args...)
}

// addOrRefuse adds a finding at l; a FAIL as refuse does.
func (c *checker) addOrRefuse(l Level, topic, format string, args ...any) {
	c.add(l, topic, format, args...)
	c.out[len(c.out)-1].Config = l == Fail
}

// xdp reports whether the config's backend may be AF_XDP.
func (c *checker) xdp() bool {
	b := c.cfg.Receive.Backend
	return b == rx.BackendAuto || b == rx.BackendXDP
}

// sockets reports whether the config's backend may be io_uring or plain
// sockets (auto falls back to them).
func (c *checker) sockets() bool { return c.cfg.Receive.Backend != rx.BackendXDP }

// orFallBack is the level of something the xdp backend cannot do without:
// a failure when the config asks for xdp, a warning under auto, which
// falls back to io_uring.
func (c *checker) orFallBack() (Level, string) {
	if c.cfg.Receive.Backend == rx.BackendXDP {
		return Fail, "backend xdp would not start"
	}
	return Warn, "backend auto would fall back to io_uring"
}

// interfaces lists the lines' interfaces, each once, in line order.
func (c *checker) interfaces() []string {
	var names []string
	for _, l := range c.cfg.Lines {
		if !slices.Contains(names, l.Interface) {
			names = append(names, l.Interface)
		}
	}
	return names
}

// links: each line's interface is up and has its link: a handler started
// on an interface left down (or a veth whose peer is down, a cable out)
// receives nothing, and before this said nothing about it either. A
// warning: a link may come up after the start, and the handler then
// receives.
func (c *checker) links() {
	for _, name := range c.interfaces() {
		flags, ok := c.h.read("/sys/class/net/" + name + "/flags")
		if !ok {
			continue
		}
		f, err := strconv.ParseUint(strings.TrimPrefix(flags, "0x"), 16, 32)
		if err != nil {
			continue
		}
		if f&unix.IFF_UP == 0 {
			c.add(Warn, "link", "%s is down: the handler receives nothing on it until it is up (ip link set dev %s up)", name, name)
			continue
		}
		if st, ok := c.h.read("/sys/class/net/" + name + "/operstate"); ok && (st == "down" || st == "lowerlayerdown") {
			c.add(Warn, "link", "%s is up but its link is not (operstate %s: no carrier; a cable, the switch port, or a veth's peer down): the handler receives nothing on it until it is", name, st)
		}
	}
}

// ssmRange is IPv4's source-specific multicast range (RFC 4607).
var ssmRange = netip.MustParsePrefix("232.0.0.0/8")

// groups: a line's group in the source-specific multicast range needs the
// line's source. Without it the handler joins any source (IGMPv3 EXCLUDE
// {}, or IGMPv2), which routers running PIM-SSM ignore for that range
// (RFC 4604, 4607): the line receives nothing that crosses a router.
func (c *checker) groups() {
	for _, l := range c.cfg.Lines {
		if ssmRange.Contains(l.Group) && !l.Source.IsValid() {
			field := "lines." + strings.ToLower(l.Name)
			c.add(Warn, "group", "%s.group %s is in 232.0.0.0/8, source-specific multicast (RFC 4607), and %s.source is not set: routers forward that range only to joins naming the source, so the line receives nothing from beyond this host's own network; set %s.source to the exchange's sender address", field, l.Group, field, field)
		}
	}
}

// thread is a pipeline thread and the core the config gives it.
type thread struct {
	field string
	cpu   int
}

// threads lists the hot threads: the receive thread, and the shard threads
// when the config shards.
func (c *checker) threads() []thread {
	ts := []thread{{"cores.receive", c.cfg.Cores.Receive}}
	if len(c.cfg.Cores.Shards) >= 2 {
		for i, cpu := range c.cfg.Cores.Shards {
			ts = append(ts, thread{fmt.Sprintf("cores.shards[%d]", i), cpu})
		}
	}
	return ts
}

// cores: each hot thread's core is isolated and tickless (docs/TUNING.md
// section 1), and one CPU is left for the Go runtime. A core this process
// may not run on, and one given to two hot threads, are config errors
// before (CheckHost, Parse: file:line: field, as run reports them).
func (c *checker) cores() {
	// isolcpus= (with its domain flag) lists its CPUs in isolated; cgroup
	// v2's isolated cpuset partitions list theirs in cpuset.cpus.isolated.
	isolated, _ := c.h.cpuList("/sys/devices/system/cpu/isolated")
	if isolated == nil {
		isolated = cpuSet{}
	}
	if part, ok := c.h.cpuList("/sys/fs/cgroup/cpuset.cpus.isolated"); ok {
		for cpu := range part {
			isolated[cpu] = true
		}
	}
	// Absent: a kernel built without NO_HZ_FULL, which cannot stop the tick.
	nohz, okNohz := c.h.cpuList("/sys/devices/system/cpu/nohz_full")
	seen := map[int]bool{}
	for _, t := range c.threads() {
		if c.refused[t.field] {
			continue // refused: not a CPU it may run on, or taken twice
		}
		if t.cpu == config.Unpinned {
			c.add(Warn, "cores", "%s is not set: the hot thread runs wherever the scheduler puts it, next to other tasks (docs/TUNING.md section 1)", t.field)
			continue
		}
		seen[t.cpu] = true
		switch {
		case isolated[t.cpu] && nohz[t.cpu]:
			c.add(OK, "cores", "%s: CPU %d is isolated and nohz_full", t.field, t.cpu)
		case isolated[t.cpu] && !okNohz:
			c.add(OK, "cores", "%s: CPU %d is isolated (this kernel has no nohz_full)", t.field, t.cpu)
		case isolated[t.cpu]:
			c.add(Warn, "cores", "%s: CPU %d is isolated but not nohz_full (nohz_full: %s): the scheduler tick still interrupts it (nohz_full= and rcu_nocbs= on the kernel command line, docs/TUNING.md section 1)",
				t.field, t.cpu, nohz)
		default:
			c.add(Warn, "cores", "%s: CPU %d is not isolated (isolated: %s): other tasks and kernel work share it (isolcpus= and nohz_full= on the kernel command line, docs/TUNING.md section 1)",
				t.field, t.cpu, isolated)
		}
	}
	var allowed unix.CPUSet
	if len(seen) == 0 || unix.SchedGetaffinity(0, &allowed) != nil {
		return
	}
	allowedSet := cpuSet{}
	for cpu := 0; cpu < 8*len(allowed); cpu++ {
		if allowed.IsSet(cpu) {
			allowedSet[cpu] = true
		}
	}
	if len(allowedSet) <= len(seen) {
		c.add(Warn, "cores", "this process may run on CPUs %s only, all of them hot threads': the Go runtime, the metrics server and the stats logger preempt them (leave one more CPU in CPUAffinity=)",
			allowedSet)
	}
}

// cpuNode is the NUMA node of a CPU, -1 when sysfs does not say.
func (h Host) cpuNode(cpu int) int {
	m, _ := filepath.Glob(h.path(fmt.Sprintf("/sys/devices/system/cpu/cpu%d/node*", cpu)))
	if len(m) != 1 {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(m[0]), "node"))
	if err != nil {
		return -1
	}
	return n
}

// numa: the receive core sits on the NUMA node of each line's NIC.
func (c *checker) numa() {
	cpu := c.cfg.Cores.Receive
	if cpu == config.Unpinned || c.refused["cores.receive"] {
		return
	}
	cpuNode := c.h.cpuNode(cpu)
	for _, ifname := range c.interfaces() {
		n, ok := c.h.readInt("/sys/class/net/" + ifname + "/device/numa_node")
		if !ok || n < 0 || cpuNode < 0 {
			continue // a virtual device, or a single-node host
		}
		if int(n) != cpuNode {
			c.add(Warn, "numa", "%s is on NUMA node %d but cores.receive (CPU %d) on node %d: every packet crosses the interconnect (pick a core of node %d, docs/TUNING.md section 1)",
				ifname, n, cpu, cpuNode, n)
		} else {
			c.add(OK, "numa", "%s and cores.receive (CPU %d) are on NUMA node %d", ifname, cpu, n)
		}
	}
}

// irq is one line of /proc/interrupts.
type irq struct {
	num  int
	name string // the last column: the device's name for the vector
}

// interrupts parses /proc/interrupts, numbered lines only.
func (h Host) interrupts() []irq {
	f, err := os.Open(h.path("/proc/interrupts"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []irq
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(fields[0], ":"))
		if err != nil {
			continue // the CPU header, NMI, LOC, ...
		}
		out = append(out, irq{num: n, name: fields[len(fields)-1]})
	}
	return out
}

// ifaceIRQ reports whether an interrupt's name is one of the interface's
// vectors by name: the interface's name alone or followed by a separator
// (ens1f0-TxRx-0), or after the driver's name (i40e-ens1f0-TxRx-0). The
// fallback of nicIRQs, for devices without msi_irqs.
func ifaceIRQ(name, ifname string) bool {
	for {
		i := strings.Index(name, ifname)
		if i < 0 {
			return false
		}
		rest := name[i+len(ifname):]
		if (i == 0 || name[i-1] == '-') && (rest == "" || rest[0] == '-' || rest[0] == '_' || rest[0] == '@') {
			return true
		}
		name = name[i+1:]
	}
}

// nicIRQs returns the interface's interrupts: its device's MSI vectors
// (/sys/class/net/IF/device/msi_irqs, whatever the driver names them:
// mlx5_comp0@pci:..., i40e-IF-TxRx-0), else the /proc/interrupts lines
// named after it. device is false for a virtual interface (no device).
func (c *checker) nicIRQs(ifname string, all []irq) (irqs []irq, device bool) {
	if _, err := os.Stat(c.h.path("/sys/class/net/" + ifname + "/device")); err != nil {
		return nil, false
	}
	names := map[int]string{}
	for _, q := range all {
		names[q.num] = q.name
	}
	m, _ := filepath.Glob(c.h.path("/sys/class/net/" + ifname + "/device/msi_irqs/*"))
	for _, p := range m {
		if n, err := strconv.Atoi(filepath.Base(p)); err == nil {
			irqs = append(irqs, irq{num: n, name: names[n]})
		}
	}
	if len(irqs) > 0 {
		return irqs, true
	}
	for _, q := range all {
		if ifaceIRQ(q.name, ifname) {
			irqs = append(irqs, q)
		}
	}
	return irqs, true
}

// irqs: the NIC's interrupts stay off the receive core unless busy
// polling, and irqbalance does not move them back (docs/TUNING.md
// section 2).
func (c *checker) irqs() {
	cpu := c.cfg.Cores.Receive
	if cpu == config.Unpinned || c.refused["cores.receive"] {
		return
	}
	all := c.h.interrupts()
	for _, ifname := range c.interfaces() {
		qs, device := c.nicIRQs(ifname, all)
		if !device {
			continue // a virtual device (veth, the lab) has no interrupts of its own
		}
		var nums, on []string
		for _, q := range qs {
			nums = append(nums, strconv.Itoa(q.num))
			aff, ok := c.h.cpuList(fmt.Sprintf("/proc/irq/%d/smp_affinity_list", q.num))
			if ok && aff[cpu] {
				on = append(on, fmt.Sprintf("%d (%s, CPUs %s)", q.num, q.name, aff))
			}
		}
		switch {
		case len(qs) == 0:
			c.add(Warn, "irq", "%s: no interrupts found (neither device/msi_irqs nor a /proc/interrupts line named after it): check by hand that none runs on cores.receive (CPU %d)", ifname, cpu)
		case len(on) > 0 && !c.cfg.Receive.BusyPoll:
			c.add(Warn, "irq", "%s: interrupt %s may run on cores.receive (CPU %d): route it to a core next to it (echo N > /proc/irq/IRQ/smp_affinity_list; drivers with kernel-managed affinity, such as mlx5, refuse that: give them fewer channels or isolcpus=managed_irq, docs/TUNING.md section 2)",
				ifname, strings.Join(on, ", "), cpu)
		default:
			c.add(OK, "irq", "%s: %d interrupt(s) (%s), none routed to cores.receive (CPU %d) or busy polling", ifname, len(qs), strings.Join(nums, " "), cpu)
		}
	}
	if pids := c.h.processes("irqbalance", -1); len(pids) > 0 {
		c.add(Warn, "irq", "irqbalance (pid %d) is running: it may move the NIC's interrupts onto the hot cores (stop it, or list them in IRQBALANCE_BANNED_CPUS, docs/TUNING.md section 2)", pids[0])
	}
}

// processes returns the pids of the processes other than this one whose
// command name is comm and, when uid is not -1, whose real uid is uid
// (/proc/PID/status).
func (h Host) processes(comm string, uid int) []int {
	var pids []int
	m, _ := filepath.Glob(h.path("/proc/[0-9]*/status"))
	for _, p := range m {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		b, err := os.ReadFile(p)
		if pid == os.Getpid() || err != nil || !strings.HasPrefix(string(b), "Name:\t"+comm+"\n") {
			continue
		}
		if uid >= 0 {
			_, v, _ := strings.Cut(string(b), "\nUid:\t")
			if f := strings.Fields(v); len(f) == 0 || f[0] != strconv.Itoa(uid) {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// realtime: cores.rt_priority can be had, and real-time throttling does
// not take the core away (docs/TUNING.md, "Real-time scheduling").
func (c *checker) realtime() {
	prio := c.cfg.Cores.RTPriority
	if prio == 0 {
		return
	}
	if err := probeFIFO(prio); err != nil {
		c.add(Fail, "realtime", "cores.rt_priority %d: %v: the hot threads would run under normal scheduling",
			prio, privilege.ExplainRealtime(err, prio))
	}
	if t := handler.RTThrottle(); t != "" {
		c.add(Warn, "realtime", "%s", t)
	} else {
		c.add(OK, "realtime", "cores.rt_priority %d: no real-time throttling", prio)
	}
}

// probeFIFO asks for SCHED_FIFO at prio on a thread of its own, which
// then exits: the answer a hot thread would get (capabilities, limits, a
// seccomp filter, real-time group scheduling), without changing the
// calling thread.
func probeFIFO(prio int) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		done <- unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(prio)}, 0)
	}()
	return <-done
}

// meminfo reads one field of /proc/meminfo, in the unit the file gives
// (kB for sizes, a count for HugePages_*).
func (h Host) meminfo(key string) (int64, bool) {
	s, ok := h.read("/proc/meminfo")
	if !ok {
		return 0, false
	}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// pages: book tables can have transparent huge pages, and the UMEM
// reserved huge pages (docs/TUNING.md section 4).
func (c *checker) pages() {
	if ok, mode := book.HugePages(); ok {
		c.add(OK, "pages", "book tables can have transparent huge pages (%s)", mode)
	} else {
		c.add(Warn, "pages", "book tables on 4 KiB pages (transparent_hugepage: %s): every order lookup may miss the TLB; set /sys/kernel/mm/transparent_hugepage/enabled to madvise (docs/TUNING.md section 4)", mode)
	}
	if !c.xdp() {
		return
	}
	need := c.umemBytes()
	pool, _ := c.h.meminfo("HugePages_Total")
	freeAll, ok1 := c.h.meminfo("HugePages_Free")
	rsvd, _ := c.h.meminfo("HugePages_Rsvd") // promised to mappings, not yet faulted in
	size, ok2 := c.h.meminfo("Hugepagesize")
	if !ok1 || !ok2 || size <= 0 {
		return
	}
	free := freeAll - rsvd
	// One UMEM per interface, each rounded up to whole huge pages
	// (xsk.NewUMEM).
	n := int64(len(c.interfaces()))
	page := size << 10
	want := n * ((need/n + page - 1) / page)
	if free < want {
		c.add(Warn, "pages", "the AF_XDP UMEMs (%s, %d interface(s)) need %d huge pages of %d kB and %d are free: they fall back to normal pages (echo %d > /proc/sys/vm/nr_hugepages, or more, docs/TUNING.md section 4)",
			mib(need), n, want, size, free, pool-free+want)
	} else {
		c.add(OK, "pages", "%d huge pages of %d kB free for the AF_XDP UMEMs (%s, %d page(s))", free, size, mib(need), want)
	}
}

// backend: the capabilities, locked memory, socket buffers and busy-poll
// settings the receive backend needs.
func (c *checker) backend() {
	r := c.cfg.Receive
	need := privilege.Required(r.Backend, r.BusyPoll)
	if missing := need &^ c.eff; missing != 0 {
		l, what := c.orFallBack()
		if r.BusyPoll && missing&privilege.NetAdmin != 0 {
			// Every backend sets SO_PREFER_BUSY_POLL, which needs
			// cap_net_admin; its EPERM is not a fallback.
			l, what = Fail, "busy polling would be refused (SO_PREFER_BUSY_POLL) and the start fails, on every backend"
		}
		c.addOrRefuse(l, "caps", "backend %s needs %s and this process (uid %d) lacks %s: %s (run as root, or under deploy/feedhandler@.service, which grants them: docs/OPERATIONS.md section 1)",
			r.Backend, need, os.Getuid(), missing, what)
	} else if need != 0 {
		c.add(OK, "caps", "backend %s: this process holds %s", r.Backend, need)
	}
	if c.xdp() {
		c.driver()
		c.memlock()
		c.xdpMeta()
		if !r.VerifyChecksums {
			c.add(Warn, "checksums", "receive.verify_checksums is false: the AF_XDP backend applies a corrupted datagram as it came, where the kernel would drop it (docs/TUNING.md section 6)")
		}
	}
	if c.sockets() {
		c.uringAllowed()
		c.uringMemlock()
		c.socketBuffer()
	}
	c.rerequestBuffer()
	c.reversePathFilter()
	if r.BusyPoll {
		for _, ifname := range c.interfaces() {
			defer_, ok1 := c.h.readInt("/sys/class/net/" + ifname + "/napi_defer_hard_irqs")
			flush, ok2 := c.h.readInt("/sys/class/net/" + ifname + "/gro_flush_timeout")
			if !ok1 || !ok2 {
				continue
			}
			if defer_ == 0 || flush == 0 {
				c.add(Warn, "busypoll", "%s: napi_defer_hard_irqs %d, gro_flush_timeout %d: the NIC still interrupts while the thread polls (echo 2 > /sys/class/net/%s/napi_defer_hard_irqs; echo 200000 > .../gro_flush_timeout, docs/TUNING.md section 3)",
					ifname, defer_, flush, ifname)
			} else {
				c.add(OK, "busypoll", "%s: napi_defer_hard_irqs %d, gro_flush_timeout %d ns", ifname, defer_, flush)
			}
		}
	}
}

// driver: what the driver of each device the xdp backend attaches to (a
// line's interface, or a VLAN device's lower device) reports it can do with
// XDP (the netdev netlink family, Linux 6.3+): native XDP with redirect,
// and AF_XDP zero-copy, against receive.xdp_mode and receive.zero_copy.
// Nothing is attached.
func (c *checker) driver() {
	r := c.cfg.Receive
	for _, dev := range c.xdpDevices() {
		ifname := dev.Name
		if progs := rx.XDPAttachedPrograms(dev.Index); progs != "" {
			// A FAIL, as for a live writer of the shm file: the start
			// fails (rx.ErrXDPInUse, exit 1), under auto too, which
			// does not fall back on it. Before, a warning: check
			// passed a start that failed. Only an auto that falls
			// back before it attaches (privileges, locked memory)
			// starts.
			l, what := Fail, "the start fails"
			if r.Backend == rx.BackendAuto && c.xdpFallsBack() {
				l, what = Warn, "backend auto falls back from AF_XDP before attaching here (the caps or memlock line says why)"
			}
			c.add(l, "xdp", "%s: %s is attached: the xdp backend cannot attach its steering program while it stays, and %s (another feed handler with AF_XDP on %s, this feed's own handler if it runs now, or a program a tool left: ip link set dev %s xdp off removes one no process holds)",
				ifname, progs, what, ifname, ifname)
		}
		f, err := xdpFeatures(dev.Index)
		if err != nil {
			if err != errNoNetdevFamily {
				c.add(Warn, "driver", "%s: XDP features not readable: %v", ifname, err)
			}
			continue
		}
		native := f&(xdpActBasic|xdpActRedirect) == xdpActBasic|xdpActRedirect
		zc := f&xdpActXSKZeroCopy != 0
		switch {
		case !native && r.XDPMode == "native":
			c.refuse("driver", "%s: the driver reports no native XDP redirect (xdp-features %#x) and receive.xdp_mode is native: the start fails", ifname, f)
		case !native && r.XDPMode != "generic":
			c.add(Warn, "driver", "%s: the driver reports no native XDP redirect (xdp-features %#x): the program attaches in generic (skb) mode, much slower (docs/TUNING.md section 6)", ifname, f)
		}
		switch {
		case !zc && r.ZeroCopy == "on":
			c.refuse("driver", "%s: the driver reports no AF_XDP zero-copy (xdp-features %#x) and receive.zero_copy is on: the start fails", ifname, f)
		case !zc && r.ZeroCopy != "off":
			c.add(Warn, "driver", "%s: the driver reports no AF_XDP zero-copy (xdp-features %#x): the sockets bind in copy mode, one kernel copy a packet (docs/TUNING.md section 6)", ifname, f)
		}
		if native && zc {
			c.add(OK, "driver", "%s: the driver reports native XDP redirect and AF_XDP zero-copy", ifname)
		} else if native && !zc && r.ZeroCopy == "off" {
			c.add(OK, "driver", "%s: the driver reports native XDP redirect", ifname)
		}
	}
}

// Tests replace these to play VLAN devices, which a kernel without
// CONFIG_VLAN_8021Q cannot make, and an io_uring refused.
var (
	resolveXDPDevice = rx.ResolveXDPDevice
	reversePath      = rx.CheckReversePath
	probeUring       = rx.ProbeUring
	vlanOffload      = rx.VLANOffload
)

// xdpDevices resolves the lines' interfaces to the devices the xdp backend
// attaches to (rx.ResolveXDPDevice), each once, and says what it finds of
// VLAN lines: a VLAN device it refuses (QinQ, 802.1ad), and a lower device
// with rx-vlan-offload on, whose driver may strip the tag before XDP sees
// it (docs/TUNING.md section 6).
func (c *checker) xdpDevices() []rx.XDPDevice {
	var devs []rx.XDPDevice
	vlans := map[string][]string{} // lower device: its VLAN lines' interfaces
	for _, ifname := range c.interfaces() {
		if _, err := net.InterfaceByName(ifname); err != nil {
			continue // CheckHost has said
		}
		dev, err := resolveXDPDevice(ifname)
		if errors.Is(err, rx.ErrNotSupported) {
			l, what := c.orFallBack()
			c.addOrRefuse(l, "vlan", "%v: %s", err, what)
			continue
		}
		if err != nil {
			c.add(Warn, "vlan", "%s: %v", ifname, err)
			continue
		}
		if dev.VLAN != 0 {
			vlans[dev.Name] = append(vlans[dev.Name], ifname)
		}
		if !slices.ContainsFunc(devs, func(d rx.XDPDevice) bool { return d.Index == dev.Index }) {
			dev.VLAN = 0
			devs = append(devs, dev)
		}
	}
	for _, dev := range devs {
		lines := vlans[dev.Name]
		if len(lines) == 0 {
			continue
		}
		on, err := vlanOffload(dev.Name)
		switch {
		case err != nil:
			c.add(Warn, "vlan", "%s (lower device of %s): rx-vlan-offload not readable: %v", dev.Name, strings.Join(lines, ", "), err)
		case on:
			c.add(Warn, "vlan", "%s (lower device of %s): rx-vlan-offload is on: a driver that strips the VLAN tag before XDP runs hides the VLAN from the steering program, and those lines receive nothing (their frames are counted in xdp_vlan_untagged); ethtool -K %s rxvlan off (docs/TUNING.md section 6)",
				dev.Name, strings.Join(lines, ", "), dev.Name)
		default:
			c.add(OK, "vlan", "%s (lower device of %s): rx-vlan-offload is off: VLAN tags reach the steering program", dev.Name, strings.Join(lines, ", "))
		}
	}
	return devs
}

// reversePathFilter: a line with a configured source the kernel would
// drop datagrams from on the line's interface (the reverse path filter,
// without a route back to the source through it) receives nothing under
// the socket backends, nor under AF_XDP's fallback sockets; AF_XDP takes
// its frames before the check (docs/OPERATIONS.md, "Reverse path
// filtering").
func (c *checker) reversePathFilter() {
	for _, err := range reversePath(c.cfg.RxConfig(zerolog.Nop()).Lines) {
		c.add(Warn, "rp_filter", "%v: the socket backends (and AF_XDP's fallback sockets) would receive nothing from it; AF_XDP takes it. Add a route to the source through the interface, or set its rp_filter to 2 (loose, with some route to the source) or 0, with net.ipv4.conf.all.rp_filter no higher: the larger of the two applies (docs/OPERATIONS.md, Reverse path filtering)", err)
	}
}

// xdpMeta: whether the steering program can put the kernel's receive time
// in front of each frame (some kernels refuse bpf_xdp_adjust_meta to XDP
// programs). Said only when the probe could tell: without the privilege to
// load a program, caps has said so already.
func (c *checker) xdpMeta() {
	switch err := bpf.ProbeMeta(); {
	case err == nil:
		c.add(OK, "xdp-meta", "XDP programs can reserve metadata: AF_XDP frames carry the time the steering program ran")
	case errors.Is(err, bpf.ErrNoMetaHelper):
		c.add(Warn, "xdp-meta", "%v: AF_XDP frames are stamped when read, not when they arrived, so a queue that was behind gets later stamps and the rx -> shm latency starts later (counted in xdp_no_meta; docs/OPERATIONS.md)", err)
	}
}

// umemBytes is what the xdp backend's UMEMs pin (rx.XDPLockedBytes).
func (c *checker) umemBytes() int64 { return rx.XDPLockedBytes(c.cfg.RxConfig(zerolog.Nop())) }

// memlock: the UMEMs fit under RLIMIT_MEMLOCK, which the kernel charges
// per user over all its processes, or the process holds cap_ipc_lock.
func (c *checker) memlock() {
	need := c.umemBytes()
	if c.eff&privilege.IPCLock != 0 {
		c.add(OK, "memlock", "the AF_XDP UMEMs pin %s; this process holds cap_ipc_lock, so no limit applies", mib(need))
		return
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return
	}
	if lim.Cur != unix.RLIM_INFINITY && int64(lim.Cur) < need {
		// Registering the UMEM fails with ENOBUFS, a limit of the host
		// as a missing capability is: xdp does not start (exit 78),
		// auto falls back to io_uring and logs why (rx.Open).
		l, what := c.orFallBack()
		c.addOrRefuse(l, "memlock", "the AF_XDP UMEMs pin %s (%d interface(s) x %d queue(s) x receive.ring_size frames of 4 KiB) and this process's RLIMIT_MEMLOCK is %s, without cap_ipc_lock: %s (raise it: LimitMEMLOCK= in the unit, ulimit -l; or grant cap_ipc_lock; docs/OPERATIONS.md)",
			mib(need), len(c.interfaces()), max(len(c.cfg.Receive.Queues), 1), mib(int64(lim.Cur)), what)
		return
	}
	if others := c.h.processes("feedhandler", os.Getuid()); len(others) > 0 && lim.Cur != unix.RLIM_INFINITY {
		c.add(Warn, "memlock", "the AF_XDP UMEMs pin %s, within RLIMIT_MEMLOCK %s, but the kernel charges locked memory per user, over all its processes, and this uid runs other feedhandler processes (pids %v): their UMEMs count too",
			mib(need), limit(lim.Cur), others)
		return
	}
	c.add(OK, "memlock", "the AF_XDP UMEMs pin %s, within RLIMIT_MEMLOCK %s (charged per user, over all its processes; no other feedhandler of this uid runs)", mib(need), limit(lim.Cur))
}

// xdpFallsBack reports whether auto's AF_XDP step would fall back here:
// the process lacks its capabilities, or cap_ipc_lock and a memlock limit
// above the UMEMs.
func (c *checker) xdpFallsBack() bool {
	if privilege.Required(rx.BackendXDP, false)&^c.eff != 0 {
		return true
	}
	var lim unix.Rlimit
	return c.eff&privilege.IPCLock == 0 && unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil &&
		lim.Cur != unix.RLIM_INFINITY && int64(lim.Cur) < c.umemBytes()
}

// uringAllowed: whether this process may create an io_uring, as the
// backend's start does first (rx.ProbeUring), and whether it may only by
// cap_sys_admin under kernel.io_uring_disabled 1, which the unit's user
// does not hold. Backend uring refused is config.CheckHost's (exit 78, as
// run); under auto it is a fallback to the sockets when AF_XDP falls back
// too. Before, check said nothing of either.
func (c *checker) uringAllowed() {
	b := c.cfg.Receive.Backend
	if b != rx.BackendAuto && b != rx.BackendUring {
		return
	}
	if err := probeUring(); errors.Is(err, rx.ErrNotSupported) {
		if b == rx.BackendAuto && c.xdpFallsBack() {
			c.add(Warn, "uring", "%v: backend auto, falling back from AF_XDP, would fall back to the sockets (recvmmsg) too, slower (docs/OPERATIONS.md section 1)", err)
		}
		return
	}
	mode, ok := c.h.readInt("/proc/sys/kernel/io_uring_disabled")
	if !ok || mode != 1 || c.eff&(1<<unix.CAP_SYS_ADMIN) == 0 {
		return
	}
	group, ok := c.h.readInt("/proc/sys/kernel/io_uring_group")
	if !ok {
		group = -1
	}
	if group >= 0 && privilege.InGroup(int(group)) {
		return
	}
	what := "backend uring would not start (exit 78)"
	if b == rx.BackendAuto {
		what = "backend auto would fall back to the sockets where AF_XDP falls back"
	}
	c.add(Warn, "uring", "kernel.io_uring_disabled is 1 (kernel.io_uring_group %d): this process may use io_uring only because it holds cap_sys_admin; a user without it, as under deploy/feedhandler@.service, may not, and there %s: put that user in the group (SupplementaryGroups= in the unit) or set kernel.io_uring_disabled to 0, and run check as the service runs",
		group, what)
}

// uringMemlock: io_uring's rings fit under RLIMIT_MEMLOCK, which the kernel
// charges them to without cap_ipc_lock (rx.UringLockedBytes): a limit below
// them stops backend uring (exit 78) and makes auto, when its AF_XDP step
// falls back too, go on to the sockets. Before, check said nothing of it,
// and a start it passed exited 78.
func (c *checker) uringMemlock() {
	if c.eff&privilege.IPCLock != 0 {
		return
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return
	}
	rxc := c.cfg.RxConfig(zerolog.Nop())
	need := rx.UringLockedBytes(rxc)
	auto := c.cfg.Receive.Backend == rx.BackendAuto
	if int64(lim.Cur) >= need {
		if !auto {
			c.add(OK, "memlock", "the io_uring rings pin %s, within RLIMIT_MEMLOCK %s", kib(need), kib(int64(lim.Cur)))
		}
		return
	}
	l, what := Fail, "backend uring would not start"
	if auto {
		if !c.xdpFallsBack() {
			return // auto opens AF_XDP
		}
		l, what = Warn, "backend auto, falling back from AF_XDP, would fall back to the sockets (recvmmsg) too"
	}
	c.addOrRefuse(l, "memlock", "the io_uring rings pin %s (%d buffers, receive.ring_size) and this process's RLIMIT_MEMLOCK is %s, without cap_ipc_lock: %s (raise it: LimitMEMLOCK= in the unit, ulimit -l; or grant cap_ipc_lock; docs/OPERATIONS.md)",
		kib(need), rx.UringBuffers(rxc), kib(int64(lim.Cur)), what)
}

func kib(n int64) string { return fmt.Sprintf("%d KiB", n>>10) }

func limit(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return mib(int64(v))
}

// memory: what the process holds from its start and what can grow under
// load, against the memory it can have (config.Memory). CheckHost has
// refused what does not fit at start; what fits only until the socket
// buffers and the held packets fill is a warning.
func (c *checker) memory() {
	m := c.cfg.Memory()
	switch {
	case m.Err != nil || m.Have <= 0:
		return
	case !m.Fits():
		c.add(Warn, "memory", "%s", m.Warning())
	default:
		c.add(OK, "memory", "%s", m)
	}
}

// socketBuffer: receive.recv_buffer is granted: below net.core.rmem_max,
// or with cap_net_admin for SO_RCVBUFFORCE (docs/TUNING.md section 7).
func (c *checker) socketBuffer() {
	want := int64(c.cfg.Receive.RecvBuffer)
	rmemMax, capped := c.bufferCapped("receive.recv_buffer", want)
	if !capped {
		return
	}
	c.add(Warn, "buffers", "receive.recv_buffer %s is above net.core.rmem_max %s and this process lacks cap_net_admin: the io_uring and socket backends get %s (sysctl -w net.core.rmem_max=%d, docs/TUNING.md section 7)",
		mib(want), mib(rmemMax), mib(rmemMax), want)
}

// bufferCapped reports whether a socket receive buffer of want bytes (the
// feed file's key) is capped by net.core.rmem_max, returned: above it
// without cap_net_admin (SO_RCVBUFFORCE). Above it with cap_net_admin is
// said to be fine here; below it, nothing is said.
func (c *checker) bufferCapped(key string, want int64) (rmemMax int64, capped bool) {
	rmemMax, ok := c.h.readInt("/proc/sys/net/core/rmem_max")
	if !ok || want <= rmemMax {
		return rmemMax, false
	}
	if c.eff&privilege.NetAdmin != 0 {
		c.add(OK, "buffers", "%s %s is above net.core.rmem_max %s; this process holds cap_net_admin (SO_RCVBUFFORCE)", key, mib(want), mib(rmemMax))
		return rmemMax, false
	}
	return rmemMax, true
}

// rerequestBuffer: recovery.rerequest.recv_buffer is granted to the
// re-request sockets (ordinary UDP sockets on every backend): below
// net.core.rmem_max, or with cap_net_admin for SO_RCVBUFFORCE. Else the
// buffer is rmem_max, and a request asks for the fewer messages whose
// answer, a packet per message, fits it (rerequest.AnswerMessages).
func (c *checker) rerequestBuffer() {
	rr := c.cfg.Recovery.Rerequest
	if len(rr.Servers) == 0 {
		return
	}
	want := int64(rr.RecvBuffer)
	rmemMax, capped := c.bufferCapped("recovery.rerequest.recv_buffer", want)
	if !capped {
		return
	}
	got := min(rerequest.AnswerMessages(int(rmemMax)), rr.MaxRequestMessages)
	c.add(Warn, "buffers", "recovery.rerequest.recv_buffer %s is above net.core.rmem_max %s and this process lacks cap_net_admin: the re-request sockets get %s, so a request asks at most %d messages (max_request_messages %d) and a large gap takes more requests in turn (sysctl -w net.core.rmem_max=%d, or run with cap_net_admin: deploy/feedhandler@.service grants it; docs/RECOVERY.md)",
		mib(want), mib(rmemMax), mib(rmemMax), got, rr.MaxRequestMessages, want)
}

// sharedMemory: no live writer owns the feed file, and /dev/shm has room
// for a new one next to the old. What no restart fixes (a directory this
// process may not write, a directory or another user's file at the name,
// an shm.group it may not give the file to) config.CheckHost refuses
// before, exit 78 as run does; these two a restart may find gone, exit 1
// for both.
func (c *checker) sharedMemory() {
	if c.refused["shm.name"] {
		return
	}
	s := c.cfg.SHM
	path := shm.Path(s.Name)
	fails := len(c.out)
	if err := shm.CheckOwner(path); err != nil {
		c.add(Fail, "shm", "%s: %v: a second handler with this config would not start", path, err)
	}
	size := shm.FileSize(shm.Config{Instruments: s.Slots, Depth: c.cfg.Book.Depth})
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(path), &st); err != nil {
		c.add(Fail, "shm", "%s: %v", filepath.Dir(path), err)
		return
	}
	free := int64(st.Bavail) * st.Bsize
	if free < size {
		c.add(Fail, "shm", "%s has %s free and the feed file needs %s (built next to the old one, then renamed over it): raise the tmpfs size or lower shm.slots or book.depth",
			filepath.Dir(path), mib(free), mib(size))
		return
	}
	if len(c.out) == fails {
		c.add(OK, "shm", "%s: %s (shm.slots %d, book.depth %d); %s free in %s", path, mib(size), s.Slots, c.cfg.Book.Depth, mib(free), filepath.Dir(path))
	}
}

// metrics: metrics.listen can be bound now.
func (c *checker) metrics() {
	addr := c.cfg.Metrics.Listen
	if addr == "" || c.refused["metrics.listen"] {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, unix.EADDRNOTAVAIL) {
		// A literal address, with a zone or not (CheckHost has
		// refused a wrong zone):
		// run binds it with IP_FREEBIND and warns, unless its
		// duplicate address detection failed.
		if host, _, serr := net.SplitHostPort(addr); serr == nil {
			if ip, perr := netip.ParseAddr(host); perr == nil {
				if DADFailed(ip) {
					// run refuses it (exit 78): IP_FREEBIND
					// binds it, but it never answers.
					c.refuse("metrics", "metrics.listen %s: %v: duplicate address detection failed for it (`ip -6 addr` says dadfailed): another host on its link has this address, which no restart fixes; resolve the conflict and add the address again", addr, err)
					return
				}
				// As run binds it: the port may be taken (or
				// privileged) all the same.
				fln, ferr := ListenFreeBind(addr)
				if errors.Is(ferr, unix.EACCES) || errors.Is(ferr, unix.EPERM) {
					c.refuse("metrics", "metrics.listen %s: %v", addr, config.ListenRefused(addr, ferr))
					return
				}
				if errors.Is(ferr, unix.EADDRINUSE) {
					c.add(Fail, "metrics", "metrics.listen %s: %v", addr, ferr)
					return
				}
				if fln != nil {
					fln.Close()
				}
				c.add(Warn, "metrics", "metrics.listen %s: %v: not an address this host can bind yet; run binds it with IP_FREEBIND and answers once it is up (mistyped, it never answers)", addr, err)
				return
			}
		}
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		// config.CheckHost refuses it first, unless it changed since.
		c.refuse("metrics", "metrics.listen %s: %v", addr, config.ListenRefused(addr, err))
		return
	}
	if err != nil {
		c.add(Fail, "metrics", "metrics.listen %s: %v", addr, err)
		return
	}
	ln.Close()
	c.add(OK, "metrics", "metrics.listen %s is free", addr)
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip, perr := netip.ParseAddr(host); host == "" || perr == nil && ip.IsUnspecified() {
			c.add(Warn, "metrics", "metrics.listen %s binds every address of the host: /metrics, /healthz and /readyz have no authentication, so whoever reaches any of them reads the feed's state; bind the monitoring network's address or 127.0.0.1 (docs/OPERATIONS.md section 5)", addr)
		}
	}
}

// recovery: something can repair a gap lost on both lines, and the
// snapshot server's name resolves. Nothing is sent to either.
func (c *checker) recovery() {
	r := c.cfg.Recovery
	if len(r.Rerequest.Servers) == 0 && r.Snapshot.Server == "" {
		c.add(Warn, "recovery", "no recovery.rerequest servers and no recovery.snapshot server: a packet lost on both lines is never repaired, and its instruments' books stay stale (docs/RECOVERY.md)")
	} else if len(r.Rerequest.Servers) == 0 {
		c.add(Warn, "recovery", "no recovery.rerequest servers: every gap waits for a GLIMPSE snapshot (docs/RECOVERY.md)")
	}
	if r.Snapshot.Server == "" {
		return
	}
	host, _, err := net.SplitHostPort(r.Snapshot.Server)
	if err != nil {
		return // Load has checked the shape
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if addrs, err := net.DefaultResolver.LookupHost(ctx, host); err != nil {
		c.add(Warn, "recovery", "recovery.snapshot.server %s: %v: a snapshot could not be fetched", r.Snapshot.Server, err)
	} else {
		c.add(OK, "recovery", "recovery.snapshot.server %s resolves to %s (not contacted)", r.Snapshot.Server, strings.Join(addrs, ", "))
	}
}

// clock: the hot path reads the TSC (docs/TUNING.md, "Clock reads on the
// hot path").
func (c *checker) clock() {
	name, reason := clock.Source()
	kernel, _ := clock.KernelClocksource()
	if name == "tsc" {
		c.add(OK, "clock", "hot-path clock: %s (%s); kernel clocksource %s", name, reason, kernel)
		return
	}
	c.add(Warn, "clock", "hot-path clock: %s (%s); kernel clocksource %s: each reading costs about 20 ns more than the TSC's", name, reason, kernel)
}

// account: a root start names a user to switch to. A user that does not
// exist CheckHost refuses when this process is root (file:line: user).
// Not root, the handler does not switch: a user: naming another account
// than this process's (or none of this host) is a warning at its line, as
// run logs it at start (config.UserNotSwitched).
func (c *checker) account() {
	switch {
	case c.cfg.User != "" && os.Geteuid() != 0:
		if err := c.cfg.UserNotSwitched(); err != nil {
			c.add(Warn, "user", "%v", err)
		}
	case c.cfg.User == "" && os.Geteuid() == 0:
		c.add(Warn, "user", "user: is unset: started as root, the handler stays root after setup (docs/OPERATIONS.md section 1)")
	}
}
