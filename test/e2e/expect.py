"""Expectations of the e2e tests and the demo: reachability over a Node's pods, checks, metric sums."""

from __future__ import annotations

import time
from typing import Callable

from node import Node, Pod

# expected(source, destination, proto, port) -> True when the probe must succeed
Expectation = Callable[[Pod, Pod, str, int], bool]


class ExpectationFailed(AssertionError):
    pass


def require(condition: bool, message: str) -> None:
    """A test step's check: fails the test (AssertionError) with `message`."""
    if not condition:
        raise AssertionError(message)


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def ok(message: str) -> None:
    print(f"    PASS {message}", flush=True)


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of every sample of `name` (Node.metrics()) whose labels include `labels`."""
    total = 0.0
    for series, value in samples.items():
        if series != name and not series.startswith(name + "{"):
            continue
        if all(f'{key}="{val}"' in series for key, val in labels.items()):
            total += value
    return total


def all_probes(node: Node) -> list[tuple[Pod, Pod, str, int]]:
    """Every (source, destination, proto, port) between distinct pods."""
    pods = list(node.pods.values())
    probes = []
    for source in pods:
        for destination in pods:
            if source is destination:
                continue
            probes += [(source, destination, "tcp", p) for p in destination.tcp_ports]
            probes += [(source, destination, "udp", p) for p in destination.udp_ports]
    return probes


def measure(node: Node, probes: list[tuple[Pod, Pod, str, int]], timeout: float = 0.6) -> dict:
    """{(source key, destination key, proto, port): result string}"""
    pairs = [(s, f"{proto}:{d.ip}:{port}") for s, d, proto, port in probes]
    raw = node.probe_pairs(pairs, timeout)
    return {(s.key, d.key, proto, port): raw[(s.key, f"{proto}:{d.ip}:{port}")] for s, d, proto, port in probes}


def expect_reachability(node: Node, expected: Expectation, within: float = 3.0, what: str = "") -> float:
    """Probes every pair until the outcome equals `expected` or `within` seconds pass.

    `within=0` takes exactly one round (for "nothing must have changed" checks).
    Returns the seconds until the state was reached; raises ExpectationFailed
    with a table of the mismatches otherwise.
    """
    probes = all_probes(node)
    start = time.monotonic()
    while True:
        results = measure(node, probes)
        mismatches = []
        for source, destination, proto, port in probes:
            want = expected(source, destination, proto, port)
            got = results[(source.key, destination.key, proto, port)]
            if (got == "ok") != want:
                mismatches.append(f"  {source.key:>8} -> {destination.key:<8} {proto}/{port:<5} "
                                  f"want {'allowed' if want else 'denied':8} got {got}")
        elapsed = time.monotonic() - start
        if not mismatches:
            return elapsed
        if elapsed >= within:
            raise ExpectationFailed(f"{what}: {len(mismatches)} of {len(probes)} probes differ after "
                                    f"{elapsed:.1f} s:\n" + "\n".join(mismatches))
        time.sleep(0.1)
