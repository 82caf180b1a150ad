#!/usr/bin/env python3
"""e2e_grafana_dashboard: the Helm chart's Grafana dashboard against a real Prometheus scraping the real agent.

The node netns (node.py) runs the agent in standalone mode (--mode standalone,
manifests) or in Kubernetes mode against the test API server (--mode kube,
kube_node.py) and, next to it, a real Prometheus server (Debian package prometheus) with its own config, data
dir and port in a temporary dir, scraping the agent's /metrics every second.
With Prometheus scraping, the test gives the agent a little of everything the
dashboard shows: pods a, b, c here and d, e on another node; a NetworkPolicy
that admits only d and e to b (a generation flip, an in-place update, a peer
patch; policy_denied drops of a -> b); an Audit SegmentPolicy over c
(audit_would_drop, audit events of x/c-audit for a -> c); a NetworkPolicy the
agent rejects (a manifest error, or a rejected object version and its status).
Then, for every panel target of
deploy/helm/microseg/dashboards/microseg.json, with the dashboard variables
($instance as one node and as "All", $__rate_interval, $__range, ...)
substituted the way Grafana does:
  - Prometheus's /api/v1/query answers status "success";
  - every metric name the expression references is exported by the agent
    (its /metrics text) and stored by Prometheus, except the other mode's
    own metrics (microseg_manifest_* standalone, microseg_kube_* Kubernetes),
    which the other mode's run checks;
and the panels the traffic feeds return the expected non-empty series.
The instance variable's label_values() query must list the agent.

Exit 0 = pass, 1 = fail, 77 = skipped (not root, or no prometheus binary:
scripts/setup.sh installs the Debian package).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from typing import Callable

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from e2e_main import arguments, run_e2e  # noqa: E402
from expect import metric_sum, ok, require, step  # noqa: E402
from kube_node import KubeNode  # noqa: E402
from node import METRICS_ADDRESS, Node, NodeOptions, Pod, run, tail, terminate, wait_until  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DASHBOARD = os.path.join(REPO, "deploy", "helm", "microseg", "dashboards", "microseg.json")
PROMETHEUS_ADDRESS = "127.0.0.1:9090"  # inside the node netns: never clashes with anything on the host
JOB = "microseg"
TCP_PORT = 8080
# What Grafana puts in for its built-in variables; any window of a few 1 s
# scrapes works, these are what a short dashboard range would give.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "__range_s": "300",
            "__interval_ms": "15000"}
HIDDEN_LABELS = {"__name__", "instance", "job"}  # the same on every series of this test
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                   "unless", "inf", "nan", "atan2",
                   # aggregation operators, which may stand before their "by (...)" instead of their "("
                   "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                   "topk", "quantile"}


@dataclass
class Target:
    panel: str
    ref: str
    expr: str


def dashboard_targets(dashboard: dict) -> list[Target]:
    targets = []
    for panel in dashboard["panels"]:
        for inner in [panel] + panel.get("panels", []):  # a collapsed row holds its panels
            for target in inner.get("targets", []):
                targets.append(Target(inner["title"], target["refId"], target["expr"]))
    return targets


def grafana_regex_escape(value: str) -> str:
    """How Grafana's Prometheus data source puts one value of a multi-value variable into a query."""
    return re.sub(r"([$^*{}\[\]'+?.()|])", r"\\\\\1", value.replace("\\", "\\\\\\\\"))


def substitute(expr: str, variables: dict[str, str]) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise AssertionError(f"expression uses ${name}, which neither the dashboard nor Grafana defines: {expr}")
        return variables[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels, keywords or durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", text):
        word = match.group()
        if word.lower() in PROMQL_KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def exported_families(metrics_text: str) -> set[str]:
    return {line.split()[2] for line in metrics_text.splitlines() if line.startswith("# TYPE ")}


class Prometheus:
    """A Prometheus server of this run only: own config, data dir and port, in the node netns."""

    def __init__(self, node: Node, binary: str):
        self.node = node
        self.dir = os.path.join(node.run_dir, "prometheus")  # removed with the run dir
        os.makedirs(os.path.join(self.dir, "data"), mode=0o700)
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w", encoding="utf-8") as f:
            # JSON is YAML.
            json.dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                       "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [METRICS_ADDRESS]}]}]},
                      f, indent=2)
        self.log_path = os.path.join(node.logs, "prometheus.log")  # kept with the agent's log on failure
        # Every path its own: nothing of the package's /etc/prometheus or /var/lib/prometheus.
        cmd = node.in_node() + [
            binary, f"--config.file={self.config}", f"--storage.tsdb.path={os.path.join(self.dir, 'data')}",
            f"--web.listen-address={PROMETHEUS_ADDRESS}", "--storage.tsdb.retention.time=1h",
            f"--web.console.templates={self.dir}", f"--web.console.libraries={self.dir}"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, str]:
        """HTTP GET inside the node netns; (status code, body)."""
        url = f"http://{PROMETHEUS_ADDRESS}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        proc = run(self.node.in_node() + ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", url],
                   check=False, timeout=20)
        if proc.returncode != 0:
            return 0, proc.stderr.strip()
        body, _, code = proc.stdout.rpartition("\n")
        return int(code), body

    def api(self, path: str, params: dict[str, str] | None = None) -> dict:
        code, body = self.get(path, params)
        try:
            answer = json.loads(body)
        except ValueError:
            raise AssertionError(f"GET {path} {params}: HTTP {code}, not JSON: {body[:300]}") from None
        return answer

    def query(self, expr: str) -> dict:
        return self.api("/api/v1/query", {"query": expr})

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            return self.get("/-/ready")[0] == 200
        wait_until(ready, timeout, "prometheus to be ready", interval=0.2)

    def stop(self) -> None:
        terminate(self.process, 15)


def series_values(answer: dict) -> list[tuple[dict, float]]:
    """(labels, value) of an instant vector (or scalar) query answer."""
    data = answer.get("data", {})
    if data.get("resultType") == "scalar":
        return [({}, float(data["result"][1]))]
    return [(s["metric"], float(s["value"][1])) for s in data.get("result", [])]


def has(label: str, value: str, check: Callable[[float], bool]) -> Callable[[list[tuple[dict, float]]], bool]:
    return lambda series: any(m.get(label) == value and check(v) for m, v in series)


def every(check: Callable[[float], bool]) -> Callable[[list[tuple[dict, float]]], bool]:
    return lambda series: bool(series) and all(check(v) for _, v in series)


def positive(v: float) -> bool:
    return v > 0


# (panel title, refId) -> what its result must show once the test's traffic and
# objects are in. Every other target only has to run and reference real metrics.
EXPECTED = {
    ("Endpoints", "A"): every(lambda v: v == 3),
    ("Allowed", "A"): every(positive),
    ("Dropped", "A"): every(positive),
    ("Audit would-drop", "A"): every(positive),
    ("Endpoints in lockdown", "A"): every(lambda v: v == 0),
    ("Fullest map", "A"): every(lambda v: 0 < v < 0.9),
    ("Packets by verdict", "A"): lambda s: has("verdict", "drop", positive)(s) and has("verdict", "allow", positive)(s),
    ("Bytes by verdict", "A"): lambda s: has("verdict", "drop", positive)(s) and has("verdict", "allow", positive)(s),
    ("Drops by reason", "A"): has("reason", "policy_denied", positive),
    ("Allowed by reason", "A"): has("reason", "audit_would_drop", positive),
    ("Dropped bytes by reason", "A"): has("reason", "policy_denied", positive),
    ("Drops by node and direction", "A"): has("direction", "ingress", positive),
    ("Audit would-drop packets", "A"): has("direction", "ingress", positive),
    ("Audit events by policy", "A"): has("policy", "x/c-audit", positive),
    ("Audited policies in the time range", "A"): has("policy", "x/c-audit", positive),
    ("Policy apply duration", "A"): every(lambda v: 0 <= v < 30),
    ("Policy compilations", "A"): every(positive),
    ("Policy apply failures", "A"): every(lambda v: v == 0),
    ("Endpoint updates by kind", "A"): lambda s: all(has("kind", kind, positive)(s)
                                                     for kind in ("generation_flip", "in_place", "peer_patch")),
    ("Endpoint compilations", "A"): every(positive),
    ("Map clean-up failures", "A"): every(lambda v: v == 0),
    ("Endpoints by node", "A"): every(lambda v: v == 3),
    ("Cluster objects by kind", "A"): lambda s: has("kind", "Pod", lambda v: v == 5)(s) and
    has("kind", "NetworkPolicy", lambda v: v == 1)(s) and has("kind", "SegmentPolicy", lambda v: v == 1)(s),
    ("Tracked sessions", "B"): every(positive),
    ("Map entries", "A"): has("map", "ms_endpoints", lambda v: v == 3),
    ("Map capacity", "A"): has("map", "ms_sessions", positive),
    ("Map memory", "A"): has("map", "ms_sessions", positive),
    ("Time since last pressure check", "A"): every(lambda v: v < 60),
}
EXPECTED_IN_MODE = {
    "standalone": {
        ("Manifest errors", "A"): every(positive),
        ("Manifest errors", "B"): every(lambda v: v == 1),
    },
    "kube": {
        ("Watch events by resource", "A"): lambda s: any(v > 0 for _, v in s),
        ("Object changes by resource", "A"): has("resource", "Pod", positive),
        ("Rejected object versions", "A"): every(positive),
        ("Status writer", "A"): every(lambda v: v == 1),
        ("Status writer", "B"): has("kind", "status_condition", positive),
        ("Lists, watches and token reloads", "A"): lambda s: bool(s),
    },
}
# Families only one mode exports; the other mode only runs their queries.
MODE_ONLY_PREFIXES = {"standalone": "microseg_manifest_", "kube": "microseg_kube_"}


def b_only_from_d(port: int) -> dict:
    """b admits only pod d, on `port`: a -> b is policy_denied."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "b-only-from-d", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "d"}}}],
                                  "ports": [{"protocol": "TCP", "port": port}]}]}}


def remote_pod(name: str, node_name: str, ip: str) -> dict:
    """A pod b admits, on another node."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "x", "labels": {"app": "d"}},
            "spec": {"nodeName": node_name, "containers": [{"name": "app", "image": "probe"}]},
            "status": {"podIP": ip}}


def rejected_policy() -> dict:
    """Refused by the agent (unknown selector operator), stored by the test API server."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "bad-operator", "namespace": "x"},
            "spec": {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["a"]}]},
                     "policyTypes": ["Ingress"]}}


def audit_c() -> dict:
    return {"apiVersion": "microseg.io/v1alpha1", "kind": "SegmentPolicy",
            "metadata": {"name": "c-audit", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"app": "c"}}, "policyTypes": ["Ingress"],
                     "enforcement": "Audit", "ingress": [{"action": "Deny"}]}}


def traffic(node: Node, a: Pod, b: Pod, c: Pod) -> dict[str, str]:
    return node.probe(a, [f"tcp:{b.ip}:{TCP_PORT}", f"tcp:{c.ip}:{TCP_PORT}"], timeout=0.3)


def run_test(node: Node, mode: str, prometheus_bin: str, dashboard_path: str) -> None:
    with open(dashboard_path, encoding="utf-8") as f:
        dashboard = json.load(f)
    targets = dashboard_targets(dashboard)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    require(set(variables) == {"datasource", "instance"}, f"dashboard variables changed: {sorted(variables)}; "
            "teach this test their values")
    expected = {**EXPECTED, **EXPECTED_IN_MODE[mode]}
    missing = [key for key in expected if not any((t.panel, t.ref) == key for t in targets)]
    require(not missing, f"panels this test expects are not in the dashboard: {missing}")
    ok(f"dashboard: {len(targets)} targets in {len({t.panel for t in targets})} panels")

    step("Prometheus scrapes the agent")
    prometheus = Prometheus(node, prometheus_bin)
    try:
        prometheus.wait_ready()
        up = wait_until(lambda: [v for m, v in series_values(prometheus.query(f'up{{job="{JOB}"}}')) if v == 1],
                        30.0, "prometheus to scrape the agent (up == 1)", interval=0.2)
        ok(f"prometheus {PROMETHEUS_ADDRESS} in {node.node_netns} scrapes {METRICS_ADDRESS}: up = {up[0]:g}")
        check_dashboard(node, mode, prometheus, targets, variables, expected)
    except BaseException:
        print("\n--- prometheus log (tail) ---\n" + prometheus.log_tail(), file=sys.stderr)
        raise
    finally:
        prometheus.stop()
    require(prometheus.process.returncode == 0, f"prometheus exited with {prometheus.process.returncode}")
    ok("prometheus stopped cleanly")


def check_dashboard(node: Node, mode: str, prometheus: Prometheus, targets: list[Target], variables: dict,
                    expected: dict) -> None:
    step("objects, policies and traffic for the panels")
    node.add_namespace("x", {"ns": "x"})
    a = node.add_pod("x", "a", {"app": "a"})
    b = node.add_pod("x", "b", {"app": "b"}, [TCP_PORT])
    c = node.add_pod("x", "c", {"app": "c"}, [TCP_PORT])
    # Each kind of endpoint update: isolating b and c flips their generation;
    # d and e run on another node (only their Pod objects exist here, their
    # addresses are on no interface): b's first peer d recompiles b in place
    # (b had no entries), the second, e, is spliced in (peer patch).
    node.write_manifest("netpol-b.yaml", json.dumps(b_only_from_d(TCP_PORT), indent=2) + "\n")
    node.write_manifest("segpol-c-audit.yaml", json.dumps(audit_c(), indent=2) + "\n")
    node.write_manifest("netpol-bad-operator.yaml", json.dumps(rejected_policy(), indent=2) + "\n")
    node.wait_for_status(lambda s: s.get("network_policies") == 1 and s.get("segment_policies") == 1
                         and len(s.get("manifest_errors", [])) == 1, "the policies and the rejected one")
    for name, host, kind in (("d", 250, "in_place"), ("e", 251, "peer_patch")):
        pod = remote_pod(name, f"{node.node_name}-other", f"10.244.{node.subnet_octet}.{host}")
        node.write_manifest(f"pod-x-{name}.yaml", json.dumps(pod, indent=2) + "\n")
        # One at a time: a batch would fold e into d's update.
        wait_until(lambda kind=kind: metric_sum(node.metrics(), "microseg_policy_endpoint_updates_total",
                                                kind=kind) >= 1,
                   10.0, f"b's policy to take peer {name} ({kind})")
    expected_traffic = {f"tcp:{b.ip}:{TCP_PORT}": "timeout", f"tcp:{c.ip}:{TCP_PORT}": "ok"}
    results = wait_until(lambda: (lambda r: r if r == expected_traffic else None)(traffic(node, a, b, c)), 15.0,
                         "a -> b denied and a -> c allowed (audited)", interval=0.2)
    ok(f"a -> b denied, a -> c allowed under audit: {results}")

    step("every panel target against Prometheus")
    instance = METRICS_ADDRESS  # Prometheus's instance label of a static target
    instance_values = prometheus.api("/api/v1/label/instance/values", {"match[]": "microseg_endpoints"})
    require(instance in instance_values.get("data", []),
            f"the instance variable's label_values(microseg_endpoints, instance) lacks {instance}: {instance_values}")
    query = variables["instance"]["query"]
    query = query["query"] if isinstance(query, dict) else query
    require(query == "label_values(microseg_endpoints, instance)",
            f"the instance variable's query changed ({query}); check it here")
    ok(f"instance variable lists {instance}")

    other_modes = tuple(prefix for other, prefix in MODE_ONLY_PREFIXES.items() if other != mode)

    def names_of_this_mode(target: Target) -> set[str]:
        return {name for name in metric_names(target.expr) if not name.startswith(other_modes)}

    exported = exported_families(node.metrics_text())
    other_mode_targets = 0
    for target in targets:
        names = metric_names(target.expr)
        require(names, f"panel '{target.panel}' {target.ref}: no metric in {target.expr}")
        other_mode_targets += not names_of_this_mode(target)
        unknown = sorted(n for n in names_of_this_mode(target) if n not in exported)
        require(not unknown, f"panel '{target.panel}' {target.ref} references {unknown}, which the agent does not "
                f"export in {mode} mode (exported: {sorted(exported)}); expr: {target.expr}")
    ok(f"every metric the {len(targets) - other_mode_targets} targets of {mode} mode reference is in the agent's "
       f"/metrics ({other_mode_targets} targets show only the other mode's metrics)")

    one_node = grafana_regex_escape(instance)
    by_key = {(t.panel, t.ref): t for t in targets}
    results: dict[tuple[str, str], list[tuple[dict, float]]] = {}

    def unmet() -> dict[tuple[str, str], list[tuple[dict, float]]]:
        return {key: results.get(key, []) for key, check in expected.items()
                if key not in results or not check(results[key])}

    def all_met() -> bool:
        for key in unmet():
            expr = substitute(by_key[key].expr, dict(BUILTINS, instance=one_node))
            results[key] = series_values(prometheus.query(expr))
        if not unmet():
            return True
        traffic(node, a, b, c)  # keeps the rates up while the scrapes catch up
        return False
    try:
        wait_until(all_met, 30.0, "the expected panel values", interval=0.2)
    except AssertionError:
        lines = [f"  {panel} {ref}: {series}" for (panel, ref), series in unmet().items()]
        raise AssertionError("panels without the expected values:\n" + "\n".join(lines)) from None
    for panel, ref in expected:
        series = sorted(results[(panel, ref)], key=lambda s: -s[1])
        shown = ", ".join(f"{','.join(f'{k}={v}' for k, v in sorted(m.items()) if k not in HIDDEN_LABELS) or '-'}"
                          f" {value:.3g}" for m, value in series[:4])
        ok(f"{panel} {ref}: {shown}" + (f" (+{len(series) - 4} series)" if len(series) > 4 else ""))

    stored = set(prometheus.api("/api/v1/label/__name__/values", {"match[]": f'{{job="{JOB}"}}'})["data"])
    selections = {"one node": one_node, "All": variables["instance"]["allValue"]}
    checked = 0
    for target in targets:
        unstored = sorted(n for n in names_of_this_mode(target) if n not in stored)
        require(not unstored, f"panel '{target.panel}' {target.ref}: prometheus has no series of {unstored}")
        for selection, value in selections.items():
            expr = substitute(target.expr, dict(BUILTINS, instance=value))
            answer = prometheus.query(expr)
            require(answer.get("status") == "success",
                    f"panel '{target.panel}' {target.ref} ({selection}): {answer.get('errorType')}: "
                    f"{answer.get('error')}\n  expr: {expr}")
            checked += 1
    ok(f"{checked} queries ({len(targets)} targets x {len(selections)} instance selections) answered 'success'; "
       f"prometheus stores every metric they reference")


class CrdKubeNode(KubeNode):
    """Kubernetes mode with the project's CRDs and the Lease's namespace in the API server."""

    def on_apiserver_started(self) -> None:
        self.apiserver.apply_crds(os.path.join(REPO, "crds"))  # YAML: python3-yaml, from setup.sh
        if self.apiserver.get("v1", "namespaces", "kube-system") is None:
            self.apiserver.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})


def main() -> int:
    parser = arguments(__doc__)
    parser.add_argument("--mode", choices=sorted(MODE_ONLY_PREFIXES), default="standalone",
                        help="the agent's: manifests (standalone) or the test API server (kube)")
    parser.add_argument("--dashboard", default=DASHBOARD, help="the dashboard JSON to check (default: the chart's)")
    args = parser.parse_args()
    prometheus_bin = shutil.which("prometheus")

    def make_node() -> Node:
        options = NodeOptions(build_dir=args.build_dir)
        return CrdKubeNode(options) if args.mode == "kube" else Node(options)

    def apiserver_log(node: Node) -> None:
        if isinstance(node, KubeNode) and node.apiserver is not None:
            print("\n--- apiserver log (tail) ---\n" + node.apiserver.log_tail(30), file=sys.stderr)
    name = "e2e_grafana_dashboard" + ("_kube" if args.mode == "kube" else "")
    return run_e2e(name, args.logs_dir, make_node,
                   lambda node: run_test(node, args.mode, prometheus_bin, args.dashboard), on_failure=apiserver_log,
                   skip_reason=lambda: None if prometheus_bin else
                   "needs prometheus (Debian package prometheus; scripts/setup.sh installs it)")


if __name__ == "__main__":
    sys.exit(main())
