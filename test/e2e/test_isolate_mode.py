#!/usr/bin/env python3
"""e2e_isolate_mode: microseg-cni's failMode "isolate" with the agent down.

A pod created while the agent is down still starts (the runtime is not
blocked), but it is cut off until the agent is back: the TC programs are
attached and its endpoint is unknown to the data path. The restarted agent
adopts the registration the plugin left and the pod gets its policy.
Exit 0 = pass, 1 = fail, 77 = skipped (not root).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from expect import expect_reachability  # noqa: E402
from node import Node, NodeOptions, skip_reason_if_unprivileged  # noqa: E402

SKIP = 77
TCP_PORT = 8080
UDP_PORT = 5353


def require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def ok(message: str) -> None:
    print(f"    PASS {message}", flush=True)


def run_test(node: Node) -> None:
    node.add_namespace("x", {"ns": "x"})
    a = node.add_pod("x", "a", {"app": "a"}, [TCP_PORT], [UDP_PORT])
    expect_reachability(node, lambda s, d, proto, port: True, what="one pod, agent up")

    node.kill_agent()
    b = node.add_pod("x", "b", {"app": "b"}, [TCP_PORT], [UDP_PORT], wait_for_agent=False)
    ok("CNI ADD succeeded with the agent down (failMode isolate)")
    pending_dir = os.path.join(node.state_dir, "pending")
    pending = os.listdir(pending_dir) if os.path.isdir(pending_dir) else []
    require(len(pending) == 1, f"expected one pending registration, found {pending}")
    require(node.tc_filters(b) != "", f"no TC filter on {b.host_veth}: the pod would be unprotected")
    expect_reachability(node, lambda s, d, proto, port: s is not b and d is not b, within=0,
                        what="new pod while the agent is down")
    ok("the new pod is cut off both ways while the agent is down; the old pod still works")

    node.restart_agent()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        names = {(e["pod_namespace"], e["pod_name"]) for e in node.ctl_json("endpoints").get("endpoints", [])}
        if ("x", "b") in names:
            break
        time.sleep(0.1)
    require(("x", "b") in names, f"the restarted agent did not adopt x/b: {names}")
    require(os.listdir(pending_dir) == [], f"pending registrations left: {os.listdir(pending_dir)}")
    took = expect_reachability(node, lambda s, d, proto, port: True, what="after adoption")
    ok(f"restarted agent adopted the pending registration; both pods reachable ({took:.1f} s)")
    node.cni_check(b)
    ok("CNI CHECK passes for the adopted pod")

    for pod in (a, b):
        node.delete_pod(pod)
    require(node.ctl_json("endpoints").get("endpoints", []) == [], "endpoints left after deleting the pods")
    require(node.stop_agent() == 0, "agent did not exit 0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--logs-dir")
    args = parser.parse_args()
    reason = skip_reason_if_unprivileged()
    if reason:
        print(f"SKIPPED: {reason}")
        return SKIP
    node = Node(NodeOptions(build_dir=args.build_dir, fail_mode="isolate"))
    try:
        with node:
            try:
                run_test(node)
            except BaseException:
                print("\n--- agent log (tail) ---\n" + node.agent_log_tail(60), file=sys.stderr)
                node.options.keep_logs_dir = args.logs_dir
                raise
        problems = node.leftovers()
        require(not problems, "\n".join(problems))
    except AssertionError as failure:
        print(f"\nFAIL: {failure}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    print("\ne2e_isolate_mode: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
