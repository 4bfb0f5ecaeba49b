// Package netlab builds a two-host network lab out of network namespaces and
// a veth pair, for tests, benchmarks and the demo. Traffic stays inside the
// namespaces the lab created; Close removes them.
//
//	lab, err := netlab.New(netlab.Options{})
//	defer lab.Close()
//	err = lab.Do(lab.Dst, func() error { ... open sockets, attach XDP ... })
//
// Sockets and links opened inside Do belong to that namespace for their whole
// life, so a receiver may be opened in Do and used from any goroutine.
package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/marketfeed/feedhandler/internal/leftover"
)

// Options shape the lab. Zero values pick the defaults shown.
type Options struct {
	Prefix   string // name prefix (default "fh"); names get pid and a counter appended
	RxQueues int    // rx and tx queues of the veth (default 1)
	MTU      int    // veth MTU (default 1500; keep <= 3506 for native XDP)
	Threaded bool   // threaded NAPI + GRO on the receiver, TSO off on the sender (see kernel-lab.md)
	SrcAddr  string // default 10.99.0.1/24
	DstAddr  string // default 10.99.0.2/24
}

// Lab is one sender namespace and one receiver namespace joined by a veth pair.
type Lab struct {
	Src, Dst     string     // namespace names
	SrcIf, DstIf string     // interface names (SrcIf in Src, DstIf in Dst)
	SrcIP, DstIP netip.Addr // addresses of the two ends

	opts   Options
	closed atomic.Bool
}

var counter atomic.Uint32

// ErrNotSupported is returned when namespaces cannot be created here
// (no privileges or no iproute2).
var ErrNotSupported = errors.New("network namespaces not supported")

// New creates the lab. The caller must Close it.
func New(o Options) (*Lab, error) {
	if o.Prefix == "" {
		o.Prefix = "fh"
	}
	if o.RxQueues <= 0 {
		o.RxQueues = 1
	}
	if o.MTU <= 0 {
		o.MTU = 1500
	}
	if o.SrcAddr == "" {
		o.SrcAddr = "10.99.0.1/24"
	}
	if o.DstAddr == "" {
		o.DstAddr = "10.99.0.2/24"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("netlab: iproute2 'ip' not found: %w", ErrNotSupported)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("netlab: need root (CAP_NET_ADMIN) for namespaces: %w", ErrNotSupported)
	}
	sweep()
	n := counter.Add(1)
	// The interfaces live in the namespaces: their names, cut to 15
	// bytes, need be unique in this lab only.
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, n)
	l := &Lab{SrcIf: trim15(o.Prefix + "a" + id), DstIf: trim15(o.Prefix + "b" + id)}
	l.Src, l.Dst = namespaceNames(o.Prefix, os.Getpid(), n)
	srcPfx, err := netip.ParsePrefix(o.SrcAddr)
	if err != nil {
		return nil, fmt.Errorf("netlab: source address %q: %w", o.SrcAddr, err)
	}
	dstPfx, err := netip.ParsePrefix(o.DstAddr)
	if err != nil {
		return nil, fmt.Errorf("netlab: destination address %q: %w", o.DstAddr, err)
	}
	l.SrcIP, l.DstIP = srcPfx.Addr(), dstPfx.Addr()
	l.opts = o
	for i, s := range [][]string{
		{"netns", "add", l.Src},
		{"netns", "add", l.Dst},
		{"-n", l.Src, "link", "set", "lo", "up"},
		{"-n", l.Dst, "link", "set", "lo", "up"},
	} {
		if err := ip(s...); err != nil {
			l.Close()
			return nil, err
		}
		if i < 2 {
			own(s[2])
		}
	}
	if err := l.makePair(); err != nil {
		l.Close()
		return nil, err
	}
	if o.Threaded {
		if err := l.threaded(); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// makePair creates the veth pair SrcIf-DstIf between the namespaces as
// l.opts says: addresses, MTU, queues, up, routes to the multicast range.
func (l *Lab) makePair() error {
	o := l.opts
	q := fmt.Sprint(o.RxQueues)
	for _, s := range [][]string{
		{"-n", l.Src, "link", "add", l.SrcIf, "numtxqueues", q, "numrxqueues", q, "type", "veth",
			"peer", "name", l.DstIf, "netns", l.Dst, "numtxqueues", q, "numrxqueues", q},
		{"-n", l.Src, "link", "set", l.SrcIf, "mtu", fmt.Sprint(o.MTU)},
		{"-n", l.Dst, "link", "set", l.DstIf, "mtu", fmt.Sprint(o.MTU)},
		{"-n", l.Src, "addr", "add", o.SrcAddr, "dev", l.SrcIf},
		{"-n", l.Dst, "addr", "add", o.DstAddr, "dev", l.DstIf},
		{"-n", l.Src, "link", "set", l.SrcIf, "up"},
		{"-n", l.Dst, "link", "set", l.DstIf, "up"},
		{"-n", l.Src, "route", "add", "224.0.0.0/4", "dev", l.SrcIf},
		{"-n", l.Dst, "route", "add", "224.0.0.0/4", "dev", l.DstIf},
	} {
		if err := ip(s...); err != nil {
			return err
		}
	}
	if err := waitActive(l.Src, l.SrcIf); err != nil {
		return err
	}
	// Checksums computed by the sender's stack, as frames from a wire
	// carry them: with tx checksum offload on (a veth's default) the
	// kernel leaves the UDP checksum partial (the pseudo-header's sum
	// only), and the peer's AF_XDP socket, which gets frames as they
	// came, would see every datagram fail (rx.Config.NoChecksums).
	if out, err := exec.Command("ip", "netns", "exec", l.Src, "ethtool", "-K", l.SrcIf, "tx", "off").CombinedOutput(); err != nil {
		return fmt.Errorf("netlab: ethtool -K %s tx off: %v: %s", l.SrcIf, err, out)
	}
	return nil
}

// DeletePair deletes the veth pair (both ends): the devices are gone, as
// when a driver is unloaded.
func (l *Lab) DeletePair() error {
	return ip("-n", l.Src, "link", "del", l.SrcIf)
}

// Recreate creates the veth pair again under the same names, as New made
// it, deleting it first if it is still there: new devices (new
// ifindexes), as a driver reload or a re-created virtual interface gives.
// Threaded NAPI is not set again.
func (l *Lab) Recreate() error {
	if ip("-n", l.Src, "link", "show", l.SrcIf) == nil {
		if err := l.DeletePair(); err != nil {
			return err
		}
	}
	return l.makePair()
}

func (l *Lab) threaded() error {
	cmds := [][]string{
		{"ip", "netns", "exec", l.Dst, "ethtool", "-K", l.DstIf, "gro", "on"},
		{"ip", "netns", "exec", l.Src, "ethtool", "-K", l.SrcIf, "tso", "off"},
		{"ip", "netns", "exec", l.Dst, "sh", "-c", "echo 1 > /sys/class/net/" + l.DstIf + "/threaded"},
	}
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("netlab: %s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	return nil
}

// AddPair joins the lab's namespaces with a second veth pair, srcAddr on
// its sender's end and dstAddr on its receiver's (prefixes such as
// "10.98.0.1/24"), both up, and returns the two ends' names: a second
// link, so that two lines can take separate paths (one flapping while the
// other carries the feed). Multicast leaves the sender by the routing
// table unless a socket names its interface: route a group to it with
// Exec(Src, "ip", "route", "add", GROUP+"/32", "dev", srcIf). Close
// removes it with the namespaces.
func (l *Lab) AddPair(srcAddr, dstAddr string) (srcIf, dstIf string, err error) {
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, counter.Add(1))
	srcIf, dstIf = trim15(l.SrcIf[:1]+"c"+id), trim15(l.SrcIf[:1]+"e"+id)
	steps := [][]string{
		{"-n", l.Src, "link", "add", srcIf, "type", "veth", "peer", "name", dstIf, "netns", l.Dst},
		{"-n", l.Src, "addr", "add", srcAddr, "dev", srcIf},
		{"-n", l.Dst, "addr", "add", dstAddr, "dev", dstIf},
		{"-n", l.Src, "link", "set", srcIf, "up"},
		{"-n", l.Dst, "link", "set", dstIf, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return "", "", err
		}
	}
	if err := waitActive(l.Src, srcIf); err != nil {
		return "", "", err
	}
	// Full checksums from the sender, as in New.
	if out, err := exec.Command("ip", "netns", "exec", l.Src, "ethtool", "-K", srcIf, "tx", "off").CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("netlab: ethtool -K %s tx off: %v: %s", srcIf, err, out)
	}
	return srcIf, dstIf, nil
}

// SetLink sets interface dev of namespace ns administratively up or down
// (`ip link set DEV up|down`): a link flap as the host sees one.
func (l *Lab) SetLink(ns, dev string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return ip("-n", ns, "link", "set", dev, state)
}

// waitActive waits, at most 5 s, until dev of namespace ns, set up with
// its peer, sends:
// its carrier on and its qdisc no longer noop. Both are the kernel's
// linkwatch work, run after `ip link set up` returns; until then a frame
// sent is dropped by the noop qdisc and the sender is not told (a UDP
// write succeeds). Under load the work is late: rxbench's test once sent
// 6,007 datagrams and the receiver got none.
func waitActive(ns, dev string) error {
	var out []byte
	for deadline := time.Now().Add(5 * time.Second); ; {
		var err error
		out, err = exec.Command("ip", "-n", ns, "-o", "link", "show", "dev", dev).CombinedOutput()
		if err != nil {
			return fmt.Errorf("netlab: ip -n %s link show dev %s: %v: %s", ns, dev, err, out)
		}
		if !bytes.Contains(out, []byte(" qdisc noop ")) && !bytes.Contains(out, []byte("NO-CARRIER")) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netlab: %s in %s not sending 5 s after it was set up: %s", dev, ns, bytes.TrimSpace(out))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SetMTU sets the MTU of the receiving end, DstIf.
func (l *Lab) SetMTU(mtu int) error {
	return ip("-n", l.Dst, "link", "set", l.DstIf, "mtu", strconv.Itoa(mtu))
}

// NAPIThreads returns the pids of the receiver's threaded NAPI kthreads
// (napi/<DstIf>-*), so a caller can pin them with sched_setaffinity.
func (l *Lab) NAPIThreads() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		if strings.HasPrefix(string(comm), "napi/"+l.DstIf+"-") {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Do runs fn on an OS thread switched into namespace ns, then switches back.
// fn must not start goroutines that expect to be in ns.
func (l *Lab) Do(ns string, fn func() error) error {
	return Do(ns, fn)
}

// Do runs fn on an OS thread switched into the named network namespace.
// The thread goes back to the runtime's pool when Do fails before the
// switch (opening either namespace, or the setns itself, which changes
// nothing when it fails) and when it switched back; only a thread whose
// switch back failed, left in ns, ends with the goroutine.
func Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		stuck, err := switched(ns, fn)
		if !stuck {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// switched runs fn on the calling thread, locked to it, switched into ns,
// and switches it back. stuck is true when the switch back failed: the
// thread may be left in ns. Any other error leaves the thread's namespace
// as it was.
func switched(ns string, fn func() error) (stuck bool, err error) {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return false, fmt.Errorf("netlab: open current netns: %w", err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return false, fmt.Errorf("netlab: open netns %s: %w", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return false, fmt.Errorf("netlab: setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("netlab: setns back from %s: %w", ns, err)
	}
	return false, ferr
}

// Exec runs a command inside namespace ns and returns its combined output.
func (l *Lab) Exec(ns string, name string, args ...string) ([]byte, error) {
	a := append([]string{"netns", "exec", ns, name}, args...)
	out, err := exec.Command("ip", a...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netlab: ip %s: %v: %s", strings.Join(a, " "), err, out)
	}
	return out, nil
}

// Close deletes both namespaces (and with them the veth pair). It is safe to
// call more than once.
func (l *Lab) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, ns := range []string{l.Src, l.Dst} {
		if ns == "" {
			continue
		}
		if _, err := os.Stat("/run/netns/" + ns); err != nil {
			continue
		}
		if err := ip("netns", "del", ns); err != nil {
			errs = append(errs, err)
			continue
		}
		os.Remove(filepath.Join(ownerDir, ns))
	}
	return errors.Join(errs...)
}

// ownerDir records which process made each lab namespace, so that a lab
// left behind by a process that was killed is removed by the next New.
const ownerDir = "/run/fhnetlab"

func own(ns string) {
	if os.MkdirAll(ownerDir, 0o755) == nil {
		os.WriteFile(filepath.Join(ownerDir, ns), []byte(leftover.Self().String()), 0o644)
	}
}

// sweep deletes lab namespaces whose owner process is gone (leftover.Gone:
// no process has its pid, a zombie, or one started at another tick than
// the record's, a reused pid; a record of the pid alone, written before
// the start was recorded, is checked by the pid). A process in a pid
// namespace of its own (leftover.HostPids false) sees other pids, where
// every owner would look gone, and deletes nothing.
func sweep() {
	if !leftover.HostPids() {
		return
	}
	ents, err := os.ReadDir(ownerDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(ownerDir, e.Name()))
		if err != nil {
			continue
		}
		o, rest, ok := leftover.ParseOwner(strings.TrimSpace(string(b)))
		if !ok || rest != "" {
			continue
		}
		if leftover.Gone(o) {
			if _, err := os.Stat("/run/netns/" + e.Name()); err == nil {
				ip("netns", "del", e.Name())
			}
			os.Remove(filepath.Join(ownerDir, e.Name()))
		}
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// namespaceNames are the names of lab n of process pid's namespaces.
// They are the host's, shared with every other process: the whole pid
// and the counter stand apart in them. Run together (pid%100000, then n),
// pid 1234's lab 56 and pid 12345's lab 6 had the same names, and the
// second process's 'ip netns add' failed.
func namespaceNames(prefix string, pid int, n uint32) (src, dst string) {
	return fmt.Sprintf("%ss%d-%d", prefix, pid, n), fmt.Sprintf("%sd%d-%d", prefix, pid, n)
}

func trim15(s string) string {
	if len(s) > 15 {
		return s[:15]
	}
	return s
}
