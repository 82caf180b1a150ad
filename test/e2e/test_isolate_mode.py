#!/usr/bin/env python3
"""e2e_isolate_mode: microseg-cni's failMode "isolate" with the agent down.

A pod created while the agent is down still starts (the runtime is not
blocked), but it is cut off until the agent is back: the TC programs are
attached and its endpoint is unknown to the data path. The restarted agent
adopts the registration the plugin left and the pod gets its policy.
Exit 0 = pass, 1 = fail, 77 = skipped (not root).
"""

from __future__ import annotations

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from e2e_main import arguments, run_e2e  # noqa: E402
from expect import expect_reachability, ok, require  # noqa: E402
from node import Node, NodeOptions, wait_until  # noqa: E402

TCP_PORT = 8080
UDP_PORT = 5353


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
    wait_until(lambda: ("x", "b") in {(e["pod_namespace"], e["pod_name"])
                                      for e in node.ctl_json("endpoints").get("endpoints", [])},
               5, "the restarted agent to adopt x/b")
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
    args = arguments(__doc__).parse_args()
    return run_e2e("e2e_isolate_mode", args.logs_dir,
                   lambda: Node(NodeOptions(build_dir=args.build_dir, fail_mode="isolate")), run_test)


if __name__ == "__main__":
    sys.exit(main())
