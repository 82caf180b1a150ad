#!/usr/bin/env python3
"""microseg on one machine: the README's demo.

Starts the agent in standalone mode on a throw-away "node" (its own network
namespace and bpffs), creates the pods of deploy/examples/standalone-demo/
through the real CNI chain (ptp + host-local, then microseg-cni), and applies
the example policies one by one, printing after each step which TCP/UDP probes
between the pods are allowed or denied and what changed. Ends with the agent's
verdict counters and endpoint list, then removes everything (also on Ctrl-C).

  --check   also fail (exit 1) when a step's measured matrix differs from the
            expectations in steps.json (how ctest runs it)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, HERE)

from expect import all_probes, measure  # noqa: E402
from node import Node, NodeOptions, skip_reason_if_unprivileged  # noqa: E402

DEMO_DIR = os.path.join(REPO, "deploy", "examples", "standalone-demo")
SKIP = 77

BOLD = "\033[1m" if sys.stdout.isatty() else ""
GREEN = "\033[32m" if sys.stdout.isatty() else ""
RED = "\033[31m" if sys.stdout.isatty() else ""
DIM = "\033[2m" if sys.stdout.isatty() else ""
RESET = "\033[0m" if sys.stdout.isatty() else ""


def probe_name(source: str, destination: str, proto: str, port: int) -> str:
    return f"{source} -> {destination} {proto}/{port}"


def expected_allowed(step: dict, name: str) -> bool:
    denied = any(fnmatch.fnmatchcase(name, pattern) for pattern in step.get("denied", []))
    excepted = any(fnmatch.fnmatchcase(name, pattern) for pattern in step.get("except", []))
    return not denied or excepted


def print_matrix(node: Node, results: dict) -> None:
    pods = list(node.pods.values())
    columns = [(d, proto, port) for d in pods for proto, ports in (("tcp", d.tcp_ports), ("udp", d.udp_ports))
               for port in ports]
    width = max(14, *(len(d.key) + 1 for d, _, _ in columns))
    row_head = max(len(p.key) for p in pods) + 2
    print(" " * row_head + "".join(f"{d.key:<{width}}" for d, _, _ in columns))
    print(" " * row_head + "".join(f"{proto + '/' + str(port):<{width}}" for _, proto, port in columns))
    for source in pods:
        cells = []
        for destination, proto, port in columns:
            if destination is source:
                cells.append(f"{DIM}{'-':<{width}}{RESET}")
                continue
            result = results[(source.key, destination.key, proto, port)]
            if result == "ok":
                cells.append(f"{GREEN}{'allow':<{width}}{RESET}")
            else:
                cells.append(f"{RED}{('DENY' if result == 'timeout' else result[:width - 1]):<{width}}{RESET}")
        print(f"{source.key:<{row_head}}" + "".join(cells))


def run_step(node: Node, step: dict, previous: dict | None, check: bool) -> tuple[dict, list[str]]:
    """Measures until the matrix matches the step's expectation (or 3 s pass); returns results, problems."""
    probes = all_probes(node)
    deadline = time.monotonic() + 3.0
    while True:
        results = measure(node, probes)
        mismatches = [probe_name(*key) + f": expected {'allow' if expected_allowed(step, probe_name(*key)) else 'deny'}"
                      f", measured {results[key]}"
                      for key in results if (results[key] == "ok") != expected_allowed(step, probe_name(*key))]
        if not mismatches or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    print_matrix(node, results)
    if previous is not None:
        changes = [f"  {'+ now allowed' if results[k] == 'ok' else '- now denied '}  {probe_name(*k)}"
                   for k in results if (results[k] == "ok") != (previous.get(k) == "ok")]
        print(f"{BOLD}changes:{RESET}" + ("\n" + "\n".join(changes) if changes else " none"))
    if mismatches:
        label = "MISMATCH" if check else "note: differs from the expectation in steps.json"
        print(f"{RED}{label}:{RESET}\n  " + "\n  ".join(mismatches))
    return results, (mismatches if check else [])


def print_metrics(node: Node) -> None:
    print(f"\n{BOLD}== agent metrics (microseg_packets_total, non-zero){RESET}")
    for series, value in sorted(node.metrics().items()):
        if series.startswith("microseg_packets_total{") and value > 0:
            print(f"  {series} {value:g}")
    for name in ("microseg_endpoints", "microseg_policy_generation", "microseg_manifest_errors_total"):
        for series, value in node.metrics().items():
            if series == name or series.startswith(name + "{"):
                print(f"  {series} {value:g}")


def run_demo(node: Node, check: bool) -> list[str]:
    problems: list[str] = []
    with open(os.path.join(DEMO_DIR, "steps.json"), encoding="utf-8") as f:
        script = json.load(f)
    with open(os.path.join(DEMO_DIR, "pods.json"), encoding="utf-8") as f:
        pods = json.load(f)["pods"]

    print(f"\n{BOLD}== node {node.node_name}: agent up, pod subnet {node.subnet}{RESET}")
    shutil.copy(os.path.join(DEMO_DIR, "namespaces.yaml"), os.path.join(node.run_dir, "tmp", "namespaces.yaml"))
    os.replace(os.path.join(node.run_dir, "tmp", "namespaces.yaml"), os.path.join(node.manifests, "namespaces.yaml"))
    node.wait_for_status(lambda st: st.get("namespaces", 0) >= 3, "the agent to read namespaces.yaml")
    for spec in pods:
        node.add_pod(spec["namespace"], spec["name"], spec["labels"], spec.get("tcp", []), spec.get("udp", []))
    print(f"{BOLD}== pods created through the CNI chain (ptp + host-local -> microseg-cni){RESET}")
    print(node.ctl("endpoints").stdout)

    print(f"{BOLD}== step 0: {script['initial']['title']}{RESET}")
    previous, bad = run_step(node, script["initial"], None, check)
    problems += bad

    for number, step in enumerate(script["steps"], start=1):
        before = node.ctl_json("status")
        generation = int(before.get("generation", 0))
        errors_before = len(before.get("manifest_errors", []))
        if "add" in step:
            source = os.path.join(DEMO_DIR, step["add"])
            name = os.path.basename(source)
            with open(source, encoding="utf-8") as f:
                node.write_manifest(name, f.read())
            action = f"+ {name}"
        else:
            name = step["remove"]
            node.remove_manifest(name)
            action = f"- {name}"
        print(f"\n{BOLD}== step {number}: {step['title']}{RESET}\n   {action}")
        errors_expected = step.get("manifest_errors", 0)
        if errors_expected > errors_before:
            # A rejected file changes nothing, so the generation stays: wait for the report instead.
            status = node.wait_for_status(lambda st: len(st.get("manifest_errors", [])) >= errors_expected,
                                          f"the agent to report {name}")
        else:
            status = node.wait_for_status(lambda st: int(st.get("generation", 0)) > generation,
                                          f"the agent to apply {name}")
        for error in status.get("manifest_errors", []):
            print(f"   agent reports {os.path.basename(error['file'])}: {error['message']}")
        if len(status.get("manifest_errors", [])) != errors_expected:
            problems.append(f"step {number}: {len(status.get('manifest_errors', []))} manifest errors, "
                            f"expected {errors_expected}")
        previous, bad = run_step(node, step, previous, check)
        problems += [f"step {number}: {m}" for m in bad]

    print_metrics(node)
    print(f"\n{BOLD}== microsegctl endpoints{RESET}")
    print(node.ctl("endpoints").stdout)
    print(f"{BOLD}== microsegctl status{RESET}")
    print(node.ctl("status").stdout)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    parser.add_argument("--check", action="store_true", help="fail when a step differs from steps.json")
    args = parser.parse_args()

    reason = skip_reason_if_unprivileged()
    if reason:
        print(f"SKIPPED: {reason}")
        return SKIP

    node = Node(NodeOptions(build_dir=args.build_dir, log=lambda m: print(f"{DIM}{m}{RESET}", flush=True)))
    try:
        with node:
            try:
                problems = run_demo(node, args.check)
            except BaseException:
                print("\n--- agent log (tail) ---\n" + node.agent_log_tail(40), file=sys.stderr)
                raise
        print(f"{BOLD}== cleaned up: netns, veths, bpffs pins, agent all gone{RESET}")
    except KeyboardInterrupt:
        print("\ninterrupted; everything the demo created has been removed", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    if problems:
        print(f"\n{RED}demo differs from its expectations:{RESET}\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
