#!/usr/bin/env python3
"""e2e_kube_mode_lease: the status-writer Lease with two real agents.

Two agents of different nodes (their own node name, bpffs, gRPC socket,
state dir and metrics port) watch the same test API server
(test/apiserver); A authenticates with a bearer token file from its
kubeconfig (after its restart: the in-cluster config, KUBERNETES_SERVICE_HOST
/PORT and a service-account dir with token, ca.crt and namespace), B with an
x509 client certificate from its kubeconfig. Proves, step by step:
  - one of them holds kube-system/microseg-status-writer and writes the
    Accepted conditions; the other writes nothing;
  - a clean shutdown (SIGTERM) of the holder releases the Lease (empty
    holder), and the other agent takes it over at its next tick, because it
    was released and not because it expired; it writes the status of the
    policies applied from then on;
  - a holder that dies without releasing (SIGKILL) is replaced once its
    Lease has not been renewed for the lease duration; the new holder
    writes the status of the policies applied from then on;
  - a new leader does not repeat the Events of rejections whose condition
    is already in the status;
  - from the API server's request log: every status or Event write was made
    by the agent whose Lease write the server had accepted last (never two
    writers at once, never a write after its writer released the Lease).
Exit 0 = pass, 1 = fail, 77 = skipped (not root).
"""

from __future__ import annotations

import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from e2e_main import arguments, run_e2e  # noqa: E402
from expect import ok, require  # noqa: E402
from kube_node import REPO, KubeNode, accepted_condition  # noqa: E402
from node import NodeOptions, wait_until  # noqa: E402

SEGPOL = ("microseg.io/v1alpha1", "segmentpolicies")
LEASE = ("coordination.k8s.io/v1", "leases")
LEASE_NAME = "microseg-status-writer"
LEASE_NAMESPACE = "kube-system"
LEASE_SECONDS = 6  # kube_node.py's --kube_lease_duration
# A status write, a take-over after a release (one renew interval, 2 s) or
# after an expiry (lease duration + renew interval) all fit in this.
CONVERGE = 20.0


def user_agent_of(node_name: str) -> str:
    return f"({node_name})"  # CurlTransport: "microseg-agent/VERSION (NODE)"


def segment_policy(name: str, valid: bool) -> dict:
    port = {"protocol": "TCP", "port": 80}
    if not valid:
        port["appProtocol"] = "http"  # in the schema, rejected by the agent
    return {"apiVersion": SEGPOL[0], "kind": "SegmentPolicy", "metadata": {"name": name, "namespace": "x"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [port]}]}}


class Scenario:
    def __init__(self, node: KubeNode):
        self.node = node
        self.api = node.apiserver
        self.releases: set[int] = set()  # request ids of Lease releases

    def holder(self) -> str | None:
        lease = self.api.get(*LEASE, LEASE_NAME, namespace=LEASE_NAMESPACE)
        return lease["spec"].get("holderIdentity") if lease else None

    def wait_holder(self, name: str, what: str) -> float:
        start = time.monotonic()
        self.api.wait_for(lambda: self.holder() == name, timeout=CONVERGE, what=what)
        return time.monotonic() - start

    def apply_and_wait_status(self, name: str, valid: bool) -> tuple[dict, str]:
        """Creates a SegmentPolicy; returns its Accepted condition and who wrote it."""
        created = self.api.create(segment_policy(name, valid))
        condition = self.api.wait_for(
            lambda: accepted_condition(self.api, SEGPOL, name, "x", created["metadata"]["generation"]),
            timeout=CONVERGE, what=f"Accepted condition on x/{name}")
        require(condition["status"] == ("True" if valid else "False"), f"x/{name}: {condition}")
        writers = {r["userAgent"] for r in self.api.requests()
                   if r["method"] == "PATCH" and r["path"].endswith(f"/segmentpolicies/{name}/status")
                   and r["code"] == 200}
        require(len(writers) == 1, f"x/{name}: status written by {writers}")
        return condition, writers.pop()

    def run(self) -> None:
        node = self.node
        a_name = node.node_name
        self.wait_holder(a_name, f"the first agent ({a_name}) to take the Lease")
        ok(f"agent A ({a_name}) holds {LEASE_NAMESPACE}/{LEASE_NAME}")

        b = node.start_peer_agent("b", client_certificate=True)
        _, writer = self.apply_and_wait_status("bad-1", valid=False)
        require(user_agent_of(a_name) in writer, f"x/bad-1 status written by {writer}, not A")
        require(self.holder() == a_name, "B took the Lease from a live A")
        ok(f"agent B ({b.node_name}) ready and following; A wrote Accepted=False on x/bad-1")

        # ---- clean shutdown: released, taken over at once ----------------------
        stopped_at = time.time()
        require(node.stop_agent() == 0, "A did not exit 0 on SIGTERM")
        require(f"lease {LEASE_NAMESPACE}/{LEASE_NAME}: released by {a_name}" in node.agent_log_tail(200),
                "A did not log the release")
        release = [r for r in self.api.requests() if r["method"] == "PUT" and r["path"].endswith(f"/{LEASE_NAME}")
                   and user_agent_of(a_name) in r["userAgent"] and r["time"] >= stopped_at]
        require(release and release[-1]["code"] == 200, f"A's lease writes after SIGTERM: {release}")
        self.releases.add(release[-1]["id"])
        took = self.wait_holder(b.node_name, "B to take over the released Lease")
        # B logs right after its write was accepted: give the line a moment to appear.
        wait_until(lambda: "taken over (released by its last holder)" in b.log_text(), 5,
                   "B to log that it took the Lease over as released (not as expired)")
        takeover = next(r for r in self.api.requests() if r["method"] == "PUT" and r["code"] == 200
                        and r["path"].endswith(f"/{LEASE_NAME}") and user_agent_of(b.node_name) in r["userAgent"])
        ok(f"SIGTERM: A released the Lease; B took it over as released "
           f"{takeover['time'] - release[-1]['time']:.1f} s after the release (lease duration {LEASE_SECONDS} s; "
           f"seen by the test after {took:.1f} s)")
        for name, valid in (("bad-2", False), ("good-2", True)):
            condition, writer = self.apply_and_wait_status(name, valid)
            require(user_agent_of(b.node_name) in writer, f"x/{name} status written by {writer}, not B")
        ok("B writes the status of new policies (x/bad-2 Accepted=False, x/good-2 Accepted=True)")

        # ---- crash: not released, taken over after the lease duration ----------
        node.in_cluster = True  # A comes back as a pod would see the cluster: environment + service-account dir
        node.restart_agent()
        require(self.holder() == b.node_name, "the restarted A took the Lease from a live B")
        require(re.search(r"Kubernetes API https://127\.0\.0\.1:\d+ \(in-cluster\), auth: token file "
                          r"\S+/serviceaccount/token, status lease kube-system/", node.agent_log_tail(400)),
                "the restarted A does not use the in-cluster config")
        ok("A restarted with the in-cluster config (KUBERNETES_SERVICE_HOST/PORT, service-account token, ca.crt, "
           "namespace kube-system for the Lease) and follows B")
        killed_at = time.time()
        node.stop_peer_agent(b, kill=True)
        took = self.wait_holder(a_name, "A to take over the Lease of the killed B")
        expired = re.compile(rf"taken over from '{re.escape(b.node_name)}' \(not renewed for {LEASE_SECONDS} s\)")
        wait_until(lambda: expired.search(node.agent_log_tail(400)), 5,
                   "A to log that it took over the expired Lease of B")
        takeover = [r for r in self.api.requests() if r["method"] == "PUT" and r["code"] == 200
                    and r["path"].endswith(f"/{LEASE_NAME}") and r["time"] >= killed_at]
        require(takeover and user_agent_of(a_name) in takeover[0]["userAgent"], f"lease writes after the kill: "
                f"{[(r['userAgent'], r['code']) for r in takeover]}")
        last_renewal = max(r["time"] for r in self.api.requests() if r["method"] == "PUT" and r["code"] == 200
                           and r["path"].endswith(f"/{LEASE_NAME}") and user_agent_of(b.node_name) in r["userAgent"])
        ok(f"SIGKILL of B: A took over the unreleased Lease {takeover[0]['time'] - last_renewal:.1f} s after B's "
           f"last renewal, {takeover[0]['time'] - killed_at:.1f} s after the kill (lease duration {LEASE_SECONDS} s, "
           f"renewed every {LEASE_SECONDS // 3} s)")
        patched = self.api.patch(*SEGPOL, "good-2", {"spec": {"ingress": [{"ports": [
            {"protocol": "TCP", "port": 80, "appProtocol": "http"}]}]}}, namespace="x")
        generation = patched["metadata"]["generation"]
        self.api.wait_for(lambda: accepted_condition(self.api, SEGPOL, "good-2", "x", generation),
                          timeout=CONVERGE, what=f"Accepted on x/good-2 generation {generation}")
        condition, writer = self.apply_and_wait_status("bad-3", valid=False)
        require(user_agent_of(a_name) in writer, f"x/bad-3 status written by {writer}, not A")
        good2 = accepted_condition(self.api, SEGPOL, "good-2", "x", generation)
        require(good2 and good2["status"] == "False", f"x/good-2 generation 2: {good2}")
        ok(f"A writes the status of new and changed policies (x/bad-3, x/good-2 generation {generation} "
           f"Accepted=False)")

        counts = {e["involvedObject"]["name"]: e.get("count", 1) for e in self.api.events("x")}
        require(counts.get("bad-1") == 1 and counts.get("bad-2") == 1, f"Event counts after two new leaders: {counts}")
        ok("new leaders did not repeat the Events of rejections already in the status (x/bad-1, x/bad-2: count 1)")
        b_requests = [r for r in self.api.requests() if user_agent_of(b.node_name) in r["userAgent"]]
        require(b_requests and all(r.get("user") == f"system:node:{b.node_name}" for r in b_requests),
                f"B's requests not all authenticated by its client certificate: "
                f"{ {r.get('user') for r in b_requests} }")
        ok(f"all {len(b_requests)} requests of B were authenticated by its x509 client certificate "
           f"(kubeconfig client-certificate-data/client-key-data, no token)")

        self.check_one_writer_at_a_time({a_name, b.node_name})
        require(node.stop_agent() == 0, "A did not exit 0 on SIGTERM")

    def check_one_writer_at_a_time(self, agents: set[str]) -> None:
        """Every status/Event write came from the agent whose Lease write the server accepted last
        (a release ends the term: no write until the next take-over)."""
        def agent_of(request: dict) -> str | None:
            return next((name for name in agents if user_agent_of(name) in request["userAgent"]), None)

        holder = None
        writes = 0
        terms = []
        for request in self.api.requests():  # in the order the server received them
            who = agent_of(request)
            if who is None:
                continue
            lease_write = request["path"].startswith("/apis/coordination.k8s.io/") and \
                request["method"] in ("POST", "PUT") and request["code"] in (200, 201)
            if lease_write:
                if request["id"] in self.releases:
                    holder = None  # released: nobody may write until the next take-over
                    continue
                if holder != who:
                    terms.append(who)
                holder = who
                continue
            status_write = request["method"] in ("PATCH", "POST", "PUT") and (
                request["path"].endswith("/status") or "/events" in request["path"])
            if status_write:
                writes += 1
                require(who == holder, f"request {request['id']} ({request['method']} {request['path']}) by {who} "
                                       f"while the last accepted Lease write was by {holder}")
        require(writes >= 6, f"only {writes} status/Event writes seen")
        require(len(terms) == 3, f"Lease terms: {terms}")
        ok(f"request log: {writes} status/Event writes, each by the holder of the last accepted Lease write; "
           f"terms {' -> '.join('A' if t == self.node.node_name else 'B' for t in terms)}")


class LeaseNode(KubeNode):
    def on_apiserver_started(self) -> None:
        api = self.apiserver
        api.apply_crds(os.path.join(REPO, "crds"))
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"ns": "x"}}})
        if api.get("v1", "namespaces", "kube-system") is None:
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--apiserver-dir", help="test/apiserver of another checkout (development)")
    args = parser.parse_args()

    def logs(node: LeaseNode) -> None:
        for peer in node.peers:
            print(f"\n--- peer agent {peer.node_name} log (tail) ---\n" + peer.log_text()[-6000:], file=sys.stderr)
        if node.apiserver is not None:
            print("\n--- apiserver log (tail) ---\n" + node.apiserver.log_tail(30), file=sys.stderr)
    return run_e2e("e2e_kube_mode_lease", args.logs_dir,
                   lambda: LeaseNode(NodeOptions(build_dir=args.build_dir), args.apiserver_dir),
                   lambda node: Scenario(node).run(), on_failure=logs)


if __name__ == "__main__":
    sys.exit(main())
