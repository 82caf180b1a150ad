// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Baseline for microseg-datapath-bench: a TC program that does nothing. Its
 * BPF_PROG_TEST_RUN duration is the harness's own per-run cost (skb setup is
 * outside the timed loop, but the loop, the dispatch and the program call
 * are inside), which the data path's figures are compared against.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int noop(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
