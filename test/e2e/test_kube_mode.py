#!/usr/bin/env python3
"""e2e_kube_mode: the real agent in Kubernetes mode against the test API
server (test/apiserver), pods in real network namespaces through the real CNI
chain (ptp + host-local, then microseg-cni).

Proves, step by step:
  - readiness gates CNI ADD: while the initial lists fail, /readyz is 503 and
    an ADD (failMode closed) fails with nothing left attached; once the lists
    succeed the agent is ready and the ADD works;
  - NetworkPolicies, SegmentPolicies (Allow and Deny rules) and
    ClusterSegmentPolicies (priority order, Deny, Pass to the namespace tier,
    a priority changed through the API) applied through the API take effect
    on real traffic;
  - an invalid policy version is rejected with an Event, the last good
    version stays in force;
  - the Accepted status condition (with observedGeneration) is written on
    SegmentPolicies and ClusterSegmentPolicies by the Lease holder, which is
    this agent;
  - every injected fault is survived with the right verdicts and no lost
    update: dropped watch, stalled watch, 500/429 with Retry-After, expired
    resourceVersion (410 -> relist with a minimal diff), token rotation.
Exit 0 = pass, 1 = fail, 77 = skipped (not root).
"""

from __future__ import annotations

import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cni_chain import CniError  # noqa: E402
from e2e_main import arguments, run_e2e  # noqa: E402
from expect import expect_reachability, ok, require  # noqa: E402
from kube_node import REPO, KubeNode, accepted_condition  # noqa: E402
from node import NodeOptions  # noqa: E402

PORT = 80
NP = ("networking.k8s.io/v1", "networkpolicies")
SEGPOL = ("microseg.io/v1alpha1", "segmentpolicies")
CSP = ("microseg.io/v1alpha1", "clustersegmentpolicies")
# Within this many seconds a change must be enforced, faults included
# (idle timeout 4 s + backoff cap 2 s + Retry-After 1-2 s + compile).
CONVERGE = 15.0


def network_policy(name: str, namespace: str, ingress: list, pod_selector: dict | None = None) -> dict:
    return {"apiVersion": NP[0], "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": pod_selector or {}, "policyTypes": ["Ingress"], "ingress": ingress}}


def from_namespace(ns: str, port: int = PORT, end_port: int | None = None, pod_labels: dict | None = None) -> dict:
    p = {"protocol": "TCP", "port": port}
    if end_port:
        p["endPort"] = end_port
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
    if pod_labels:
        peer["podSelector"] = {"matchLabels": pod_labels}
    return {"from": [peer], "ports": [p]}


def unknown_operator_rule() -> dict:
    """A rule the agent rejects but this API server stores: a kube-apiserver
    would refuse the operator itself; ours does not validate selectors (every
    port range, the earlier example, is valid for the agent now)."""
    return {"from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "Equals",
                                                              "values": ["a"]}]}}]}


def segment_policy(name: str, pod_labels: dict, action: str, rule: dict) -> dict:
    return {"apiVersion": SEGPOL[0], "kind": "SegmentPolicy", "metadata": {"name": name, "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": pod_labels}, "policyTypes": ["Ingress"],
                     "ingress": [dict(rule, action=action)]}}


def cluster_policy(name: str, priority: int, subject: dict, action: str, rule: dict) -> dict:
    return {"apiVersion": CSP[0], "kind": "ClusterSegmentPolicy", "metadata": {"name": name},
            "spec": {"priority": priority, "subject": subject, "policyTypes": ["Ingress"],
                     "ingress": [dict(rule, action=action)]}}


class Scenario:
    def __init__(self, node: KubeNode):
        self.node = node
        self.api = None

    # x pods accept only what `allowed_into_x` says; y is open.
    def expect(self, allowed_into_x, what: str, within: float = CONVERGE) -> float:
        def expected(s, d, proto, port):
            return d.namespace != "x" or allowed_into_x(s, d)
        return expect_reachability(self.node, expected, within=within, what=what)

    def wait_accepted(self, resource: tuple[str, str], name: str, namespace: str | None, written: dict) -> dict:
        """The Accepted condition once it is written for the generation `written` has."""
        return self.api.wait_for(
            lambda: accepted_condition(self.api, resource, name, namespace, written["metadata"]["generation"]),
            timeout=CONVERGE, what=f"Accepted condition on {resource[1]} {namespace or ''}/{name}")

    def agent_log(self) -> str:
        with open(self.node.agent_log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def requests_since(self, since: int, pattern: str) -> list[dict]:
        return [r for r in self.api.requests(since=since) if re.search(pattern, r["path"])]

    def last_request_id(self) -> int:
        entries = self.api.requests()
        return entries[-1]["id"] if entries else 0

    def run(self) -> None:
        node = self.node
        self.api = node.apiserver

        # ---- readiness gates CNI ADD --------------------------------------------
        # The agent was started while listing pods fails (ScenarioNode).
        self.api.wait_for(lambda: len(self.requests_since(0, r"^/api/v1/pods$")) >= 2, timeout=20,
                          what="agent retrying the failing pod list")
        # The listener comes up once the data path is loaded (the lists are already being tried).
        code, body = self.api.wait_for(lambda: node.readyz() if node.readyz()[0] != 0 else None, timeout=30,
                                       what="the agent's HTTP listener")
        require(code == 503, f"/readyz while the initial pod list fails: {code} {body!r}")
        ok("/readyz is 503 while the initial lists fail")
        try:
            node.add_pod("x", "early", {"app": "early"}, [PORT], wait_for_agent=False)
            raise AssertionError("CNI ADD succeeded before the agent was ready (failMode closed)")
        except CniError as error:
            print(f"    (CNI error as expected: {error.error.get('msg')})", flush=True)
        attached = node.attached_filters()
        require(not attached, f"programs left attached after the failed ADD: {attached}")
        node.delete_pod(node.pods["x/early"])
        ok("CNI ADD before readiness fails (failMode closed) and leaves nothing attached")
        self.api.clear_faults()
        node.wait_ready()
        require(node.readyz()[0] == 200, "/readyz not 200 once ready")
        ok("agent ready once the initial lists succeed; /readyz 200")

        # ---- policies through the API ----------------------------------------
        a = node.add_pod("x", "a", {"app": "a"}, [PORT])
        b = node.add_pod("x", "b", {"app": "b"}, [PORT])
        c = node.add_pod("y", "c", {"app": "c"}, [PORT])
        self.expect(lambda s, d: True, "no policy")
        ok("three pods through the CNI chain, all reachable")

        self.api.create(network_policy("only-from-y", "x", [from_namespace("y")]))
        took = self.expect(lambda s, d: s.namespace == "y", "NetworkPolicy x/only-from-y")
        ok(f"NetworkPolicy created through the API is enforced ({took:.1f} s)")

        # ---- invalid versions: Event, last good stays --------------------------
        self.api.create(network_policy("bad-operator", "x", [unknown_operator_rule()]))
        self.api.patch(*NP, "only-from-y", {"spec": {"ingress": [unknown_operator_rule()]}}, namespace="x")
        def rejection_events():
            found = [e for e in self.api.events("x") if e["type"] == "Warning"
                     and e["involvedObject"]["name"] in ("bad-operator", "only-from-y")]
            return found if {e["involvedObject"]["name"] for e in found} == {"bad-operator", "only-from-y"} else None
        events = self.api.wait_for(rejection_events, timeout=CONVERGE, what="Events for the rejected NetworkPolicies")
        require(all("operator" in e["message"] for e in events), f"event messages: {[e['message'] for e in events]}")
        status = node.ctl_json("status")
        errors = {e["file"]: e["message"] for e in status.get("manifest_errors", [])}
        require("NetworkPolicy x/only-from-y" in errors and "NetworkPolicy x/bad-operator" in errors,
                f"microsegctl status errors: {errors}")
        self.expect(lambda s, d: s.namespace == "y", "after an invalid update", within=0)
        ok("invalid policy versions: Warning Events, reported by microsegctl, last good version still enforced")
        self.api.patch(*NP, "only-from-y", {"spec": {"ingress": [from_namespace("y")]}}, namespace="x")
        self.api.delete(*NP, "bad-operator", namespace="x")
        self.api.wait_for(lambda: not node.ctl_json("status").get("manifest_errors"), timeout=CONVERGE,
                          what="errors cleared after the fix")
        # The same problem again (a new generation) bumps the count of the same Event.
        self.api.patch(*NP, "only-from-y", {"spec": {"ingress": [unknown_operator_rule()]}}, namespace="x")
        self.api.wait_for(lambda: any(e["involvedObject"]["name"] == "only-from-y" and e.get("count", 1) >= 2
                                      for e in self.api.events("x")), timeout=CONVERGE, what="Event count bump")
        self.api.patch(*NP, "only-from-y", {"spec": {"ingress": [from_namespace("y")]}}, namespace="x")
        ok("a repeated rejection bumps the Event's count instead of creating another")

        # ---- SegmentPolicy: Allow and Deny rules, status --------------------------
        seg = self.api.create(segment_policy("open-b", {"app": "b"}, "Allow", from_namespace("x")))
        condition = self.wait_accepted(SEGPOL, "open-b", "x", seg)
        ok(f"SegmentPolicy status written: Accepted={condition['status']} ({condition['reason']}: "
           f"{condition['message']})")
        require(condition["status"] == "True" and condition["reason"] == "Valid",
                f"valid SegmentPolicy not accepted as Valid: {condition}")
        took = self.expect(lambda s, d: s.namespace == "y" or (d is b and s.namespace == "x"),
                           "SegmentPolicy x/open-b (Allow)")
        ok(f"SegmentPolicy Allow rule enforced: x/a reaches x/b ({took:.1f} s)")
        self.api.delete(*SEGPOL, "open-b", namespace="x")
        base = lambda s, d: s.namespace == "y"  # noqa: E731
        self.expect(base, "after deleting the SegmentPolicy")

        # A Deny rule wins over the NetworkPolicy that allows y -> x.
        deny = self.api.create(segment_policy("deny-c-to-b", {"app": "b"}, "Deny",
                                              from_namespace("y", pod_labels={"app": "c"})))
        require(self.wait_accepted(SEGPOL, "deny-c-to-b", "x", deny)["reason"] == "Valid", "Deny policy not Valid")
        took = self.expect(lambda s, d: s.namespace == "y" and d is not b, "SegmentPolicy x/deny-c-to-b (Deny)")
        ok(f"SegmentPolicy Deny rule enforced over the NetworkPolicy's Allow: y/c -> x/b dropped, "
           f"y/c -> x/a still allowed ({took:.1f} s)")
        self.api.delete(*SEGPOL, "deny-c-to-b", namespace="x")
        self.expect(base, "after deleting the Deny SegmentPolicy")

        # An invalid one (appProtocol: in the schema, not supported by the agent): False + Event.
        bad = self.api.create({
            "apiVersion": SEGPOL[0], "kind": "SegmentPolicy", "metadata": {"name": "bad-app", "namespace": "x"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"protocol": "TCP", "port": PORT,
                                                                 "appProtocol": "http"}]}]}})
        cond = self.wait_accepted(SEGPOL, "bad-app", "x", bad)
        require(cond["status"] == "False" and "appProtocol" in cond["message"], f"rejection: {cond}")
        self.api.wait_for(lambda: any(e["involvedObject"]["name"] == "bad-app" for e in self.api.events("x")),
                          timeout=CONVERGE, what="Event for x/bad-app")
        ok(f"invalid SegmentPolicy: Accepted=False ({cond['message']}) and a Warning Event")
        self.api.delete(*SEGPOL, "bad-app", namespace="x")
        self.expect(base, "after deleting the invalid SegmentPolicy", within=0)

        # ---- ClusterSegmentPolicy: cluster tier first, by priority; Pass --------
        in_x = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}}
        deny_y = self.api.create(cluster_policy("deny-y-into-x", 20, in_x, "Deny", from_namespace("y")))
        require(self.wait_accepted(CSP, "deny-y-into-x", None, deny_y)["reason"] == "Valid", "CSP not Valid")
        took = self.expect(lambda s, d: False, "ClusterSegmentPolicy deny-y-into-x (priority 20, Deny)")
        ok(f"ClusterSegmentPolicy Deny enforced before the namespace tier: nothing reaches x ({took:.1f} s)")
        b_in_x = dict(in_x, podSelector={"matchLabels": {"app": "b"}})
        pass_c = self.api.create(cluster_policy("pass-c-to-b", 10, b_in_x, "Pass",
                                                from_namespace("y", pod_labels={"app": "c"})))
        self.wait_accepted(CSP, "pass-c-to-b", None, pass_c)
        c_to_b = lambda s, d: s is c and d is b  # noqa: E731
        took = self.expect(c_to_b, "ClusterSegmentPolicy pass-c-to-b (priority 10, Pass)")
        ok(f"Pass at priority 10 skips the Deny at priority 20: the NetworkPolicy allows y/c -> x/b again; "
           f"y/c -> x/a still denied ({took:.1f} s)")
        moved = self.api.patch(*CSP, "pass-c-to-b", {"spec": {"priority": 30}})
        condition = self.wait_accepted(CSP, "pass-c-to-b", None, moved)
        require(condition["status"] == "True" and condition["observedGeneration"] == 2, f"after the patch: {condition}")
        took = self.expect(lambda s, d: False, "pass-c-to-b moved behind the Deny (priority 30)")
        ok(f"priority changed through the API: the Deny (20) now comes first, y/c -> x/b denied; "
           f"Accepted observedGeneration 2 ({took:.1f} s)")
        for name in ("pass-c-to-b", "deny-y-into-x"):
            self.api.delete(*CSP, name)
        self.expect(base, "after deleting the ClusterSegmentPolicies")
        lease = self.api.get("coordination.k8s.io/v1", "leases", "microseg-status-writer", namespace="kube-system")
        require(lease and lease["spec"]["holderIdentity"] == node.node_name, f"lease: {lease}")
        ok(f"Lease kube-system/microseg-status-writer held by this agent ({node.node_name})")

        # ---- faults ------------------------------------------------------------
        # Dropped watch, with a change right behind it.
        self.api.drop_watches("networkpolicies")
        self.api.create(network_policy("b-from-a", "x", [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                                                           "ports": [{"protocol": "TCP", "port": PORT}]}],
                                       {"matchLabels": {"app": "b"}}))
        with_b = lambda s, d: s.namespace == "y" or (s is a and d is b)  # noqa: E731
        took = self.expect(with_b, "change behind a dropped watch")
        ok(f"dropped watch: reconnected, the change behind it enforced ({took:.1f} s)")

        # Stalled watch: no events, no bookmarks, connection open.
        since = self.last_request_id()
        self.api.stall_watches("networkpolicies")
        self.api.delete(*NP, "b-from-a", namespace="x")
        self.expect(base, "change during a stalled watch")
        require("no data from /apis/networking.k8s.io/v1/networkpolicies" in self.agent_log(),
                "the agent did not report the stalled watch")
        self.api.unstall_watches()
        ok("stalled watch detected by the idle timeout; reconnected; change enforced")

        # 500 and 429 with Retry-After on the watch and the list.
        since = self.last_request_id()
        self.api.add_fault(r"^/apis/networking\.k8s\.io/v1/networkpolicies", code=503, count=2, retry_after=1)
        self.api.add_fault(r"^/apis/networking\.k8s\.io/v1/networkpolicies", code=429, count=1, retry_after=2)
        self.api.add_fault(r"^/apis/networking\.k8s\.io/v1/networkpolicies", code=500, count=1)
        self.api.drop_watches("networkpolicies")
        self.api.create(network_policy("b-from-a", "x", [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                                                           "ports": [{"protocol": "TCP", "port": PORT}]}],
                                       {"matchLabels": {"app": "b"}}))
        self.expect(with_b, "change during 503/429/500")
        hits = self.requests_since(since, r"^/apis/networking\.k8s\.io/v1/networkpolicies$")
        faulted = [r for r in hits if r.get("fault")]
        require(len(faulted) == 4, f"expected 4 faulted requests, saw {[(r['code'], r.get('fault')) for r in hits]}")
        for previous, following in zip(hits, hits[1:]):
            if previous["code"] == 429:
                gap = following["time"] - previous["time"]
                require(gap >= 1.9, f"retried {gap:.2f} s after a 429 with Retry-After: 2")
        ok("503/429 with Retry-After and 500 survived; Retry-After honoured; change enforced")

        # Expired resourceVersion: changes while the watch is stalled, history
        # compacted, watch dropped -> 410 -> relist, applied as a minimal diff.
        self.api.create(network_policy("extra", "x", [from_namespace("y")], {"matchLabels": {"app": "none"}}))
        self.api.wait_for(lambda: node.ctl_json("status").get("network_policies") == 3, timeout=CONVERGE,
                          what="agent to see x/extra")
        self.api.stall_watches("networkpolicies")
        self.api.delete(*NP, "b-from-a", namespace="x")
        self.api.delete(*NP, "extra", namespace="x")
        self.api.compact()
        self.api.drop_watches("networkpolicies")
        self.expect(base, "after 410 relist")
        self.api.unstall_watches()
        log = self.agent_log()
        require("NetworkPolicy: resourceVersion" in log and "expired (410 Gone)" in log, "no 410 seen by the agent")
        relists = re.findall(r"NetworkPolicy: listed \d+ objects at resourceVersion \d+ \(relist: (\d+) changes\)", log)
        require(relists and relists[-1] == "2", f"relist diff sizes: {relists} (want the last to be 2 deletions)")
        require(node.ctl_json("status").get("network_policies") == 1, "policies after the relist")
        ok("expired resourceVersion: 410, relist applied as a 2-change diff (no flush); verdicts right")
        metrics = node.metrics()
        require(metrics.get('microseg_kube_relists_after_gone_total{resource="NetworkPolicy"}', 0) >= 1,
                "relist metric not counted")
        require(metrics.get("microseg_kube_status_leader") == 1, "leader gauge not 1")
        require(metrics.get('microseg_kube_failures_total{resource="NetworkPolicy"}', 0) >= 4, "failures not counted")
        ok("metrics: relists after 410, watch failures and leadership are exported")

        # Token rotation: the old token is refused from now on.
        since = self.last_request_id()
        self.api.rotate_token()
        self.api.drop_watches()
        self.api.create(network_policy("b-from-a", "x", [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
                                                           "ports": [{"protocol": "TCP", "port": PORT}]}],
                                       {"matchLabels": {"app": "b"}}))
        self.expect(with_b, "after token rotation")
        codes = [r["code"] for r in self.api.requests(since=since)]
        require(200 in codes, f"no successful request after the rotation: {codes}")
        require("changed: using the new token" in self.agent_log(), "the agent did not re-read the token file")
        ok(f"token rotation: new token read from the file, watches resumed ({codes.count(401)} requests saw 401)")

        for pod in (a, b, c):
            node.delete_pod(pod)
        require(node.ctl_json("endpoints").get("endpoints", []) == [], "endpoints left after deleting the pods")
        require(node.stop_agent() == 0, "agent did not exit 0")


class ScenarioNode(KubeNode):
    def on_apiserver_started(self) -> None:
        api = self.apiserver
        # The project's CRDs (crds/, YAML: needs python3-yaml, which setup.sh installs).
        api.apply_crds(os.path.join(REPO, "crds"))
        for ns in ("x", "y"):
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}})
        if api.get("v1", "namespaces", "kube-system") is None:
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
        # The first agent starts while listing pods fails: readiness must wait.
        api.add_fault(r"^/api/v1/pods", code=500, count=-1)
        self.wait_ready_on_start = False

    def add_namespace(self, name: str, labels: dict) -> None:  # created above
        raise NotImplementedError


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--apiserver-dir", help="test/apiserver of another checkout (development)")
    args = parser.parse_args()

    def apiserver_log(node: ScenarioNode) -> None:
        if node.apiserver is not None:
            print("\n--- apiserver log (tail) ---\n" + node.apiserver.log_tail(30), file=sys.stderr)
    return run_e2e("e2e_kube_mode", args.logs_dir,
                   lambda: ScenarioNode(NodeOptions(build_dir=args.build_dir, fail_mode="closed"),
                                        args.apiserver_dir, cni_timeout_seconds=3),
                   lambda node: Scenario(node).run(), on_failure=apiserver_log)


if __name__ == "__main__":
    sys.exit(main())
