#!/usr/bin/env python3
"""e2e_cni_chain: the whole chain on real network namespaces.

pods → ptp + host-local → microseg-cni → agent (standalone manifests) → TC programs,
checked with real TCP and UDP probes at every step. Exit 0 = pass, 1 = fail,
77 = skipped (not root).
"""

from __future__ import annotations

import json
import os
import stat
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from e2e_main import arguments, run_e2e  # noqa: E402
from expect import expect_reachability, metric_sum, ok, require, step  # noqa: E402
from node import Node, NodeOptions, Pod  # noqa: E402

TCP_PORT = 8080
UDP_PORT = 5353


def policy(namespace: str, name: str, pod_labels: dict, policy_types: list[str], ingress=None, egress=None) -> str:
    spec = {"podSelector": {"matchLabels": pod_labels}, "policyTypes": policy_types}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": name, "namespace": namespace}, "spec": spec}, indent=2) + "\n"


def run_test(node: Node) -> None:
    step("set-up: namespaces x (ns=x) and y (ns=y), pods x/a, x/b, y/c through the CNI chain")
    node.add_namespace("x", {"ns": "x"})
    node.add_namespace("y", {"ns": "y"})
    a = node.add_pod("x", "a", {"app": "a"}, [TCP_PORT], [UDP_PORT])
    b = node.add_pod("x", "b", {"app": "b"}, [TCP_PORT], [UDP_PORT])
    c = node.add_pod("y", "c", {"app": "c"}, [TCP_PORT], [UDP_PORT])
    for pod in (a, b, c):
        require(node.tc_filters(pod) != "", f"{pod.key}: no TC filter on host veth {pod.host_veth} after ADD")
    ok("three pods up, TC programs attached to every host veth")
    endpoints = node.ctl_json("endpoints").get("endpoints", [])
    listed = {(e["pod_namespace"], e["pod_name"]): e for e in endpoints}
    for pod in (a, b, c):
        entry = listed.get((pod.namespace, pod.name))
        require(entry is not None, f"microsegctl endpoints does not list {pod.key}: {endpoints}")
        require(entry["host_ifname"] == pod.host_veth, f"{pod.key}: endpoint on {entry['host_ifname']}, "
                                                       f"CNI made {pod.host_veth}")
        require(any(ip.split("/")[0] == pod.ip for ip in entry["ips"]), f"{pod.key}: endpoint IPs {entry['ips']}")
    require(metric_sum(node.metrics(), "microseg_endpoints") == 3, "microseg_endpoints metric is not 3")
    ok("microsegctl endpoints and the microseg_endpoints metric list the three pods")
    mode = stat.S_IMODE(os.stat(node.socket).st_mode)
    require(stat.S_ISSOCK(os.stat(node.socket).st_mode) and mode == 0o600,
            f"agent socket {node.socket} has mode {mode:o}, expected 600")
    ok("the agent's gRPC socket is a unix socket with mode 0600")

    step("no policy: everything allowed (TCP and UDP)")
    expect_reachability(node, lambda s, d, proto, port: True, what="no policy")
    ok("all 12 probes allowed")

    step("deny-all ingress on x/a")
    node.write_manifest("10-deny-a.yaml", policy("x", "deny-a", {"app": "a"}, ["Ingress"]))
    took = expect_reachability(node, lambda s, d, proto, port: d is not a, what="deny-all ingress on a")
    ok(f"a unreachable, every other path still allowed ({took:.1f} s)")

    step("allow ingress to a from pods labelled app=b")
    node.write_manifest("20-allow-b-to-a.yaml", policy("x", "allow-b-to-a", {"app": "a"}, ["Ingress"],
                                                       ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}]))
    expect_reachability(node, lambda s, d, proto, port: d is not a or s is b, what="allow b -> a")
    ok("b -> a allowed again, c -> a still denied")

    step("namespaceSelector rule: allow ns=y to a on TCP 8080 only")
    node.write_manifest("30-allow-ns-y-to-a.yaml", policy(
        "x", "allow-ns-y-to-a", {"app": "a"}, ["Ingress"],
        ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                  "ports": [{"protocol": "TCP", "port": TCP_PORT}]}]))

    def after_ns_rule(s: Pod, d: Pod, proto: str, port: int) -> bool:
        return d is not a or s is b or (s is c and proto == "tcp")

    expect_reachability(node, after_ns_rule, what="namespaceSelector rule")
    ok("c -> a TCP 8080 allowed, c -> a UDP still denied")

    step("egress deny on x/b (replies of connections into b must still flow)")
    node.write_manifest("40-b-egress-deny.yaml", policy("x", "b-egress-deny", {"app": "b"}, ["Egress"]))

    def after_egress_deny(s: Pod, d: Pod, proto: str, port: int) -> bool:
        return s is not b and after_ns_rule(s, d, proto, port)

    expect_reachability(node, after_egress_deny, what="egress deny on b")
    ok("b can open nothing (not even to a, which allows it); a -> b and c -> b get their replies")

    step("agent crash and restart: enforcement never stops, endpoints come back")
    def endpoint_ids() -> dict:
        return {(e["pod_namespace"], e["pod_name"]): e["endpoint_id"]
                for e in node.ctl_json("endpoints").get("endpoints", [])}
    ids_before = endpoint_ids()
    filters_before = node.tc_filters(a)
    node.kill_agent()
    expect_reachability(node, after_egress_deny, within=0, what="while the agent is down")
    ok("with the agent killed, the pinned maps and attached programs keep enforcing")
    node.restart_agent()
    require(endpoint_ids() == ids_before, f"endpoints after restart {endpoint_ids()} != before {ids_before}")
    require(node.tc_filters(a) != filters_before,
            f"the restarted agent did not replace the programs on {a.host_veth}:\n{node.tc_filters(a)}")
    for pod in (a, b, c):
        node.cni_check(pod)
    expect_reachability(node, after_egress_deny, within=0, what="after the agent restarted")
    ok("restarted agent: same endpoints and ids, its programs attached (CNI CHECK passes), same verdicts")

    step("a pod is never reachable before its policy is in force")
    node.write_manifest("50-deny-d.yaml", policy("x", "deny-d", {"app": "d"}, ["Ingress"]))
    node.wait_for_status(lambda st: st.get("network_policies", 0) == 5, "the agent to read 50-deny-d.yaml")
    d = node.add_pod("x", "d", {"app": "d"}, [TCP_PORT], [UDP_PORT])
    first = node.probe(a, [f"tcp:{d.ip}:{TCP_PORT}", f"udp:{d.ip}:{UDP_PORT}"])
    require(all(r != "ok" for r in first.values()), f"x/d reachable right after CNI ADD returned: {first}")
    ok("first probes to the new pod x/d, sent as soon as CNI ADD returned, are denied")
    node.delete_pod(d)
    node.remove_manifest("50-deny-d.yaml")

    step("invalid policy files are reported and the last good state stays in force")
    errors_before = metric_sum(node.metrics(), "microseg_manifest_errors_total")
    node.write_manifest("60-broken.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                                          "metadata: {name: broken, namespace: x}\nspec: [this is not a map\n")
    node.write_manifest("40-b-egress-deny.yaml", policy("x", "b-egress-deny", {"app": "b"}, ["Sideways"]))
    status = node.wait_for_status(lambda st: len(st.get("manifest_errors", [])) == 2,
                                  "the agent to report both bad files")
    files = sorted(os.path.basename(e["file"]) for e in status["manifest_errors"])
    require(files == ["40-b-egress-deny.yaml", "60-broken.yaml"], f"reported files: {files}")
    require(all(e["message"] for e in status["manifest_errors"]), "a manifest error has no message")
    text = node.ctl("status").stdout
    require("60-broken.yaml" in text and "40-b-egress-deny.yaml" in text,
            f"microsegctl status does not name the bad files:\n{text}")
    errors_after = metric_sum(node.metrics(), "microseg_manifest_errors_total")
    require(errors_after >= errors_before + 2,
            f"microseg_manifest_errors_total went {errors_before} -> {errors_after}, expected +2")
    expect_reachability(node, after_egress_deny, within=0, what="last good state after bad files")
    ok(f"both files reported (status + metric {errors_before:g} -> {errors_after:g}); enforcement unchanged")
    node.remove_manifest("60-broken.yaml")
    node.write_manifest("40-b-egress-deny.yaml", policy("x", "b-egress-deny", {"app": "b"}, ["Egress"]))
    node.wait_for_status(lambda st: not st.get("manifest_errors"), "the errors to clear")
    expect_reachability(node, after_egress_deny, within=0, what="after fixing the files")
    ok("errors clear once the files are fixed")

    step("removing every policy file: back to all allowed")
    for name in ("10-deny-a.yaml", "20-allow-b-to-a.yaml", "30-allow-ns-y-to-a.yaml", "40-b-egress-deny.yaml"):
        node.remove_manifest(name)
    # The bound is about "takes effect", not speed: probing itself is slow on a
    # loaded machine (seen 2-5 s on 2 busy cores). How fast the agent applies a
    # change is what microseg_policy_last_apply_seconds and the benchmarks measure.
    took = expect_reachability(node, lambda s, d, proto, port: True, within=15.0, what="policies removed")
    ok(f"all allowed again after {took:.1f} s")

    step("metrics count verdicts by reason")
    samples = node.metrics()
    denied = metric_sum(samples, "microseg_packets_total", reason="policy_denied", verdict="drop")
    allowed = metric_sum(samples, "microseg_packets_total", verdict="allow")
    require(denied > 0, "no policy_denied drops counted")
    require(allowed > 0, "no allowed packets counted")
    require(metric_sum(samples, "microseg_packets_total", direction="egress", reason="policy_denied") > 0,
            "no egress policy drops counted (b's egress deny)")
    ok(f"{denied:g} packets dropped by policy, {allowed:g} allowed")

    step("CNI CHECK")
    for pod in (a, b, c):
        node.cni_check(pod)
    ok("CHECK passes for every pod")

    step("CNI DEL")
    node.cni_del(c, only_types=["microseg-cni"])
    require(node.host_link_exists(c.host_veth), "the veth should still exist before ptp's DEL")
    require(node.tc_filters(c) == "", f"TC filters left on {c.host_veth} after microseg-cni DEL:\n{node.tc_filters(c)}")
    names = {(e["pod_namespace"], e["pod_name"]) for e in node.ctl_json("endpoints").get("endpoints", [])}
    require(("y", "c") not in names, f"endpoint y/c still registered: {names}")
    node.cni_del(c, only_types=["microseg-cni"])  # DEL must be idempotent
    ok("microseg-cni DEL detached the TC programs and unregistered the endpoint (and is idempotent)")
    veth = c.host_veth
    node.delete_pod(c)
    require(not node.host_link_exists(veth), f"host veth {veth} survived the chain DEL")
    require(not os.path.exists(f"/run/netns/{c.netns}"), "pod netns survived")
    for pod in (a, b):
        node.delete_pod(pod)
    require(node.ctl_json("endpoints").get("endpoints", []) == [], "endpoints left after every pod was deleted")
    require(metric_sum(node.metrics(), "microseg_endpoints") == 0, "microseg_endpoints metric is not 0")
    ok("all pods deleted: no veth, no netns, no endpoint")

    step("agent stops cleanly")
    code = node.stop_agent()
    require(code == 0, f"agent exited with {code}:\n{node.agent_log_tail()}")
    ok("agent exited 0 on SIGTERM")


def main() -> int:
    args = arguments(__doc__).parse_args()
    return run_e2e("e2e_cni_chain", args.logs_dir, lambda: Node(NodeOptions(build_dir=args.build_dir)), run_test)


if __name__ == "__main__":
    sys.exit(main())
