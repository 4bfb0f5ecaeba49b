package preflight

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/config"
	"github.com/marketfeed/feedhandler/feed/handler"
	"github.com/marketfeed/feedhandler/internal/privilege"
)

// This file holds the checks of the hot threads' CPUs: their cores
// (isolated and tickless), NUMA node, the interrupts on them, and real-time
// scheduling.

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
