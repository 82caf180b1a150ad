/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * IPv6 parsing (docs/ipv6.md): the fixed header, a bounded walk over the
 * extension headers, anti-spoofing with the NDP/MLD exception, the L4
 * header, and the header an ICMPv6 error quotes. Included by microseg.bpf.c
 * after struct ms_flow / ms_flow6 and MS_CONTINUE; the result feeds the same
 * tracking stage code as IPv4 (on the *6 maps).
 *
 * Fail closed: a header we cannot read in full is `malformed`; a chain we
 * will not walk to its end (more than MS_IPV6_MAX_EXT_HEADERS headers, or
 * one running past the payload) is unjudgeable: `malformed` where the
 * direction is isolated or an entry there denies, audit where only Audit
 * entries could drop it, passed where nothing is enforced -- the same choice
 * as for IPv4 fragments (ms_unjudgeable_mode), and never before the
 * anti-spoofing check.
 */
#ifndef MICROSEG_BPF_IPV6_H
#define MICROSEG_BPF_IPV6_H

/* Extension headers walked; a longer chain is not parsed (see above). */
#define MS_IPV6_MAX_EXT_HEADERS 8

#define MS_IPV6_NEXT_HOP_BY_HOP 0
#define MS_IPV6_NEXT_ROUTING 43
#define MS_IPV6_NEXT_FRAGMENT 44
#define MS_IPV6_NEXT_AUTH 51
#define MS_IPV6_NEXT_DEST_OPTIONS 60

/* RFC 4443 errors, RFC 4861 NDP, RFC 2710/3810 MLD. */
#define MS_ICMP6_DEST_UNREACHABLE 1
#define MS_ICMP6_PACKET_TOO_BIG 2
#define MS_ICMP6_TIME_EXCEEDED 3
#define MS_ICMP6_PARAMETER_PROBLEM 4
#define MS_ICMP6_ECHO_REQUEST 128
#define MS_ICMP6_ECHO_REPLY 129
#define MS_ICMP6_MLD_QUERY 130
#define MS_ICMP6_MLD_REPORT 131
#define MS_ICMP6_MLD_DONE 132
#define MS_ICMP6_NDP_ROUTER_SOLICIT 133
#define MS_ICMP6_NDP_REDIRECT 137
#define MS_ICMP6_MLD2_REPORT 143

/* RFC 4861 7.1.1: NDP messages are only valid with the link's hop limit. */
#define MS_NDP_HOP_LIMIT 255
/* RFC 3810 5: MLD messages are sent with hop limit 1. */
#define MS_MLD_HOP_LIMIT 1

static __always_inline int ms_ipv6_equal(const __u32 *a, const __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

/* fe80::/10 or :: -- the sources NDP and MLD may use besides the pod's own. */
static __always_inline int ms_ipv6_link_local_or_unspecified(const __u32 *addr)
{
	if ((addr[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000))
		return 1;
	return (addr[0] | addr[1] | addr[2] | addr[3]) == 0;
}

/* ms_ipv6_skip_extensions() result: next header, L4 offset, flags. */
#define MS_IPV6_WALK_TRUNCATED (-1)
#define MS_IPV6_WALK_TOO_LONG (-2)
#define MS_IPV6_WALK_LATER_FRAGMENT (1 << 30)
#define MS_IPV6_WALK_OFFSET_SHIFT 8
#define MS_IPV6_WALK_OFFSET_MASK 0x1FFFF /* 17 bits: 14 + 40 + 65535 fits */

/*
 * Walks the extension headers starting at `offset` (the byte after the fixed
 * header) with first next-header `next`, up to `end` (the end of the IPv6
 * payload). Returns the upper-layer protocol in bits 0-7 and its offset in
 * bits 8-24, plus MS_IPV6_WALK_LATER_FRAGMENT for a fragment other than the
 * first (its upper-layer header is in the first one); or a negative
 * MS_IPV6_WALK_*. A global (separately verified) function: the loop's
 * paths would otherwise multiply with every path of the caller.
 */
__noinline int ms_ipv6_skip_extensions(struct __sk_buff *skb, __u32 offset, __u32 end, __u32 next)
{
	if (!skb)
		return MS_IPV6_WALK_TRUNCATED;
	int later_fragment = 0;
	/* One round per extension header, plus the one that finds the upper layer. */
	for (int i = 0; i <= MS_IPV6_MAX_EXT_HEADERS; i++) {
		__u8 header[8];
		__u32 length;
		switch (next) {
		case MS_IPV6_NEXT_HOP_BY_HOP:
		case MS_IPV6_NEXT_ROUTING:
		case MS_IPV6_NEXT_DEST_OPTIONS:
			if (offset + 2 > end || bpf_skb_load_bytes(skb, offset, header, 2))
				return MS_IPV6_WALK_TRUNCATED;
			length = ((__u32)header[1] + 1) * 8;
			break;
		case MS_IPV6_NEXT_AUTH:
			if (offset + 2 > end || bpf_skb_load_bytes(skb, offset, header, 2))
				return MS_IPV6_WALK_TRUNCATED;
			length = ((__u32)header[1] + 2) * 4;
			break;
		case MS_IPV6_NEXT_FRAGMENT:
			/* next header, reserved, offset (13 bits) + flags, id */
			if (offset + 8 > end || bpf_skb_load_bytes(skb, offset, header, 8))
				return MS_IPV6_WALK_TRUNCATED;
			length = 8;
			if (((header[2] << 8) | header[3]) & 0xFFF8)
				later_fragment = 1;
			break;
		default:
			if (offset > end)
				return MS_IPV6_WALK_TRUNCATED;
			return (int)(next | ((offset & MS_IPV6_WALK_OFFSET_MASK) << MS_IPV6_WALK_OFFSET_SHIFT) |
				     (later_fragment ? MS_IPV6_WALK_LATER_FRAGMENT : 0));
		}
		next = header[0];
		offset += length;
		if (later_fragment) {
			/* Nothing after a later fragment's header is a header. */
			if (offset > end)
				return MS_IPV6_WALK_TRUNCATED;
			return (int)(next | ((offset & MS_IPV6_WALK_OFFSET_MASK) << MS_IPV6_WALK_OFFSET_SHIFT) |
				     MS_IPV6_WALK_LATER_FRAGMENT);
		}
	}
	return MS_IPV6_WALK_TOO_LONG;
}

/*
 * The upper-layer header of an IPv6 packet: ports for TCP/UDP/SCTP, the
 * ICMPv6 kind, and NDP/MLD, which pass like ARP (MS_REASON_ALLOW_NON_IP).
 */
static __always_inline __u32 ms_parse6_l4(struct __sk_buff *skb, __u8 hop_limit, struct ms_flow *flow)
{
	__u32 min_bytes;
	switch (flow->proto) {
	case IPPROTO_TCP:
		min_bytes = sizeof(struct tcphdr);
		break;
	case IPPROTO_UDP:
		min_bytes = sizeof(struct udphdr);
		break;
	case IPPROTO_SCTP:
		min_bytes = 12; /* common header: ports, verification tag, checksum */
		break;
	case IPPROTO_ICMPV6:
		min_bytes = 4; /* type, code, checksum */
		break;
	default:
		return MS_CONTINUE; /* no ports: policy sees port 0 */
	}
	/* The same 4 bytes are the ports of TCP/UDP/SCTP and ICMPv6's type and code. */
	__u8 head[8] = {};
	if (flow->l4_len < min_bytes || bpf_skb_load_bytes(skb, flow->l4_offset, head, 4))
		return MS_REASON_DROP_MALFORMED;
	if (flow->proto != IPPROTO_ICMPV6) {
		flow->sport = *(__be16 *)&head[0];
		flow->dport = *(__be16 *)&head[2];
		flow->trackable = 1;
		return MS_CONTINUE;
	}

	__u8 type = head[0];
	if (type >= MS_ICMP6_NDP_ROUTER_SOLICIT && type <= MS_ICMP6_NDP_REDIRECT)
		return hop_limit == MS_NDP_HOP_LIMIT ? MS_REASON_ALLOW_NON_IP : MS_REASON_DROP_MALFORMED;
	if (type == MS_ICMP6_MLD_QUERY || type == MS_ICMP6_MLD_REPORT || type == MS_ICMP6_MLD_DONE ||
	    type == MS_ICMP6_MLD2_REPORT)
		return hop_limit == MS_MLD_HOP_LIMIT ? MS_REASON_ALLOW_NON_IP : MS_REASON_DROP_MALFORMED;
	if (type == MS_ICMP6_ECHO_REQUEST || type == MS_ICMP6_ECHO_REPLY) {
		if (flow->l4_len < 8 || bpf_skb_load_bytes(skb, flow->l4_offset, head, 8))
			return MS_REASON_DROP_MALFORMED;
		/* The echo id pairs request and reply like a port pair. */
		flow->sport = *(__be16 *)&head[4];
		flow->dport = flow->sport;
		flow->trackable = 1;
		flow->icmp_kind = type == MS_ICMP6_ECHO_REQUEST ? MS_ICMP_ECHO_REQUEST : MS_ICMP_ECHO_REPLY;
	} else if (type >= MS_ICMP6_DEST_UNREACHABLE && type <= MS_ICMP6_PARAMETER_PROBLEM) {
		flow->icmp_kind = MS_ICMP_ERROR;
	}
	return MS_CONTINUE;
}

/*
 * Parses the IPv6 packet at `ip6` (Ethernet payload). Returns MS_CONTINUE
 * with `flow` (ipv6 = 1, ports, offsets) and `addrs` filled, or the final
 * reason for everything parsing decides alone.
 *
 * Anti-spoofing, pod egress: the source must be the pod's IPv6 address,
 * except that NDP and MLD may come from a link-local address or :: (DAD,
 * reports before the address is configured). Any other packet from such a
 * source is `spoofed_source`, also when its headers cannot be walked.
 */
static __always_inline __u32 ms_parse6(struct __sk_buff *skb, void *data_end, struct ipv6hdr *ip6,
				       __u32 unjudgeable, __u32 dir, const __u32 *pod_ipv6,
				       struct ms_flow *flow, struct ms_flow6 *addrs)
{
	if ((void *)(ip6 + 1) > data_end)
		return MS_REASON_DROP_MALFORMED;
	if (ip6->version != 6)
		return MS_REASON_DROP_MALFORMED;
	__u32 end = ETH_HLEN + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (end > skb->len)
		return MS_REASON_DROP_MALFORMED; /* also jumbograms (payload length 0): not supported */
	__builtin_memcpy(addrs->saddr, &ip6->saddr, sizeof(addrs->saddr));
	__builtin_memcpy(addrs->daddr, &ip6->daddr, sizeof(addrs->daddr));
	flow->ipv6 = 1;
	__u8 hop_limit = ip6->hop_limit;

	int l2_control_only = 0; /* the source may send NDP/MLD and nothing else */
	/*
	 * A pod without an IPv6 address (all zero) owns none: its "own" ::
	 * would otherwise let it send anything from the unspecified address.
	 */
	int pod_has_ipv6 = (pod_ipv6[0] | pod_ipv6[1] | pod_ipv6[2] | pod_ipv6[3]) != 0;
	if (dir == MS_DIR_EGRESS && (!pod_has_ipv6 || !ms_ipv6_equal(addrs->saddr, pod_ipv6))) {
		if (!ms_ipv6_link_local_or_unspecified(addrs->saddr))
			return MS_REASON_DROP_SPOOFED_SOURCE;
		l2_control_only = 1;
	}

	int walk = ms_ipv6_skip_extensions(skb, ETH_HLEN + sizeof(*ip6), end, ip6->nexthdr);
	if (walk < 0) {
		if (l2_control_only)
			return MS_REASON_DROP_SPOOFED_SOURCE;
		return ms_unjudgeable_reason(unjudgeable, MS_REASON_DROP_MALFORMED);
	}
	flow->proto = walk & 0xFF;
	flow->l4_offset = (walk >> MS_IPV6_WALK_OFFSET_SHIFT) & MS_IPV6_WALK_OFFSET_MASK;
	flow->l4_len = end - flow->l4_offset;

	/* Same choice as IPv4: a later fragment carries no ports to judge. */
	if (walk & MS_IPV6_WALK_LATER_FRAGMENT) {
		if (l2_control_only)
			return MS_REASON_DROP_SPOOFED_SOURCE;
		return ms_unjudgeable_reason(unjudgeable, MS_REASON_DROP_FRAGMENT);
	}

	__u32 reason = ms_parse6_l4(skb, hop_limit, flow);
	if (l2_control_only && reason != MS_REASON_ALLOW_NON_IP)
		return MS_REASON_DROP_SPOOFED_SOURCE;
	return reason;
}

/*
 * The flow an ICMPv6 error at `l4_offset` quotes: the offending packet's
 * fixed header, its extension headers (walked like a packet's own, e.g. the
 * fragment header of a Packet Too Big about a fragmented flow) and its
 * first upper-layer bytes. A quote whose chain is truncated, too long, or a
 * later fragment names no ports: 0, and the error is judged as plain
 * ICMPv6. Returns 1 with `embedded`/`addrs` filled, else 0.
 */
static __always_inline int ms_icmp6_error_quote(struct __sk_buff *skb, __u32 l4_offset,
						struct ms_flow *embedded, struct ms_flow6 *addrs)
{
	const __u32 icmp_header_bytes = 8;
	struct ipv6hdr inner;
	if (bpf_skb_load_bytes(skb, l4_offset + icmp_header_bytes, &inner, sizeof(inner)))
		return 0;
	if (inner.version != 6)
		return 0;
	__builtin_memcpy(addrs->saddr, &inner.saddr, sizeof(addrs->saddr));
	__builtin_memcpy(addrs->daddr, &inner.daddr, sizeof(addrs->daddr));
	/* A quote is cut short by design (RFC 4443: as much as fits): walk to the skb's end. */
	int walk = ms_ipv6_skip_extensions(skb, l4_offset + icmp_header_bytes + sizeof(inner), skb->len,
					   inner.nexthdr);
	if (walk < 0 || (walk & MS_IPV6_WALK_LATER_FRAGMENT))
		return 0;
	__u8 proto = walk & 0xFF;
	__u32 upper_offset = (walk >> MS_IPV6_WALK_OFFSET_SHIFT) & MS_IPV6_WALK_OFFSET_MASK;
	embedded->proto = proto;
	__u8 head[6]; /* ports; or ICMPv6 type, code, checksum, echo id */
	if (bpf_skb_load_bytes(skb, upper_offset, head, sizeof(head)))
		return 0;
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		embedded->sport = *(__be16 *)&head[0];
		embedded->dport = *(__be16 *)&head[2];
		return 1;
	case IPPROTO_ICMPV6:
		if (head[0] != MS_ICMP6_ECHO_REQUEST && head[0] != MS_ICMP6_ECHO_REPLY)
			return 0;
		embedded->sport = *(__be16 *)&head[4];
		embedded->dport = embedded->sport;
		return 1;
	default:
		return 0;
	}
}

#endif /* MICROSEG_BPF_IPV6_H */
