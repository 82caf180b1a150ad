// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * New-flow driver for microseg-datapath-bench. BPF_PROG_TEST_RUN repeats one
 * frame, so a data path timed on it directly would find the first run's
 * session on every later run. This program rewrites the frame (the same skb
 * across repeats) before handing it on with a tail call to slot 0 of
 * walker_next, so run n carries flow n: source port n % 65536, source
 * address first_peer + n / 65536. The bench puts the data path's to_pod in
 * the slot, or the no-op for the baseline, so the walker's own cost (two
 * lookup, two stores and a tail call) is in both and drops out of the
 * difference.
 * Frames must be IPv4 without options, TCP or UDP (the bench's).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} walker_next SEC(".maps");

/* Written by the bench before each timed run; mirrored in datapath_bench.cc. */
struct walker_state {
	__u32 next_flow;
	__u32 first_peer; /* host order */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct walker_state);
} walker_state SEC(".maps");

SEC("tc")
int walk_flows(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__be16 *ports = (void *)(ip + 1);
	__u32 zero = 0;
	struct walker_state *state = bpf_map_lookup_elem(&walker_state, &zero);
	if (!state || (void *)(ports + 2) > data_end)
		return TC_ACT_SHOT;
	__u32 flow = state->next_flow++;
	ip->saddr = bpf_htonl(state->first_peer + (flow >> 16));
	ports[0] = bpf_htons(flow & 0xFFFF);
	bpf_tail_call(skb, &walker_next, 0);
	return TC_ACT_SHOT; /* empty slot: the bench sees the wrong verdict and stops */
}
