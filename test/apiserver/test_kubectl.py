#!/usr/bin/env python3
"""The real kubectl against the test apiserver: discovery, get (server-side
tables), apply (client-side and server-side), CRDs and their custom resources
(including the project's crds/ when present), patch, status subresource,
delete with wait, namespace deletion and a rotated token read from a
tokenFile.

kubectl comes from scripts/fetch-kube-tools.sh (build/kube-tools/bin);
without it the test is skipped (exit 77). Only the OpenAPI v3 operation index
is served (no schemas): enough for kubectl to leave field validation to the
server (fieldValidation=Strict), see docs/testing-apiserver.md."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from client import TestApiServer  # noqa: E402
from test_apiserver import CLUSTER_POLICY_CRD, SEGMENT_POLICY_CRD  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
KUBECTL = ""
SERVER: TestApiServer | None = None
WORKDIR = ""


class KubectlError(AssertionError):
    pass


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=WORKDIR, KUBECONFIG=os.path.join(WORKDIR, "kubeconfig"))
    cmd = [KUBECTL, "--cache-dir", os.path.join(WORKDIR, "kube-cache"), "--request-timeout", "30s", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120)
    if check and proc.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def write(name: str, content) -> str:
    path = os.path.join(WORKDIR, name)
    with open(path, "w") as f:
        f.write(content if isinstance(content, str) else json.dumps(content))
    return path


class Kubectl(unittest.TestCase):
    def test_1_discovery_and_version(self):
        version = json.loads(kubectl("version", "-o", "json").stdout)
        self.assertEqual(version["serverVersion"]["gitVersion"], "v1.34.0-microseg-test")
        resources = kubectl("api-resources", "--no-headers").stdout
        for expected in ("pods", "networkpolicies", "leases", "customresourcedefinitions"):
            self.assertIn(expected, resources)
        namespaces = kubectl("get", "ns").stdout
        self.assertRegex(namespaces, r"(?m)^default\s+Active\s")

    def test_2_core_objects(self):
        kubectl("create", "namespace", "kc-core")  # a protobuf body
        kubectl("create", "configmap", "generated", "-n", "kc-core", "--from-literal=a=b")
        self.assertEqual(kubectl("get", "cm", "generated", "-n", "kc-core", "-o", "jsonpath={.data.a}").stdout, "b")
        pod = ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: kc-core\n  labels: {app: web}\n"
               "spec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: busybox\n")
        self.assertIn("pod/web created", kubectl("apply", "-f", write("pod.yaml", pod)).stdout)
        self.assertIn("unchanged", kubectl("apply", "-f", write("pod.yaml", pod)).stdout)
        kubectl("label", "pod", "web", "-n", "kc-core", "tier=front")
        got = json.loads(kubectl("get", "pod", "web", "-n", "kc-core", "-o", "json").stdout)
        self.assertEqual(got["metadata"]["labels"], {"app": "web", "tier": "front"})
        self.assertIn("kubectl.kubernetes.io/last-applied-configuration", got["metadata"]["annotations"])
        kubectl("patch", "pod", "web", "-n", "kc-core", "--subresource=status", "--type=merge",
                "-p", '{"status":{"phase":"Running","podIP":"10.244.9.9"}}')
        table = kubectl("get", "pods", "-n", "kc-core", "-o", "wide").stdout
        self.assertRegex(table, r"(?m)^web\s+Running\s+10\.244\.9\.9\s+node-1\s")
        selected = kubectl("get", "pods", "-A", "--field-selector", "spec.nodeName=node-1", "-l", "app=web",
                           "-o", "name").stdout.split()
        self.assertEqual(selected, ["pod/web"])
        netpol = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"name": "deny", "namespace": "kc-core"}, "spec": {"podSelector": {}}}
        kubectl("apply", "-f", write("np.json", netpol))
        self.assertIn("deny", kubectl("get", "netpol", "-n", "kc-core").stdout)
        cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa, namespace: kc-core}\ndata: {k: v}\n"
        kubectl("apply", "--server-side", "-f", write("cm.yaml", cm))
        self.assertEqual(kubectl("get", "cm", "ssa", "-n", "kc-core", "-o", "jsonpath={.data.k}").stdout, "v")
        self.assertIn('pod "web" deleted', kubectl("delete", "pod", "web", "-n", "kc-core").stdout)
        self.assertIn("deleted", kubectl("delete", "namespace", "kc-core").stdout)
        self.assertNotIn("kc-core", kubectl("get", "ns", "-o", "name").stdout)

    def test_3_custom_resources(self):
        crd_dir = os.path.join(REPO, "crds")
        if os.path.isdir(crd_dir) and any(n.endswith((".yaml", ".yml")) for n in os.listdir(crd_dir)):
            source = crd_dir  # the project's CRDs, exactly as users apply them
        else:
            source = os.path.join(WORKDIR, "crds")
            os.makedirs(source, exist_ok=True)
            write("crds/segmentpolicies.json", SEGMENT_POLICY_CRD)
            write("crds/clustersegmentpolicies.json", CLUSTER_POLICY_CRD)
        kubectl("apply", "-f", source)
        kubectl("wait", "--for", "condition=Established", "--timeout=30s",
                "crd/segmentpolicies.microseg.io", "crd/clustersegmentpolicies.microseg.io")
        kubectl("apply", "-f", write("ns-cr.json", {"apiVersion": "v1", "kind": "Namespace",
                                                                       "metadata": {"name": "kc-cr"}}))
        policy = ("apiVersion: microseg.io/v1alpha1\nkind: SegmentPolicy\nmetadata:\n  name: allow-web\n"
                  "  namespace: kc-cr\nspec:\n  podSelector:\n    matchLabels: {app: web}\n  policyTypes: [Ingress]\n"
                  "  ingress:\n  - action: Allow\n    from:\n    - podSelector: {matchLabels: {app: client}}\n"
                  "    ports:\n    - {protocol: TCP, port: 80}\n")
        self.assertIn("segmentpolicy.microseg.io/allow-web created",
                      kubectl("apply", "-f", write("sp.yaml", policy)).stdout)
        self.assertIn("allow-web", kubectl("get", "segmentpolicies", "-n", "kc-cr").stdout)
        reversed_range = policy.replace("name: allow-web", "name: reversed").replace(
            "{protocol: TCP, port: 80}", "{protocol: TCP, port: 90, endPort: 80}")
        rejected = kubectl("apply", "-f", write("reversed.yaml", reversed_range), check=False)
        self.assertNotEqual(rejected.returncode, 0)
        self.assertIn("endPort needs a numeric port and must not be below it", rejected.stderr)  # a CEL rule
        typo = policy.replace("name: allow-web", "name: typo").replace("policyTypes:", "polcyTypes:")
        rejected = kubectl("apply", "-f", write("typo.yaml", typo), check=False)
        self.assertNotEqual(rejected.returncode, 0)
        self.assertIn('strict decoding error: unknown field "spec.polcyTypes"', rejected.stderr)
        kubectl("apply", "--validate=false", "-f", write("typo.yaml", typo))  # unknown fields pruned
        pruned = json.loads(kubectl("get", "segpol", "typo", "-n", "kc-cr", "-o", "json").stdout)
        self.assertNotIn("polcyTypes", pruned["spec"])
        self.assertIn("allow-web", kubectl("get", "segpol", "-A").stdout)
        got = json.loads(kubectl("get", "segmentpolicy", "allow-web", "-n", "kc-cr", "-o", "json").stdout)
        self.assertEqual(got["metadata"]["generation"], 1)
        changed = policy.replace("port: 80", "port: 8080")
        self.assertIn("configured", kubectl("apply", "-f", write("sp.yaml", changed)).stdout)
        got = json.loads(kubectl("get", "segpol", "allow-web", "-n", "kc-cr", "-o", "json").stdout)
        self.assertEqual(got["metadata"]["generation"], 2)
        self.assertEqual(got["spec"]["ingress"][0]["ports"][0]["port"], 8080)
        kubectl("patch", "segpol", "allow-web", "-n", "kc-cr", "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"conditions": [{"type": "Accepted", "status": "True", "reason": "Valid",
                                                       "message": "", "observedGeneration": 2,
                                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        kubectl("wait", "--for", "condition=Accepted", "--timeout=30s", "segpol/allow-web", "-n", "kc-cr")
        self.assertEqual(json.loads(kubectl("get", "segpol", "allow-web", "-n", "kc-cr", "-o", "json").stdout)
                         ["metadata"]["generation"], 2)
        cluster = ("apiVersion: microseg.io/v1alpha1\nkind: ClusterSegmentPolicy\nmetadata: {name: baseline}\n"
                   "spec:\n  priority: 100\n  subject: {namespaceSelector: {}}\n  ingress:\n  - action: Pass\n")
        kubectl("apply", "-f", write("csp.yaml", cluster))
        self.assertIn("clustersegmentpolicy.microseg.io/baseline", kubectl("get", "csp", "-o", "name").stdout)
        raw = json.loads(kubectl("get", "--raw", "/apis/microseg.io/v1alpha1").stdout)
        self.assertEqual(raw["groupVersion"], "microseg.io/v1alpha1")
        self.assertIn("deleted", kubectl("delete", "segpol", "allow-web", "typo", "-n", "kc-cr").stdout)
        self.assertIn("No resources found", kubectl("get", "segpol", "-n", "kc-cr").stderr)

    def test_4_token_file_rotation(self):
        SERVER.write_kubeconfig(os.path.join(WORKDIR, "kubeconfig"), use_token_file=True)
        kubectl("get", "ns")
        SERVER.rotate_token()
        kubectl("get", "ns")  # kubectl reads the rotated token file
        stale = SERVER.kubeconfig()
        stale["users"][0]["user"] = {"token": "not-the-token"}
        write("stale-kubeconfig", stale)
        proc = subprocess.run([KUBECTL, "--kubeconfig", os.path.join(WORKDIR, "stale-kubeconfig"), "get", "ns"],
                              capture_output=True, text=True, env=dict(os.environ, HOME=WORKDIR), timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("the server has asked for the client to provide credentials", proc.stderr)  # kubectl's 401


def find_kubectl(given: str | None) -> str | None:
    for candidate in (given, os.path.join(REPO, "build", "kube-tools", "bin", "kubectl")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("kubectl")


def main() -> int:
    global KUBECTL, SERVER, WORKDIR
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubectl", help="kubectl binary (default: <build>/kube-tools/bin/kubectl, then PATH)")
    args, rest = parser.parse_known_args()
    KUBECTL = find_kubectl(args.kubectl)
    if not KUBECTL:
        print("SKIPPED: needs kubectl (scripts/fetch-kube-tools.sh puts it in build/kube-tools/bin)")
        return 77
    if shutil.which("openssl") is None:
        print("SKIPPED: needs openssl (scripts/setup.sh installs it)")
        return 77
    print(f"kubectl: {KUBECTL}", flush=True)
    WORKDIR = tempfile.mkdtemp(prefix="ms-kubectl-")
    SERVER = TestApiServer(os.path.join(WORKDIR, "server"))
    ok = False
    try:
        SERVER.start()
        SERVER.write_kubeconfig(os.path.join(WORKDIR, "kubeconfig"))
        program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        ok = program.result.wasSuccessful()
    finally:
        SERVER.stop()
        if not ok:
            print(f"server log:\n{SERVER.log_tail(50)}")
        shutil.rmtree(WORKDIR, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
