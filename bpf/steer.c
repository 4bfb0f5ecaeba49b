//go:build ignore

// XDP steering program of the feed handler.
//
// Frames carrying UDP to one of the configured feed lines (destination group
// and port, optionally a fixed source) are redirected to the AF_XDP socket of
// the receive queue they arrived on; every other frame (ARP, IGMP, other
// traffic) is passed to the kernel. A line frame whose queue has no socket is
// passed too (the redirect falls back to XDP_PASS). Malformed Ethernet, VLAN,
// IPv4 or UDP headers are counted and passed: the kernel drops them itself.
//
// Handles up to two 802.1Q/802.1ad tags and IPv4 headers with options.
//
// A line frame must be to a multicast or broadcast MAC address, or to the
// interface's own (own_mac, set by the loader), as the
// kernel requires: one to another unicast address, which a NIC in
// promiscuous mode (tcpdump, a bridge) hands up, is another host's, counted
// in other_host and passed to the kernel, which drops it.
//
// A line is either on the interface itself (vlan 0 in its key) or on one
// 802.1Q VLAN of it (a line configured on a VLAN device), and takes the
// frames the kernel would give that device: a line of the interface a
// frame without a tag, or with priority tags only (VLAN ID 0), a VLAN line
// only a frame with exactly one tag, an 802.1Q tag of that VLAN ID. A frame
// of a line's group and port that no line takes for its tags is counted in
// vlan_other and passed to the kernel (which gives it to a VLAN device of
// its VLAN, or drops it). There are two programs, compiled from the same
// code: xdp_steer has no VLAN line code (one lookup per line frame; the
// tags' VLAN IDs only go into the key), xdp_steer_vlan is attached when
// some line is on a VLAN. In it a single-tagged frame is looked up by its VLAN ID first, then
// as vlan 0. A group and port used only by VLAN lines has a vlan 0 entry
// too, marked LINE_VLAN_ONLY: a frame of that group and port that matched
// no VLAN line is counted in vlan_other (tagged) or vlan_untagged (no tag:
// a NIC that strips the tag before XDP, rx-vlan-offload, looks like this)
// and passed to the kernel.
//
// In front of every redirected frame the program puts 12 bytes of XDP
// metadata (struct rx_meta, bpf_xdp_adjust_meta), which AF_XDP delivers just
// before the frame's data in the UMEM: a magic word, then the time the
// program ran (CLOCK_TAI ns) as two 32-bit halves. A driver without
// metadata support makes bpf_xdp_adjust_meta fail; the frame is then
// redirected without metadata and counted in no_meta. A kernel that
// refuses the helper to XDP programs altogether (the verifier says "program
// of this type cannot use helper bpf_xdp_adjust_meta") gets the program
// with stamp_meta 0: every redirected frame is then counted in no_meta.

#include "include/steer.h"

#define ETH_HLEN 14
#define VLAN_HLEN 4
#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88a8
#define IPPROTO_UDP 17
#define IP_MF_OFFSET 0x3fff
#define IP_OFFSET 0x1fff

// Key of the lines map: destination group and port, both in network order,
// and the 802.1Q VLAN ID of the line (host order; 0: the interface itself,
// no tag or priority tags only; KEY_TAGGED and KEY_OTHER_HOST in a frame's
// key only).
struct line_key {
	__be32 group;
	__be16 port;
	__u16 vlan;
};

// line_key.vlan of a frame tagged with a VLAN ID other than 0 that is not
// looked up by its VLAN, and of a frame to another host's MAC address: no
// line has either (a VLAN ID is 12 bits).
#define KEY_TAGGED 0xffff
#define KEY_OTHER_HOST 0xfffe

// line_val.line of the vlan 0 entry of a group and port that only VLAN
// lines use.
#define LINE_VLAN_ONLY 0xffffffff

// Value of the lines map: the line index and an optional source filter
// (network order, 0 = any source).
struct line_val {
	__u32 line;
	__be32 source;
};

// Per-CPU counters, summed by the Go side.
struct counters {
	__u64 redirected; // handed to an AF_XDP socket
	__u64 passed;     // not a feed line frame: given to the kernel
	__u64 malformed;  // bad Ethernet/VLAN/IPv4/UDP headers: given to the kernel
	__u64 no_socket;  // a feed line frame on a queue without a socket: given to the kernel
	__u64 no_meta;    // redirected without timestamp metadata (driver lacks data_meta)
	__u64 fragmented; // first fragments of a line datagram: given to the kernel, lost to the sockets
	__u64 vlan_other;    // a line's group and port on a VLAN no line of it is on (or two tags): given to the kernel
	__u64 vlan_untagged; // a VLAN line's group and port without a tag: given to the kernel
	__u64 other_host;    // a line's group and port to another host's MAC address: given to the kernel
};

// The interface's MAC address (Program.SetMAC): its first four bytes as
// they lie in the frame in the low 32 bits, its last two in the 16 above.
// One aligned 64-bit word, loaded once and stored at once, so that a
// frame never meets half of the old address and half of the new one.
volatile __u64 own_mac;


// Metadata in front of a redirected frame, in native byte order. 32-bit
// words keep it 4-byte aligned, as the kernel requires of metadata, without
// unaligned 64-bit stores.
#define RX_META_MAGIC 0x46484d31 // "FHM1": feed handler metadata, version 1
struct rx_meta {
	__u32 magic;
	__u32 tai_lo; // CLOCK_TAI ns when the program ran, low and high halves
	__u32 tai_hi;
};

struct iphdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__u16 check;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct line_key);
	__type(value, struct line_val);
} lines SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} stats SEC(".maps");

enum verdict { PASS, MALFORMED, LINE, LINE_FRAGMENT, VLAN_OTHER, VLAN_UNTAGGED, OTHER_HOST };

static __always_inline enum verdict classify(struct xdp_md *ctx, const int vlans)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 frame_len = ctx->data_end - ctx->data;
	__u32 off = ETH_HLEN;

	if (data + ETH_HLEN > end)
		return MALFORMED;
	__be16 proto = *(__be16 *)(data + 12);
	__be16 vids = 0; // the VLAN IDs of the tags, or'ed: 0 without a tag
	struct line_key key;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != be16(ETH_P_8021Q) && proto != be16(ETH_P_8021AD))
			break;
		if (data + off + VLAN_HLEN > end)
			return MALFORMED;
		vids |= *(__be16 *)(data + off) & be16(0x0fff);
		proto = *(__be16 *)(data + off + 2);
		off += VLAN_HLEN;
	}
	// A line of the interface (vlan 0) takes what the kernel gives the
	// interface: a frame without a tag, or with priority tags only (VLAN
	// ID 0). A frame with another VLAN ID is a VLAN device's, or dropped
	// where there is none: it is looked up as KEY_TAGGED, which no line
	// has. Stored now, with the key, so that vids need not be kept.
	key.vlan = vids ? KEY_TAGGED : 0;
	// The kernel takes a frame to a multicast or broadcast address (the
	// group bit: a line's group MAC address), or to the interface's own
	// (a switch converting multicast to unicast); one to any other address
	// is another host's, seen in promiscuous mode (PACKET_OTHERHOST),
	// which it drops. Looked up as KEY_OTHER_HOST, which no line has.
	if (!(*(__u8 *)data & 1)) {
		__u64 mac = own_mac;
		if (*(__u32 *)data != (__u32)mac || *(__u16 *)(data + 4) != (__u16)(mac >> 32))
			key.vlan = KEY_OTHER_HOST;
	}
	if (proto != be16(ETH_P_IP))
		return PASS;

	struct iphdr *ip = data + off;
	if ((void *)(ip + 1) > end)
		return MALFORMED;
	if ((ip->ver_ihl >> 4) != 4)
		return MALFORMED;
	__u32 ihl = (ip->ver_ihl & 0x0f) * 4;
	__u32 tot_len = be16(ip->tot_len);
	if (ihl < sizeof(*ip) || tot_len < ihl || off + tot_len > frame_len)
		return MALFORMED;
	if (ip->protocol != IPPROTO_UDP)
		return PASS;
	// Fragments go to the kernel, which reassembles them for the line's
	// socket (feed/rx reads it): a first fragment that names a line is
	// counted. Later fragments carry no UDP header.
	int frag = 0;
	if (ip->frag_off & be16(IP_MF_OFFSET)) {
		if (ip->frag_off & be16(IP_OFFSET))
			return PASS;
		frag = 1;
	}

	struct udphdr *udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > end)
		return frag ? PASS : MALFORMED;
	__u32 udp_len = be16(udp->len);
	if (!frag && (udp_len < sizeof(*udp) || udp_len > tot_len - ihl))
		return MALFORMED;

	key.group = ip->daddr;
	key.port = udp->dest;
	struct line_val *val = 0;
	if (vlans && off == ETH_HLEN + VLAN_HLEN && *(__be16 *)(data + 12) == be16(ETH_P_8021Q)) {
		// One 802.1Q tag: a line on its VLAN first. The loop above
		// checked that the tag is in the frame; the verifier wants it
		// shown again.
		if (data + ETH_HLEN + VLAN_HLEN > end)
			return MALFORMED;
		__u16 vid = be16(*(__be16 *)(data + ETH_HLEN)) & 0x0fff;
		if (vid && key.vlan == KEY_TAGGED) {
			key.vlan = vid;
			val = bpf_map_lookup_elem(&lines, &key);
			key.vlan = KEY_TAGGED;
		}
	}
	if (!val) {
		val = bpf_map_lookup_elem(&lines, &key);
		if (!val) {
			// Tagged or another host's: a frame of a line's group
			// and port the line does not take, or none's.
			__u16 why = key.vlan;
			if (!why)
				return PASS;
			key.vlan = 0;
			if (!bpf_map_lookup_elem(&lines, &key))
				return PASS;
			return why == KEY_OTHER_HOST ? OTHER_HOST : VLAN_OTHER;
		}
		// Only VLAN lines make markers.
		if (vlans && val->line == LINE_VLAN_ONLY)
			return off == ETH_HLEN ? VLAN_UNTAGGED : VLAN_OTHER;
	}
	if (val->source && val->source != ip->saddr)
		return PASS;
	return frag ? LINE_FRAGMENT : LINE;
}

// stamp_meta is set by the loader before the program is loaded, 0 where
// the kernel lacks bpf_xdp_adjust_meta for XDP. It is read-only, so the
// verifier knows its value and never walks (or checks) the call it guards.
volatile const __u32 stamp_meta = 1;

// stamp puts struct rx_meta in front of the frame and reports whether it
// could. The frame is redirected either way.
static __always_inline int stamp(struct xdp_md *ctx)
{
	if (!stamp_meta)
		return 0;
	__u64 now = bpf_ktime_get_tai_ns();
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct rx_meta)))
		return 0;
	void *data = (void *)(long)ctx->data;
	struct rx_meta *meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > data)
		return 0;
	meta->magic = RX_META_MAGIC;
	meta->tai_lo = (__u32)now;
	meta->tai_hi = (__u32)(now >> 32);
	return 1;
}

static __always_inline int steer(struct xdp_md *ctx, const int vlans)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&stats, &zero);
	if (!c)
		return XDP_PASS;

	switch (classify(ctx, vlans)) {
	case LINE: {
		long act = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
		if (act != XDP_REDIRECT) {
			c->no_socket++;
			return act;
		}
		c->redirected++;
		if (!stamp(ctx))
			c->no_meta++;
		return act;
	}
	case LINE_FRAGMENT:
		c->fragmented++;
		return XDP_PASS;
	case MALFORMED:
		c->malformed++;
		return XDP_PASS;
	case VLAN_OTHER:
		c->vlan_other++;
		return XDP_PASS;
	case VLAN_UNTAGGED:
		c->vlan_untagged++;
		return XDP_PASS;
	case OTHER_HOST:
		c->other_host++;
		return XDP_PASS;
	default:
		c->passed++;
		return XDP_PASS;
	}
}

// xdp_steer: lines on the interface only (SetLine).
SEC("xdp")
int xdp_steer(struct xdp_md *ctx)
{
	return steer(ctx, 0);
}

// xdp_steer_vlan: lines on the interface and on its VLANs (SetVLANLine).
SEC("xdp")
int xdp_steer_vlan(struct xdp_md *ctx)
{
	return steer(ctx, 1);
}

char __license[] SEC("license") = "Dual MIT/GPL";
