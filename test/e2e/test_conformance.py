#!/usr/bin/env python3
"""e2e_conformance: NetworkPolicy semantics on real pods through the real CNI chain.

The upstream Kubernetes NetworkPolicy test model (see conformance_cases.py):
9 pods in namespaces x, y, z, each serving TCP and UDP on 80 and 81. For every
case step the manifests directory is made to match the step's declared state,
the test waits until `microsegctl status` shows the agent applied it
(generation bumped, policy count right, no manifest errors), then probes every
ordered pair of distinct pods on tcp/80, tcp/81, udp/80, udp/81 in parallel
(0.5 s timeouts) and compares with the step's expected truth table.

Self pairs (a pod probing its own IP) are not probed: that traffic never
leaves the pod's network namespace (the kernel delivers it on the pod's own
stack), so it never meets the host-side TC programs.

Timing: a step's state is in force once the agent bumps its generation (the
maps are written before that), so the first probe round should already match.
Probes that mismatch get ONE more round after a short pause, to absorb the
agent's <= 1 s apply latency (200 ms manifest polling) and any probe noise on a
busy 2-core machine; a mismatch that survives it fails the test.

Exit 0 = pass, 1 = fail, 77 = skipped (not root).
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from conformance_cases import (ALL_PODS, PORTS, PROTOCOLS, Case, Context, PodId, Step,  # noqa: E402
                               build_cases, container_port_name, model_namespace_labels, model_pod_labels)
from e2e_main import arguments, run_e2e  # noqa: E402
from expect import require  # noqa: E402
from node import Node, NodeOptions, Pod  # noqa: E402

PROBE_TIMEOUT = 0.5
RETRY_PAUSE = 0.5
METRICS_WAIT = 5.0  # seconds for ring-buffer events to show in the metrics


class Failed(AssertionError):
    pass


class ConformanceNode(Node):
    """A Node whose Pod manifests name their container ports (serve-80-tcp, ...).

    node.Node writes unnamed container ports; named-port policies need the
    names (same manifest otherwise).
    """

    def _container_ports(self, pod: Pod) -> list[dict]:
        return [{"name": container_port_name(p, "tcp"), "containerPort": p, "protocol": "TCP"}
                for p in pod.tcp_ports] + \
            [{"name": container_port_name(p, "udp"), "containerPort": p, "protocol": "UDP"} for p in pod.udp_ports]

    def relabel_pod(self, pod: Pod, labels: dict) -> None:
        pod.labels = dict(labels)
        self.write_manifest(self._pod_manifest_name(pod), self._pod_manifest(pod))


class Cluster:
    """The live state of the model, kept in step with a Step's declared state."""

    def __init__(self, node: ConformanceNode):
        self.node = node
        self.pods: dict[PodId, Pod] = {}
        self.policies: dict[str, str] = {}  # file name -> text written
        self.namespace_labels = {ns: model_namespace_labels(ns) for ns in {p.ns for p in ALL_PODS}}

    def create(self) -> None:
        for ns, ns_labels in self.namespace_labels.items():
            self.node.add_namespace(ns, ns_labels)
        for pod_id in ALL_PODS:
            self.pods[pod_id] = self.node.add_pod(pod_id.ns, pod_id.name, model_pod_labels(pod_id),
                                                  list(PORTS), list(PORTS))

    def apply(self, step: Step) -> bool:
        """Makes the manifests match `step`; returns whether anything changed."""
        changed = False
        wanted = {name: json.dumps(obj, indent=2) + "\n" for name, obj in step.policies.items()}
        for name in sorted(set(self.policies) - set(wanted)):
            self.node.remove_manifest(name)
            del self.policies[name]
            changed = True
        for ns in self.namespace_labels:
            labels = step.namespace_labels.get(ns, model_namespace_labels(ns))
            if labels != self.namespace_labels[ns]:
                self.node.add_namespace(ns, labels)
                self.namespace_labels[ns] = labels
                changed = True
        for pod_id, pod in self.pods.items():
            labels = step.pod_labels.get(pod_id, model_pod_labels(pod_id))
            if labels != pod.labels:
                self.node.relabel_pod(pod, labels)
                changed = True
        for name, text in wanted.items():
            if self.policies.get(name) != text:
                self.node.write_manifest(name, text)
                self.policies[name] = text
                changed = True
        return changed


def probe_round(node: Node, cluster: Cluster, probes: list[tuple[PodId, PodId, str, int]]) -> dict:
    pairs = [(cluster.pods[s], f"{proto}:{cluster.pods[d].ip}:{port}") for s, d, proto, port in probes]
    raw = node.probe_pairs(pairs, PROBE_TIMEOUT)
    return {(s, d, proto, port): raw[(cluster.pods[s].key, f"{proto}:{cluster.pods[d].ip}:{port}")]
            for s, d, proto, port in probes}


def every_probe() -> list[tuple[PodId, PodId, str, int]]:
    return [(s, d, proto, port) for s in ALL_PODS for d in ALL_PODS if s != d
            for proto in PROTOCOLS for port in PORTS]


def truth_table(step: Step, results: dict) -> str:
    """One grid per proto/port: rows sources, columns destinations.

    '.' allowed as expected, 'x' denied as expected, '-' self (not probed),
    'L' leak (allowed, should be denied), 'B' blocked (denied, should be allowed).
    """
    lines = ["legend: . allowed ok, x denied ok, L allowed but expected denied, B denied but expected allowed, - self"]
    header = "        " + " ".join(f"{str(d):>3}" for d in ALL_PODS)
    for proto in PROTOCOLS:
        for port in PORTS:
            lines.append(f"  {proto}/{port}  (rows: source, columns: destination)")
            lines.append(header)
            for s in ALL_PODS:
                cells = []
                for d in ALL_PODS:
                    if s == d:
                        cells.append("-")
                        continue
                    want = step.expect(s, d, proto, port)
                    got = results[(s, d, proto, port)] == "ok"
                    cells.append(("." if got else "x") if want == got else ("L" if got else "B"))
                lines.append(f"    {str(s):>3} " + " ".join(f"{c:>3}" for c in cells))
    return "\n".join(lines)


def check_step(node: ConformanceNode, cluster: Cluster, step: Step) -> tuple[int, int]:
    """Probes everything; one retry round for mismatches. Returns (probes, retried)."""
    probes = every_probe()
    results = probe_round(node, cluster, probes)

    def mismatching(keys) -> list:
        return [k for k in keys if (results[k] == "ok") != step.expect(*k)]

    first = mismatching(probes)
    if first:
        time.sleep(RETRY_PAUSE)
        results.update(probe_round(node, cluster, first))
        still = mismatching(first)
        if still:
            detail = "\n".join(f"    {str(s):>3} -> {str(d):<3} {proto}/{port}: want "
                               f"{'allowed' if step.expect(s, d, proto, port) else 'denied'}, got {results[(s, d, proto, port)]}"
                               for s, d, proto, port in still)
            raise Failed(f"{len(still)} of {len(probes)} probes differ from the expected truth table "
                         f"(after one retry round):\n{truth_table(step, results)}\n{detail}")
    return len(probes), len(first)


def check_metrics(node: Node, step: Step) -> None:
    """The step's metrics expectation, polled: events reach the agent asynchronously."""
    deadline = time.monotonic() + METRICS_WAIT
    while True:
        problem = step.metrics_expect(node.metrics())
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise Failed(f"metrics after {METRICS_WAIT:.0f} s: {problem}")
        time.sleep(0.5)


def wait_applied(node: Node, generation_before: int, policy_count: int) -> int:
    status = node.wait_for_status(
        lambda st: (int(st.get("generation", 0)) > generation_before
                    and int(st.get("network_policies", 0)) == policy_count and not st.get("manifest_errors")),
        f"the agent to apply the step ({policy_count} policies)", timeout=5.0)
    return int(status.get("generation", 0))


def run_cases(node: ConformanceNode, only: str | None) -> list[str]:
    print("=== set-up: namespaces x, y, z; pods a, b, c in each through the CNI chain", flush=True)
    started = time.monotonic()
    cluster = Cluster(node)
    cluster.create()
    print(f"    9 pods up in {time.monotonic() - started:.1f} s: "
          + ", ".join(f"{pid}={pod.ip}" for pid, pod in cluster.pods.items()), flush=True)
    ctx = Context(pod_ip={pid: pod.ip for pid, pod in cluster.pods.items()}, pod_subnet=node.subnet)
    generation = int(node.ctl_json("status").get("generation", 0))

    failures = []
    for case in build_cases(ctx):
        if only and only not in case.name:
            continue
        print(f"\n=== {case.name}", flush=True)
        for step in case.steps:
            step_started = time.monotonic()
            try:
                if cluster.apply(step):
                    # The status counts NetworkPolicy objects only; the CRD kinds ride on the generation.
                    network_policies = sum(1 for obj in step.policies.values() if obj["kind"] == "NetworkPolicy")
                    generation = wait_applied(node, generation, network_policies)
                probes, retried = check_step(node, cluster, step)
                if step.metrics_expect:
                    check_metrics(node, step)
            except Failed as failure:
                print(f"    FAIL {step.title}\n{failure}", flush=True)
                failures.append(f"{case.name} / {step.title}")
                break  # later steps of a case build on this one
            note = f", {retried} re-probed" if retried else ""
            print(f"    PASS {step.title} ({probes} probes, {time.monotonic() - step_started:.1f} s{note})",
                  flush=True)
    return failures


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--only", help="run only cases whose name contains this text")
    args = parser.parse_args()

    def scenario(node: ConformanceNode) -> None:
        failures = run_cases(node, args.only)
        require(not failures, f"{len(failures)} case step(s) failed:\n  " + "\n  ".join(failures))
    return run_e2e("e2e_conformance", args.logs_dir, lambda: ConformanceNode(NodeOptions(build_dir=args.build_dir)),
                   scenario)


if __name__ == "__main__":
    sys.exit(main())
