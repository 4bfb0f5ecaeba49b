// Package bpf holds the XDP steering program of the AF_XDP receive path and
// its Go loader.
//
// The program (steer.c, compiled with bpf2go; the generated steer_bpf*.go and
// steer_bpf*.o are committed, `make generate` rebuilds them) looks at every
// frame arriving on an interface and redirects to the AF_XDP socket of the
// frame's receive queue exactly the UDP datagrams of the configured feed
// lines: destination group and port pairs, optionally restricted to one
// source, set with SetLine. It understands up to two 802.1Q/802.1ad VLAN tags
// and IPv4 headers with options.
//
// A line set with SetLine is a line of the interface: it takes its group
// and port from frames without a tag, or with priority tags only (VLAN ID
// 0), what the kernel gives the interface itself; a frame tagged with
// another VLAN ID is passed and counted (Counters.VLANOther), for the
// kernel to give a VLAN device, or drop. A line set with SetVLANLine is a line of one 802.1Q VLAN of the interface, what a
// VLAN device (eth0.100) would receive: only a frame with exactly one
// 802.1Q tag of that VLAN ID matches it, and such a frame goes to it rather
// than to a line of the interface on the same group and port. A group and
// port that only VLAN lines use gets a marker entry, so that its frames on
// no line's VLAN are passed and counted (Counters.VLANOther, and
// Counters.VLANUntagged for frames without a tag). steer.c compiles the
// program twice: Load gives xdp_steer, which has no VLAN line code (one
// map lookup per line frame, a second for a tagged frame that no line
// takes, to count it); LoadWith(LoadOptions{VLANLines: true}) gives
// xdp_steer_vlan, which takes SetVLANLine and costs another lookup for a
// single-tagged frame whose VLAN has no line. ParseFrame's Datagram.VLAN and
// Datagram.Tagged are what the program looks up by, for the receiver's own
// matching.
//
// The program sees the tag only when it is in the frame. A NIC with
// rx-vlan-offload on may strip it before XDP runs (the VLAN ID is then in
// the receive descriptor, readable only with the bpf_xdp_metadata_rx_vlan_tag
// kfunc of Linux 6.8+, which this program does not use): a VLAN line's
// frames then arrive untagged and are counted in VLANUntagged, not
// delivered. Turn the offload off on such a NIC (ethtool -K eth0 rxvlan off);
// `feedhandler check` warns about it. Everything else (ARP, IGMP, unicast, other
// ports, IP fragments) is passed to the kernel, and so is a line frame whose
// queue has no socket in the XSKMAP. So is a line frame sent to another
// host's unicast MAC address, which a NIC in promiscuous mode (tcpdump, a
// bridge) hands up and the kernel drops (Counters.OtherHost): a line frame
// must be to a multicast or broadcast address, or to the interface's own,
// which SetMAC tells the program. Frames with broken Ethernet, VLAN, IPv4
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
// metadata gets the frame redirected without it (Counters.NoMeta). Some
// kernels (seen on a 6.18 build) refuse bpf_xdp_adjust_meta to XDP programs
// altogether, and the verifier then refuses the whole program; LoadWith
// probes for the helper (ProbeMeta) and there loads the program without the
// call (Program.NoMeta says why), so every frame is redirected without
// metadata and counted in Counters.NoMeta.
//
// Typical use:
//
//	p, err := bpf.Load() // or LoadWith(LoadOptions{VLANLines: true})
//	defer p.Close()
//	p.SetLine(group, port, 0, netip.Addr{})
//	p.SetVLANLine(100, group, port, 1, netip.Addr{}) // VLANLines only
//	p.SetMAC(ifi.HardwareAddr) // the interface's own address
//	p.SetSocket(queue, xskFD)
//	l, err := p.Attach(ifindex, bpf.ModeNative)
//	defer l.Close()
//	c, err := p.Counters()
//
// Loading needs CAP_BPF (root); errors from a kernel that cannot load or
// attach the program wrap ErrNotSupported.
package bpf
