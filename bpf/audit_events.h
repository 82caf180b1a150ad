/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Audit events (docs/policy-model.md, "Audit"): a new flow that only an
 * Audit policy lets through is reported to the agent with the rule that
 * would have dropped it. Included once by microseg.bpf.c after session.h
 * (ms_now); ms_session_open() and the untrackable-packet path call
 * ms_audit_report() for an MS_REASON_ALLOW_AUDIT verdict, never a packet
 * of a tracked session. The ALLOW_AUDIT that ms_unjudgeable_reason() gives
 * a packet parsing cannot judge is not reported: it comes from
 * ms_endpoint.lookup_actions, not from an entry, so it has no rule id.
 *
 * A ring buffer of its own rather than ms_pressure_ev: an Audit policy on
 * busy pods can fill a ring in a burst, and a map-pressure alert (a node
 * about to refuse flows) must never be the record that finds it full. Each
 * ring also carries one record type, so its reader needs no tagging.
 *
 * Rate limit: a token bucket per CPU, kept in the CPU's own ms_audit_stats
 * slot, so it takes no atomics and no lock; the node's ceiling is the
 * number of CPUs times the configured rate. Per CPU rather than per
 * endpoint: a per-endpoint bucket would need a shared map entry (atomics on
 * every report) and would still let many auditing pods add up to a flood.
 */
#ifndef MICROSEG_AUDIT_EVENTS_H
#define MICROSEG_AUDIT_EVENTS_H

#include "microseg/datapath.h"

/*
 * Set by the loader in .rodata before load. Each report costs
 * audit_event_cost_ns of refill time (1 s / events per second); the bucket
 * holds audit_event_burst reports. cost 0 = no limit; burst 0 = no reports
 * (all counted as rate_limited).
 */
const volatile __u64 audit_event_cost_ns = MS_NSEC_PER_SEC / MS_DEFAULT_AUDIT_EVENTS_PER_SEC;
const volatile __u32 audit_event_burst = MS_DEFAULT_AUDIT_EVENT_BURST;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 4096); /* about 5000 events: several seconds of every CPU's burst */
} ms_audit_ev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ms_audit_stats);
} ms_audit_stats SEC(".maps");

/* Takes one token from this CPU's bucket; 0 when it is empty. */
static __always_inline int ms_audit_take_token(struct ms_audit_stats *stats, __u64 now)
{
	__u64 cost = audit_event_cost_ns;
	__u64 capacity = cost * audit_event_burst;
	__u64 credit = stats->bucket_credit_ns;
	if (credit > capacity) /* a reused map from a load with a larger burst */
		credit = capacity;
	/* The first report finds last = 0: a full bucket. A clock behind the stamp adds nothing. */
	if (now > stats->bucket_last_ns) {
		__u64 elapsed = now - stats->bucket_last_ns;
		credit = elapsed >= capacity - credit ? capacity : credit + elapsed;
		stats->bucket_last_ns = now;
	}
	if (credit < cost) {
		stats->bucket_credit_ns = credit;
		return 0;
	}
	stats->bucket_credit_ns = credit - cost;
	return 1;
}

/*
 * Reports a new flow whose verdict is MS_REASON_ALLOW_AUDIT. `packet_dir`
 * is the direction of the packet in `flow` (it says which address is the
 * peer); `verdict_dir`, `port` and `rule_id` belong to the orientation whose
 * policy gave the verdict (a picked-up TCP flow may be judged as opened by
 * the other side).
 */
static __always_inline void ms_audit_report(int v6, const struct ms_flow *flow,
					    const struct ms_flow6 *addrs6, __u32 endpoint_id,
					    __u16 endpoint_flags, __u32 policy_rev, __u32 packet_dir,
					    __u32 verdict_dir, __u16 port, __u32 rule_id, __u64 now)
{
	__u32 zero = 0;
	struct ms_audit_stats *stats = bpf_map_lookup_elem(&ms_audit_stats, &zero);
	if (!stats) /* cannot happen (one-slot array); the verdict stands, reports are best effort */
		return;
	if (!ms_audit_take_token(stats, now)) {
		stats->rate_limited += 1;
		return;
	}
	struct ms_audit_event *event = bpf_ringbuf_reserve(&ms_audit_ev, sizeof(*event), 0);
	if (!event) {
		stats->ring_full += 1;
		return;
	}
	__builtin_memset(event, 0, sizeof(*event));
	event->ktime_ns = now;
	event->endpoint_id = endpoint_id;
	event->rule_id = rule_id;
	event->policy_rev = policy_rev;
	if (v6)
		__builtin_memcpy(event->peer_addr,
				 packet_dir == MS_DIR_INGRESS ? addrs6->saddr : addrs6->daddr,
				 sizeof(event->peer_addr));
	else
		event->peer_addr[0] = packet_dir == MS_DIR_INGRESS ? flow->saddr : flow->daddr;
	event->port = port;
	event->proto = flow->proto;
	event->direction = verdict_dir;
	event->family = v6 ? MS_FAMILY_IPV6 : MS_FAMILY_IPV4;
	event->policy_gen = (endpoint_flags & MS_EP_F_POLICY_GEN) ? 1 : 0;
	bpf_ringbuf_submit(event, 0);
	stats->reported += 1;
}

#endif /* MICROSEG_AUDIT_EVENTS_H */
