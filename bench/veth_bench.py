#!/usr/bin/env python3
"""microseg veth bench: round-trip latency and throughput between two pods on
real veths, with the microseg TC programs attached vs. no program (R1).

The layout is the e2e harness's throw-away node (test/e2e/node.py): a node
network namespace running the real agent, two pod namespaces wired by the
real CNI chain (ptp + microseg-cni), addresses in a random /24 of
10.244.0.0/16, no default route, every name unique per run, everything
removed on exit, on errors and on Ctrl-C.

Policy: both pods are isolated both ways. Pod a may reach pod b on the bench
ports, plus a port range that brings the exact-match policy map to
--policy-entries entries (one port per entry, listed one by one: endPort
ranges compile to port-interval entries, not to exact ones), so the lookups
run against a realistically sized map.

Modes, measured in a rotating order in every round so all see the same machine:
  attached   the programs as the CNI plugin attached them (clsact ingress and
             egress of both host-side veths);
  noop       the same filters with a `return TC_ACT_OK` program instead
             (bench/noop.bpf.c): what any TC program costs on this kernel,
             so attached - noop is microseg's own share;
  detached   the same veths with the two filters removed: no program at all.
Each round runs `sockperf ping-pong` (UDP and TCP, --full-rtt: RTT, not
half of it) and `iperf3` (TCP, one stream). Figures are medians over rounds.

Before timing, a probe to a port no policy allows proves the mode: it times
out when attached (dropped) and is refused otherwise (the pod's RST).

A tool, not a test: nothing is asserted about timing. Needs root, sockperf,
iperf3 (scripts/setup.sh installs them) and a build (ninja -C build).
Exit 0 = figures printed, 1 = error, 77 = cannot run here (not root, tools missing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "test", "e2e"))

from node import Node, NodeOptions, Pod, SetupError, run, skip_reason_if_unprivileged  # noqa: E402

SKIP = 77
SOCKPERF_PORT = 11111
IPERF_PORT = 5201
FILLER_FIRST_PORT = 20000  # the range that only makes the policy map big
UNALLOWED_PORT = 9  # no policy allows it: dropped when attached, refused when detached
# The CNI plugin's tc filter identity (cni-plugin/src/tc_attach.h).
FILTER_HANDLE = "0x4d53"
FILTER_PRIORITY = "1"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def policies(filler_ports: int) -> list[tuple[str, dict]]:
    bench_ports = [{"protocol": "UDP", "port": SOCKPERF_PORT}, {"protocol": "TCP", "port": SOCKPERF_PORT},
                   {"protocol": "TCP", "port": IPERF_PORT}]
    # Single ports: an endPort range compiles to port-interval entries and
    # would leave the exact-match map nearly empty.
    filler = [{"protocol": "TCP", "port": port}
              for port in range(FILLER_FIRST_PORT, FILLER_FIRST_PORT + filler_ports)]
    ports = bench_ports + filler

    def policy(name: str, selected: str, kind: str, peer: str) -> dict:
        rule_key, peer_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {
                "podSelector": {"matchLabels": {"app": selected}},
                "policyTypes": ["Ingress", "Egress"],
                rule_key: [{peer_key: [{"podSelector": {"matchLabels": {"app": peer}}}], "ports": ports}],
            },
        }

    # Each pod is isolated both ways; a's egress to b and b's ingress from a
    # are allowed. Replies ride on the sessions.
    return [("policy-bench-b.yaml", policy("bench-b-ingress", "b", "Ingress", "a")),
            ("policy-bench-a.yaml", policy("bench-a-egress", "a", "Egress", "b"))]


class Servers:
    """sockperf and iperf3 servers in pod b, stopped by their own pids."""

    def __init__(self, node: Node, server: Pod):
        self.processes: list[subprocess.Popen] = []
        self.node = node
        self.server = server

    def start(self) -> None:
        in_pod = ["ip", "netns", "exec", self.server.netns]
        for name, cmd in (("sockperf-udp", ["sockperf", "server", "-i", self.server.ip, "-p", str(SOCKPERF_PORT)]),
                          ("sockperf-tcp", ["sockperf", "server", "--tcp", "-i", self.server.ip, "-p",
                                            str(SOCKPERF_PORT)]),
                          ("iperf3", ["iperf3", "--server", "--bind", self.server.ip, "--port", str(IPERF_PORT)])):
            with open(os.path.join(self.node.logs, f"bench-{name}.log"), "ab") as out:
                self.processes.append(subprocess.Popen(in_pod + cmd, stdin=subprocess.DEVNULL, stdout=out,
                                                       stderr=out, start_new_session=True))
        time.sleep(1.0)  # both bind at once; a second is plenty, and the first probe checks it
        for process in self.processes:
            if process.poll() is not None:
                raise SetupError(f"{process.args} exited with {process.returncode}; see {self.node.logs}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()


def host_veths(node: Node) -> list[str]:
    return [pod.host_veth for pod in node.pods.values()]


def detach(node: Node) -> None:
    for veth in host_veths(node):
        for hook in ("ingress", "egress"):
            # Fails when already detached (two detached runs in a row); the caller checks the result.
            run(["tc", "-n", node.node_netns, "filter", "del", "dev", veth, hook, "prio", FILTER_PRIORITY, "handle",
                 FILTER_HANDLE, "bpf"], check=False)


def attach(node: Node) -> None:
    """Re-attaches the agent's pinned programs exactly where the CNI plugin puts them."""
    for veth in host_veths(node):
        for hook, program in (("ingress", "from_pod"), ("egress", "to_pod")):
            run(["tc", "-n", node.node_netns, "filter", "replace", "dev", veth, hook, "prio", FILTER_PRIORITY,
                 "handle", FILTER_HANDLE, "bpf", "direct-action", "pinned",
                 os.path.join(node.bpffs, "progs", program)])


def attach_noop(node: Node, noop_object: str) -> None:
    """The same filters (hooks, priority, handle) running `return TC_ACT_OK`."""
    for veth in host_veths(node):
        for hook in ("ingress", "egress"):
            run(["tc", "-n", node.node_netns, "filter", "replace", "dev", veth, hook, "prio", FILTER_PRIORITY,
                 "handle", FILTER_HANDLE, "bpf", "direct-action", "object-file", noop_object, "section", "tc"])


def filters_attached(node: Node) -> bool:
    text = "\n".join(node.tc_filters(pod) for pod in node.pods.values())
    return text.count(" name from_pod ") == len(node.pods) and text.count(" name to_pod ") == len(node.pods)


def noop_attached(node: Node) -> bool:
    texts = [node.tc_filters(pod) for pod in node.pods.values()]
    return all(text.count("noop.bpf.o:[tc]") == 2 for text in texts)


def unallowed_port_outcome(client: Pod, server: Pod) -> str:
    """'dropped' (no answer) or 'refused' (the pod's RST came back) for a TCP connect to a closed port."""
    code = ("import socket,sys\n"
            "s=socket.socket(); s.settimeout(1.0)\n"
            f"try:\n s.connect(({server.ip!r},{UNALLOWED_PORT})); print('connected')\n"
            "except ConnectionRefusedError: print('refused')\n"
            "except OSError: print('dropped')\n")
    proc = run(["ip", "netns", "exec", client.netns, sys.executable, "-c", code], timeout=10)
    return proc.stdout.strip()


SOCKPERF_PERCENTILE = re.compile(r"percentile (\d+\.\d+) =\s*([\d.]+)")
SOCKPERF_AVG = re.compile(r"avg-rtt=([\d.]+)")


def sockperf(client: Pod, server: Pod, seconds: int, tcp: bool) -> dict[str, float]:
    cmd = ["ip", "netns", "exec", client.netns, "sockperf", "ping-pong", "-i", server.ip, "-p", str(SOCKPERF_PORT),
           "-t", str(seconds), "--full-rtt"] + (["--tcp"] if tcp else [])
    out = run(cmd, timeout=seconds + 30).stdout
    percentiles = {float(p): float(v) for p, v in SOCKPERF_PERCENTILE.findall(out)}
    avg = SOCKPERF_AVG.search(out)
    if 50.0 not in percentiles or 99.0 not in percentiles or avg is None:
        raise SetupError(f"cannot read sockperf's output:\n{out}")
    return {"p50_us": percentiles[50.0], "p99_us": percentiles[99.0], "avg_us": float(avg.group(1))}


def iperf3(client: Pod, server: Pod, seconds: int) -> dict[str, float]:
    cmd = ["ip", "netns", "exec", client.netns, "iperf3", "--client", server.ip, "--port", str(IPERF_PORT),
           "--time", str(seconds), "--json"]
    report = json.loads(run(cmd, timeout=seconds + 30).stdout)
    if "error" in report:
        raise SetupError(f"iperf3: {report['error']}")
    return {"gbit_s": report["end"]["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": float(report["end"]["sum_sent"].get("retransmits", 0))}


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"kernel {platform.release()}, {model}, {os.cpu_count()} CPUs; load average "
            f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (1/5/15 min) at the end of the run")


def measure(node: Node, client: Pod, server: Pod, options: argparse.Namespace) -> dict[str, list[dict]]:
    modes = ["attached", "noop", "detached"]
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    for round_index in range(options.rounds):
        # Rotate which mode goes first, so a slow start or a trend in the
        # machine's load does not always hit the same mode.
        order = modes[round_index % 3:] + modes[:round_index % 3]
        for mode in order:
            if mode == "attached":
                attach(node)
                if not filters_attached(node):
                    raise SetupError("the programs are not attached to both host veths:\n"
                                     + "\n".join(node.tc_filters(pod) for pod in node.pods.values()))
            elif mode == "noop":
                attach_noop(node, options.noop_object)
                if not noop_attached(node):
                    raise SetupError("the no-op program is not attached to both hooks of both host veths:\n"
                                     + "\n".join(node.tc_filters(pod) for pod in node.pods.values()))
            else:
                detach(node)
                if filters_attached(node) or node.tc_filters(client) or node.tc_filters(server):
                    raise SetupError("filters still attached after detach")
            outcome = unallowed_port_outcome(client, server)
            expected = "dropped" if mode == "attached" else "refused"
            if outcome != expected:
                raise SetupError(f"{mode}: a connect to the unallowed port {UNALLOWED_PORT} was {outcome!r}, "
                                 f"expected {expected!r}: the mode is not what it claims")
            figures = {"udp": sockperf(client, server, options.seconds, tcp=False),
                       "tcp": sockperf(client, server, options.seconds, tcp=True),
                       "iperf3": iperf3(client, server, options.seconds)}
            results[mode].append(figures)
            log(f"[bench] round {round_index + 1}/{options.rounds} {mode}: "
                f"udp p50 {figures['udp']['p50_us']:.1f} us p99 {figures['udp']['p99_us']:.1f} us; "
                f"tcp p50 {figures['tcp']['p50_us']:.1f} us p99 {figures['tcp']['p99_us']:.1f} us; "
                f"iperf3 {figures['iperf3']['gbit_s']:.2f} Gbit/s")
    attach(node)  # leave the node as the CNI made it (it is torn down next anyway)
    return results


def median_of(rows: list[dict], test: str, field: str) -> float:
    return statistics.median(row[test][field] for row in rows)


def report(results: dict[str, list[dict]], exact_entries: int, options: argparse.Namespace) -> None:
    attached, noop, detached = results["attached"], results["noop"], results["detached"]
    print(f"veth bench: {options.rounds} rounds x {options.seconds} s per test and mode, medians over rounds; "
          f"{exact_entries} exact policy entries loaded")
    print(f"machine: {machine()}\n")
    print("| test | figure | no program | no-op program | microseg attached | vs no program | vs no-op |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for test, label in (("udp", "sockperf ping-pong UDP"), ("tcp", "sockperf ping-pong TCP")):
        for field, name in (("p50_us", "p50 RTT (us)"), ("p99_us", "p99 RTT (us)"), ("avg_us", "mean RTT (us)")):
            base, floor, ours = (median_of(rows, test, field) for rows in (detached, noop, attached))
            print(f"| {label} | {name} | {base:.2f} | {floor:.2f} | {ours:.2f} | {ours - base:+.2f} | "
                  f"{ours - floor:+.2f} |")
    base, floor, ours = (median_of(rows, "iperf3", "gbit_s") for rows in (detached, noop, attached))
    print(f"| iperf3 TCP, 1 stream | throughput (Gbit/s) | {base:.2f} | {floor:.2f} | {ours:.2f} | "
          f"x{ours / base:.3f} | x{ours / floor:.3f} |")
    print("\nper round (detached / no-op / attached):")
    for i in range(options.rounds):
        d, n, a = detached[i], noop[i], attached[i]
        print(f"- round {i + 1}: udp p50 {d['udp']['p50_us']:.2f} / {n['udp']['p50_us']:.2f} / "
              f"{a['udp']['p50_us']:.2f} us, tcp p50 {d['tcp']['p50_us']:.2f} / {n['tcp']['p50_us']:.2f} / "
              f"{a['tcp']['p50_us']:.2f} us, iperf3 {d['iperf3']['gbit_s']:.2f} / {n['iperf3']['gbit_s']:.2f} / "
              f"{a['iperf3']['gbit_s']:.2f} Gbit/s")


def exact_entries_loaded(node: Node) -> int:
    endpoints = node.ctl_json("endpoints").get("endpoints", [])
    return sum(int(e.get("exactEntries", e.get("exact_entries", 0))) for e in endpoints)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    parser.add_argument("--noop-object", default=None,
                        help="the no-op TC object (default: bench/noop.bpf.o in the build dir)")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each sockperf/iperf3 run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the three modes; medians are reported")
    parser.add_argument("--policy-entries", type=int, default=10000,
                        help="exact policy entries to load (split over the two pods), at least 6")
    options = parser.parse_args()
    if options.seconds < 1 or options.rounds < 1 or not 6 <= options.policy_entries <= 60000:
        parser.error("--seconds and --rounds must be >= 1, --policy-entries in [6, 60000]")

    if options.noop_object is None:
        options.noop_object = os.path.join(options.build_dir, "bench", "noop.bpf.o")
    reason = skip_reason_if_unprivileged()
    if reason is None and not os.path.isfile(options.noop_object):
        print(f"veth_bench: no no-op object at {options.noop_object} (ninja -C build microseg_bench_bpf)",
              file=sys.stderr)
        return 1
    for tool in ("sockperf", "iperf3"):
        if reason is None and shutil.which(tool) is None:
            reason = f"needs '{tool}' (scripts/setup.sh installs it)"
    if reason:
        print(f"SKIPPED: {reason}", flush=True)
        return SKIP

    # Per pod: 3 bench ports + the filler range; two pods (b's ingress, a's egress).
    filler_ports = options.policy_entries // 2 - 3
    wanted_entries = 2 * (filler_ports + 3)
    with Node(NodeOptions(build_dir=options.build_dir, log=log)) as node:
        node.add_namespace("bench", {"ns": "bench"})
        client = node.add_pod("bench", "a", {"app": "a"})
        server = node.add_pod("bench", "b", {"app": "b"})
        for filename, manifest in policies(filler_ports):
            node.write_manifest(filename, json.dumps(manifest) + "\n")
        deadline = time.monotonic() + 60
        while exact_entries_loaded(node) < wanted_entries:
            if time.monotonic() > deadline:
                raise SetupError(f"the agent did not load {wanted_entries} exact entries within 60 s "
                                 f"(has {exact_entries_loaded(node)}):\n{node.agent_log_tail()}")
            time.sleep(0.2)
        exact_entries = exact_entries_loaded(node)
        servers = Servers(node, server)
        try:
            servers.start()
            results = measure(node, client, server, options)
        finally:
            servers.stop()
        report(results, exact_entries, options)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (SetupError, subprocess.SubprocessError, OSError) as error:
        print(f"veth_bench: {error}", file=sys.stderr)
        sys.exit(1)
