/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map pressure in the data path (docs/map-pressure.md): how full the session
 * map is, what happens when it is "full", the ring-buffer alert at the alert
 * threshold, and the endpoint lockdown the agent sets when a policy map is
 * full. Included once by microseg.bpf.c after ms_sessions is defined; the
 * rest of the pipeline calls ms_pressure_session_admit_in() before the one
 * session insert, ms_pressure_session_inserted_in()/_deleted_in() from session.h's
 * insert and delete, and ms_endpoint_locked_down().
 *
 * Why counters instead of asking the map: an LRU map has no entry count a
 * program can read, and it evicts silently. The data path counts the
 * entries it creates (one atomic add per new session, never per packet of a
 * tracked flow); the agent counts the map exactly now and then and publishes
 * how many entries have gone since load (`removed`), so
 * `inserts - removed` is an estimate that is exact at each count and can
 * only be too high in between (deletes and evictions since are not in it
 * yet) -- it errs towards refusing early, never towards evicting live flows.
 */
#ifndef MICROSEG_MAP_PRESSURE_H
#define MICROSEG_MAP_PRESSURE_H

#include "microseg/datapath.h"

/* Set by the loader in .rodata before load. */
const volatile __u64 pressure_alert_interval_ns = 1000000000ULL;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MS_PMAP_MAX);
	__type(key, __u32);
	__type(value, struct ms_pressure_counters);
} ms_pressure SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MS_PMAP_MAX);
	__type(key, __u32);
	__type(value, struct ms_pressure_config);
} ms_pressure_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 4096);
} ms_pressure_ev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct ms_allow_key);
	__type(value, __u8);
} ms_sess_allow SEC(".maps");

/* The IPv6 allow-list, same rules (docs/ipv6.md). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct ms_allow6_key);
	__type(value, __u8);
} ms_sess_allow6 SEC(".maps");

/* Lockdown: new flows of this endpoint are refused in both directions. */
static __always_inline int ms_endpoint_locked_down(__u8 endpoint_flags)
{
	return (endpoint_flags & MS_EP_F_LOCKDOWN) != 0;
}

static __always_inline int ms_session_allow_listed(__u32 peer_ipv4, __u8 proto, __u16 port)
{
	struct ms_allow_key key = {
		.prefixlen = MS_ALLOW_FIXED_BITS + 32,
		.proto = proto,
		.port = port,
		.peer_ipv4 = peer_ipv4,
	};
	if (bpf_map_lookup_elem(&ms_sess_allow, &key))
		return 1;
	if (port == 0)
		return 0;
	key.port = 0;
	return bpf_map_lookup_elem(&ms_sess_allow, &key) != 0;
}

static __always_inline int ms_session_allow_listed6(const __u32 *peer_ipv6, __u8 proto, __u16 port)
{
	struct ms_allow6_key key = {
		.prefixlen = MS_ALLOW_FIXED_BITS + 128,
		.proto = proto,
		.port = port,
	};
	__builtin_memcpy(key.peer_ipv6, peer_ipv6, sizeof(key.peer_ipv6));
	if (bpf_map_lookup_elem(&ms_sess_allow6, &key))
		return 1;
	if (port == 0)
		return 0;
	key.port = 0;
	return bpf_map_lookup_elem(&ms_sess_allow6, &key) != 0;
}

/*
 * One alert per map per pressure_alert_interval_ns, across all CPUs: the
 * stamp is claimed with a compare-and-swap on the value the time check read,
 * so of several CPUs crossing the threshold in the same instant exactly one
 * wins the window and alerts; the others see the stamp changed and stay
 * quiet. (Only the refusing/inserting path gets here, never a tracked
 * flow's packet, so the atomic costs nothing on the hot path.)
 */
static __always_inline void ms_pressure_alert(__u32 map, struct ms_pressure_counters *counters,
					      __u64 entries, __u32 threshold, __u64 now)
{
	if (threshold == 0 || entries < threshold)
		return;
	__u64 last = counters->last_alert_ns;
	/* `now` was read before this packet's lookups: another CPU may have stamped a later time. */
	if (last != 0 && (now < last || now - last < pressure_alert_interval_ns))
		return;
	if (__sync_val_compare_and_swap(&counters->last_alert_ns, last, now) != last)
		return; /* another CPU took this window */
	struct ms_pressure_alert *alert = bpf_ringbuf_reserve(&ms_pressure_ev, sizeof(*alert), 0);
	if (!alert)
		return; /* the agent is behind; the counters still tell the story */
	alert->ktime_ns = now;
	alert->entries = entries;
	alert->map = map;
	alert->threshold = threshold;
	bpf_ringbuf_submit(alert, 0);
	__sync_fetch_and_add(&counters->alerts, 1);
}

/* `slot`: MS_PMAP_SESSIONS or MS_PMAP_SESSIONS6, each session map is accounted on its own. */
static __always_inline struct ms_pressure_counters *ms_pressure_session_counters(__u32 slot)
{
	return bpf_map_lookup_elem(&ms_pressure, &slot);
}

/* The data path's estimate of live sessions; see ms_pressure_config.removed. */
static __always_inline __u64 ms_pressure_session_estimate(const struct ms_pressure_counters *counters,
							  const struct ms_pressure_config *config)
{
	__s64 estimate = (__s64)(counters->inserts - config->removed); /* modulo 2^64 on purpose */
	return estimate > 0 ? (__u64)estimate : 0;
}

/*
 * May a new session be created? Called right before the one session insert
 * (session.h's ms_session_insert) with the flow's family, remote address
 * (net; IPv4 or IPv6 per `v6`), protocol and destination port (host order, 0
 * for port-less protocols). Each family's session map has its own slot.
 * Returns MS_REASON_MAX ("go on") or MS_REASON_DROP_MAP_FULL.
 *
 * "Full" for the LRU map is `estimate >= full_entries`, which the agent sets
 * below max_entries by a reserve: beyond it the LRU would make room by
 * evicting live sessions, silently breaking established flows. At that
 * point only allow-listed flows still get a session (they use the reserve).
 */
static __always_inline __u32 ms_pressure_session_admit_in(int v6, __u32 peer_ipv4,
							  const __u32 *peer_ipv6, __u8 proto,
							  __u16 port, __u64 now)
{
	__u32 slot = v6 ? MS_PMAP_SESSIONS6 : MS_PMAP_SESSIONS;
	struct ms_pressure_counters *counters = ms_pressure_session_counters(slot);
	struct ms_pressure_config *config = bpf_map_lookup_elem(&ms_pressure_cfg, &slot);
	if (!counters || !config)
		return MS_REASON_DROP_MAP_FULL; /* cannot happen (arrays): fail closed */
	__u64 entries = ms_pressure_session_estimate(counters, config);
	if (config->full_entries == 0 || entries < config->full_entries)
		return MS_REASON_MAX;
	if (v6 ? ms_session_allow_listed6(peer_ipv6, proto, port)
	       : ms_session_allow_listed(peer_ipv4, proto, port))
		return MS_REASON_MAX;
	__sync_fetch_and_add(&counters->refused, 1);
	ms_pressure_alert(slot, counters, entries, config->alert_entries, now);
	return MS_REASON_DROP_MAP_FULL;
}

/* Accounts the outcome (`err` of bpf_map_update_elem) of a session insert. */
static __always_inline void ms_pressure_session_inserted_in(__u32 slot, long err, __u64 now)
{
	struct ms_pressure_counters *counters = ms_pressure_session_counters(slot);
	struct ms_pressure_config *config = bpf_map_lookup_elem(&ms_pressure_cfg, &slot);
	if (!counters || !config)
		return;
	if (err != 0) {
		__sync_fetch_and_add(&counters->insert_failures, 1);
		return;
	}
	__sync_fetch_and_add(&counters->inserts, 1);
	ms_pressure_alert(slot, counters, ms_pressure_session_estimate(counters, config),
			  config->alert_entries, now);
}

/* A session the data path removed itself (not an eviction). */
static __always_inline void ms_pressure_session_deleted_in(__u32 slot)
{
	struct ms_pressure_counters *counters = ms_pressure_session_counters(slot);
	if (counters)
		__sync_fetch_and_add(&counters->deletes, 1);
}

#endif /* MICROSEG_MAP_PRESSURE_H */
