// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * microseg TC data path.
 *
 * Two programs sit on every pod's host-side veth:
 *   from_pod  - clsact ingress of the host veth: packets leaving the pod
 *               (MS_DIR_EGRESS from the pod's point of view);
 *   to_pod    - clsact egress of the host veth: packets entering the pod
 *               (MS_DIR_INGRESS).
 * Both run the same pipeline (endpoint -> parse, then a tail call into the
 * direction's tracking stage: session -> isolation -> policy) and every
 * program leaves through one exit that counts the verdict's reason, so
 * every packet is accounted for exactly once in ms_stats.
 *
 * The pipeline fails closed: a veth without a registered endpoint, a packet
 * we cannot parse, or a protocol we cannot judge in a direction where
 * policy is enforced (isolated, or a Deny to look up) is dropped, never
 * waved through.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "microseg/datapath.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MS_NSEC_PER_SEC 1000000000ULL

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_ENDPOINTS);
	__type(key, struct ms_endpoint_key);
	__type(value, struct ms_endpoint);
} ms_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_POLICY_EXACT);
	__type(key, struct ms_policy_key);
	__type(value, struct ms_policy_value);
} ms_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MS_DEFAULT_MAX_POLICY_LPM);
	__type(key, struct ms_lpm_key);
	__type(value, struct ms_policy_value);
} ms_policy_lpm SEC(".maps");

/*
 * R6 bloom pre-filter in front of ms_policy, off unless the loader turns it
 * on (see struct ms_policy_bloom_element). A loader on a kernel without
 * BPF_MAP_TYPE_BLOOM_FILTER (< 5.16) turns this map into a one-slot array
 * and leaves the flag off; the verifier then never sees the peek.
 */
const volatile __u8 policy_bloom_enabled = 0;

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 1); /* sized by a loader that enables it */
	__type(value, struct ms_policy_bloom_element);
} ms_policy_bloom SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	/* Per-CPU LRU lists: no global lock on the hot insert path. */
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	/* The agent always sizes it (--max_sessions); this only serves tests. */
	__uint(max_entries, 262144);
	__type(key, struct ms_session_key);
	__type(value, struct ms_session);
} ms_sessions SEC(".maps");

/* IPv6 twins of ms_policy, ms_policy_lpm and ms_sessions (docs/ipv6.md). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_POLICY6_EXACT);
	__type(key, struct ms_policy6_key);
	__type(value, struct ms_policy_value);
} ms_policy6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MS_DEFAULT_MAX_POLICY6_LPM);
	__type(key, struct ms_lpm6_key);
	__type(value, struct ms_policy_value);
} ms_policy6_lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 65536); /* sized by the agent (--max_sessions6) */
	__type(key, struct ms_session6_key);
	__type(value, struct ms_session);
} ms_sessions6 SEC(".maps");

/* Session-map pressure, the allow-list and endpoint lockdown. */
#include "map_pressure.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MS_STATS_ENTRIES);
	__type(key, __u32);
	__type(value, struct ms_counter);
} ms_stats SEC(".maps");

/*
 * Internal "keep going" marker between pipeline stages. It is outside the
 * reason enum's valid range on purpose and never reaches ms_stats.
 */
#define MS_CONTINUE MS_REASON_MAX

/* Longest header run we ever read: Ethernet + IPv4 with options + TCP. */
#define MS_MAX_HEADER_BYTES (ETH_HLEN + 60 + sizeof(struct tcphdr))

#define MS_IPV4_FRAG_OFFSET_MASK 0x1FFF

/*
 * <linux/icmp.h> pulls in <linux/if.h> and with it glibc's <sys/socket.h>,
 * which does not build for the bpf target. The echo header is all we need
 * (RFC 792), so it is spelled out here.
 */
#define MS_ICMP_TYPE_ECHO_REPLY 0
#define MS_ICMP_TYPE_ECHO_REQUEST 8
struct ms_icmp_echo_header {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};

enum ms_icmp_kind {
	MS_ICMP_NONE = 0,
	MS_ICMP_ECHO_REQUEST = 1,
	MS_ICMP_ECHO_REPLY = 2,
	MS_ICMP_ERROR = 3, /* carries the header of a packet it reports on */
};

/* What the pipeline needs of one IP packet, ports in network order. */
struct ms_flow {
	__u32 saddr; /* IPv4 only; an IPv6 flow's addresses are its ms_flow6 */
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 trackable; /* a session may be created for / matched by this flow */
	__u8 icmp_kind; /* enum ms_icmp_kind */
	__u8 ipv6;      /* set by ms_parse6: the IPv6 stages take it */
	__u16 l4_offset; /* from the start of the frame (IPv6: at most 8 extension headers of 2 KiB) */
	__u16 l4_len;    /* L4 header + payload, per the IP total/payload length */
};

/*
 * The addresses of an IPv6 flow, net order. Kept apart from ms_flow so the
 * IPv4 path copies and compares no more than before; every helper that
 * deals in addresses takes `v6` (a constant in each program: the compiler
 * keeps one family's code per program) and both.
 */
struct ms_flow6 {
	__u32 saddr[4];
	__u32 daddr[4];
};

/*
 * What a packet whose flow parsing cannot judge (a later fragment, another
 * L3 protocol, an IPv6 header chain too long to walk) gets in a direction:
 * dropped where the direction is isolated or some entry there denies,
 * counted as audit where only Audit entries could have dropped it, passed
 * where nothing is enforced.
 */
enum ms_unjudgeable {
	MS_UNJUDGEABLE_PASS = 0,
	MS_UNJUDGEABLE_DROP = 1,
	MS_UNJUDGEABLE_AUDIT = 2,
};

static __always_inline __u32 ms_unjudgeable_mode(__u8 flags, __u8 lookup_actions, __u32 dir)
{
	__u8 isolated = dir == MS_DIR_INGRESS ? MS_EP_F_INGRESS_ISOLATED : MS_EP_F_EGRESS_ISOLATED;
	__u8 lookup = dir == MS_DIR_INGRESS ? MS_EP_F_INGRESS_LOOKUP : MS_EP_F_EGRESS_LOOKUP;
	if (flags & isolated)
		return MS_UNJUDGEABLE_DROP;
	if (!(flags & lookup))
		return MS_UNJUDGEABLE_PASS;
	if (lookup_actions & MS_EP_LOOKUP_DENIES(dir))
		return MS_UNJUDGEABLE_DROP;
	return (lookup_actions & MS_EP_LOOKUP_AUDITS(dir)) ? MS_UNJUDGEABLE_AUDIT : MS_UNJUDGEABLE_PASS;
}

/* The reason for such a packet; `drop_reason` names what made it unjudgeable. */
static __always_inline __u32 ms_unjudgeable_reason(__u32 mode, __u32 drop_reason)
{
	if (mode == MS_UNJUDGEABLE_DROP)
		return drop_reason;
	return mode == MS_UNJUDGEABLE_AUDIT ? MS_REASON_ALLOW_AUDIT : MS_REASON_ALLOW_NOT_ISOLATED;
}

#include "session.h"
#include "ipv6.h"
/* Reports of flows only an Audit policy lets through. */
#include "audit_events.h"

static __always_inline __u32 ms_verdict_of(__u32 reason)
{
	return ms_reason_is_drop(reason) ? TC_ACT_SHOT : TC_ACT_OK;
}

/* The one exit: account the reason, then turn it into a TC action. */
static __always_inline int ms_finish(struct __sk_buff *skb, __u32 dir, __u32 reason)
{
	if (reason >= MS_REASON_MAX) /* cannot happen; fail closed and visible */
		reason = MS_REASON_DROP_MALFORMED;
	__u32 index = ms_stats_index(dir, reason);
	struct ms_counter *counter = bpf_map_lookup_elem(&ms_stats, &index);
	if (counter) {
		/* Per-CPU slot: no other CPU writes it, plain adds are exact. */
		counter->packets += 1;
		counter->bytes += skb->len;
	}
	return ms_verdict_of(reason);
}

/* Ports (or ICMP echo id) of the L4 header at l4; MS_CONTINUE or MALFORMED. */
static __always_inline __u32 ms_parse_l4(void *l4, void *data_end, __u32 l4_room,
					 struct ms_flow *flow)
{
	switch (flow->proto) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end || l4_room < sizeof(*tcp))
			return MS_REASON_DROP_MALFORMED;
		flow->sport = tcp->source;
		flow->dport = tcp->dest;
		flow->trackable = 1;
		return MS_CONTINUE;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end || l4_room < sizeof(*udp))
			return MS_REASON_DROP_MALFORMED;
		flow->sport = udp->source;
		flow->dport = udp->dest;
		flow->trackable = 1;
		return MS_CONTINUE;
	}
	case IPPROTO_SCTP: {
		/* SCTP common header: sport, dport, verification tag, checksum. */
		const __u32 sctp_common_header_bytes = 12;
		__be16 *ports = l4;
		if (l4 + sctp_common_header_bytes > data_end || l4_room < sctp_common_header_bytes)
			return MS_REASON_DROP_MALFORMED;
		flow->sport = ports[0];
		flow->dport = ports[1];
		flow->trackable = 1;
		return MS_CONTINUE;
	}
	case IPPROTO_ICMP: {
		struct ms_icmp_echo_header *icmp = l4;
		if ((void *)(icmp + 1) > data_end || l4_room < sizeof(*icmp))
			return MS_REASON_DROP_MALFORMED;
		if (icmp->type == MS_ICMP_TYPE_ECHO_REQUEST || icmp->type == MS_ICMP_TYPE_ECHO_REPLY) {
			/* The echo id pairs request and reply like a port pair. */
			flow->sport = icmp->id;
			flow->dport = icmp->id;
			flow->trackable = 1;
			flow->icmp_kind = icmp->type == MS_ICMP_TYPE_ECHO_REQUEST
						  ? MS_ICMP_ECHO_REQUEST
						  : MS_ICMP_ECHO_REPLY;
		} else if (ms_icmp_type_is_error(icmp->type)) {
			flow->icmp_kind = MS_ICMP_ERROR;
		}
		return MS_CONTINUE;
	}
	default:
		/* Other protocols carry no ports; policy sees them as port 0. */
		return MS_CONTINUE;
	}
}

/*
 * Parse L2-L4. Returns MS_CONTINUE with `flow` filled for IPv4 (and IPv6,
 * its addresses in `addrs6`: ipv6.h), or the
 * final reason for everything that is decided by parsing alone.
 * `unjudgeable`: what a packet parsing cannot judge (other L3, later
 * fragments, an unwalkable IPv6 chain) gets in this direction (see
 * ms_unjudgeable_mode): a Deny must not be bypassed by fragmenting the
 * packet or by wrapping it in another protocol.
 */
static __always_inline __u32 ms_parse(struct __sk_buff *skb, __u32 unjudgeable, __u32 dir,
				     const struct ms_endpoint *endpoint, struct ms_flow *flow,
				     struct ms_flow6 *addrs6)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 wanted = skb->len < MS_MAX_HEADER_BYTES ? skb->len : MS_MAX_HEADER_BYTES;

	/*
	 * Headers of a non-linear skb may sit outside the linear area; pull
	 * them in once so the direct reads below see the whole header run.
	 */
	if (data + wanted > data_end) {
		if (bpf_skb_pull_data(skb, wanted))
			return MS_REASON_DROP_MALFORMED; /* cannot inspect: fail closed */
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return MS_REASON_DROP_MALFORMED;

	__u16 ethertype = bpf_ntohs(eth->h_proto);
	if (ethertype == ETH_P_ARP)
		return MS_REASON_ALLOW_NON_IP;
	if (ethertype == ETH_P_IPV6)
		return ms_parse6(skb, data_end, (void *)(eth + 1), unjudgeable, dir, endpoint->ipv6, flow,
				 addrs6);
	if (ethertype != ETH_P_IP)
		return ms_unjudgeable_reason(unjudgeable, MS_REASON_DROP_UNSUPPORTED_L3);

	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return MS_REASON_DROP_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return MS_REASON_DROP_MALFORMED;
	__u32 ip_header_bytes = ip->ihl * 4;
	__u32 ip_total_bytes = bpf_ntohs(ip->tot_len);
	if (ip_total_bytes < ip_header_bytes || ETH_HLEN + ip_total_bytes > skb->len)
		return MS_REASON_DROP_MALFORMED;
	void *l4 = (void *)ip + ip_header_bytes;
	if (l4 > data_end)
		return MS_REASON_DROP_MALFORMED;

	flow->saddr = ip->saddr;
	flow->daddr = ip->daddr;
	flow->proto = ip->protocol;
	flow->l4_offset = ETH_HLEN + ip_header_bytes;
	flow->l4_len = ip_total_bytes - ip_header_bytes;

	/*
	 * A pod speaks only with its own address: a forged source would pass as
	 * another pod at every peer's ingress policy. Checked before anything
	 * else may admit the packet (sessions, fragments, non-isolation). A pod
	 * without an IPv4 address (0) owns none, 0.0.0.0 included.
	 */
	if (dir == MS_DIR_EGRESS && (endpoint->ipv4 == 0 || flow->saddr != endpoint->ipv4))
		return MS_REASON_DROP_SPOOFED_SOURCE;

	/* Only the first fragment carries L4 ports; later ones cannot be judged. */
	if (bpf_ntohs(ip->frag_off) & MS_IPV4_FRAG_OFFSET_MASK)
		return ms_unjudgeable_reason(unjudgeable, MS_REASON_DROP_FRAGMENT);

	return ms_parse_l4(l4, data_end, ip_total_bytes - ip_header_bytes, flow);
}

/* False only if ms_policy surely has no entry for this peer (bloom "absent"). */
static __always_inline int ms_policy_exact_may_match(__u32 endpoint_id, __u32 peer, __u32 dir)
{
	if (!policy_bloom_enabled)
		return 1;
	struct ms_policy_bloom_element element = {
		.endpoint_id = endpoint_id,
		.peer_ipv4 = peer,
		.direction = dir,
	};
	return bpf_map_peek_elem(&ms_policy_bloom, &element) == 0;
}

/* The reason a policy map entry gives, its rule in *rule_id; -1 when there is none. */
static __always_inline int ms_policy_value_reason(const struct ms_policy_value *value,
						  __u32 *rule_id)
{
	if (!value)
		return -1;
	*rule_id = value->rule_id;
	if (value->action == MS_ACTION_ALLOW)
		return MS_REASON_ALLOW_POLICY;
	if (value->action == MS_ACTION_ALLOW_AUDIT)
		return MS_REASON_ALLOW_AUDIT;
	return MS_REASON_DROP_POLICY; /* DENY, and fail closed on anything else */
}

/* Exact-match lookup for a peer pod address: -1 no entry, else its reason. */
static __always_inline int ms_policy_exact_reason(__u32 endpoint_id, __u32 peer, __u8 proto,
						  __u16 port, __u32 dir, __u32 *rule_id)
{
	struct ms_policy_key key = {
		.endpoint_id = endpoint_id,
		.peer_ipv4 = peer,
		.port = port,
		.proto = proto,
		.direction = dir,
	};
	return ms_policy_value_reason(bpf_map_lookup_elem(&ms_policy, &key), rule_id);
}

/* CIDR lookup: -1 no entry, else its reason (an ipBlock `except` denies). */
static __always_inline int ms_policy_lpm_reason(__u32 endpoint_id, __u32 peer, __u8 proto,
						__u16 port, __u32 dir, __u32 *rule_id)
{
	struct ms_lpm_key key = {
		.prefixlen = MS_LPM_FIXED_BITS + 32,
		.endpoint_id = endpoint_id,
		.direction = dir,
		.proto = proto,
		.port = port,
		.peer_ipv4 = peer,
	};
	return ms_policy_value_reason(bpf_map_lookup_elem(&ms_policy_lpm, &key), rule_id);
}

/* IPv6 twins of the two lookups above, on ms_policy6 / ms_policy6_lpm. */
static __always_inline int ms_policy6_exact_reason(__u32 endpoint_id, const __u32 *peer, __u8 proto,
						   __u16 port, __u32 dir, __u32 *rule_id)
{
	struct ms_policy6_key key = {
		.endpoint_id = endpoint_id,
		.port = port,
		.proto = proto,
		.direction = dir,
	};
	__builtin_memcpy(key.peer_ipv6, peer, sizeof(key.peer_ipv6));
	return ms_policy_value_reason(bpf_map_lookup_elem(&ms_policy6, &key), rule_id);
}

static __always_inline int ms_policy6_lpm_reason(__u32 endpoint_id, const __u32 *peer, __u8 proto,
						 __u16 port, __u32 dir, __u32 *rule_id)
{
	struct ms_lpm6_key key = {
		.prefixlen = MS_LPM_FIXED_BITS + 128,
		.endpoint_id = endpoint_id,
		.direction = dir,
		.proto = proto,
		.port = port,
	};
	__builtin_memcpy(key.peer_ipv6, peer, sizeof(key.peer_ipv6));
	return ms_policy_value_reason(bpf_map_lookup_elem(&ms_policy6_lpm, &key), rule_id);
}

/* The family's exact (lpm = 0) or CIDR (lpm = 1) lookup; `v6` and `lpm` are constants. */
static __always_inline int ms_policy_reason(int v6, int lpm, __u32 endpoint_id, __u32 peer4,
					    const __u32 *peer6, __u8 proto, __u16 port, __u32 dir,
					    __u32 *rule_id)
{
	if (v6)
		return lpm ? ms_policy6_lpm_reason(endpoint_id, peer6, proto, port, dir, rule_id)
			   : ms_policy6_exact_reason(endpoint_id, peer6, proto, port, dir, rule_id);
	return lpm ? ms_policy_lpm_reason(endpoint_id, peer4, proto, port, dir, rule_id)
		   : ms_policy_exact_reason(endpoint_id, peer4, proto, port, dir, rule_id);
}

/*
 * The first port of the endPort interval holding `port` for this endpoint,
 * direction and protocol; 0 when no range covers it (ranges never start at
 * port 0). Port-only, so it serves IPv6 flows too.
 */
static __always_inline __u16 ms_port_interval(__u32 endpoint_id, __u8 proto, __u16 port, __u32 dir)
{
	struct ms_lpm_key key = {
		.prefixlen = MS_PORT_LOOKUP_FIXED_BITS + 16,
		.endpoint_id = endpoint_id,
		.direction = dir | MS_DIR_F_PORT_LOOKUP,
		.proto = proto,
		.port = bpf_htons(port),
	};
	const struct ms_policy_value *value = bpf_map_lookup_elem(&ms_policy_lpm, &key);
	if (!value || value->action != MS_ACTION_PORT_INTERVAL)
		return 0;
	return (__u16)value->rule_id;
}

/* ICMP has no ports: its echo id (kept in the ports for sessions) is no port. */
static __always_inline __u16 ms_policy_port(int v6, const struct ms_flow *flow)
{
	return flow->proto == (v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP) ? 0 : bpf_ntohs(flow->dport);
}

/* May the endpoint's LPM map hold an entry of the (proto, port) key shape? */
static __always_inline int ms_lpm_shape_present(__u8 lpm_absent, __u32 dir, __u8 proto, __u16 port)
{
	return (lpm_absent & ms_lpm_shape_bit(dir, proto, port)) == 0;
}

/*
 * Most specific first: (proto, port), (proto, the port's endPort interval),
 * (proto, any port), (any proto, any port), exact map before LPM; a
 * combination equal to an earlier one is skipped, the interval rung is
 * taken only when the endpoint has ranges and one covers the port. An LPM
 * step of a standard key shape the endpoint has no entry of is skipped
 * (`lpm_absent`, the flow's family's hints; never the interval steps). The
 * first entry decides (the agent compiled every policy tier into it); none:
 * the endpoint's default for the direction. IPv6 flows (`v6`, addresses in
 * `addrs6`) take the same steps on the *6 maps. The deciding entry's rule
 * goes to *rule_id (untouched on a miss).
 */
static __always_inline __u32 ms_policy_verdict(int v6, const struct ms_flow *flow,
					       const struct ms_flow6 *addrs6, __u32 endpoint_id,
					       __u32 dir, int isolated, int has_ranges, __u8 lpm_absent,
					       __u32 *rule_id)
{
	__u32 peer = 0;
	const __u32 *peer6 = 0;
	if (v6)
		peer6 = dir == MS_DIR_INGRESS ? addrs6->saddr : addrs6->daddr;
	else
		peer = dir == MS_DIR_INGRESS ? flow->saddr : flow->daddr;
	__u16 port = ms_policy_port(v6, flow);
	__u8 proto = flow->proto;
	int try_proto_any_port = port != 0;
	int try_any_proto = proto != 0;
	__u32 interval_dir = dir | MS_DIR_F_PORT_INTERVAL;
	__u16 interval = 0;

	int reason = -1;
	/* The bloom pre-filter covers ms_policy only. */
	int exact_may_match = v6 || ms_policy_exact_may_match(endpoint_id, peer, dir);
	if (exact_may_match)
		reason = ms_policy_reason(v6, 0, endpoint_id, peer, peer6, proto, port, dir, rule_id);
	/* Only when the exact port did not decide: an exact hit pays nothing for ranges. */
	if (reason < 0 && has_ranges && port != 0)
		interval = ms_port_interval(endpoint_id, proto, port, dir);
	if (exact_may_match) {
		if (reason < 0 && interval)
			reason = ms_policy_reason(v6, 0, endpoint_id, peer, peer6, proto, interval, interval_dir, rule_id);
		if (reason < 0 && try_proto_any_port)
			reason = ms_policy_reason(v6, 0, endpoint_id, peer, peer6, proto, 0, dir, rule_id);
		if (reason < 0 && try_any_proto)
			reason = ms_policy_reason(v6, 0, endpoint_id, peer, peer6, 0, 0, dir, rule_id);
	}
	if (reason < 0 && ms_lpm_shape_present(lpm_absent, dir, proto, port))
		reason = ms_policy_reason(v6, 1, endpoint_id, peer, peer6, proto, port, dir, rule_id);
	if (reason < 0 && interval)
		reason = ms_policy_reason(v6, 1, endpoint_id, peer, peer6, proto, interval, interval_dir, rule_id);
	if (reason < 0 && try_proto_any_port && ms_lpm_shape_present(lpm_absent, dir, proto, 0))
		reason = ms_policy_reason(v6, 1, endpoint_id, peer, peer6, proto, 0, dir, rule_id);
	if (reason < 0 && try_any_proto && ms_lpm_shape_present(lpm_absent, dir, 0, 0))
		reason = ms_policy_reason(v6, 1, endpoint_id, peer, peer6, 0, 0, dir, rule_id);
	if (reason < 0)
		return isolated ? MS_REASON_DROP_POLICY : MS_REASON_ALLOW_NOT_ISOLATED;
	return reason;
}

/*
 * The pipeline's endpoint_flags: MS_EP_F_* in the low byte, the LPM shape
 * hints of the packet's family in the high byte (ms_entry).
 */
#define MS_LPM_ABSENT_OF(endpoint_flags) ((__u8)((endpoint_flags) >> 8))

/*
 * The verdict of policy alone on a new flow in `dir` (isolation included);
 * the deciding entry's rule id in *rule_id, 0 when no entry decided.
 */
static __always_inline __u32 ms_flow_verdict(int v6, const struct ms_flow *flow,
					     const struct ms_flow6 *addrs6, __u32 endpoint_id,
					     __u16 endpoint_flags, __u32 dir, __u32 *rule_id)
{
	__u8 isolation_bit =
		dir == MS_DIR_INGRESS ? MS_EP_F_INGRESS_ISOLATED : MS_EP_F_EGRESS_ISOLATED;
	__u8 lookup_bit = dir == MS_DIR_INGRESS ? MS_EP_F_INGRESS_LOOKUP : MS_EP_F_EGRESS_LOOKUP;
	int isolated = (endpoint_flags & isolation_bit) != 0;
	*rule_id = 0;
	/* Not isolated: allowed, and tracked: the reply may enter an isolated direction. */
	if (!isolated && !(endpoint_flags & lookup_bit))
		return MS_REASON_ALLOW_NOT_ISOLATED;
	/* The policy generation the entry's one read of the flags named. */
	return ms_policy_verdict(v6, flow, addrs6, ms_policy_id(endpoint_id, endpoint_flags), dir,
				 isolated, (endpoint_flags & MS_EP_F_PORT_RANGES) != 0,
				 MS_LPM_ABSENT_OF(endpoint_flags), rule_id);
}

/* ---- session tracking: what a packet of a trackable flow does ---- */

/* Internal: an ICMP echo going the wrong way for the session it names. */
#define MS_SESSION_MISMATCH 0xFFFFFFFDU

/*
 * A packet of a live session. Re-checks policy if it changed since the
 * session was admitted, then advances the TCP state machine.
 */
static __always_inline __u32 ms_session_continue(struct __sk_buff *skb, int v6, struct ms_session *s,
						 const union ms_any_session_key *key,
						 const struct ms_flow *flow,
						 struct ms_tcp_packet *tcp, __u32 endpoint_id,
						 __u16 endpoint_flags, __u32 policy_rev, __u32 dir,
						 __u64 now)
{
	int from_initiator = s->direction == dir;
	/* A request only continues its own ping, a reply only answers one. */
	if (flow->icmp_kind == MS_ICMP_ECHO_REQUEST && !from_initiator)
		return MS_SESSION_MISMATCH;
	if (flow->icmp_kind == MS_ICMP_ECHO_REPLY && from_initiator)
		return MS_SESSION_MISMATCH;

	if (s->policy_rev != policy_rev) {
		struct ms_flow initiator = {};
		struct ms_flow6 initiator6;
		ms_session_initiator_flow(v6, key, s->direction, &initiator, &initiator6);
		__u32 rule_id; /* a re-check reports nothing: the session was reported when it opened */
		if (ms_reason_is_drop(ms_flow_verdict(v6, &initiator, &initiator6, endpoint_id,
						      endpoint_flags, s->direction, &rule_id)))
			ms_session_revoke(s, endpoint_id);
		else
			s->flags &= ~MS_SESSION_F_REVOKED; /* allowed again */
		s->policy_rev = policy_rev;
	}
	/*
	 * A revoked session stays as a tombstone until its state's timeout:
	 * deleted, the flow's next segment would be picked up again through the
	 * reverse orientation whenever that one is not isolated.
	 */
	if (s->flags & MS_SESSION_F_REVOKED)
		return MS_REASON_DROP_POLICY_REVOKED;

	if (flow->proto == IPPROTO_TCP) {
		ms_tcp_read_window_scale(skb, tcp);
		__u32 verdict = ms_tcp_advance(s, tcp, from_initiator);
		if (verdict == MS_TCP_RESTART)
			return verdict;
		/* Only a segment the state machine accepts confirms a picked-up session. */
		__u8 awaited = from_initiator ? MS_SESSION_F_AWAITING_INITIATOR : MS_SESSION_F_AWAITING_RESPONDER;
		if (verdict == MS_CONTINUE && (s->flags & awaited))
			s->flags &= ~MS_SESSION_F_UNCONFIRMED;
		ms_session_settle_half_open(s, endpoint_id);
		if (verdict != MS_CONTINUE)
			return verdict; /* a dropped segment does not keep the session alive */
	}
	s->last_seen_ns = now;
	return MS_REASON_ALLOW_SESSION;
}

/*
 * A packet that belongs to no live session: policy decides, and an admitted
 * flow gets a session. A TCP segment other than a SYN (the session was
 * evicted or expired, or predates the agent) is re-checked in both
 * orientations, since either side may have opened it, and picked up.
 */
static __always_inline __u32 ms_session_open(struct __sk_buff *skb, int v6,
					     const union ms_any_session_key *key,
					     const struct ms_flow *flow, const struct ms_flow6 *addrs6,
					     struct ms_tcp_packet *tcp, __u32 endpoint_id,
					     __u16 endpoint_flags, __u32 policy_rev, __u32 dir,
					     __u64 now)
{
	__u32 rule_id;
	__u32 reason = ms_flow_verdict(v6, flow, addrs6, endpoint_id, endpoint_flags, dir, &rule_id);
	__u16 verdict_port = ms_policy_port(v6, flow);
	struct ms_session s = {
		.last_seen_ns = now,
		.policy_rev = policy_rev,
		.direction = dir,
	};
	struct ms_half_open *half_open = 0;

	if (flow->proto == IPPROTO_TCP) {
		if (tcp->flags & MS_TCP_RST)
			return reason; /* a reset opens nothing */
		if ((tcp->flags & (MS_TCP_SYN | MS_TCP_ACK)) == MS_TCP_SYN) {
			if (ms_reason_is_drop(reason))
				return reason;
			/* Looked up once: the cap check and the count after the insert. */
			half_open = ms_half_open_counter(endpoint_id);
			if (half_open && ms_half_open_cap_reached(half_open))
				return MS_REASON_DROP_SYN_FLOOD;
			/*
			 * No counter (its map full of stale endpoints): admitted
			 * uncounted, as before the counter existed.
			 */
			s.flags = half_open ? MS_SESSION_F_HALF_OPEN : 0;
			s.tcp_state = MS_TCP_SYN_SENT;
			ms_tcp_read_window_scale(skb, tcp);
			ms_tcp_side_init_from_syn(&s.tcp[0], tcp);
		} else {
			__u32 reverse_dir = dir == MS_DIR_INGRESS ? MS_DIR_EGRESS : MS_DIR_INGRESS;
			struct ms_flow reversed = {
				.saddr = flow->daddr,
				.daddr = flow->saddr,
				.sport = flow->dport,
				.dport = flow->sport,
				.proto = flow->proto,
			};
			struct ms_flow6 reversed6;
			if (v6) {
				__builtin_memcpy(reversed6.saddr, addrs6->daddr, sizeof(reversed6.saddr));
				__builtin_memcpy(reversed6.daddr, addrs6->saddr, sizeof(reversed6.daddr));
			}
			__u32 reverse_rule_id;
			__u32 reverse_reason = ms_flow_verdict(v6, &reversed, &reversed6, endpoint_id,
							       endpoint_flags, reverse_dir, &reverse_rule_id);
			int syn_ack = (tcp->flags & MS_TCP_SYN) != 0;
			/* A SYN-ACK answers the receiver's SYN: the receiver opened it. */
			if (syn_ack) {
				s.direction = reverse_dir;
				if (!ms_reason_is_drop(reverse_reason)) {
					reason = reverse_reason;
					rule_id = reverse_rule_id;
					verdict_port = bpf_ntohs(flow->sport);
				}
			} else if (ms_reason_is_drop(reason)) {
				s.direction = reverse_dir;
				reason = reverse_reason;
				rule_id = reverse_rule_id;
				verdict_port = bpf_ntohs(flow->sport);
			}
			if (ms_reason_is_drop(reason))
				return reason;
			s.tcp_state = syn_ack ? MS_TCP_SYN_SENT : MS_TCP_ESTABLISHED;
			ms_tcp_read_window_scale(skb, tcp);
			__u32 verdict = ms_tcp_advance(&s, tcp, s.direction == dir);
			if (verdict != MS_CONTINUE)
				return verdict;
			/* Unconfirmed until the other side answers: half-open meanwhile (datapath.h). */
			half_open = ms_half_open_counter(endpoint_id);
			if (half_open && ms_half_open_cap_reached(half_open))
				return MS_REASON_DROP_SYN_FLOOD;
			s.flags |= MS_SESSION_F_PICKED_UP | (half_open ? MS_SESSION_F_HALF_OPEN : 0) |
				   (s.direction == dir ? MS_SESSION_F_AWAITING_RESPONDER
						       : MS_SESSION_F_AWAITING_INITIATOR);
		}
	} else {
		if (ms_reason_is_drop(reason))
			return reason;
		/* Only an echo request opens an ICMP flow; a stray reply opens nothing. */
		if (flow->icmp_kind == MS_ICMP_ECHO_REPLY)
			return reason;
	}

	/* A full session map refuses it unless allow-listed (map_pressure.h). */
	__u32 pressure = ms_pressure_session_admit_in(
		v6, dir == MS_DIR_INGRESS ? flow->saddr : flow->daddr,
		v6 ? (dir == MS_DIR_INGRESS ? addrs6->saddr : addrs6->daddr) : 0, flow->proto,
		ms_policy_port(v6, flow), now);
	if (pressure != MS_CONTINUE)
		return pressure;
	/*
	 * A failed insert (a race with another CPU, memory pressure) still lets
	 * this packet through: policy admitted it.
	 */
	if (ms_session_insert(v6, key, &s, half_open) == MS_SESSION_INSERT_OVER_CAP)
		return MS_REASON_DROP_SYN_FLOOD;
	if (reason == MS_REASON_ALLOW_AUDIT)
		ms_audit_report(v6, flow, addrs6, endpoint_id, endpoint_flags, policy_rev, dir,
				s.direction, verdict_port, rule_id, now);
	return reason;
}

static __always_inline __u32 ms_track(struct __sk_buff *skb, int v6, const struct ms_flow *flow,
				      const struct ms_flow6 *addrs6, __u32 endpoint_id, __u16 endpoint_flags, __u32 policy_rev,
				      __u32 dir, __u64 now)
{
	struct ms_tcp_packet tcp = {};
	if (flow->proto == IPPROTO_TCP) {
		__u32 read = ms_tcp_read(skb, flow->l4_offset, flow->l4_len, &tcp);
		if (read != MS_CONTINUE)
			return read;
		if (ms_tcp_flags_invalid(tcp.flags))
			return MS_REASON_DROP_INVALID_TCP_STATE;
	}

	union ms_any_session_key key;
	ms_any_session_key_of(v6, flow, addrs6, endpoint_id, dir, &key);
	struct ms_session *s = ms_session_lookup_live(v6, &key, now);
	if (s) {
		__u32 verdict = ms_session_continue(skb, v6, s, &key, flow, &tcp, endpoint_id,
						    endpoint_flags, policy_rev, dir, now);
		if (verdict == MS_TCP_RESTART)
			ms_session_delete(v6, &key, s); /* port reuse: a new connection, through policy */
		else if (verdict != MS_SESSION_MISMATCH)
			return verdict;
	}
	/* Its policy did not fit the maps: only tracked flows go on. */
	if (ms_endpoint_locked_down(endpoint_flags))
		return MS_REASON_DROP_MAP_FULL;
	return ms_session_open(skb, v6, &key, flow, addrs6, &tcp, endpoint_id, endpoint_flags,
			       policy_rev, dir, now);
}

/* An ICMP or ICMPv6 error about a live session of this endpoint? */
static __always_inline int ms_icmp_error_related_any(struct __sk_buff *skb, int v6, __u32 l4_offset,
						     __u32 endpoint_id, __u32 dir, __u64 now)
{
	if (!v6)
		return ms_icmp_error_related(skb, l4_offset, endpoint_id, dir, now);
	struct ms_flow embedded = {};
	struct ms_flow6 embedded6;
	if (!ms_icmp6_error_quote(skb, l4_offset, &embedded, &embedded6))
		return 0;
	return ms_quoted_session_live(1, &embedded, &embedded6, endpoint_id, dir, now);
}

/* ---- pipeline stages (R4) ---- */

/*
 * The entry programs (from_pod, to_pod) find the endpoint and parse; every
 * IP packet that parsing does not decide is handed to the direction's
 * tracking stage (sessions, isolation, policy) by a tail call through
 * ms_stages. Each program is verified on its own, so the tracking stage has
 * the whole instruction budget for itself. The hand-over state travels in a
 * per-CPU scratch slot: a tail call keeps the CPU, so the stage reads what
 * its entry wrote for this very packet.
 */
struct ms_stage_state {
	struct ms_flow flow;
	struct ms_flow6 flow6; /* written for IPv6 packets only */
	__u32 ifindex; /* the entry's skb->ifindex: a stage run on its own finds a mismatch */
	__u32 endpoint_id;
	__u32 policy_rev;
	__u16 endpoint_flags; /* MS_EP_F_* | the packet family's LPM hints << 8 (MS_LPM_ABSENT_OF) */
	__u8 pad[2];
};

/* BPF-internal (user space never reads it): not part of datapath.h. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_stage_state);
} ms_scratch SEC(".maps");

int to_pod_track(struct __sk_buff *skb);
int from_pod_track(struct __sk_buff *skb);
int to_pod_track6(struct __sk_buff *skb);
int from_pod_track6(struct __sk_buff *skb);

/*
 * Filled by libbpf at load (declarative slots); the agent fills and checks
 * it again before it pins the entry programs. Pinned like the other maps: a
 * PROG_ARRAY is emptied by the kernel when its last user-space reference
 * goes, and the attached programs must keep working while the agent is down.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, MS_STAGE_MAX);
	__uint(key_size, sizeof(__u32)); /* no BTF key type: the kernel refuses BTF on a PROG_ARRAY */
	__array(values, int(struct __sk_buff *));
} ms_stages SEC(".maps") = {
	.values = {
		[MS_STAGE_TO_POD_TRACK] = (void *)&to_pod_track,
		[MS_STAGE_FROM_POD_TRACK] = (void *)&from_pod_track,
		[MS_STAGE_TO_POD_TRACK6] = (void *)&to_pod_track6,
		[MS_STAGE_FROM_POD_TRACK6] = (void *)&from_pod_track6,
	},
};

/* Entry: endpoint, parse, hand over. Returns only a final reason. */
static __always_inline __u32 ms_entry(struct __sk_buff *skb, __u32 dir, __u32 stage, __u32 stage6)
{
	struct ms_endpoint_key endpoint_key = { .ifindex = skb->ifindex };
	struct ms_endpoint *endpoint = bpf_map_lookup_elem(&ms_endpoints, &endpoint_key);
	if (!endpoint)
		return MS_REASON_DROP_UNKNOWN_ENDPOINT;
	/*
	 * One load: isolation, policy generation, the LPM shape hints and
	 * lookup_actions must come from the same update (datapath.h asserts
	 * they share 32 bits).
	 */
	__u32 flag_bytes = *(volatile __u32 *)&endpoint->flags;
	__u8 flags = ((__u8 *)&flag_bytes)[0];
	__u8 lpm_absent = ((__u8 *)&flag_bytes)[1];
	__u8 lpm6_absent = ((__u8 *)&flag_bytes)[2];
	__u8 lookup_actions = ((__u8 *)&flag_bytes)[3];
	__u32 unjudgeable = ms_unjudgeable_mode(flags, lookup_actions, dir);

	__u32 zero = 0;
	struct ms_stage_state *state = bpf_map_lookup_elem(&ms_scratch, &zero);
	if (!state) /* cannot happen (one-slot array); fail closed */
		return MS_REASON_DROP_MISSED_TAIL_CALL;
	__builtin_memset(&state->flow, 0, sizeof(state->flow));
	__u32 reason = ms_parse(skb, unjudgeable, dir, endpoint, &state->flow, &state->flow6);
	if (reason != MS_CONTINUE)
		return reason;
	state->ifindex = skb->ifindex;
	state->endpoint_id = endpoint->endpoint_id;
	state->policy_rev = endpoint->policy_rev;
	state->endpoint_flags = flags | (__u16)(state->flow.ipv6 ? lpm6_absent : lpm_absent) << 8;

	bpf_tail_call(skb, &ms_stages, state->flow.ipv6 ? stage6 : stage);
	/* Reached only when the slot is empty: fail closed, counted by our exit. */
	return MS_REASON_DROP_MISSED_TAIL_CALL;
}

/* Tracking stage: sessions, isolation, policy for the packet its entry parsed. */
static __always_inline __u32 ms_track_stage(struct __sk_buff *skb, __u32 dir, int v6)
{
	__u32 zero = 0;
	struct ms_stage_state *state = bpf_map_lookup_elem(&ms_scratch, &zero);
	if (!state || state->ifindex != skb->ifindex)
		return MS_REASON_DROP_MISSED_TAIL_CALL; /* not entered through our entry */
	state->ifindex = 0; /* one packet, one hand-over */
	__u32 endpoint_id = state->endpoint_id;
	__u32 policy_rev = state->policy_rev;
	__u16 endpoint_flags = state->endpoint_flags;
	/*
	 * Read in place, not copied: the slot is this CPU's for the whole
	 * packet (a tail call keeps the CPU), and copies of both families'
	 * flows cost the stage a sixth of its stack.
	 */
	const struct ms_flow *flow = &state->flow;
	const struct ms_flow6 *flow6 = &state->flow6; /* read for IPv6 packets only */
	if (v6 && !flow->ipv6)
		return MS_REASON_DROP_MISSED_TAIL_CALL; /* not this family's stage */

	__u64 now = ms_now();
	if (flow->icmp_kind == MS_ICMP_ERROR && ms_icmp_error_related_any(skb, v6, flow->l4_offset,
									  endpoint_id, dir, now))
		return MS_REASON_ALLOW_RELATED;
	if (!flow->trackable) {
		if (ms_endpoint_locked_down(endpoint_flags))
			return MS_REASON_DROP_MAP_FULL;
		/* No session to remember it by: each such packet is a new flow of its own. */
		__u32 rule_id;
		__u32 reason = ms_flow_verdict(v6, flow, flow6, endpoint_id, endpoint_flags, dir,
					       &rule_id);
		if (reason == MS_REASON_ALLOW_AUDIT)
			ms_audit_report(v6, flow, flow6, endpoint_id, endpoint_flags, policy_rev, dir,
					dir, ms_policy_port(v6, flow), rule_id, now);
		return reason;
	}
	return ms_track(skb, v6, flow, flow6, endpoint_id, endpoint_flags, policy_rev, dir, now);
}

/* Every program leaves through ms_finish: each packet is counted once. */
/*
 * The agent's session sweeper sets an endpoint's half-open base here
 * (BPF_PROG_TEST_RUN, args as ctx): written in place, where a map update
 * from user space would replace the value and lose the data path's
 * concurrent additions to opened and closed. Returns 0, or 1 when the
 * endpoint has no counter.
 */
SEC("syscall")
int ms_half_open_rebase(struct ms_half_open_rebase_args *args)
{
	__u32 endpoint_id = args->endpoint_id;
	struct ms_half_open *counter = bpf_map_lookup_elem(&ms_half_open, &endpoint_id);
	if (!counter)
		return 1;
	counter->base = args->base;
	return 0;
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	return ms_finish(skb, MS_DIR_EGRESS,
			 ms_entry(skb, MS_DIR_EGRESS, MS_STAGE_FROM_POD_TRACK, MS_STAGE_FROM_POD_TRACK6));
}

SEC("tc")
int to_pod(struct __sk_buff *skb)
{
	return ms_finish(skb, MS_DIR_INGRESS,
			 ms_entry(skb, MS_DIR_INGRESS, MS_STAGE_TO_POD_TRACK, MS_STAGE_TO_POD_TRACK6));
}

SEC("tc")
int from_pod_track(struct __sk_buff *skb)
{
	return ms_finish(skb, MS_DIR_EGRESS, ms_track_stage(skb, MS_DIR_EGRESS, 0));
}

SEC("tc")
int to_pod_track(struct __sk_buff *skb)
{
	return ms_finish(skb, MS_DIR_INGRESS, ms_track_stage(skb, MS_DIR_INGRESS, 0));
}

/* The IPv6 stages: the same code on the *6 maps (v6 = 1 throughout). */
SEC("tc")
int from_pod_track6(struct __sk_buff *skb)
{
	return ms_finish(skb, MS_DIR_EGRESS, ms_track_stage(skb, MS_DIR_EGRESS, 1));
}

SEC("tc")
int to_pod_track6(struct __sk_buff *skb)
{
	return ms_finish(skb, MS_DIR_INGRESS, ms_track_stage(skb, MS_DIR_INGRESS, 1));
}
