package preflight

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/bpf"
	"github.com/marketfeed/feedhandler/feed/rerequest"
	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/privilege"
)

// This file holds the checks of the receive backend: the capabilities,
// locked memory, driver features and VLAN devices AF_XDP needs, whether
// io_uring is allowed and its rings fit, the socket buffers, and the
// reverse path filter.

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
