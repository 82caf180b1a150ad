/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of every BPF map key and value, the drop/allow reasons
 * and the pinned object names. Included by the BPF programs (C) and by the
 * agent, the CNI plugin and the tests (C++), so the layouts can never drift.
 *
 * Rules for this file:
 *  - fixed-width kernel types only, explicit padding, no bitfields;
 *  - every field says its byte order ("net" = network order, else host);
 *  - every struct has a size assertion, and the fields a kernel map type
 *    interprets (the LPM prefix) have an offset assertion.
 */
#ifndef MICROSEG_DATAPATH_H
#define MICROSEG_DATAPATH_H

#include <linux/types.h>

#ifdef __cplusplus
#include <cstddef>
#define MS_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#define MS_OFFSETOF(type, member) offsetof(type, member)
#else
#define MS_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define MS_OFFSETOF(type, member) __builtin_offsetof(type, member)
#endif

/* ---- names of pinned objects, relative to the agent's bpffs directory ---- */
#define MS_PIN_PROG_FROM_POD "progs/from_pod" /* tc ingress of the host veth */
#define MS_PIN_PROG_TO_POD "progs/to_pod"     /* tc egress of the host veth */
#define MS_PIN_MAPS_DIR "maps"

/*
 * ---- ms_stages: PROG_ARRAY, the pipeline's tail-call slots (R4) ----
 * from_pod/to_pod parse and tail-call their direction's tracking stage
 * (programs from_pod_track/to_pod_track). An empty slot drops the packet
 * with MS_REASON_DROP_MISSED_TAIL_CALL.
 */
enum ms_stage {
	MS_STAGE_TO_POD_TRACK = 0,
	MS_STAGE_FROM_POD_TRACK = 1,
	MS_STAGE_TO_POD_TRACK6 = 2,   /* IPv6 packets: same pipeline on the *6 maps */
	MS_STAGE_FROM_POD_TRACK6 = 3,
	MS_STAGE_MAX = 4,
};

/* ---- default capacities (the agent may resize before load) ---- */
#define MS_DEFAULT_MAX_ENDPOINTS 4096
#define MS_DEFAULT_MAX_POLICY_EXACT 262144
#define MS_DEFAULT_MAX_POLICY_LPM 65536
#define MS_DEFAULT_MAX_SESSIONS 1048576 /* presets 100k / 500k / 2M: agent --session_map_preset */
/* IPv6 maps (docs/ipv6.md): a quarter of the IPv4 sizes, their keys are larger. */
#define MS_DEFAULT_MAX_POLICY6_EXACT 65536
#define MS_DEFAULT_MAX_POLICY6_LPM 16384
#define MS_DEFAULT_MAX_SESSIONS6 262144

/*
 * Direction is always seen from the pod: INGRESS is traffic into the pod
 * (the host veth's tc *egress* hook), EGRESS is traffic out of the pod (the
 * host veth's tc *ingress* hook).
 */
enum ms_direction {
	MS_DIR_INGRESS = 0,
	MS_DIR_EGRESS = 1,
	MS_DIR_MAX = 2,
};

/*
 * Why a packet got its verdict. Append new reasons before MS_REASON_MAX only,
 * never renumber: the agent exports them by name. Whether a reason allows or
 * drops is ms_reason_is_drop(), not its position (allow reasons were appended
 * after drop reasons).
 */
enum ms_reason {
	MS_REASON_ALLOW_POLICY = 0,       /* a policy rule allows the new flow */
	MS_REASON_ALLOW_NOT_ISOLATED = 1, /* no policy isolates the pod in this direction */
	MS_REASON_ALLOW_SESSION = 2,      /* packet of a tracked, allowed flow or its reply */
	MS_REASON_ALLOW_NON_IP = 3,       /* ARP, IPv6 NDP and MLD: needed for the pod's L2 to work */
	MS_REASON_DROP_POLICY = 4,        /* isolated and no rule allows */
	MS_REASON_DROP_UNKNOWN_ENDPOINT = 5, /* veth carries our program but no endpoint is registered yet */
	MS_REASON_DROP_MALFORMED = 6,     /* truncated or invalid headers; an IPv6 extension-header chain
					   * too long to walk (isolated pod) */
	MS_REASON_DROP_UNSUPPORTED_L3 = 7,/* an L3 protocol other than IPv4/IPv6/ARP to/from an isolated pod */
	MS_REASON_DROP_FRAGMENT = 8,      /* non-first IPv4/IPv6 fragment to/from an isolated pod */
	MS_REASON_DROP_SPOOFED_SOURCE = 9,/* IP packet leaving a pod with a source that is not the pod's */
	MS_REASON_ALLOW_AUDIT = 10,       /* allowed only because the deciding policy is in Audit mode: would be dropped */
	MS_REASON_DROP_INVALID_SEQ = 11,  /* TCP data/ACK far outside the tracked window */
	MS_REASON_DROP_INVALID_RST = 12,  /* TCP RST whose sequence is not in window (RFC 5961) */
	MS_REASON_DROP_INVALID_TCP_STATE = 13, /* TCP flags impossible in the session's state */
	MS_REASON_DROP_SYN_FLOOD = 14,    /* the endpoint's cap on half-open sessions (SYNs, unconfirmed pick-ups) is reached */
	MS_REASON_DROP_MAP_FULL = 15,     /* the session map cannot take a new, not allow-listed flow, or the
					   * endpoint is locked down because its policy did not fit (MS_EP_F_LOCKDOWN) */
	MS_REASON_DROP_MISSED_TAIL_CALL = 16, /* a pipeline stage is missing: fail closed */
	MS_REASON_DROP_POLICY_REVOKED = 17,/* a session admitted by an older policy that the current one denies */
	MS_REASON_ALLOW_RELATED = 18,     /* ICMP error about a tracked session */
	MS_REASON_MAX = 19,
};

static inline int ms_reason_is_drop(__u32 reason)
{
	return !(reason == MS_REASON_ALLOW_POLICY || reason == MS_REASON_ALLOW_NOT_ISOLATED ||
		 reason == MS_REASON_ALLOW_SESSION || reason == MS_REASON_ALLOW_NON_IP ||
		 reason == MS_REASON_ALLOW_AUDIT || reason == MS_REASON_ALLOW_RELATED);
}

/* ---- ms_stats: PERCPU_ARRAY, index = ms_stats_index(direction, reason) ---- */
struct ms_counter {
	__u64 packets;
	__u64 bytes;
};
MS_STATIC_ASSERT(sizeof(struct ms_counter) == 16, "ms_counter layout");
#define MS_STATS_ENTRIES ((int)MS_DIR_MAX * (int)MS_REASON_MAX)
static inline __u32 ms_stats_index(__u32 direction, __u32 reason)
{
	return direction * MS_REASON_MAX + reason;
}

/* ---- ms_endpoints: HASH, one entry per pod veth on this node ---- */
struct ms_endpoint_key {
	__u32 ifindex; /* host order: ifindex of the host-side veth */
};
MS_STATIC_ASSERT(sizeof(struct ms_endpoint_key) == 4, "ms_endpoint_key layout");

#define MS_EP_F_INGRESS_ISOLATED (1U << 0)
#define MS_EP_F_EGRESS_ISOLATED (1U << 1)
/*
 * The policy maps hold verdicts for this direction although it is not
 * isolated (cluster-tier Deny, Audit): look them up; a miss still allows.
 * An isolated direction is always looked up; a miss there drops.
 */
#define MS_EP_F_INGRESS_LOOKUP (1U << 2)
#define MS_EP_F_EGRESS_LOOKUP (1U << 3)
/*
 * Set by the agent when the endpoint's policy does not fit a policy map: its
 * policy entries are all removed (never half written), new flows in both
 * directions are dropped (MS_REASON_DROP_MAP_FULL), tracked sessions go on.
 * Cleared once the whole policy fits again. See docs/map-pressure.md.
 */
#define MS_EP_F_LOCKDOWN (1U << 4)
/*
 * Policy generation (docs/policy-compiler.md, "Atomic updates"): the policy
 * maps hold an endpoint's entries under key id endpoint_id, or endpoint_id |
 * MS_POLICY_GEN_BIT, and this flag says which set is in force. The agent
 * stages a new set under the other id and flips the flag with one map
 * update; isolation and generation share this byte, so a program reading
 * `flags` once sees one consistent policy. Endpoint ids stay below the bit.
 */
#define MS_EP_F_POLICY_GEN (1U << 7)
/*
 * Some direction of the endpoint's policy has endPort ranges: ms_policy_lpm
 * holds its port-interval lookup entries (see MS_DIR_F_PORT_LOOKUP) and the
 * data path looks them up before the (proto, interval) rung. Unset, new
 * flows pay nothing for ranges. Shares the flags byte with the generation
 * for the same reason as isolation does.
 */
#define MS_EP_F_PORT_RANGES (1U << 5)
#define MS_POLICY_GEN_BIT 0x80000000U

static inline __u32 ms_policy_id(__u32 endpoint_id, __u8 flags)
{
	return (flags & MS_EP_F_POLICY_GEN) ? (endpoint_id | MS_POLICY_GEN_BIT) : endpoint_id;
}

/*
 * LPM key-shape hints: ms_endpoint.lpm_absent (ms_policy_lpm) and
 * lpm6_absent (ms_policy6_lpm) name, per direction, the standard key shapes
 * none of the endpoint's entries of the generation in force has; the data
 * path skips those lookups (a trie walk each). A shape is the key's (proto,
 * port): PORT = (proto, port), PROTO = (proto, any port), ANY = (any proto,
 * any port). Keys with MS_DIR_F_PORT_LOOKUP or MS_DIR_F_PORT_INTERVAL have
 * no shape: the port-interval lookups are never skipped. The compiler
 * writes the hints with the generation they describe (only a flip changes
 * LPM entries); the data path reads them with `flags` in one load. 0 = look
 * everything up, always correct (an older agent, the CNI's first write).
 */
#define MS_EP_LPM_ABSENT_PORT(dir) (1U << (3 * (dir) + 0))
#define MS_EP_LPM_ABSENT_PROTO(dir) (1U << (3 * (dir) + 1))
#define MS_EP_LPM_ABSENT_ANY(dir) (1U << (3 * (dir) + 2))
#define MS_EP_LPM_ABSENT_ALL 0x3FU

/* The MS_EP_LPM_ABSENT_* bit of a standard LPM key of (dir, proto, port). */
static inline __u8 ms_lpm_shape_bit(__u8 dir, __u8 proto, __u16 port)
{
	return proto == 0 ? MS_EP_LPM_ABSENT_ANY(dir)
	       : port == 0 ? MS_EP_LPM_ABSENT_PROTO(dir)
			   : MS_EP_LPM_ABSENT_PORT(dir);
}

/*
 * ms_endpoint.lookup_actions: what the entries of a direction with the
 * *_LOOKUP flag (not isolated) can decide, per direction. It settles what a
 * packet whose flow cannot be judged (a later fragment, another L3
 * protocol, an IPv6 header chain too long to walk) gets there: dropped if
 * some entry denies (a Deny must not be bypassed by fragmenting), counted as
 * audit if some entry is an Audit one (it would be dropped if the policy
 * were enforced), otherwise allowed. Written by the compiler with the
 * entries it describes, read with `flags` in one aligned 32-bit load.
 */
#define MS_EP_LOOKUP_DENIES(dir) (1U << (dir))
#define MS_EP_LOOKUP_AUDITS(dir) (1U << (2 + (dir)))

struct ms_endpoint {
	__u32 endpoint_id; /* host order: agent-assigned, never 0, keys the policy maps */
	__u32 ipv4;        /* net: the pod's IPv4 address */
	__u32 policy_rev;  /* host order: bumped by the agent on every policy change of this endpoint */
	__u8 flags;        /* MS_EP_F_* */
	__u8 lpm_absent;   /* MS_EP_LPM_ABSENT_* of ms_policy_lpm */
	__u8 lpm6_absent;  /* MS_EP_LPM_ABSENT_* of ms_policy6_lpm */
	__u8 lookup_actions; /* MS_EP_LOOKUP_*(dir) */
	__u32 ipv6[4];     /* net: the pod's IPv6 address; all zero = the pod has none */
};
MS_STATIC_ASSERT(sizeof(struct ms_endpoint) == 32, "ms_endpoint layout");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_endpoint, flags) % 4 == 0 &&
			 MS_OFFSETOF(struct ms_endpoint, lpm_absent) == MS_OFFSETOF(struct ms_endpoint, flags) + 1 &&
			 MS_OFFSETOF(struct ms_endpoint, lpm6_absent) == MS_OFFSETOF(struct ms_endpoint, flags) + 2 &&
			 MS_OFFSETOF(struct ms_endpoint, lookup_actions) == MS_OFFSETOF(struct ms_endpoint, flags) + 3,
		 "flags, the LPM hints and lookup_actions are read in one aligned 32-bit load");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_endpoint, ipv6) == 16, "ms_endpoint layout");

/*
 * ---- ms_policy: HASH, exact peer address (pods matched by selectors) ----
 * port 0 means "any port", proto 0 means "any protocol". The program looks
 * up (proto, port), then (proto, the port's interval) when the endpoint has
 * port ranges (MS_EP_F_PORT_RANGES), then (proto, any port), then (any
 * proto, any port), then the same in ms_policy_lpm; the first entry found decides (its action
 * is the final verdict of all policy tiers), no entry means the endpoint's
 * default (drop if isolated in that direction, else allow).
 */
struct ms_policy_key {
	__u32 endpoint_id; /* host order: ms_policy_id(), i.e. with the generation bit */
	__u32 peer_ipv4;   /* net */
	__u16 port;        /* host order: destination port of the flow; 0 = any;
			    * with MS_DIR_F_PORT_INTERVAL the interval's first port */
	__u8 proto;        /* IPPROTO_*; 0 = any */
	__u8 direction;    /* enum ms_direction, optionally | MS_DIR_F_PORT_INTERVAL */
};
MS_STATIC_ASSERT(sizeof(struct ms_policy_key) == 12, "ms_policy_key layout");

enum ms_action {
	MS_ACTION_DENY = 0,
	MS_ACTION_ALLOW = 1,
	MS_ACTION_ALLOW_AUDIT = 2, /* allowed, counted as MS_REASON_ALLOW_AUDIT: an Audit policy would drop it */
	MS_ACTION_PORT_INTERVAL = 3, /* no verdict: a MS_DIR_F_PORT_LOOKUP entry (drops if ever read as one) */
};

/*
 * The MS_EP_LOOKUP_* bit an entry of direction `dir` with `action` brings to
 * ms_endpoint.lookup_actions when `dir` is looked up: a Deny entry denies,
 * an Audit one audits, the others bring none. The compiler and the
 * updater's patch check must agree on it, so both call this.
 */
static inline __u8 ms_lookup_action_bit(__u8 dir, __u8 action)
{
	return action == MS_ACTION_DENY ? MS_EP_LOOKUP_DENIES(dir)
	       : action == MS_ACTION_ALLOW_AUDIT ? MS_EP_LOOKUP_AUDITS(dir)
						: 0;
}

struct ms_policy_value {
	__u8 action; /* enum ms_action; unknown values drop (fail closed) */
	__u8 pad[3];
	__u32 rule_id; /* host order: agent's id of the rule that produced the entry (flow visibility) */
};
MS_STATIC_ASSERT(sizeof(struct ms_policy_value) == 8, "ms_policy_value layout");

/*
 * ---- port ranges (endPort; docs/policy-compiler.md, "Port ranges") ----
 * Per (policy id, direction, proto) the agent cuts the ports covered by the
 * rules' ranges into disjoint intervals at every range boundary. Two kinds
 * of keys, told apart by flag bits in the `direction` byte that no real
 * direction has:
 *  - MS_DIR_F_PORT_LOOKUP, in ms_policy_lpm only: destination port ->
 *    the interval holding it. Each interval is stored as aligned port
 *    prefixes: `port` in NETWORK order (so the trie's bit order is the
 *    port's), `peer_ipv4` 0 and unmatched, prefixlen =
 *    MS_PORT_LOOKUP_FIXED_BITS + prefix bits. The value's `action` is
 *    MS_ACTION_PORT_INTERVAL and its `rule_id` the interval's first port.
 *  - MS_DIR_F_PORT_INTERVAL, in every policy map: a verdict for the
 *    interval class "(proto, interval)", `port` = the interval's first port
 *    (host order). Looked up after (proto, port) and before (proto, any).
 * One lookup serves both families: the interval depends on the port alone.
 */
#define MS_DIR_F_PORT_INTERVAL 0x40U
#define MS_DIR_F_PORT_LOOKUP 0x80U
#define MS_PORT_LOOKUP_FIXED_BITS 48 /* endpoint_id + direction + proto */

/* The ms_direction of a policy key's `direction` byte, flag bits removed. */
static inline __u8 ms_key_direction(__u8 direction)
{
	return direction & (__u8)~(MS_DIR_F_PORT_INTERVAL | MS_DIR_F_PORT_LOOKUP);
}

/*
 * ---- ms_policy_lpm: LPM_TRIE, peer CIDRs (ipBlock, "any peer") ----
 * The kernel matches `prefixlen` bits starting at endpoint_id, so the fixed
 * fields come first and are always matched in full:
 *   prefixlen = MS_LPM_FIXED_BITS + CIDR prefix length.
 */
struct ms_lpm_key {
	__u32 prefixlen;   /* host order, required first by LPM_TRIE */
	__u32 endpoint_id; /* host order: ms_policy_id(), i.e. with the generation bit */
	__u8 direction;    /* enum ms_direction, optionally | MS_DIR_F_PORT_INTERVAL or
			    * MS_DIR_F_PORT_LOOKUP (see "port ranges" above) */
	__u8 proto;        /* IPPROTO_*; 0 = any */
	__u16 port;        /* host order; 0 = any; MS_DIR_F_PORT_LOOKUP: net order */
	__u32 peer_ipv4;   /* net */
};
MS_STATIC_ASSERT(sizeof(struct ms_lpm_key) == 16, "ms_lpm_key layout");
MS_STATIC_ASSERT((MS_OFFSETOF(struct ms_lpm_key, port) - MS_OFFSETOF(struct ms_lpm_key, endpoint_id)) * 8 ==
			 MS_PORT_LOOKUP_FIXED_BITS,
		 "port lookup prefixes start right after proto");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_lpm_key, endpoint_id) == 4, "LPM data starts after prefixlen");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_lpm_key, peer_ipv4) == 12, "peer address is the matched suffix");
#define MS_LPM_FIXED_BITS 64 /* endpoint_id + direction + proto + port */

/*
 * ---- ms_sessions: LRU_HASH (BPF_F_NO_COMMON_LRU), flows admitted at one endpoint ----
 * One entry per connection whatever the direction of a packet: the key is
 * normalised to the pod's side, so a packet and its reply find the same
 * entry with one lookup:
 *   from_pod (pod egress):  pod = (saddr, sport), peer = (daddr, dport)
 *   to_pod   (pod ingress): pod = (daddr, dport), peer = (saddr, sport)
 * ICMP echo uses the echo identifier as both ports. Which side opened the
 * flow is `ms_session.direction`, not the key.
 */
struct ms_session_key {
	__u32 endpoint_id; /* host order */
	__u32 pod_addr;    /* net: the pod's side of the flow */
	__u32 peer_addr;   /* net */
	__u16 pod_port;    /* net */
	__u16 peer_port;   /* net */
	__u8 proto;
	__u8 pad[3];
};
MS_STATIC_ASSERT(sizeof(struct ms_session_key) == 20, "ms_session_key layout");

/*
 * TCP states of a tracked connection, named after the RFC 793 state of the
 * initiator (the side whose SYN opened it), except SYN_RECV ("the
 * responder's SYN-ACK was seen") and TIME_WAIT ("both FINs acknowledged":
 * whichever side closed first waits). See docs/ARCHITECTURE.md.
 */
enum ms_tcp_state {
	MS_TCP_NONE = 0, /* not TCP, or not tracked yet */
	MS_TCP_SYN_SENT = 1,
	MS_TCP_SYN_RECV = 2,
	MS_TCP_ESTABLISHED = 3,
	MS_TCP_FIN_WAIT1 = 4,  /* initiator's FIN not yet acknowledged */
	MS_TCP_FIN_WAIT2 = 5,  /* initiator's FIN acknowledged, responder still open */
	MS_TCP_TIME_WAIT = 6,
	MS_TCP_CLOSE = 7,      /* reset */
	MS_TCP_CLOSE_WAIT = 8, /* responder closed first, initiator still open */
	MS_TCP_LAST_ACK = 9,   /* responder closed first, then the initiator; last ACK pending */
	MS_TCP_CLOSING = 10,   /* both FINs sent, the first closer's not yet acknowledged */
	MS_TCP_STATE_MAX = 11,
};

/* ms_tcp_side.flags */
#define MS_TCP_SIDE_F_SEQ_KNOWN (1U << 0)       /* `end` holds a seen sequence */
#define MS_TCP_SIDE_F_MAX_END_KNOWN (1U << 1)   /* `max_end` was granted by the other side */
#define MS_TCP_SIDE_F_SYN (1U << 2)             /* this side's SYN was seen: `wscale` is valid */
#define MS_TCP_SIDE_F_WSCALE (1U << 3)          /* its SYN carried a window scale option */
#define MS_TCP_SIDE_F_FIN (1U << 4)             /* this side sent a FIN */
#define MS_TCP_SIDE_F_ACKED_PEER_FIN (1U << 5)  /* this side acknowledged the other side's FIN */

/* What one side of a TCP connection sent. Sequence numbers in host order. */
struct ms_tcp_side {
	__u32 end;     /* host: highest seq + length (+1 per SYN/FIN) this side sent */
	__u32 max_end; /* host: highest ack + window the other side granted this side */
	__u32 max_win; /* host: largest (scaled) window this side advertised */
	__u8 wscale;   /* window scale option of this side's SYN */
	__u8 flags;    /* MS_TCP_SIDE_F_* */
	__u8 pad[2];
};
MS_STATIC_ASSERT(sizeof(struct ms_tcp_side) == 16, "ms_tcp_side layout");

/* ms_session.flags */
#define MS_SESSION_F_HALF_OPEN (1U << 0)        /* counted in ms_half_open */
#define MS_SESSION_F_PICKED_UP (1U << 1)        /* created mid-stream (no SYN seen) */
#define MS_SESSION_F_SIMULTANEOUS_OPEN (1U << 2)/* both sides sent a SYN */
#define MS_SESSION_F_RESPONDER_CLOSED_FIRST (1U << 3)
#define MS_SESSION_F_REVOKED (1U << 4)          /* the current policy denies it: its packets are dropped */
/*
 * A TCP session picked up from one side's packets only (no SYN seen) is
 * unconfirmed until the other side answers: it counts as half-open and takes
 * the SYN timeout meanwhile. Otherwise every bare ACK a pod's egress allows
 * would make an ESTABLISHED session for an hour, outside the SYN cap.
 */
#define MS_SESSION_F_AWAITING_RESPONDER (1U << 5) /* picked up from the initiator's side */
#define MS_SESSION_F_AWAITING_INITIATOR (1U << 6) /* picked up from the responder's side */
#define MS_SESSION_F_UNCONFIRMED (MS_SESSION_F_AWAITING_RESPONDER | MS_SESSION_F_AWAITING_INITIATOR)

struct ms_session {
	__u64 last_seen_ns; /* host order: CLOCK_MONOTONIC_COARSE of the last packet (session.h ms_now) */
	__u32 policy_rev;   /* host order: the endpoint's policy_rev that (re)admitted it */
	__u8 direction;     /* enum ms_direction of the initiator's packets */
	__u8 tcp_state;     /* enum ms_tcp_state; MS_TCP_NONE for other protocols */
	__u8 flags;         /* MS_SESSION_F_* */
	__u8 pad;
	struct ms_tcp_side tcp[2]; /* [0] initiator, [1] responder; zero for other protocols */
};
MS_STATIC_ASSERT(sizeof(struct ms_session) == 48, "ms_session layout");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_session, tcp) == 16, "ms_session layout");

/*
 * ---- ms_half_open: HASH, endpoint_id (host order) -> half-open TCP sessions ----
 * The SYN cap compares opened - closed + base. The data path only adds to
 * opened (once a half-open session is in the session map) and to closed
 * (before one leaves the map or its SYN states), atomically. The agent's
 * session sweeper only writes base, in place (ms_half_open_rebase), from a
 * scan of the session maps: base = seen - opened before the scan + closed
 * after it, which can only err high while SYNs race the scan (never low,
 * given those two orders), and corrects LRU evictions and expiries, which
 * the data path does not count. Neither side can lose the other's writes,
 * which a user-space map update (a whole-value replace) would.
 */
struct ms_half_open {
	__u64 opened; /* host order */
	__u64 closed; /* host order */
	__s64 base;   /* host order; the sweeper's correction */
};
MS_STATIC_ASSERT(sizeof(struct ms_half_open) == 24, "ms_half_open layout");

/* Context of the ms_half_open_rebase syscall program (BPF_PROG_TEST_RUN ctx_in). */
struct ms_half_open_rebase_args {
	__u32 endpoint_id; /* host order */
	__u32 pad;
	__s64 base; /* host order */
};
MS_STATIC_ASSERT(sizeof(struct ms_half_open_rebase_args) == 16, "ms_half_open_rebase_args layout");

/* Default cap on half-open TCP sessions per endpoint (agent flag). */
#define MS_DEFAULT_MAX_HALF_OPEN 4096

/*
 * ---- ms_policy_bloom: BLOOM_FILTER, optional pre-filter of ms_policy (R6) ----
 * One element per (endpoint, peer, direction) that has at least one entry in
 * ms_policy. "Definitely absent" lets the data path skip its exact-match
 * lookups for that peer; "maybe present" changes nothing. Used only when the
 * loader sets the BPF constant policy_bloom_enabled and keeps the filter a
 * superset of ms_policy (a bloom filter cannot delete: a removed entry stays
 * "maybe present", which is safe). The agent leaves it off: see
 * docs/benchmarks.md for the measurement behind that.
 */
struct ms_policy_bloom_element {
	__u32 endpoint_id; /* host order */
	__u32 peer_ipv4;   /* net */
	__u8 direction;    /* enum ms_direction */
	__u8 pad[3];
};
MS_STATIC_ASSERT(sizeof(struct ms_policy_bloom_element) == 12, "ms_policy_bloom_element layout");

/*
 * ---- map pressure (docs/map-pressure.md) ----
 * Every map that can fill has a slot, used as the index of the pressure maps
 * below and as the `map` field of alerts.
 */
enum ms_pressure_map {
	MS_PMAP_ENDPOINTS = 0,
	MS_PMAP_POLICY = 1,
	MS_PMAP_POLICY_LPM = 2,
	MS_PMAP_SESSIONS = 3,
	MS_PMAP_POLICY6 = 4,
	MS_PMAP_POLICY6_LPM = 5,
	MS_PMAP_SESSIONS6 = 6,
	MS_PMAP_MAX = 7,
};

/*
 * ms_pressure_counters: ARRAY[MS_PMAP_MAX], written by BPF only (atomic adds,
 * on the new-session path only, never per packet of a tracked flow).
 */
struct ms_pressure_counters {
	__u64 inserts;         /* host order: entries the data path created (a new key) */
	__u64 insert_failures; /* host order: bpf_map_update_elem() errors */
	__u64 refused;         /* host order: new entries refused because the map is "full" */
	__u64 deletes;         /* host order: entries the data path removed itself */
	__u64 last_alert_ns;   /* host order: ms_now() (CLOCK_MONOTONIC_COARSE) of the last ring-buffer alert */
	__u64 alerts;          /* host order: alerts submitted (a full ring buffer loses some) */
};
MS_STATIC_ASSERT(sizeof(struct ms_pressure_counters) == 48, "ms_pressure_counters layout");

/*
 * ms_pressure_config: ARRAY[MS_PMAP_MAX], written by the agent only. The data
 * path's live-entry estimate is `inserts - removed`: the agent re-bases
 * `removed` on every exact count (it covers its own deletes, the data path's
 * and LRU evictions), so between counts the estimate can only be too high,
 * which errs on the side of refusing early.
 */
struct ms_pressure_config {
	__u64 removed;         /* host order: inserts - entries counted, modulo 2^64 (sessions already
				* in a reused map make it "negative"), as of the agent's last count */
	__u32 full_entries;    /* host order: refuse new entries at this estimate; 0 = never */
	__u32 alert_entries;   /* host order: alert at this estimate; 0 = never */
};
MS_STATIC_ASSERT(sizeof(struct ms_pressure_config) == 16, "ms_pressure_config layout");

/* ms_pressure_events: RINGBUF of these, at most one per map per alert interval. */
struct ms_pressure_alert {
	__u64 ktime_ns;        /* host order: ms_now() (CLOCK_MONOTONIC_COARSE) */
	__u64 entries;         /* host order: the data path's estimate of live entries */
	__u32 map;             /* enum ms_pressure_map */
	__u32 threshold;       /* host order: alert_entries that was crossed */
};
MS_STATIC_ASSERT(sizeof(struct ms_pressure_alert) == 24, "ms_pressure_alert layout");

/*
 * ---- Audit events (docs/policy-model.md, "Audit") ----
 * A new flow that only an Audit policy's would-be drop lets through
 * (MS_REASON_ALLOW_AUDIT) is reported once, when its session opens (an
 * untrackable packet is its own flow), never per packet of the session.
 * The data path rate-limits the reports per CPU (a token bucket set by the
 * loader, see bpf/audit_events.h); reports it holds back or cannot put into
 * a full ring buffer are counted in ms_audit_stats, so the agent can say
 * how many it never saw. The per-direction ms_stats counter of
 * MS_REASON_ALLOW_AUDIT still counts every packet. A packet parsing cannot
 * judge (MS_EP_LOOKUP_AUDITS: later fragment, other L3, unwalkable IPv6
 * chain) is counted there only, never reported: no entry was looked up for
 * it, so there is no rule id to report.
 */
#define MS_FAMILY_IPV4 4
#define MS_FAMILY_IPV6 6

/* ms_audit_ev: RINGBUF of these. */
struct ms_audit_event {
	__u64 ktime_ns;     /* host order: ms_now() (CLOCK_MONOTONIC_COARSE) */
	__u32 endpoint_id;  /* host order: the endpoint, without the generation bit */
	__u32 rule_id;      /* host order: the ms_policy_value.rule_id that gave ALLOW_AUDIT */
	__u32 policy_rev;   /* host order: the endpoint's policy_rev when the verdict was taken */
	__u32 peer_addr[4]; /* net: the remote side; IPv4 in [0], the rest zero */
	__u16 port;         /* host order: destination port of the flow's opener (0: ICMP and
			     * port-less protocols), the port policy was looked up with */
	__u8 proto;         /* IPPROTO_* */
	__u8 direction;     /* enum ms_direction of the flow's opener, whose policy audited it */
	__u8 family;        /* MS_FAMILY_IPV4 / MS_FAMILY_IPV6 */
	__u8 policy_gen;    /* 0/1: the endpoint's MS_EP_F_POLICY_GEN, the entry set that was read */
	__u8 pad[6];
};
MS_STATIC_ASSERT(sizeof(struct ms_audit_event) == 48, "ms_audit_event layout");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_audit_event, peer_addr) == 20, "ms_audit_event layout");

/*
 * ms_audit_stats: PERCPU_ARRAY[1], written by BPF only (its own CPU's slot,
 * plain adds). The bucket fields are the data path's rate limiter state.
 */
struct ms_audit_stats {
	__u64 reported;       /* host order: events put into ms_audit_ev */
	__u64 rate_limited;   /* host order: events the token bucket held back */
	__u64 ring_full;      /* host order: events lost because ms_audit_ev was full */
	__u64 bucket_credit_ns; /* host order: token bucket credit, in ns of refill time */
	__u64 bucket_last_ns;   /* host order: ms_now() of the last refill */
};
MS_STATIC_ASSERT(sizeof(struct ms_audit_stats) == 40, "ms_audit_stats layout");

/* Default rate limit per CPU (agent flags --audit_events_per_sec, --audit_event_burst). */
#define MS_DEFAULT_AUDIT_EVENTS_PER_SEC 100
#define MS_DEFAULT_AUDIT_EVENT_BURST 200

/*
 * ms_session_allow: LPM_TRIE of peers that may still open sessions when the
 * session map is full (e.g. cluster DNS). proto and port are matched in full
 * (port 0 = any port; the data path tries the flow's port, then 0), then
 * `prefixlen - MS_ALLOW_FIXED_BITS` bits of the peer address.
 */
struct ms_allow_key {
	__u32 prefixlen;  /* host order, required first by LPM_TRIE */
	__u8 proto;       /* IPPROTO_* */
	__u8 pad;
	__u16 port;       /* host order: destination port of the new flow; 0 = any */
	__u32 peer_ipv4;  /* net: the remote address of the flow */
};
MS_STATIC_ASSERT(sizeof(struct ms_allow_key) == 12, "ms_allow_key layout");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_allow_key, peer_ipv4) == 8, "peer address is the matched suffix");
#define MS_ALLOW_FIXED_BITS 32 /* proto + pad + port */

/*
 * ---- IPv6 (docs/ipv6.md) ----
 * Separate maps with 16-byte addresses, so the IPv4 keys and their hashing
 * stay as small as they are. Each mirrors its IPv4 counterpart field for
 * field (same meaning, same byte order rules); the programs look them up in
 * the same order with the same ms_policy_value, ms_session and reasons.
 * Addresses are four __u32 in network order (the bytes as on the wire).
 */

/* ms_policy6: HASH, exact peer IPv6 address; see ms_policy_key. */
struct ms_policy6_key {
	__u32 endpoint_id;  /* host order: as ms_policy_key.endpoint_id */
	__u32 peer_ipv6[4]; /* net */
	__u16 port;         /* host order: as ms_policy_key.port (interval classes too) */
	__u8 proto;         /* IPPROTO_*; 0 = any */
	__u8 direction;     /* as ms_policy_key.direction */
};
MS_STATIC_ASSERT(sizeof(struct ms_policy6_key) == 24, "ms_policy6_key layout");

/* ms_policy6_lpm: LPM_TRIE, peer IPv6 CIDRs; prefixlen = MS_LPM_FIXED_BITS + CIDR length. */
struct ms_lpm6_key {
	__u32 prefixlen;    /* host order, required first by LPM_TRIE */
	__u32 endpoint_id;  /* host order: as ms_lpm_key.endpoint_id */
	__u8 direction;     /* as ms_policy_key.direction (never MS_DIR_F_PORT_LOOKUP: ms_policy_lpm has those) */
	__u8 proto;         /* IPPROTO_*; 0 = any */
	__u16 port;         /* host order; 0 = any */
	__u32 peer_ipv6[4]; /* net */
};
MS_STATIC_ASSERT(sizeof(struct ms_lpm6_key) == 28, "ms_lpm6_key layout");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_lpm6_key, endpoint_id) == 4, "LPM data starts after prefixlen");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_lpm6_key, peer_ipv6) == 12, "peer address is the matched suffix");

/* ms_sessions6: LRU_HASH (BPF_F_NO_COMMON_LRU), value struct ms_session; see ms_session_key. */
struct ms_session6_key {
	__u32 endpoint_id;  /* host order */
	__u32 pod_addr[4];  /* net: the pod's side of the flow */
	__u32 peer_addr[4]; /* net */
	__u16 pod_port;     /* net */
	__u16 peer_port;    /* net */
	__u8 proto;         /* IPPROTO_*; ICMPv6 echo uses the echo id as both ports */
	__u8 pad[3];
};
MS_STATIC_ASSERT(sizeof(struct ms_session6_key) == 44, "ms_session6_key layout");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_session6_key, endpoint_id) == MS_OFFSETOF(struct ms_session_key, endpoint_id),
		 "both session keys start with the endpoint");

/* ms_sess_allow6: LPM_TRIE, the IPv6 session allow-list; see ms_allow_key. */
struct ms_allow6_key {
	__u32 prefixlen;    /* host order: MS_ALLOW_FIXED_BITS + CIDR length */
	__u8 proto;         /* IPPROTO_* */
	__u8 pad;
	__u16 port;         /* host order: destination port of the new flow; 0 = any */
	__u32 peer_ipv6[4]; /* net: the remote address of the flow */
};
MS_STATIC_ASSERT(sizeof(struct ms_allow6_key) == 24, "ms_allow6_key layout");
MS_STATIC_ASSERT(MS_OFFSETOF(struct ms_allow6_key, peer_ipv6) == 8, "peer address is the matched suffix");

#endif /* MICROSEG_DATAPATH_H */
