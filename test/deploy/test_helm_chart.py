#!/usr/bin/env python3
"""The Helm chart, rendered by the real helm (v4, from build/kube-tools, which
scripts/setup.sh fills): `helm lint --strict` and `helm template` with the
default and with non-default values, then checks on the rendered manifests —
privileges, host paths and mount propagation, probes, RBAC verbs, rollout,
values plumbing (every agent flag the chart passes must be one the built
microseg-agent knows) — and invalid values that must fail to render.

A missing helm is a failure, not a skip: a chart that is not rendered in CI
is a chart that may not render.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import unittest

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
CHART = REPO / "deploy" / "helm" / "microseg"
DASHBOARD = CHART / "dashboards" / "microseg.json"
ARGS: argparse.Namespace

NON_DEFAULT_VALUES = """
image: {repository: registry.example/microseg, tag: "9.9.9", pullPolicy: Always}
agent:
  logLevel: debug
  metricsPort: 9999
  maps: {maxEndpoints: 512, maxPolicyEntries: 1000, maxLpmEntries: 2000, maxSessions: 3000}
  sessionTimeouts: {tcp: 30m, udp: 45s, icmp: 5s}
  kube: {leaseDuration: 20s, watchTimeout: 10m, watchIdleTimeout: 2m, backoffMax: 1m}
  extraCapabilities: [SYS_RESOURCE]
  extraArgs: [--manifest_poll_interval=1s]
cni:
  confDir: /var/lib/rancher/cni/net.d
  binDir: /var/lib/rancher/cni/bin
  failMode: isolate
  timeoutSeconds: 30
  upgradeCniVersion: false
  uninstallOnDelete: false
bpffs: {path: /run/bpffs, mountIfMissing: false}
runDir: /var/run/ms
serviceAccount: {create: true, name: ms-agent}
priorityClassName: my-critical
metrics:
  serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}
  grafanaDashboard:
    enabled: true
    labels: {team: net}
    annotations: {grafana_folder: microseg}
    namespace: monitoring
"""


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run([ARGS.helm, *args], capture_output=True, text=True, timeout=120)
    if check and run.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return run


def render(values_text: str | None = None, *extra: str) -> list[dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
        values.write(values_text or "{}")
        values.flush()
        out = helm("template", "ms", str(CHART), "--namespace", "microseg-system", "-f", values.name, *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def pod_spec(docs) -> dict:
    (ds,) = by_kind(docs)["DaemonSet"]
    return ds["spec"]["template"]["spec"]


def container(spec: dict, name: str, init: bool = False) -> dict:
    (c,) = [c for c in spec["initContainers" if init else "containers"] if c["name"] == name]
    return c


def flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for arg in argv:
        m = re.fullmatch(r"--([a-z_]+)(?:=(.*))?", arg)
        if m:
            out[m.group(1)] = m.group(2) if m.group(2) is not None else "true"
    return out


class Tools(unittest.TestCase):
    def test_helm_is_v4(self):
        self.assertRegex(helm("version", "--template", "{{.Version}}").stdout, r"^v4\.")


class Lint(unittest.TestCase):
    def test_lint_strict_default(self):
        out = helm("lint", "--strict", str(CHART)).stdout
        self.assertIn("0 chart(s) failed", out)

    def test_lint_strict_non_default(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
            values.write(NON_DEFAULT_VALUES)
            values.flush()
            self.assertIn("0 chart(s) failed", helm("lint", "--strict", str(CHART), "-f", values.name).stdout)


class DefaultRender(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = render()
        cls.kinds = by_kind(cls.docs)
        cls.spec = pod_spec(cls.docs)
        cls.agent = container(cls.spec, "agent")

    def test_objects(self):
        self.assertEqual(sorted(self.kinds), sorted(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                                     "RoleBinding", "DaemonSet", "Service"]))
        for doc in self.docs:
            if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
                self.assertEqual(doc["metadata"]["namespace"], "microseg-system", doc["kind"])

    def test_node_placement_and_rollout(self):
        (ds,) = self.kinds["DaemonSet"]
        self.assertEqual(ds["spec"]["updateStrategy"],
                         {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
        self.assertTrue(self.spec["hostNetwork"])
        self.assertEqual(self.spec["dnsPolicy"], "ClusterFirstWithHostNet")
        self.assertEqual(self.spec["priorityClassName"], "system-node-critical")
        self.assertIn({"operator": "Exists"}, self.spec["tolerations"])
        self.assertEqual(self.spec["serviceAccountName"], "ms-microseg")
        selector = ds["spec"]["selector"]["matchLabels"]
        self.assertTrue(selector.items() <= ds["spec"]["template"]["metadata"]["labels"].items())

    def test_agent_privileges_are_the_least_that_work(self):
        sc = self.agent["securityContext"]
        self.assertIs(sc["privileged"], False)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertEqual(sc["runAsUser"], 0)
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertEqual(sorted(sc["capabilities"]["add"]), ["BPF", "NET_ADMIN", "PERFMON"])
        self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"})
        install = container(self.spec, "install-cni", init=True)["securityContext"]
        self.assertEqual(install["capabilities"], {"drop": ["ALL"]})
        self.assertNotIn("privileged", install)
        # Only the bpffs mounter is privileged (Bidirectional propagation requires it).
        privileged = [c["name"] for c in self.spec["initContainers"] + self.spec["containers"]
                      if c.get("securityContext", {}).get("privileged")]
        self.assertEqual(privileged, ["mount-bpffs"])

    def test_host_paths_and_propagation(self):
        host = {v["name"]: v["hostPath"]["path"] for v in self.spec["volumes"] if "hostPath" in v}
        self.assertEqual(sorted(host.values()), ["/etc/cni/net.d", "/opt/cni/bin", "/run/microseg", "/sys/fs/bpf"])
        mounts = {m["name"]: m for m in self.agent["volumeMounts"]}
        self.assertEqual(mounts["bpffs"]["mountPath"], "/sys/fs/bpf")
        self.assertEqual(mounts["bpffs"]["mountPropagation"], "HostToContainer")
        self.assertEqual(mounts["run-microseg"]["mountPath"], "/run/microseg")
        mounter = container(self.spec, "mount-bpffs", init=True)
        self.assertEqual(mounter["volumeMounts"][0]["mountPropagation"], "Bidirectional")
        self.assertEqual(mounter["volumeMounts"][0]["name"], "bpffs")
        self.assertEqual({m["name"] for m in container(self.spec, "install-cni", init=True)["volumeMounts"]},
                         {"cni-conf", "cni-bin"})

    def test_chaining_installer(self):
        install = container(self.spec, "install-cni", init=True)
        self.assertEqual(install["command"][:2], ["/usr/local/bin/microseg-cni", "install"])
        f = flags(install["command"][2:])
        self.assertEqual(f["fail_mode"], "closed")
        self.assertEqual(f["timeout_seconds"], "10")
        self.assertEqual(f["agent_socket"], "/run/microseg/agent.sock")
        self.assertEqual(f["bpf_pin_dir"], "/sys/fs/bpf/microseg")
        self.assertEqual(f["upgrade_cni_version"], "true")
        conf_mount = {m["name"]: m["mountPath"] for m in install["volumeMounts"]}
        self.assertEqual(f["cni_conf_dir"], conf_mount["cni-conf"])
        self.assertEqual(f["cni_bin_dir"], conf_mount["cni-bin"])
        pre_stop = "\n".join(self.agent["lifecycle"]["preStop"]["exec"]["command"])
        self.assertIn("microseg-cni uninstall", pre_stop)
        self.assertIn("/daemonsets/ms-microseg", pre_stop)

    def test_the_flags_passed_are_the_binarys(self):
        installer = flags(container(self.spec, "install-cni", init=True)["command"][2:])
        agent = flags(self.agent["args"])
        self.assertEqual(agent["bpffs_dir"], installer["bpf_pin_dir"])
        self.assertEqual(agent["grpc_socket"], installer["agent_socket"])
        self.assertEqual(agent["state_dir"], installer["state_dir"])
        self.assertEqual(agent["metrics_address"], "$(HOST_IP):9464")
        self.assertEqual(agent["node_name"], "$(NODE_NAME)")
        known = subprocess.run([ARGS.agent, "--help"], capture_output=True, text=True, timeout=30)
        help_text = known.stdout + known.stderr
        for name in agent:
            self.assertTrue(re.search(rf"--{name}\b", help_text), f"microseg-agent has no flag --{name}")
        usage = subprocess.run([ARGS.cni, "install", "--help"], capture_output=True, text=True, timeout=30).stdout
        for name in installer:
            self.assertIn(f"--{name}", usage, f"microseg-cni install has no flag --{name}")

    def test_probes(self):
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                            ("readinessProbe", "/readyz")):
            self.assertEqual(self.agent[probe]["httpGet"], {"path": path, "port": "metrics"}, probe)
        self.assertEqual(self.agent["ports"], [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}])

    def test_rbac(self):
        (role,) = self.kinds["ClusterRole"]
        granted = {}
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted[(group, resource)] = set(rule["verbs"])
                    self.assertNotIn("*", rule["verbs"])
        read = {"list", "watch"}  # the agent lists and watches; it never gets one object
        self.assertEqual(granted, {
            ("", "pods"): read, ("", "namespaces"): read,
            ("networking.k8s.io", "networkpolicies"): read,
            ("microseg.io", "segmentpolicies"): read, ("microseg.io", "clustersegmentpolicies"): read,
            ("microseg.io", "segmentpolicies/status"): {"patch"},
            ("microseg.io", "clustersegmentpolicies/status"): {"patch"},
            ("", "events"): {"create", "patch"}, ("events.k8s.io", "events"): {"create", "patch"},
        })
        (ns_role,) = self.kinds["Role"]
        rules = {(r["apiGroups"][0], r["resources"][0], tuple(r.get("resourceNames", ()))): set(r["verbs"])
                 for r in ns_role["rules"]}
        self.assertEqual(rules, {
            ("coordination.k8s.io", "leases", ()): {"create"},
            # The agent's Lease only (kube/lease_elector.h), never another component's.
            ("coordination.k8s.io", "leases", ("microseg-status-writer",)): {"get", "update"},
            ("apps", "daemonsets", ("ms-microseg",)): {"get"},
        })
        for binding in self.kinds["ClusterRoleBinding"] + self.kinds["RoleBinding"]:
            self.assertEqual(binding["subjects"],
                             [{"kind": "ServiceAccount", "name": "ms-microseg", "namespace": "microseg-system"}])

    def test_metrics_service(self):
        (svc,) = self.kinds["Service"]
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertEqual(svc["spec"]["ports"][0]["targetPort"], "metrics")
        (ds,) = self.kinds["DaemonSet"]
        self.assertEqual(svc["spec"]["selector"], ds["spec"]["selector"]["matchLabels"])

    def test_crds_ship_with_the_chart(self):
        docs = render(None, "--include-crds")
        crds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
        self.assertEqual(sorted(crds), ["clustersegmentpolicies.microseg.io", "segmentpolicies.microseg.io"])
        for path in (REPO / "crds").glob("*.yaml"):
            crd = yaml.safe_load(path.read_text())
            self.assertEqual(crds[crd["metadata"]["name"]], crd)


class NonDefaultRender(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = render(NON_DEFAULT_VALUES)
        cls.kinds = by_kind(cls.docs)
        cls.spec = pod_spec(cls.docs)
        cls.agent = container(cls.spec, "agent")

    def test_values_reach_the_agent(self):
        f = flags(self.agent["args"])
        self.assertEqual(f["log_level"], "debug")
        self.assertEqual(f["metrics_address"], "$(HOST_IP):9999")
        self.assertEqual((f["max_endpoints"], f["max_policy_entries"], f["max_lpm_entries"], f["max_sessions"]),
                         ("512", "1000", "2000", "3000"))
        self.assertEqual((f["tcp_session_timeout"], f["udp_session_timeout"], f["icmp_session_timeout"]),
                         ("30m", "45s", "5s"))
        self.assertEqual((f["kube_lease_duration"], f["kube_watch_timeout"], f["kube_watch_idle_timeout"],
                          f["kube_backoff_max"]), ("20s", "10m", "2m", "1m"))
        self.assertEqual(f["manifest_poll_interval"], "1s")
        self.assertEqual(f["bpffs_dir"], "/run/bpffs/microseg")
        self.assertEqual(f["grpc_socket"], "/var/run/ms/agent.sock")
        self.assertEqual(self.agent["image"], "registry.example/microseg:9.9.9")
        self.assertEqual(self.agent["imagePullPolicy"], "Always")
        self.assertIn("SYS_RESOURCE", self.agent["securityContext"]["capabilities"]["add"])
        self.assertEqual(self.agent["ports"][0]["containerPort"], 9999)
        self.assertEqual(self.spec["priorityClassName"], "my-critical")
        self.assertEqual(self.spec["serviceAccountName"], "ms-agent")

    def test_values_reach_the_installer(self):
        install = container(self.spec, "install-cni", init=True)
        f = flags(install["command"][2:])
        self.assertEqual((f["fail_mode"], f["timeout_seconds"]), ("isolate", "30"))
        self.assertNotIn("upgrade_cni_version", f)
        self.assertEqual([c["name"] for c in self.spec["initContainers"]], ["install-cni"])
        host = sorted(v["hostPath"]["path"] for v in self.spec["volumes"] if "hostPath" in v)
        self.assertEqual(host, ["/run/bpffs", "/var/lib/rancher/cni/bin", "/var/lib/rancher/cni/net.d", "/var/run/ms"])
        self.assertNotIn("lifecycle", self.agent)

    def test_service_monitor(self):
        (sm,) = self.kinds["ServiceMonitor"]
        self.assertEqual(sm["metadata"]["labels"]["release"], "prom")
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], "metrics")
        self.assertEqual(sm["spec"]["endpoints"][0]["interval"], "15s")
        self.assertEqual(self.kinds["Service"][0]["spec"]["ports"][0]["port"], 9999)

    def test_grafana_dashboard(self):
        (cm,) = self.kinds["ConfigMap"]
        meta = cm["metadata"]
        # Extra labels add to the sidecar's default label, they do not replace it.
        self.assertEqual((meta["labels"]["grafana_dashboard"], meta["labels"]["team"]), ("1", "net"))
        self.assertEqual(meta["annotations"], {"grafana_folder": "microseg"})
        self.assertEqual(meta["namespace"], "monitoring")
        self.assertEqual(list(cm["data"]), ["microseg.json"])
        self.assertEqual(json.loads(cm["data"]["microseg.json"]), json.loads(DASHBOARD.read_text()))


class GrafanaDashboardJson(unittest.TestCase):
    """The dashboard's shape; test/e2e/test_grafana_dashboard.py runs its queries against a real Prometheus."""

    @classmethod
    def setUpClass(cls):
        cls.dashboard = json.loads(DASHBOARD.read_text())

    def datasources(self, node):
        if isinstance(node, dict):
            if "datasource" in node:
                yield node["datasource"]
            for value in node.values():
                yield from self.datasources(value)
        elif isinstance(node, list):
            for value in node:
                yield from self.datasources(value)

    def test_no_hard_coded_datasource(self):
        # Any other uid exists only in the Grafana the dashboard was exported from.
        for datasource in self.datasources(self.dashboard):
            if datasource.get("type") == "grafana":  # the built-in annotation source
                continue
            self.assertEqual(datasource, {"type": "prometheus", "uid": "${datasource}"})
        self.assertNotIn("__inputs", self.dashboard)

    def test_variables(self):
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertEqual(sorted(variables), ["datasource", "instance"])
        self.assertEqual((variables["datasource"]["type"], variables["datasource"]["query"]),
                         ("datasource", "prometheus"))
        self.assertTrue(variables["instance"]["multi"] and variables["instance"]["includeAll"])

    def test_panels(self):
        ids = [p["id"] for p in self.dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        for panel in self.dashboard["panels"]:
            if panel["type"] == "row":
                continue
            with self.subTest(panel["title"]):
                self.assertTrue(panel["targets"])
                self.assertIn("unit", panel["fieldConfig"]["defaults"])
                for target in panel["targets"]:
                    self.assertIn('instance=~"$instance"', target["expr"])


class InvalidValues(unittest.TestCase):
    # values.schema.json refuses these before the templates run; the templates'
    # own checks (below) guard renders that skip the schema.
    CASES = [
        ("cni: {failMode: open}", "at '/cni/failMode': value must be one of 'closed', 'isolate'"),
        ("cni: {timeoutSeconds: 0}", "at '/cni/timeoutSeconds': minimum"),
        ("cni: {timeoutSeconds: 500}", "at '/cni/timeoutSeconds': maximum"),
        ("agent: {logLevel: verbose}", "at '/agent/logLevel'"),
        ("agent: {sessionTimeouts: {tcp: 1hour}}", "at '/agent/sessionTimeouts/tcp'"),
        ("agent: {kube: {leaseDuration: 15}}", "at '/agent/kube/leaseDuration'"),
        ("agent: {metricsPort: 70000}", "at '/agent/metricsPort'"),
        ("cni: {confDir: etc/cni}", "at '/cni/confDir'"),
        ("metrics: {service: {enabled: false}, serviceMonitor: {enabled: true}}", "needs metrics.service.enabled"),
        ("metrics: {grafanaDashboard: {enabled: true, namespace: Monitoring}}",
         "at '/metrics/grafanaDashboard/namespace'"),
        ("metrics: {grafanaDashboard: {enabled: true, labels: {grafana_dashboard: 1}}}",
         "at '/metrics/grafanaDashboard/labels/grafana_dashboard'"),
    ]
    TEMPLATE_CASES = [
        ("cni: {failMode: open}", "cni.failMode must be closed or isolate"),
        ("cni: {timeoutSeconds: 0}", "cni.timeoutSeconds must be within 1..120"),
        ("agent: {logLevel: verbose}", "agent.logLevel must be"),
        # null removes the default label (an empty map would merge with it).
        ("metrics: {grafanaDashboard: {enabled: true, labels: null}}",
         "metrics.grafanaDashboard.labels must not be empty"),
    ]

    def test_templates_check_without_the_schema(self):
        for values_text, message in self.TEMPLATE_CASES:
            with self.subTest(values_text), tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
                values.write(values_text)
                values.flush()
                run = helm("template", "ms", str(CHART), "--skip-schema-validation", "-f", values.name, check=False)
                self.assertNotEqual(run.returncode, 0)
                self.assertIn(message, run.stderr)

    def test_render_fails_with_the_reason(self):
        for values_text, message in self.CASES:
            with self.subTest(values_text), tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
                values.write(values_text)
                values.flush()
                run = helm("template", "ms", str(CHART), "-f", values.name, check=False)
                self.assertNotEqual(run.returncode, 0)
                self.assertIn(message, run.stderr)


def main() -> int:
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--helm", required=True)
    parser.add_argument("--agent", required=True, help="the built microseg-agent (its --help lists the flags)")
    parser.add_argument("--cni", required=True, help="the built microseg-cni")
    ARGS, rest = parser.parse_known_args()
    if not pathlib.Path(ARGS.helm).is_file():
        print(f"FAILED: no helm at {ARGS.helm}: scripts/setup.sh installs it "
              f"(scripts/fetch-kube-tools.sh build/kube-tools)", file=sys.stderr)
        return 1
    return 0 if unittest.main(argv=[sys.argv[0], *rest], exit=False, verbosity=1).result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
