package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by errors caused by a kernel, driver or
// privilege level that cannot run the program (EPERM, EOPNOTSUPP, ...).
var ErrNotSupported = errors.New("xdp not supported")

// MaxQueues is the number of receive queues the XSKMAP can hold.
const MaxQueues = 64

// MaxLines is the number of lines the lines map can hold: (group, port)
// pairs, each on the interface or on one VLAN. A group and port used only
// by VLAN lines takes one more entry.
const MaxLines = 256

// MaxVLAN is the highest 802.1Q VLAN ID a line can be on (4095 is
// reserved, 0 means no VLAN: priority tagging).
const MaxVLAN = 4094

// lineVLANOnly is line_val.line of a group and port that only VLAN lines
// use (LINE_VLAN_ONLY in steer.c).
const lineVLANOnly = 0xffffffff

// Mode is the XDP attach mode.
type Mode int

const (
	// ModeNative runs the program in the driver (XDP_FLAGS_DRV_MODE).
	ModeNative Mode = iota
	// ModeGeneric runs the program on the skb path (XDP_FLAGS_SKB_MODE),
	// available on every interface but slower.
	ModeGeneric
)

func (m Mode) String() string {
	switch m {
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Counters are the program's per-CPU counters summed over all CPUs.
type Counters struct {
	Redirected uint64 // line frames handed to an AF_XDP socket
	Passed     uint64 // frames of no feed line, given to the kernel
	Malformed  uint64 // frames with bad Ethernet/VLAN/IPv4/UDP headers, given to the kernel
	NoSocket   uint64 // line frames on a queue with no socket in the XSKMAP, given to the kernel
	NoMeta     uint64 // redirected frames without timestamp metadata (driver lacks data_meta)
	Fragmented uint64 // first fragments of line datagrams, given to the kernel, which reassembles them for a socket bound to the line
	// VLANOther counts frames to the group and port of a line that no
	// line takes for their VLAN tags: a tag of a VLAN ID other than 0
	// for a line of the interface (SetLine), another VLAN or two tags
	// for a VLAN line (SetVLANLine). They go to the kernel, as they
	// would without XDP: to a VLAN device of their VLAN, or dropped.
	VLANOther uint64
	// VLANUntagged counts frames to the group and port of a VLAN line that
	// no line takes and that carry no tag. A NIC that strips the tag before
	// XDP runs (rx-vlan-offload) makes a VLAN line's own frames look like
	// this: they go to the kernel, lost to the line.
	VLANUntagged uint64
	// OtherHost counts frames to the group and port of a line sent to
	// another host's unicast MAC address: not to a multicast or
	// broadcast address, nor to the interface's own (SetMAC). A NIC in
	// promiscuous mode (tcpdump, a bridge) hands them up; the kernel
	// drops them (PACKET_OTHERHOST), and so they go to it.
	OtherHost uint64
}

// Verdicts returned by the program (enum xdp_action).
const (
	VerdictPass     = 2 // XDP_PASS
	VerdictRedirect = 4 // XDP_REDIRECT
)

// Program is the loaded steering program with its maps.
type Program struct {
	objs steerObjects
	prog *ebpf.Program // objs.XdpSteer, or XdpSteerVlan for VLAN lines

	// Counters reads the per-CPU counters into these, reused: a stats
	// refresh every few tens of milliseconds allocates nothing.
	mu     sync.Mutex
	key    uint32
	perCPU []steerCounters // one per possible CPU
	attr   mapLookupAttr

	vlans bool // loaded for VLAN lines (LoadOptions.VLANLines)
	// noMeta says why the program puts no metadata in front of frames
	// (nil: it does, where the driver can).
	noMeta error

	// The lines set, under linesMu, to keep the vlan 0 entries of groups
	// and ports that only VLAN lines use (LINE_VLAN_ONLY) right.
	linesMu   sync.Mutex
	plain     map[steerLineKey]bool // vlan 0 lines set (key vlan 0)
	vlanLines map[steerLineKey]bool // VLAN lines set
	perPair   map[steerLineKey]int  // VLAN lines per group and port (key vlan 0)
}

// LoadOptions choose what the loaded program can do.
type LoadOptions struct {
	// VLANLines picks the program that can take lines on a VLAN
	// (SetVLANLine, xdp_steer_vlan). Without it the program (xdp_steer)
	// has no VLAN line code, so a feed without VLAN lines pays nothing
	// for them (a line frame without a tag costs it one compare).
	VLANLines bool
	// NoMeta loads the program without its timestamp metadata, as on a
	// kernel that refuses bpf_xdp_adjust_meta to XDP programs: every
	// redirected frame is counted in Counters.NoMeta.
	NoMeta bool
}

// ErrNoMetaHelper is why a program loaded on a kernel that refuses
// bpf_xdp_adjust_meta to XDP programs stamps no frame (Program.NoMeta).
var ErrNoMetaHelper = errors.New("the kernel refuses bpf_xdp_adjust_meta to XDP programs")

// errNoMetaAsked is Program.NoMeta's reason under LoadOptions.NoMeta.
var errNoMetaAsked = errors.New("loaded without metadata (LoadOptions.NoMeta)")

// Load loads the steering program without VLAN lines and creates its maps.
func Load() (*Program, error) { return LoadWith(LoadOptions{}) }

// LoadWith loads the steering program as o says and creates its maps.
func LoadWith(o LoadOptions) (*Program, error) {
	p := &Program{vlans: o.VLANLines, plain: map[steerLineKey]bool{}, vlanLines: map[steerLineKey]bool{}, perPair: map[steerLineKey]int{}}
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("load xdp steering program: %w", err)
	}
	switch {
	case o.NoMeta:
		p.noMeta = errNoMetaAsked
	default:
		// Some kernels refuse the helper to XDP programs: the verifier
		// then refuses the whole program, not just the call, so it is
		// left out before loading (the frames are stamped on reading).
		err := ProbeMeta()
		switch {
		case errors.Is(err, ErrNoMetaHelper):
			p.noMeta = err
		case err != nil:
			return nil, fmt.Errorf("load xdp steering program: %w", err)
		}
	}
	if p.noMeta != nil {
		if err := spec.Variables["stamp_meta"].Set(uint32(0)); err != nil {
			return nil, fmt.Errorf("load xdp steering program: stamp_meta: %w", err)
		}
	}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, fmt.Errorf("load xdp steering program: %w", classify(err))
	}
	p.prog = p.objs.XdpSteer
	if o.VLANLines {
		p.prog = p.objs.XdpSteerVlan
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		p.objs.Close()
		return nil, fmt.Errorf("load xdp steering program: possible CPUs: %w", err)
	}
	if vs := uintptr(p.objs.Stats.ValueSize()); (vs+7)&^7 != counterStride {
		p.objs.Close()
		return nil, fmt.Errorf("load xdp steering program: counters value size %d, want %d", vs, counterStride)
	}
	p.perCPU = make([]steerCounters, cpus)
	return p, nil
}

// ProbeMeta reports whether this kernel lets XDP programs call
// bpf_xdp_adjust_meta: nil if it does, ErrNoMetaHelper if it does not, or
// why it could not tell.
func ProbeMeta() error {
	err := features.HaveProgramHelper(ebpf.XDP, asm.FnXdpAdjustMeta)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ebpf.ErrNotSupported):
		return ErrNoMetaHelper
	}
	return fmt.Errorf("probe bpf_xdp_adjust_meta: %w", classify(err))
}

// NoMeta reports why the program puts no timestamp metadata in front of
// the frames it redirects, or nil if it does (where the driver supports
// metadata: Counters.NoMeta counts the frames of one that does not).
// Without metadata the receive path stamps a frame when it reads it.
func (p *Program) NoMeta() error { return p.noMeta }

// classify wraps errors that mean "this kernel or process cannot do it" with
// ErrNotSupported, keeping the original error in the chain.
func classify(err error) error {
	switch {
	case errors.Is(err, ebpf.ErrNotSupported),
		errors.Is(err, unix.EPERM),
		errors.Is(err, unix.EACCES),
		errors.Is(err, unix.EOPNOTSUPP),
		errors.Is(err, unix.ENOSYS),
		missingHelper(err):
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}

// missingHelper reports whether err is the verifier refusing a helper call
// because the kernel has no such helper, or none for this program type
// (EINVAL, told only by the log): an older kernel without
// bpf_ktime_get_tai_ns (6.1), say. (Most other refusals are EACCES,
// classified as not supported already.)
func missingHelper(err error) bool {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		return false
	}
	for _, l := range ve.Log {
		if strings.Contains(l, "cannot use helper") || strings.Contains(l, "unknown func") || strings.Contains(l, "invalid func") {
			return true
		}
	}
	return false
}

// Close releases the program and its maps. An attached link keeps the
// program alive until the link is closed.
func (p *Program) Close() error {
	if err := p.objs.Close(); err != nil {
		return fmt.Errorf("close xdp steering program: %w", err)
	}
	return nil
}

// XDP returns the loaded program, for tests (ebpf.Program.Run) and custom
// attachment.
func (p *Program) XDP() *ebpf.Program { return p.prog }

// SetLine makes frames to group:port (IPv4) redirect as feed line line
// when they carry no VLAN tag, or priority tags only (VLAN ID 0): the
// frames the kernel gives the interface itself. A frame of the pair tagged
// with another VLAN ID goes to the line of its VLAN (SetVLANLine), or to the
// kernel, counted in Counters.VLANOther. When source is valid, only frames
// from that IPv4 source match.
func (p *Program) SetLine(group netip.Addr, port uint16, line uint32, source netip.Addr) error {
	return p.setLine(0, group, port, line, source)
}

// SetVLANLine makes frames to group:port (IPv4) that carry exactly one
// 802.1Q tag, of VLAN ID vlan (1 to MaxVLAN), redirect as feed line line:
// the frames the kernel would give a VLAN device of the interface. Such a
// frame goes to this line rather than to a SetLine line of the same group
// and port. When source is valid, only frames from that IPv4 source match.
// The program must have been loaded with LoadOptions.VLANLines.
func (p *Program) SetVLANLine(vlan uint16, group netip.Addr, port uint16, line uint32, source netip.Addr) error {
	if !p.vlans {
		return fmt.Errorf("set xdp line %v: the program was loaded without VLAN lines (LoadOptions.VLANLines)", lineName(vlan, group, port))
	}
	if vlan == 0 || vlan > MaxVLAN {
		return fmt.Errorf("set xdp line %v:%d on vlan %d: vlan out of range [1,%d]", group, port, vlan, MaxVLAN)
	}
	return p.setLine(vlan, group, port, line, source)
}

func (p *Program) setLine(vlan uint16, group netip.Addr, port uint16, line uint32, source netip.Addr) error {
	key, err := lineKey(group, port)
	if err != nil {
		return fmt.Errorf("set xdp line %v: %w", lineName(vlan, group, port), err)
	}
	val := steerLineVal{Line: line}
	if line == lineVLANOnly {
		return fmt.Errorf("set xdp line %v: line number %d is reserved", lineName(vlan, group, port), line)
	}
	if source.IsValid() {
		if !source.Is4() {
			return fmt.Errorf("set xdp line %v: source %v is not IPv4", lineName(vlan, group, port), source)
		}
		val.Source = netOrder32(source.As4())
	}
	p.linesMu.Lock()
	defer p.linesMu.Unlock()
	pair := key
	key.Vlan = vlan
	if err := p.objs.Lines.Put(&key, &val); err != nil {
		return fmt.Errorf("set xdp line %v: %w", lineName(vlan, group, port), err)
	}
	if vlan == 0 {
		p.plain[pair] = true
		return nil
	}
	if p.vlanLines[key] {
		return nil
	}
	if !p.plain[pair] && p.perPair[pair] == 0 {
		only := steerLineVal{Line: lineVLANOnly}
		if err := p.objs.Lines.Put(&pair, &only); err != nil {
			p.objs.Lines.Delete(&key)
			return fmt.Errorf("set xdp line %v: %w", lineName(vlan, group, port), err)
		}
	}
	p.vlanLines[key] = true
	p.perPair[pair]++
	return nil
}

// DeleteLine stops redirecting frames to group:port as the line SetLine
// set. VLAN lines of the pair stay.
func (p *Program) DeleteLine(group netip.Addr, port uint16) error {
	return p.deleteLine(0, group, port)
}

// DeleteVLANLine stops redirecting frames to group:port on VLAN vlan.
func (p *Program) DeleteVLANLine(vlan uint16, group netip.Addr, port uint16) error {
	if vlan == 0 || vlan > MaxVLAN {
		return fmt.Errorf("delete xdp line %v:%d on vlan %d: vlan out of range [1,%d]", group, port, vlan, MaxVLAN)
	}
	return p.deleteLine(vlan, group, port)
}

func (p *Program) deleteLine(vlan uint16, group netip.Addr, port uint16) error {
	key, err := lineKey(group, port)
	if err != nil {
		return fmt.Errorf("delete xdp line %v: %w", lineName(vlan, group, port), err)
	}
	p.linesMu.Lock()
	defer p.linesMu.Unlock()
	pair := key
	key.Vlan = vlan
	if vlan == 0 && p.perPair[pair] > 0 {
		// VLAN lines use the pair: back to the marker, not gone.
		only := steerLineVal{Line: lineVLANOnly}
		if !p.plain[pair] {
			return fmt.Errorf("delete xdp line %v: %w", lineName(vlan, group, port), ebpf.ErrKeyNotExist)
		}
		if err := p.objs.Lines.Put(&pair, &only); err != nil {
			return fmt.Errorf("delete xdp line %v: %w", lineName(vlan, group, port), err)
		}
		delete(p.plain, pair)
		return nil
	}
	if err := p.objs.Lines.Delete(&key); err != nil {
		return fmt.Errorf("delete xdp line %v: %w", lineName(vlan, group, port), err)
	}
	if vlan == 0 {
		delete(p.plain, pair)
		return nil
	}
	delete(p.vlanLines, key)
	if p.perPair[pair]--; p.perPair[pair] == 0 {
		delete(p.perPair, pair)
		if !p.plain[pair] {
			if err := p.objs.Lines.Delete(&pair); err != nil {
				return fmt.Errorf("delete xdp line %v: marker: %w", lineName(vlan, group, port), err)
			}
		}
	}
	return nil
}

// lineName formats a line's group and port, and VLAN when it has one, for
// errors.
func lineName(vlan uint16, group netip.Addr, port uint16) string {
	if vlan == 0 {
		return fmt.Sprintf("%v:%d", group, port)
	}
	return fmt.Sprintf("%v:%d on vlan %d", group, port, vlan)
}

func lineKey(group netip.Addr, port uint16) (steerLineKey, error) {
	if !group.Is4() {
		return steerLineKey{}, fmt.Errorf("group %v is not IPv4", group)
	}
	return steerLineKey{Group: netOrder32(group.As4()), Port: netOrder16(port)}, nil
}

// netOrder32 returns the uint32 whose in-memory bytes are b (network order).
func netOrder32(b [4]byte) uint32 {
	return binary.NativeEndian.Uint32(b[:])
}

func netOrder16(v uint16) uint16 {
	b := [2]byte{byte(v >> 8), byte(v)}
	return binary.NativeEndian.Uint16(b[:])
}

// SetMAC tells the program the MAC address of the interface it runs on: a
// line frame to it is taken, as one to a multicast or broadcast address
// is, and one to any other unicast address is another host's (counted in
// Counters.OtherHost, passed to the kernel). Until it is set, every line
// frame to a unicast address is another host's. Set it again when the
// interface's address changes.
func (p *Program) SetMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("set xdp interface address %v: not a 6-byte MAC address", mac)
	}
	// As they lie in the frame: compared with its bytes as loaded. One
	// 8-byte store into the variable's memory-mapped word (a single
	// aligned move): two, the first four bytes then the last two, let a
	// frame in between meet half of each address, taking frames to
	// neither and refusing frames to both.
	v := uint64(binary.NativeEndian.Uint32(mac[:4])) | uint64(binary.NativeEndian.Uint16(mac[4:]))<<32
	if err := p.objs.OwnMac.Set(v); err != nil {
		return fmt.Errorf("set xdp interface address %v: %w", mac, err)
	}
	return nil
}

// SetSocket puts the AF_XDP socket fd in the XSKMAP for receive queue queue.
func (p *Program) SetSocket(queue int, fd int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("set xsk for queue %d: queue out of range [0,%d)", queue, MaxQueues)
	}
	if err := p.objs.Xsks.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("set xsk for queue %d: %w", queue, classify(err))
	}
	return nil
}

// DeleteSocket removes the socket of receive queue queue from the XSKMAP;
// line frames on that queue then go to the kernel.
func (p *Program) DeleteSocket(queue int) error {
	if err := p.objs.Xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete xsk for queue %d: %w", queue, err)
	}
	return nil
}

// ProgramName returns the name of the loaded BPF program of ID id (as
// ip link shows it: 15 characters at most), to say which program holds an
// interface.
func ProgramName(id uint32) (string, error) {
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return "", fmt.Errorf("bpf program %d: %w", id, err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return "", fmt.Errorf("bpf program %d: %w", id, err)
	}
	return info.Name, nil
}

// Steers reports whether the program of ID id, found attached to an
// interface, is a steering program of this package (another process's:
// another feed handler's) that redirects frames to group:port on VLAN vlan
// (0: untagged) to its AF_XDP sockets, away from the kernel: the sockets
// of the host then never see them. ours is false for any other program.
func Steers(id uint32, group netip.Addr, port uint16, vlan uint16) (ours, steered bool, err error) {
	key, err := lineKey(group, port)
	if err != nil {
		return false, false, fmt.Errorf("bpf program %d: %w", id, err)
	}
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return false, false, fmt.Errorf("bpf program %d: %w", id, err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return false, false, fmt.Errorf("bpf program %d: %w", id, err)
	}
	if info.Name != "xdp_steer" && info.Name != "xdp_steer_vlan" {
		return false, false, nil
	}
	ids, _ := info.MapIDs()
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			continue
		}
		mi, err := m.Info()
		// struct line_key and struct line_val: 8 bytes each.
		if err != nil || mi.Name != "lines" || mi.KeySize != 8 || mi.ValueSize != 8 {
			m.Close()
			continue
		}
		defer m.Close()
		// As the program looks a frame up: a tagged frame by its
		// VLAN's line alone (a single 802.1Q tag), an untagged one by
		// the interface's, which a marker (LINE_VLAN_ONLY) makes no
		// line.
		k := key
		k.Vlan = vlan
		var val steerLineVal
		if err := m.Lookup(&k, &val); err == nil {
			return true, val.Line != lineVLANOnly, nil
		}
		return true, false, nil
	}
	return true, false, fmt.Errorf("bpf program %d: no lines map", id)
}

// Attach attaches the program to interface ifindex in mode m. Closing the
// returned link detaches it; so does the exit of the process.
func (p *Program) Attach(ifindex int, m Mode) (link.Link, error) {
	flags := link.XDPDriverMode
	if m == ModeGeneric {
		flags = link.XDPGenericMode
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: flags})
	if err != nil {
		return nil, fmt.Errorf("attach xdp program to ifindex %d (%v): %w", ifindex, m, classify(err))
	}
	return l, nil
}

// Counters sums the per-CPU counters. It allocates nothing and is safe for
// concurrent use.
func (p *Program) Counters() (Counters, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := lookupCounters(p.objs.Stats.FD(), &p.key, p.perCPU, &p.attr); err != nil {
		return Counters{}, fmt.Errorf("read xdp counters: %w", err)
	}
	var c Counters
	for _, v := range p.perCPU {
		c.Redirected += v.Redirected
		c.Passed += v.Passed
		c.Malformed += v.Malformed
		c.NoSocket += v.NoSocket
		c.NoMeta += v.NoMeta
		c.Fragmented += v.Fragmented
		c.VLANOther += v.VlanOther
		c.VLANUntagged += v.VlanUntagged
		c.OtherHost += v.OtherHost
	}
	return c, nil
}
