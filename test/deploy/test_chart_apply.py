#!/usr/bin/env python3
"""The real kubectl (v1.34) against the project's test API server
(test/apiserver): the CRDs from crds/ are applied and become Established,
every example in deploy/examples/ is applied and accepted (server-side
schema + CEL validation, strict field validation), a few invalid policies are
rejected with the schema's reason, and the objects of the chart's default
render whose kinds the test server serves are accepted by `kubectl apply
--dry-run=client` and then really created (the server does not serve RBAC,
ServiceAccounts or DaemonSets: those are checked by test_helm_chart.py only).

kubectl and helm come from scripts/setup.sh (build/kube-tools/bin): missing
tools fail the test.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
REPO = pathlib.Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "test" / "apiserver"))

from client import TestApiServer  # noqa: E402

ARGS: argparse.Namespace
SERVER: TestApiServer | None = None
WORKDIR = ""


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=WORKDIR, KUBECONFIG=os.path.join(WORKDIR, "kubeconfig"))
    cmd = [ARGS.kubectl, "--cache-dir", os.path.join(WORKDIR, "kube-cache"), "--request-timeout", "30s", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


class ChartAgainstApiServer(unittest.TestCase):
    def test_1_crds_established(self):
        kubectl("apply", "-f", str(REPO / "crds"))
        kubectl("wait", "--for", "condition=Established", "--timeout=30s",
                "crd/segmentpolicies.microseg.io", "crd/clustersegmentpolicies.microseg.io")
        resources = kubectl("api-resources", "--api-group=microseg.io", "--no-headers").stdout
        self.assertRegex(resources, r"segmentpolicies\s+segpol\s+microseg.io/v1alpha1\s+true\s+SegmentPolicy")
        self.assertRegex(resources,
                         r"clustersegmentpolicies\s+csp\s+microseg.io/v1alpha1\s+false\s+ClusterSegmentPolicy")

    def test_2_examples_accepted(self):
        for ns in ("shop", "kube-system"):
            kubectl("create", "namespace", ns, check=False)
        for path in sorted((REPO / "deploy" / "examples").glob("*.yaml")):
            with self.subTest(path.name):
                out = kubectl("apply", "-f", str(path)).stdout
                self.assertRegex(out, r"(created|configured|unchanged)")
        self.assertIn("allow-dns", kubectl("get", "csp").stdout)
        audit = json.loads(kubectl("get", "segpol", "payments-lockdown-trial", "-n", "shop", "-o", "json").stdout)
        self.assertEqual(audit["spec"]["enforcement"], "Audit")
        self.assertEqual(audit["spec"]["ingress"][0]["action"], "Allow", "schema default")

    def test_3_invalid_rejected(self):
        cases = [
            ({"podSelector": {}, "ingress": [{"ports": [{"port": 8080, "endPort": 80}]}]}, "endPort"),
            ({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}, "cidr"),
            ({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "protocol"),
            ({"podSelector": {}, "enforcement": "DryRun"}, "enforcement"),
        ]
        for i, (spec, field) in enumerate(cases):
            with self.subTest(field):
                obj = {"apiVersion": "microseg.io/v1alpha1", "kind": "SegmentPolicy",
                       "metadata": {"name": f"bad-{i}", "namespace": "shop"}, "spec": spec}
                run = kubectl("apply", "-f", "-", stdin=json.dumps(obj), check=False)
                self.assertNotEqual(run.returncode, 0, run.stdout)
                self.assertIn(field, run.stderr)

    def test_4_chart_render_applies(self):
        rendered = subprocess.run([ARGS.helm, "template", "ms", str(REPO / "deploy" / "helm" / "microseg"),
                                   "--namespace", "microseg-system"],
                                  capture_output=True, text=True, timeout=120, check=True).stdout
        served = set()
        for line in kubectl("api-resources", "--no-headers", "-o", "wide").stdout.splitlines():
            fields = line.split()
            # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND VERBS...: the kind follows true/false.
            for i, field in enumerate(fields):
                if field in ("true", "false") and i + 1 < len(fields):
                    served.add(fields[i + 1])
                    break
        docs = [d for d in rendered.split("\n---") if "kind:" in d]
        kinds = {d.split("\nkind: ", 1)[1].split("\n", 1)[0].strip(): d for d in docs}
        applicable = [d for k, d in kinds.items() if k in served]
        skipped = sorted(k for k in kinds if k not in served)
        print(f"\n  test apiserver serves {sorted(k for k in kinds if k in served)}; not checked here: {skipped}")
        self.assertIn("Service", served)
        kubectl("create", "namespace", "microseg-system", check=False)
        stdin = "\n---".join(applicable)
        dry = kubectl("apply", "--dry-run=client", "--validate=false", "-f", "-", stdin=stdin).stdout
        self.assertIn("service/ms-microseg-metrics created (dry run)", dry)
        out = kubectl("apply", "-f", "-", stdin=stdin).stdout
        self.assertIn("service/ms-microseg-metrics created", out)
        svc = json.loads(kubectl("get", "svc", "ms-microseg-metrics", "-n", "microseg-system", "-o", "json").stdout)
        self.assertEqual(svc["spec"]["ports"][0]["name"], "metrics")


def main() -> int:
    global ARGS, SERVER, WORKDIR
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--helm", required=True)
    ARGS, rest = parser.parse_known_args()
    for tool in (ARGS.kubectl, ARGS.helm):
        if not os.path.isfile(tool):
            print(f"FAILED: no {tool}: scripts/setup.sh installs it (scripts/fetch-kube-tools.sh build/kube-tools)",
                  file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="ms-chart-apply-") as workdir:
        WORKDIR = workdir
        SERVER = TestApiServer(os.path.join(workdir, "server"))
        SERVER.start()
        try:
            SERVER.write_kubeconfig(os.path.join(workdir, "kubeconfig"))
            result = unittest.main(argv=[sys.argv[0], *rest], exit=False, verbosity=2).result
        finally:
            SERVER.stop()
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
