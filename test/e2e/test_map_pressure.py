#!/usr/bin/env python3
"""e2e_map_pressure: a full session map on real pods through the real CNI chain (R3).

The agent runs with a tiny session map (--max_sessions, --session_map_reserve,
--map_pressure_alert) and an allow-list of TCP port ALLOW_PORT in the node's
pod subnet. Pod a keeps a TCP connection to pod b open (one echo round trip
every 50 ms), then opens UDP flows to b from distinct source ports until the
map counts as full. Then:
  - the established connection keeps working;
  - new flows (TCP and UDP, both directions of the map) are refused, counted
    as reason map_full and in microseg_bpf_map_refused_total{map="ms_sessions"};
  - the map does not grow past its "full" mark (no LRU eviction of live flows);
  - a new TCP connection to the allow-listed port still opens (the reserve);
  - the data path's ring-buffer alert at the alert threshold is logged by the
    agent and counted in microseg_bpf_map_pressure_alerts_total{map="ms_sessions"};
  - microseg_bpf_map_pressure{map="ms_sessions"} reports the fill.

Why the thresholds are not 90 % / 98 % of the map here: the session map is an
LRU with BPF_F_NO_COMMON_LRU, whose capacity the kernel splits evenly over the
*possible* CPUs, and a CPU only ever uses (and evicts from) its own share. All
of this test's flows are inserted on one CPU (the test pins itself and its
children), so that CPU fills at 1/n of the map: the thresholds are set inside
its share (alert at ALERT_ENTRIES, full at FULL_ENTRIES of SHARE_PER_CPU
entries per CPU) so that what is tested is the refusal, not an eviction. The
code path is the one the default ratios take.
Exit 0 = pass, 1 = fail, 77 = skipped (not root, no bpftool).
"""

from __future__ import annotations

import math
import os
import shutil
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from e2e_main import arguments, run_e2e  # noqa: E402
from expect import metric_sum, ok, require  # noqa: E402
from node import Node, NodeOptions, run, wait_until  # noqa: E402
from test_sessions import EchoClient, sessions  # noqa: E402

TCP_PORT = 8080      # the established connection; refused as a new flow once full
ALLOW_PORT = 9090    # allow-listed: new connections still get a session
UDP_PORT = 5353      # the fill
SHARE_PER_CPU = 128  # session map entries per possible CPU
ALERT_ENTRIES = 60
FULL_ENTRIES = 80
FILL_FLOWS = FULL_ENTRIES  # two sessions per flow (a's egress, b's ingress): twice what fits

# One UDP datagram from each of N sockets at once (distinct source ports), in a's netns.
FILL_SCRIPT = """
import socket, sys
target, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
for s in sockets:
    s.sendto(b"fill", (target, port))
for s in sockets:
    s.close()
"""


def possible_cpus() -> int:
    """Number of possible CPUs (the kernel's per-CPU LRU split), from /sys."""
    with open("/sys/devices/system/cpu/possible", encoding="ascii") as f:
        total = 0
        for part in f.read().strip().split(","):
            first, _, last = part.partition("-")
            total += int(last or first) - int(first) + 1
        return total


def agent_flags(capacity: int, subnet: str) -> list[str]:
    # The agent rounds up: alert_entries = ceil(capacity * ratio), reserve = ceil(capacity * ratio).
    alert_ratio = (ALERT_ENTRIES - 0.5) / capacity
    reserve_ratio = (capacity - FULL_ENTRIES - 0.5) / capacity
    assert math.ceil(capacity * alert_ratio) == ALERT_ENTRIES
    assert capacity - math.ceil(capacity * reserve_ratio) == FULL_ENTRIES
    return ["--max_sessions", str(capacity),
            "--map_pressure_alert", repr(alert_ratio),
            "--session_map_reserve", repr(reserve_ratio),
            "--session_allow_list", f"{subnet}:tcp:{ALLOW_PORT}",
            "--map_pressure_interval", "200ms",
            # The fill must stay for the whole test.
            "--udp_session_timeout", "10m"]


def metrics_when(node: Node, condition, what: str) -> dict[str, float]:
    """The agent's metrics once `condition(metrics)` holds (the agent updates pressure every check)."""
    return wait_until(lambda: (lambda samples: samples if condition(samples) else None)(node.metrics()), 10.0, what)


def run_test(node: Node, capacity: int) -> None:
    node.add_namespace("x", {"ns": "x"})
    a = node.add_pod("x", "a", {"app": "a"})
    b = node.add_pod("x", "b", {"app": "b"}, [TCP_PORT, ALLOW_PORT], [UDP_PORT])

    client = EchoClient(node, a, b)
    try:
        client.wait_for_successes(10, 10.0, "a -> b connection")
        ok("long-lived connection a -> b established")
        before = node.metrics()
        require(metric_sum(before, "microseg_bpf_map_capacity", map="ms_sessions") == capacity,
                f"session map capacity is not {capacity}: {metric_sum(before, 'microseg_bpf_map_capacity', map='ms_sessions')}")

        # Fill: every flow tries to insert two sessions; about half of them fit.
        run(["ip", "netns", "exec", a.netns, sys.executable, "-c", FILL_SCRIPT, b.ip, str(UDP_PORT),
             str(FILL_FLOWS)], timeout=60)
        in_map = len(sessions(node))
        require(FULL_ENTRIES - 2 <= in_map <= FULL_ENTRIES + 2,  # the estimate may run one or two ahead
                f"{in_map} sessions in the map after the fill; it counts as full at {FULL_ENTRIES}")
        refused = metric_sum(node.metrics(), "microseg_packets_total", reason="map_full") - \
            metric_sum(before, "microseg_packets_total", reason="map_full")
        require(refused >= FILL_FLOWS / 2 - 4, f"only {refused:.0f} fill packets dropped as map_full")
        ok(f"fill: {FILL_FLOWS} new UDP flows, {in_map} sessions in the map (full at {FULL_ENTRIES} of "
           f"{capacity}), {refused:.0f} packets dropped as map_full")

        # The established connection goes on.
        seen = client.successes()
        client.wait_for_successes(seen + 10, 5.0, "a -> b with the session map full")
        ok(f"established connection keeps working ({client.successes()} round trips, none failed)")

        # New flows are refused; the allow-listed port still opens.
        mid = node.metrics()
        results = node.probe(a, [f"tcp:{b.ip}:{TCP_PORT}", f"udp:{b.ip}:{UDP_PORT}", f"tcp:{b.ip}:{ALLOW_PORT}"],
                             timeout=1.0)
        require(results[f"tcp:{b.ip}:{TCP_PORT}"] == "timeout",
                f"a new TCP connection to b:{TCP_PORT} was not refused: {results}")
        require(results[f"udp:{b.ip}:{UDP_PORT}"] == "timeout", f"a new UDP flow to b was not refused: {results}")
        require(results[f"tcp:{b.ip}:{ALLOW_PORT}"] == "ok",
                f"the allow-listed connection to b:{ALLOW_PORT} did not open: {results}")
        after = metrics_when(node, lambda m: metric_sum(m, "microseg_bpf_map_refused_total", map="ms_sessions")
                             > metric_sum(mid, "microseg_bpf_map_refused_total", map="ms_sessions"),
                             "microseg_bpf_map_refused_total to move")
        refused_probes = metric_sum(after, "microseg_packets_total", reason="map_full") - \
            metric_sum(mid, "microseg_packets_total", reason="map_full")
        require(refused_probes >= 2, f"only {refused_probes:.0f} probe packets dropped as map_full")
        in_map_now = len(sessions(node))
        require(in_map_now <= FULL_ENTRIES + 4,
                f"{in_map_now} sessions in the map: it grew past its full mark ({FULL_ENTRIES})")
        ok(f"new TCP and UDP flows refused ({refused_probes:.0f} more map_full drops, refused_total "
           f"{metric_sum(after, 'microseg_bpf_map_refused_total', map='ms_sessions'):.0f}); the allow-listed "
           f"port {ALLOW_PORT} still opens; {in_map_now} sessions in the map")

        # Alert and pressure, as the agent reports them.
        log_line = wait_until(lambda: next((line for line in node.agent_log_tail(400).splitlines()
                                            if "map pressure: ms_sessions" in line), None),
                              10.0, "the agent to log the pressure alert")
        final = metrics_when(node, lambda m: metric_sum(m, "microseg_bpf_map_pressure", map="ms_sessions")
                             >= FULL_ENTRIES / capacity, "microseg_bpf_map_pressure to reach the fill")
        alerts = metric_sum(final, "microseg_bpf_map_pressure_alerts_total", map="ms_sessions")
        require(alerts >= 1, "microseg_bpf_map_pressure_alerts_total{map=\"ms_sessions\"} did not count the alert")
        pressure = metric_sum(final, "microseg_bpf_map_pressure", map="ms_sessions")
        require(pressure <= (FULL_ENTRIES + 4) / capacity, f"pressure {pressure} above the fill")
        ok(f"alert logged ({log_line.strip()[:160]}), counted ({alerts:.0f}); "
           f"microseg_bpf_map_pressure{{map=\"ms_sessions\"}} = {pressure:.3f}")
        require(client.failure() is None, f"the established connection broke: {client.failure()}")
    finally:
        client.stop()

    for pod in (a, b):
        node.delete_pod(pod)
    require(node.stop_agent() == 0, "agent did not exit 0")


def main() -> int:
    args = arguments(__doc__).parse_args()
    capacity = SHARE_PER_CPU * possible_cpus()

    def make_node() -> Node:
        # Every flow of this test (and the agent, the servers) on one CPU: see the docstring.
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        node = Node(NodeOptions(build_dir=args.build_dir))
        node.options.agent_args = agent_flags(capacity, node.subnet)
        print(f"session map: {capacity} entries ({possible_cpus()} possible CPUs x {SHARE_PER_CPU}), alert at "
              f"{ALERT_ENTRIES}, full at {FULL_ENTRIES}; everything on CPU {cpu}", flush=True)
        return node

    return run_e2e("e2e_map_pressure", args.logs_dir, make_node, lambda node: run_test(node, capacity),
                   skip_reason=lambda: None if shutil.which("bpftool") else "needs bpftool")


if __name__ == "__main__":
    sys.exit(main())
