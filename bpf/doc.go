// Package bpf holds the XDP steering program of the AF_XDP receive path and
// its Go loader.
//
// The program (steer.c, compiled with bpf2go; the generated steer_bpf*.go and
// steer_bpf*.o are committed, `make generate` rebuilds them) looks at every
// frame arriving on an interface and redirects to the AF_XDP socket of the
// frame's receive queue exactly the UDP datagrams of the configured feed
// lines: destination group and port pairs, optionally restricted to one
// source, set with SetLine. It understands up to two 802.1Q/802.1ad VLAN tags
// and IPv4 headers with options. Everything else (ARP, IGMP, unicast, other
// ports, IP fragments) is passed to the kernel, and so is a line frame whose
// queue has no socket in the XSKMAP. Frames with broken Ethernet, VLAN, IPv4
// or UDP headers are counted as malformed and passed to the kernel, which
// drops them.
//
// In front of every frame it redirects, the program reserves MetaLen bytes
// of XDP metadata (bpf_xdp_adjust_meta) holding MetaMagic and the kernel
// time at which it ran, CLOCK_TAI ns (bpf_ktime_get_tai_ns, Linux 6.1).
// AF_XDP delivers them just before the frame's data in the UMEM, in copy
// mode too (measured on veth, Linux 6.18, native and generic XDP). ParseMeta
// reads them, TAIOffset converts the time to CLOCK_REALTIME, and ClearMeta
// erases them before the buffer is reused. A driver that cannot reserve
// metadata gets the frame redirected without it (Counters.NoMeta).
//
// Typical use:
//
//	p, err := bpf.Load()
//	defer p.Close()
//	p.SetLine(group, port, 0, netip.Addr{})
//	p.SetSocket(queue, xskFD)
//	l, err := p.Attach(ifindex, bpf.ModeNative)
//	defer l.Close()
//	c, err := p.Counters()
//
// Loading needs CAP_BPF (root); errors from a kernel that cannot load or
// attach the program wrap ErrNotSupported.
package bpf
