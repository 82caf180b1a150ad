// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The kernel's floor under a new flow, for microseg-datapath-bench: what a
 * session-map miss followed by an insert costs on its own, with nothing of
 * the data path around it (no endpoint, no parsing beyond the ports, no
 * policy, no stages). The map is the data path's in every way that touches
 * memory: LRU_HASH with BPF_F_NO_COMMON_LRU, the same key and value types
 * (datapath.h), and the bench gives it the same size and fill as the data
 * path's ms_sessions. The key is the frame's flow normalised the way to_pod
 * normalises it (the pod is the destination). The flow walker tail-calls it
 * like it does the data path, so walker -> no-op is the baseline of both.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

#include "microseg/datapath.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__uint(max_entries, 1024); /* the bench sets the data path's size before load */
	__type(key, struct ms_session_key);
	__type(value, struct ms_session);
} floor_sessions SEC(".maps");

/* Per CPU, read by the bench: every repetition must be one miss and one insert. */
struct floor_counts {
	__u64 inserts;
	__u64 hits;
	__u64 failures;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct floor_counts);
} floor_counts SEC(".maps");

const volatile __u32 floor_endpoint_id = 1;

SEC("tc")
int session_floor(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__be16 *ports = (void *)(ip + 1);
	__u32 zero = 0;
	struct floor_counts *counts = bpf_map_lookup_elem(&floor_counts, &zero);
	if (!counts || (void *)(ports + 2) > data_end)
		return TC_ACT_SHOT;
	struct ms_session_key key = {
		.endpoint_id = floor_endpoint_id,
		.pod_addr = ip->daddr,
		.peer_addr = ip->saddr,
		.pod_port = ports[1],
		.peer_port = ports[0],
		.proto = ip->protocol,
	};
	if (bpf_map_lookup_elem(&floor_sessions, &key)) {
		counts->hits++;
		return TC_ACT_OK;
	}
	struct ms_session session = {
		.last_seen_ns = bpf_ktime_get_coarse_ns(),
		.direction = MS_DIR_INGRESS,
	};
	if (bpf_map_update_elem(&floor_sessions, &key, &session, BPF_NOEXIST) == 0)
		counts->inserts++;
	else
		counts->failures++;
	return TC_ACT_OK;
}
