package preflight

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/feed/config"
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
