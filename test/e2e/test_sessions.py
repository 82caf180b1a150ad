#!/usr/bin/env python3
"""e2e_sessions: session tracking on real pods through the real CNI chain.

1. A long-lived TCP connection (pod a -> pod b, one echo round trip every
   50 ms) stays up across policy changes that keep allowing it (no-ops for
   that flow, each of which bumps b's policy revision).
2. An hping3 SYN flood from pod c towards pod d (whose policy does not let c
   in, so no SYN is ever answered) is capped at c's endpoint: SYNs beyond
   --max_half_open_per_endpoint are dropped (syn_flood), the session map
   holds no more half-open sessions of c than the cap, and a's connection to
   b never misses a round trip meanwhile.
3. An hping3 ACK flood from pod e (egress not isolated) towards an address
   nobody answers: each bare ACK would be picked up as a session; unanswered
   pick-ups count against the same cap, so e holds no more sessions than the
   cap and the rest are dropped (syn_flood).
4. A policy change that denies a -> b stops the established connection
   (policy_revoked) within one second of the agent applying it.
Exit 0 = pass, 1 = fail, 77 = skipped (not root, or hping3 missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from e2e_main import arguments, run_e2e  # noqa: E402
from expect import metric_sum, ok, require  # noqa: E402
from node import Node, NodeOptions, Pod, run, wait_until  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ECHO_CLIENT = os.path.join(HERE, "echo_client.py")
TCP_PORT = 8080
HALF_OPEN_CAP = 32
FLOOD_SYNS = 3000
MS_SESSION_F_HALF_OPEN = 1


def policy(name: str, pod_labels: dict, from_labels: list[dict], ports: list[int]) -> str:
    spec = {"podSelector": {"matchLabels": pod_labels}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": labels}} for labels in from_labels],
                         "ports": [{"protocol": "TCP", "port": port} for port in ports]}]}
    return json.dumps({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": name, "namespace": "x"}, "spec": spec}, indent=2) + "\n"


class EchoClient:
    """echo_client.py in a pod's netns; its JSON lines collected by a thread."""

    def __init__(self, node: Node, source: Pod, target: Pod):
        cmd = ["ip", "netns", "exec", source.netns, sys.executable, ECHO_CLIENT, target.ip, str(TCP_PORT)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        self.lines: list[dict] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(json.loads(line))

    def successes(self) -> int:
        with self.lock:
            return sum(1 for line in self.lines if line["ok"])

    def failure(self) -> dict | None:
        with self.lock:
            return next((line for line in self.lines if not line["ok"]), None)

    def last_success_time(self) -> float:
        with self.lock:
            return max((line["t"] for line in self.lines if line["ok"]), default=0.0)

    def wait_for_successes(self, count: int, timeout: float, what: str) -> None:
        def enough() -> bool:
            failure = self.failure()
            require(failure is None, f"{what}: the connection broke: {failure}")
            return self.successes() >= count
        wait_until(enough, timeout, f"{what}: {count} round trips", interval=0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        self.proc.wait(timeout=10)


def apply(node: Node, filename: str, text: str | None, policies: int) -> float:
    """Writes (or removes) a policy; returns the monotonic time the agent had applied it."""
    before = int(node.ctl_json("status").get("generation", 0))
    if text is None:
        node.remove_manifest(filename)
    else:
        node.write_manifest(filename, text)
    node.wait_for_status(lambda st: int(st.get("generation", 0)) > before
                         and int(st.get("network_policies", 0)) == policies and not st.get("manifest_errors"),
                         f"the agent to apply {filename}", timeout=5.0)
    return time.monotonic()


def sessions(node: Node) -> list[dict]:
    """The session map, as bpftool formats it from the map's BTF."""
    path = os.path.join(node.bpffs, "maps", "ms_sessions")
    out = run(["bpftool", "-j", "map", "dump", "pinned", path], timeout=60).stdout
    entries = json.loads(out) if out.strip() else []
    return [entry["formatted"] for entry in entries if "formatted" in entry]


def endpoint_id(node: Node, pod: Pod) -> int:
    for endpoint in node.ctl_json("endpoints").get("endpoints", []):
        if endpoint.get("pod_name") == pod.name and endpoint.get("pod_namespace") == pod.namespace:
            return int(endpoint["endpoint_id"])
    raise AssertionError(f"no endpoint for {pod.key}: {node.ctl_json('endpoints')}")


def run_test(node: Node) -> None:
    node.add_namespace("x", {"ns": "x"})
    a = node.add_pod("x", "a", {"app": "a"})
    b = node.add_pod("x", "b", {"app": "b"}, [TCP_PORT])
    c = node.add_pod("x", "c", {"app": "c"})
    d = node.add_pod("x", "d", {"app": "d"}, [TCP_PORT])
    e = node.add_pod("x", "e", {"app": "e"})
    apply(node, "10-b.yaml", policy("b-ingress", {"app": "b"}, [{"app": "a"}], [TCP_PORT]), 1)
    apply(node, "20-d.yaml", policy("d-ingress", {"app": "d"}, [{"app": "a"}], [TCP_PORT]), 2)

    client = EchoClient(node, a, b)
    try:
        client.wait_for_successes(10, 10.0, "a -> b connection")
        ok("long-lived connection a -> b established under b's policy")

        # 1. Policy changes that keep allowing the flow.
        no_ops = [
            ("10-b.yaml", policy("b-ingress", {"app": "b"}, [{"app": "a"}], [TCP_PORT, 9090]), 2,
             "b's rule gains a port"),
            ("30-b-also-c.yaml", policy("b-also-c", {"app": "b"}, [{"app": "c"}], [TCP_PORT]), 3,
             "a second policy selects b"),
            ("10-b.yaml", policy("b-ingress", {"app": "b"}, [{"app": "a"}, {"app": "d"}], [TCP_PORT]), 3,
             "b's rule gains a peer"),
        ]
        for filename, text, count, what in no_ops:
            apply(node, filename, text, count)
            seen = client.successes()
            client.wait_for_successes(seen + 10, 5.0, f"after '{what}'")
        require(client.failure() is None, f"the connection broke across policy no-ops: {client.failure()}")
        ok(f"connection survived {len(no_ops)} policy changes that keep allowing it "
           f"({client.successes()} round trips so far)")

        # 2. SYN flood from c to d (d does not let c in: no SYN is ever answered).
        c_id = endpoint_id(node, c)
        before = node.metrics()
        seen = client.successes()
        flood = run(["ip", "netns", "exec", c.netns, "hping3", "-q", "-S", "-p", str(TCP_PORT), "-i", "u300",
                     "-c", str(FLOOD_SYNS), d.ip], check=False, timeout=120)
        require(flood.returncode in (0, 1), f"hping3 failed ({flood.returncode}): {flood.stderr.strip()}")
        after = node.metrics()
        flooded = metric_sum(after, "microseg_packets_total", direction="egress", reason="syn_flood") - \
            metric_sum(before, "microseg_packets_total", direction="egress", reason="syn_flood")
        admitted = metric_sum(after, "microseg_packets_total", direction="egress", reason="not_isolated") - \
            metric_sum(before, "microseg_packets_total", direction="egress", reason="not_isolated")
        require(flooded >= FLOOD_SYNS - HALF_OPEN_CAP - 50,
                f"only {flooded:.0f} of {FLOOD_SYNS} SYNs were dropped as syn_flood ({admitted:.0f} admitted)")
        c_half_open = [s for s in sessions(node)
                       if int(s["key"]["endpoint_id"]) == c_id and int(s["value"]["flags"]) & MS_SESSION_F_HALF_OPEN]
        require(len(c_half_open) <= HALF_OPEN_CAP,
                f"{len(c_half_open)} half-open sessions of c in the map, cap {HALF_OPEN_CAP}")
        total = len(sessions(node))
        require(total <= HALF_OPEN_CAP + 20, f"{total} sessions in the map after the flood (cap {HALF_OPEN_CAP})")
        client.wait_for_successes(seen + 10, 5.0, "a -> b during and after the SYN flood")
        ok(f"SYN flood: {flooded:.0f} of {FLOOD_SYNS} SYNs dropped as syn_flood, {len(c_half_open)} half-open "
           f"sessions of c (cap {HALF_OPEN_CAP}), {total} sessions in the map; a -> b never missed a round trip")

        # 3. ACK flood from e to an address of the pod subnet that no pod has.
        e_id = endpoint_id(node, e)
        nobody = f"10.244.{node.subnet_octet}.250"
        before = node.metrics()
        seen = client.successes()
        flood = run(["ip", "netns", "exec", e.netns, "hping3", "-q", "-A", "-p", str(TCP_PORT), "-i", "u300",
                     "-c", str(FLOOD_SYNS), nobody], check=False, timeout=120)
        require(flood.returncode in (0, 1), f"hping3 failed ({flood.returncode}): {flood.stderr.strip()}")
        after = node.metrics()
        flooded = metric_sum(after, "microseg_packets_total", direction="egress", reason="syn_flood") - \
            metric_sum(before, "microseg_packets_total", direction="egress", reason="syn_flood")
        require(flooded >= FLOOD_SYNS - HALF_OPEN_CAP - 50,
                f"only {flooded:.0f} of {FLOOD_SYNS} unanswered ACKs were dropped as syn_flood")
        e_sessions = [s for s in sessions(node) if int(s["key"]["endpoint_id"]) == e_id]
        require(len(e_sessions) <= HALF_OPEN_CAP,
                f"{len(e_sessions)} sessions of e in the map after its ACK flood, cap {HALF_OPEN_CAP}")
        require(all(int(s["value"]["flags"]) & MS_SESSION_F_HALF_OPEN for s in e_sessions),
                "a picked-up session of e that nobody answered does not count as half-open")
        client.wait_for_successes(seen + 10, 5.0, "a -> b during and after the ACK flood")
        ok(f"ACK flood: {flooded:.0f} of {FLOOD_SYNS} unanswered ACKs dropped as syn_flood, {len(e_sessions)} "
           f"sessions of e (cap {HALF_OPEN_CAP}), all counted half-open; a -> b never missed a round trip")

        # 4. A change that denies a -> b stops the connection.
        revoked_before = metric_sum(node.metrics(), "microseg_packets_total", reason="policy_revoked")
        applied_at = apply(node, "10-b.yaml", policy("b-ingress", {"app": "b"}, [{"app": "d"}], [TCP_PORT]), 3)
        failure = wait_until(client.failure, 5, "the connection to break after the policy denied it", interval=0.05)
        stopped_after = client.last_success_time() - applied_at
        require(stopped_after <= 1.0,
                f"the last round trip succeeded {stopped_after:.2f} s after the agent applied the denying policy")
        revoked = metric_sum(node.metrics(), "microseg_packets_total", reason="policy_revoked") - revoked_before
        require(revoked >= 1, "no packet was dropped as policy_revoked")
        ok(f"denying policy stopped the connection: last round trip {max(stopped_after, 0.0) * 1000:.0f} ms after "
           f"the agent applied it, {revoked:.0f} packets dropped as policy_revoked ({failure['error']})")
    finally:
        client.stop()

    for pod in (a, b, c, d):
        node.delete_pod(pod)
    require(node.stop_agent() == 0, "agent did not exit 0")


def main() -> int:
    args = arguments(__doc__).parse_args()

    def skip_reason() -> str | None:
        if shutil.which("hping3") is None:
            return "needs hping3 (scripts/setup.sh installs it)"
        if shutil.which("bpftool") is None:
            return "needs bpftool"
        return None
    return run_e2e("e2e_sessions", args.logs_dir,
                   lambda: Node(NodeOptions(build_dir=args.build_dir,
                                            agent_args=["--max_half_open_per_endpoint", str(HALF_OPEN_CAP),
                                                        "--session_sweep_interval", "1s"])),
                   run_test, skip_reason=skip_reason)


if __name__ == "__main__":
    sys.exit(main())
