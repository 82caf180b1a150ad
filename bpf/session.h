/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Sessions: the normalised key, per-state timeouts, the half-open (SYN
 * flood) accounting, reading TCP segments and ICMP errors' embedded
 * headers. Included by microseg.bpf.c after the maps, struct ms_flow and
 * MS_CONTINUE are defined; the pipeline there decides what to do with them.
 */
#ifndef MICROSEG_BPF_SESSION_H
#define MICROSEG_BPF_SESSION_H

#include "tcp_state.h"

/* Per-state idle timeouts, set by the agent before load (its flags). */
const volatile __u64 session_timeout_syn_ns = 30ULL * MS_NSEC_PER_SEC;      /* SYN_SENT, SYN_RECV */
const volatile __u64 session_timeout_tcp_ns = 3600ULL * MS_NSEC_PER_SEC;    /* ESTABLISHED, SCTP */
const volatile __u64 session_timeout_tcp_fin_ns = 120ULL * MS_NSEC_PER_SEC; /* FIN states, TIME_WAIT */
const volatile __u64 session_timeout_tcp_close_ns = 10ULL * MS_NSEC_PER_SEC;/* CLOSE (reset) */
const volatile __u64 session_timeout_udp_ns = 60ULL * MS_NSEC_PER_SEC;
const volatile __u64 session_timeout_icmp_ns = 30ULL * MS_NSEC_PER_SEC;

/* Half-open TCP sessions one endpoint may hold; 0 = no cap. */
const volatile __u32 max_half_open_per_endpoint = MS_DEFAULT_MAX_HALF_OPEN;

/*
 * Tests set use_test_clock before load and then move test_clock_ns
 * between packets; in production the branch is verified away.
 */
const volatile __u8 use_test_clock = 0;
__u64 test_clock_ns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MS_DEFAULT_MAX_ENDPOINTS);
	__type(key, __u32); /* endpoint_id */
	__type(value, struct ms_half_open);
} ms_half_open SEC(".maps");

/*
 * CLOCK_MONOTONIC_COARSE (the time of the last tick): session timeouts are
 * seconds, so a tick's resolution is plenty, and it is a plain read of the
 * timekeeper, where bpf_ktime_get_ns() reads the clocksource: on a
 * kvm-clock guest that was about a third of an established packet's cost
 * (docs/benchmarks.md). It runs at most a tick behind CLOCK_MONOTONIC, which
 * the agent's sweeper reads: a session may look a tick older there.
 */
static __always_inline __u64 ms_now(void)
{
	return use_test_clock ? test_clock_ns : bpf_ktime_get_coarse_ns();
}

static __always_inline __u64 ms_session_timeout_ns(__u8 proto, __u8 tcp_state, __u8 session_flags)
{
	switch (proto) {
	case IPPROTO_UDP:
		return session_timeout_udp_ns;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		return session_timeout_icmp_ns;
	case IPPROTO_TCP:
		if (session_flags & MS_SESSION_F_UNCONFIRMED)
			return session_timeout_syn_ns;
		switch (tcp_state) {
		case MS_TCP_SYN_SENT:
		case MS_TCP_SYN_RECV:
			return session_timeout_syn_ns;
		case MS_TCP_ESTABLISHED:
			return session_timeout_tcp_ns;
		case MS_TCP_CLOSE:
			return session_timeout_tcp_close_ns;
		default: /* FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT */
			return session_timeout_tcp_fin_ns;
		}
	default: /* SCTP: connection-oriented, long-lived */
		return session_timeout_tcp_ns;
	}
}

/*
 * A session key of either family. `v6` is a constant in every program, so
 * each program holds one family's code and map; both keys start with the
 * endpoint id.
 */
union ms_any_session_key {
	struct ms_session_key v4;
	struct ms_session6_key v6;
};

static __always_inline void *ms_sessions_map(int v6)
{
	return v6 ? (void *)&ms_sessions6 : (void *)&ms_sessions;
}

static __always_inline __u8 ms_session_key_proto(int v6, const union ms_any_session_key *key)
{
	return v6 ? key->v6.proto : key->v4.proto;
}

/* How both families' session keys end: ports, protocol, padding. */
struct ms_session_key_tail {
	__u16 pod_port;
	__u16 peer_port;
	__u8 proto;
	__u8 pad[3];
};
_Static_assert(sizeof(struct ms_session_key) - __builtin_offsetof(struct ms_session_key, pod_port) ==
		       sizeof(struct ms_session_key_tail) &&
	       __builtin_offsetof(struct ms_session_key, proto) - __builtin_offsetof(struct ms_session_key, pod_port) ==
		       __builtin_offsetof(struct ms_session_key_tail, proto),
	       "ms_session_key ends like ms_session_key_tail");
_Static_assert(sizeof(struct ms_session6_key) - __builtin_offsetof(struct ms_session6_key, pod_port) ==
		       sizeof(struct ms_session_key_tail) &&
	       __builtin_offsetof(struct ms_session6_key, proto) - __builtin_offsetof(struct ms_session6_key, pod_port) ==
		       __builtin_offsetof(struct ms_session_key_tail, proto),
	       "ms_session6_key ends like ms_session_key_tail");

static __always_inline void ms_session_key_tail_of(const struct ms_flow *flow, int pod_sends,
						   struct ms_session_key_tail *tail)
{
	tail->pod_port = pod_sends ? flow->sport : flow->dport;
	tail->peer_port = pod_sends ? flow->dport : flow->sport;
	tail->proto = flow->proto;
	tail->pad[0] = 0;
	tail->pad[1] = 0;
	tail->pad[2] = 0;
}

/* The IPv6 key of `flow`, normalised like ms_session_key_of's. */
static __always_inline void ms_session6_key_of(const struct ms_flow *flow, const struct ms_flow6 *addrs,
					       __u32 endpoint_id, __u32 dir, struct ms_session6_key *key)
{
	int pod_sends = dir == MS_DIR_EGRESS;
	key->endpoint_id = endpoint_id;
	__builtin_memcpy(key->pod_addr, pod_sends ? addrs->saddr : addrs->daddr, sizeof(key->pod_addr));
	__builtin_memcpy(key->peer_addr, pod_sends ? addrs->daddr : addrs->saddr, sizeof(key->peer_addr));
	ms_session_key_tail_of(flow, pod_sends, (struct ms_session_key_tail *)&key->pod_port);
}

/* The key of the flow `flow` belongs to, normalised to the pod's side. */
static __always_inline void ms_session_key_of(const struct ms_flow *flow, __u32 endpoint_id,
					      __u32 dir, struct ms_session_key *key)
{
	int pod_sends = dir == MS_DIR_EGRESS;
	key->endpoint_id = endpoint_id;
	key->pod_addr = pod_sends ? flow->saddr : flow->daddr;
	key->peer_addr = pod_sends ? flow->daddr : flow->saddr;
	ms_session_key_tail_of(flow, pod_sends, (struct ms_session_key_tail *)&key->pod_port);
}

static __always_inline void ms_any_session_key_of(int v6, const struct ms_flow *flow,
						  const struct ms_flow6 *addrs, __u32 endpoint_id,
						  __u32 dir, union ms_any_session_key *key)
{
	if (v6)
		ms_session6_key_of(flow, addrs, endpoint_id, dir, &key->v6);
	else
		ms_session_key_of(flow, endpoint_id, dir, &key->v4);
}

/* The initiator's packet of a session, as the pipeline's policy check sees a new flow. */
static __always_inline void ms_session_initiator_flow(int v6, const union ms_any_session_key *any,
						      __u32 initiator_dir, struct ms_flow *flow,
						      struct ms_flow6 *addrs)
{
	int pod_sends = initiator_dir == MS_DIR_EGRESS;
	if (v6) {
		const struct ms_session6_key *key = &any->v6;
		__builtin_memcpy(addrs->saddr, pod_sends ? key->pod_addr : key->peer_addr, sizeof(addrs->saddr));
		__builtin_memcpy(addrs->daddr, pod_sends ? key->peer_addr : key->pod_addr, sizeof(addrs->daddr));
		flow->sport = pod_sends ? key->pod_port : key->peer_port;
		flow->dport = pod_sends ? key->peer_port : key->pod_port;
		flow->proto = key->proto;
		flow->ipv6 = 1;
		return;
	}
	const struct ms_session_key *key = &any->v4;
	flow->saddr = pod_sends ? key->pod_addr : key->peer_addr;
	flow->daddr = pod_sends ? key->peer_addr : key->pod_addr;
	flow->sport = pod_sends ? key->pod_port : key->peer_port;
	flow->dport = pod_sends ? key->peer_port : key->pod_port;
	flow->proto = key->proto;
}

/* What the SYN cap compares (datapath.h, ms_half_open). */
static __always_inline __s64 ms_half_open_count(const struct ms_half_open *counter)
{
	return (__s64)(counter->opened - counter->closed) + counter->base;
}

/* The endpoint's counter, made on its first SYN; NULL only if the map is full. */
static __always_inline struct ms_half_open *ms_half_open_counter(__u32 endpoint_id)
{
	struct ms_half_open *counter = bpf_map_lookup_elem(&ms_half_open, &endpoint_id);
	if (counter)
		return counter;
	struct ms_half_open first = {};
	bpf_map_update_elem(&ms_half_open, &endpoint_id, &first, BPF_NOEXIST);
	return bpf_map_lookup_elem(&ms_half_open, &endpoint_id);
}

/*
 * One half-open session of the endpoint stops counting. Called before the
 * session leaves the map or its SYN states, never after (datapath.h).
 */
static __always_inline void ms_half_open_closed(__u32 endpoint_id)
{
	struct ms_half_open *counter = bpf_map_lookup_elem(&ms_half_open, &endpoint_id);
	if (counter) /* none: the endpoint was removed meanwhile */
		__sync_fetch_and_add(&counter->closed, 1);
}

static __always_inline int ms_half_open_cap_reached(const struct ms_half_open *counter)
{
	if (max_half_open_per_endpoint == 0)
		return 0;
	return ms_half_open_count(counter) >= (__s64)max_half_open_per_endpoint;
}

/*
 * A half-open session stops counting once it leaves the SYN states and, if
 * it was picked up, once the other side has answered.
 */
static __always_inline void ms_session_settle_half_open(struct ms_session *s, __u32 endpoint_id)
{
	if (!(s->flags & MS_SESSION_F_HALF_OPEN) || (s->flags & MS_SESSION_F_UNCONFIRMED))
		return;
	if (s->tcp_state == MS_TCP_SYN_SENT || s->tcp_state == MS_TCP_SYN_RECV)
		return;
	ms_half_open_closed(endpoint_id);
	s->flags &= ~MS_SESSION_F_HALF_OPEN;
}

/* The current policy denies the session: it stops counting as half-open. */
static __always_inline void ms_session_revoke(struct ms_session *s, __u32 endpoint_id)
{
	if (s->flags & MS_SESSION_F_HALF_OPEN) {
		ms_half_open_closed(endpoint_id);
		s->flags &= ~MS_SESSION_F_HALF_OPEN;
	}
	s->flags |= MS_SESSION_F_REVOKED;
}

static __always_inline void ms_session_delete(int v6, const union ms_any_session_key *key,
					      struct ms_session *s)
{
	if (s->flags & MS_SESSION_F_HALF_OPEN) {
		ms_half_open_closed(key->v4.endpoint_id);
		s->flags &= ~MS_SESSION_F_HALF_OPEN;
	}
	if (bpf_map_delete_elem(ms_sessions_map(v6), key) == 0)
		ms_pressure_session_deleted_in(v6 ? MS_PMAP_SESSIONS6 : MS_PMAP_SESSIONS);
}

/* The live session under `key`, or NULL; an expired one is removed on the way. */
static __always_inline struct ms_session *ms_session_lookup_live(int v6, const union ms_any_session_key *key,
								 __u64 now)
{
	struct ms_session *s = bpf_map_lookup_elem(ms_sessions_map(v6), key);
	if (!s)
		return 0;
	__u64 last_seen = s->last_seen_ns;
	/* Another CPU may have stamped a later time than our `now`: still live. */
	if (now > last_seen &&
	    now - last_seen > ms_session_timeout_ns(ms_session_key_proto(v6, key), s->tcp_state, s->flags)) {
		ms_session_delete(v6, key, s);
		return 0;
	}
	return s;
}

/* ms_session_insert(): the endpoint's last half-open slot went to another CPU. */
#define MS_SESSION_INSERT_OVER_CAP 1

/*
 * The one place a session is inserted (map-pressure handling hooks here).
 * Returns 0, the map update's error (the caller's packet was admitted by
 * policy either way) or MS_SESSION_INSERT_OVER_CAP (the session was taken
 * out again: the SYN is a flood's). `half_open`: the endpoint's counter
 * for a half-open session (the caller's cap check looked it up).
 *
 * The session is counted once it is in the map, never before (datapath.h,
 * ms_half_open), and the cap is checked again after counting: the caller's
 * check alone would let CPUs racing for the last slot all through.
 */
static __always_inline long ms_session_insert(int v6, const union ms_any_session_key *key,
					      const struct ms_session *s,
					      struct ms_half_open *half_open)
{
	void *sessions = ms_sessions_map(v6);
	long err = bpf_map_update_elem(sessions, key, s, BPF_NOEXIST);
	ms_pressure_session_inserted_in(v6 ? MS_PMAP_SESSIONS6 : MS_PMAP_SESSIONS, err, s->last_seen_ns);
	if (err || !half_open)
		return err;
	__sync_fetch_and_add(&half_open->opened, 1);
	if (max_half_open_per_endpoint == 0 ||
	    ms_half_open_count(half_open) <= (__s64)max_half_open_per_endpoint)
		return 0;
	__sync_fetch_and_add(&half_open->closed, 1);
	if (bpf_map_delete_elem(sessions, key) == 0)
		ms_pressure_session_deleted_in(v6 ? MS_PMAP_SESSIONS6 : MS_PMAP_SESSIONS);
	return MS_SESSION_INSERT_OVER_CAP;
}

/*
 * The window scale option of a SYN whose options start at `base`, or -1.
 * Options: kind 0 ends, 1 pads, others carry a length; 3 = window scale.
 * A global (separately verified) function: the loop's paths would
 * otherwise multiply with every path of the caller. Byte-wise loads: the
 * verifier refuses variable offsets into a stack buffer.
 */
__noinline int ms_tcp_syn_window_scale(struct __sk_buff *skb, __u32 base, __u32 options_len)
{
	__u32 at = 0;
	if (!skb || options_len > 40)
		return -1;
	for (int step = 0; step < 40; step++) {
		__u8 kind = 0, len = 0, shift = 0;
		if (at >= options_len)
			break;
		if (bpf_skb_load_bytes(skb, base + at, &kind, 1) || kind == 0)
			break;
		if (kind == 1) {
			at++;
			continue;
		}
		if (at + 1 >= options_len || bpf_skb_load_bytes(skb, base + at + 1, &len, 1))
			break;
		if (len < 2)
			break; /* malformed options: ignore them, the stack will too */
		if (kind == 3) {
			if (len == 3 && at + 2 < options_len &&
			    !bpf_skb_load_bytes(skb, base + at + 2, &shift, 1))
				return shift;
			break;
		}
		at += len;
	}
	return -1;
}

/*
 * Reads the TCP header at `l4_offset`. A SYN's options are only located
 * here; ms_tcp_read_window_scale() walks them once the segment is going
 * to be tracked, so a SYN that policy refuses never pays for the walk.
 */
static __always_inline __u32 ms_tcp_read(struct __sk_buff *skb, __u32 l4_offset, __u32 l4_len,
					 struct ms_tcp_packet *p)
{
	struct tcphdr tcp;
	/*
	 * The entry stage pulled the headers into the linear area: read them
	 * in place (a helper call less per packet); the copy is the fallback.
	 */
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (l4_offset <= MS_MAX_HEADER_BYTES && data + l4_offset + sizeof(tcp) <= data_end)
		__builtin_memcpy(&tcp, data + l4_offset, sizeof(tcp));
	else if (bpf_skb_load_bytes(skb, l4_offset, &tcp, sizeof(tcp)))
		return MS_REASON_DROP_MALFORMED;
	__u32 header_len = tcp.doff * 4;
	if (header_len < sizeof(tcp) || header_len > l4_len)
		return MS_REASON_DROP_MALFORMED;
	p->seq = bpf_ntohl(tcp.seq);
	p->ack = bpf_ntohl(tcp.ack_seq);
	p->window = bpf_ntohs(tcp.window);
	p->payload_len = l4_len - header_len;
	p->flags = ((__u8 *)&tcp)[13];
	p->wscale = 0;
	p->has_wscale = 0;
	p->options_pending = (p->flags & MS_TCP_SYN) && header_len > sizeof(tcp);
	p->options_len = header_len - sizeof(tcp);
	p->options_offset = l4_offset + sizeof(tcp);
	return MS_CONTINUE;
}

/* A SYN's window scale option, read at most once, before the state machine uses it. */
static __always_inline void ms_tcp_read_window_scale(struct __sk_buff *skb, struct ms_tcp_packet *p)
{
	if (!p->options_pending)
		return;
	p->options_pending = 0;
	int wscale = ms_tcp_syn_window_scale(skb, p->options_offset, p->options_len);
	if (wscale >= 0) {
		p->wscale = wscale;
		p->has_wscale = 1;
	}
}

/* RFC 792 error types whose payload is the offending packet's header. */
#define MS_ICMP_TYPE_DEST_UNREACHABLE 3
#define MS_ICMP_TYPE_TIME_EXCEEDED 11
#define MS_ICMP_TYPE_PARAMETER_PROBLEM 12

static __always_inline int ms_icmp_type_is_error(__u8 type)
{
	return type == MS_ICMP_TYPE_DEST_UNREACHABLE || type == MS_ICMP_TYPE_TIME_EXCEEDED ||
	       type == MS_ICMP_TYPE_PARAMETER_PROBLEM;
}

/*
 * Is the packet an ICMP error (travelling in `dir`) quotes part of a live,
 * not revoked session of this endpoint? The quoted packet went the other way.
 */
static __always_inline int ms_quoted_session_live(int v6, const struct ms_flow *embedded,
						  const struct ms_flow6 *addrs, __u32 endpoint_id,
						  __u32 dir, __u64 now)
{
	__u32 embedded_dir = dir == MS_DIR_INGRESS ? MS_DIR_EGRESS : MS_DIR_INGRESS;
	union ms_any_session_key key;
	ms_any_session_key_of(v6, embedded, addrs, endpoint_id, embedded_dir, &key);
	struct ms_session *s = ms_session_lookup_live(v6, &key, now);
	return s && !(s->flags & MS_SESSION_F_REVOKED);
}

/*
 * Does the ICMP error at `l4_offset` report on a live session of this
 * endpoint? The embedded header is a packet going the other way: for an
 * error arriving at the pod it is one the pod sent.
 */
static __always_inline int ms_icmp_error_related(struct __sk_buff *skb, __u32 l4_offset,
						 __u32 endpoint_id, __u32 dir, __u64 now)
{
	const __u32 icmp_header_bytes = 8;
	struct iphdr inner;
	if (bpf_skb_load_bytes(skb, l4_offset + icmp_header_bytes, &inner, sizeof(inner)))
		return 0;
	if (inner.version != 4 || inner.ihl < 5)
		return 0;
	__u32 ports_offset = l4_offset + icmp_header_bytes + inner.ihl * 4;
	struct ms_flow embedded = {
		.saddr = inner.saddr,
		.daddr = inner.daddr,
		.proto = inner.protocol,
	};
	switch (inner.protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP: {
		__be16 ports[2];
		if (bpf_skb_load_bytes(skb, ports_offset, ports, sizeof(ports)))
			return 0;
		embedded.sport = ports[0];
		embedded.dport = ports[1];
		break;
	}
	case IPPROTO_ICMP: {
		__u8 echo[6]; /* type, code, checksum, id */
		if (bpf_skb_load_bytes(skb, ports_offset, echo, sizeof(echo)))
			return 0;
		if (echo[0] != MS_ICMP_TYPE_ECHO_REQUEST && echo[0] != MS_ICMP_TYPE_ECHO_REPLY)
			return 0;
		__be16 id = *(__be16 *)&echo[4];
		embedded.sport = id;
		embedded.dport = id;
		break;
	}
	default:
		return 0;
	}
	return ms_quoted_session_live(0, &embedded, 0, endpoint_id, dir, now);
}

#endif /* MICROSEG_BPF_SESSION_H */
