#!/usr/bin/env python3
"""The CRDs: generated files up to date and identical in crds/ and the chart,
structural schemas, the contract's names, and a table of objects that must be
accepted or rejected (with the reason) by the schemas, CEL rules included
through their Python twins. Every example in deploy/examples/ must validate.
"""

from __future__ import annotations

import copy
import pathlib
import subprocess
import sys
import unittest

import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "crds"))

import generate  # noqa: E402  crds/generate.py
from openapi_subset import structural_problems, validate, with_defaults  # noqa: E402

CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))


def load_crds() -> dict[str, dict]:
    out = {}
    for path in CRD_FILES:
        crd = yaml.safe_load(path.read_text())
        out[crd["spec"]["names"]["kind"]] = crd
    return out


CRDS = load_crds()


def schema_of(kind: str) -> dict:
    return CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def errors_of(obj: dict) -> list[str]:
    schema = schema_of(obj["kind"])
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    return validate(schema, with_defaults(schema, body), generate.CEL_TWINS)


SEGPOL = {
    "apiVersion": "microseg.io/v1alpha1", "kind": "SegmentPolicy",
    "metadata": {"name": "p", "namespace": "n"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 80}]}],
        "egress": [{"action": "Deny", "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}],
    },
}
CSP = {
    "apiVersion": "microseg.io/v1alpha1", "kind": "ClusterSegmentPolicy",
    "metadata": {"name": "c"},
    "spec": {
        "priority": 10,
        "subject": {"namespaceSelector": {"matchLabels": {"team": "a"}}},
        "ingress": [{"action": "Pass", "from": [{"namespaceSelector": {}}]}],
        "egress": [{"action": "Allow", "to": [{"podSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}],
    },
}


def edited(base: dict, path: list, value) -> dict:
    """`base` with the field at `path` set (or removed when value is DELETE)."""
    obj = copy.deepcopy(base)
    node = obj
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return obj


DELETE = object()
IN_PORT = ["spec", "ingress", 0, "ports", 0]
IN_PEER = ["spec", "ingress", 0, "from", 0]
CIDR = ["spec", "egress", 0, "to", 0, "ipBlock", "cidr"]

# (name, object, None when valid else a fragment of the expected error)
CASES = [
    ("segpol base", SEGPOL, None),
    ("csp base", CSP, None),
    ("named port", edited(SEGPOL, IN_PORT + ["port"], "http-alt"), None),
    # Constant-cost CEL only (see crds/generate.py): the agent rejects these.
    ("port name with capitals: the agent's job", edited(SEGPOL, IN_PORT + ["port"], "HTTP"), None),
    ("port name double hyphen: the agent's job", edited(SEGPOL, IN_PORT + ["port"], "a--b"), None),
    ("port range", edited(SEGPOL, IN_PORT, {"port": 8000, "endPort": 8080}), None),
    ("endPort equal to port", edited(SEGPOL, IN_PORT, {"port": 8000, "endPort": 8000}), None),
    ("protocol only", edited(SEGPOL, IN_PORT, {"protocol": "SCTP"}), None),
    ("ipv6 cidr", edited(SEGPOL, CIDR, "2001:db8::/32"), None),
    ("host cidr", edited(SEGPOL, CIDR, "192.168.1.1/32"), None),
    ("audit", edited(SEGPOL, ["spec", "enforcement"], "Audit"), None),
    ("appProtocol is in the schema", edited(SEGPOL, IN_PORT + ["appProtocol"], "http"), None),
    ("exists without values", edited(SEGPOL, ["spec", "podSelector"],
                                     {"matchExpressions": [{"key": "a", "operator": "Exists"}]}), None),
    ("csp priority 0", edited(CSP, ["spec", "priority"], 0), None),
    ("csp priority 1000", edited(CSP, ["spec", "priority"], 1000), None),
    ("csp without subject", edited(CSP, ["spec", "subject"], DELETE), None),

    ("port 0", edited(SEGPOL, IN_PORT + ["port"], 0), "port must be a number within 1..65535"),
    ("port 65536", edited(SEGPOL, IN_PORT + ["port"], 65536), "port must be a number within 1..65535"),
    ("port name too long", edited(SEGPOL, IN_PORT + ["port"], "a" * 16), "longer than 15"),
    ("port name empty", edited(SEGPOL, IN_PORT + ["port"], ""), "port name of 1..15 characters"),
    ("port as float", edited(SEGPOL, IN_PORT + ["port"], 80.5), "integer or a string"),
    ("endPort below port", edited(SEGPOL, IN_PORT, {"port": 8080, "endPort": 8000}), "endPort"),
    ("endPort without port", edited(SEGPOL, IN_PORT, {"endPort": 8000}), "endPort"),
    ("endPort with named port", edited(SEGPOL, IN_PORT, {"port": "http", "endPort": 8000}), "endPort"),
    ("endPort 70000", edited(SEGPOL, IN_PORT, {"port": 1, "endPort": 70000}), "above 65535"),
    ("protocol ICMP", edited(SEGPOL, IN_PORT + ["protocol"], "ICMP"), "must be one of ['TCP', 'UDP', 'SCTP']"),
    ("protocol lowercase", edited(SEGPOL, IN_PORT + ["protocol"], "tcp"), "must be one of"),
    ("cidr without prefix", edited(SEGPOL, CIDR, "10.0.0.0"), "does not match"),
    ("cidr octet 256", edited(SEGPOL, CIDR, "10.0.0.256/32"), "does not match"),
    ("cidr prefix 33", edited(SEGPOL, CIDR, "10.0.0.0/33"), "does not match"),
    ("cidr garbage", edited(SEGPOL, CIDR, "not-a-cidr"), "does not match"),
    ("except bad", edited(SEGPOL, ["spec", "egress", 0, "to", 0, "ipBlock", "except"], ["10.1.0.0/99"]),
     "does not match"),
    ("ipBlock without cidr", edited(SEGPOL, ["spec", "egress", 0, "to", 0, "ipBlock"], {}), "cidr is required"),
    ("ipBlock with podSelector", edited(SEGPOL, IN_PEER, {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}),
     "either an ipBlock"),
    ("empty peer", edited(SEGPOL, IN_PEER, {}), "fewer than 1 properties"),
    ("segpol action Pass", edited(SEGPOL, ["spec", "egress", 0, "action"], "Pass"), "must be one of"),
    ("enforcement bad", edited(SEGPOL, ["spec", "enforcement"], "DryRun"), "must be one of"),
    ("policyTypes bad", edited(SEGPOL, ["spec", "policyTypes"], ["Inbound"]), "must be one of"),
    ("policyTypes duplicate", edited(SEGPOL, ["spec", "policyTypes"], ["Ingress", "Ingress"]), "duplicate"),
    ("podSelector missing", edited(SEGPOL, ["spec", "podSelector"], DELETE), "podSelector is required"),
    ("bad operator", edited(SEGPOL, ["spec", "podSelector"],
                            {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
     "must be one of ['In', 'NotIn', 'Exists', 'DoesNotExist']"),
    ("In without values", edited(SEGPOL, ["spec", "podSelector"],
                                 {"matchExpressions": [{"key": "a", "operator": "In"}]}), "need values"),
    ("Exists with values", edited(SEGPOL, ["spec", "podSelector"],
                                  {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
     "take none"),
    ("unknown spec field", edited(SEGPOL, ["spec", "priority"], 5), "unknown field priority"),
    ("csp priority 1001", edited(CSP, ["spec", "priority"], 1001), "above 1000"),
    ("csp priority -1", edited(CSP, ["spec", "priority"], -1), "below 0"),
    ("csp priority missing", edited(CSP, ["spec", "priority"], DELETE), "priority is required"),
    ("csp priority string", edited(CSP, ["spec", "priority"], "10"), "type integer"),
    ("csp rule without action", edited(CSP, ["spec", "ingress", 0, "action"], DELETE), "action is required"),
    ("csp action Log", edited(CSP, ["spec", "ingress", 0, "action"], "Log"), "must be one of"),
    ("csp enforcement is not part of it", edited(CSP, ["spec", "enforcement"], "Audit"), "unknown field"),
    ("spec missing", edited(SEGPOL, ["spec"], DELETE), "spec is required"),
]


class Generated(unittest.TestCase):
    def test_files_are_what_the_generator_writes(self):
        run = subprocess.run([sys.executable, str(REPO / "crds" / "generate.py"), "--check"],
                             capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)

    def test_chart_ships_the_same_crds(self):
        chart = REPO / "deploy" / "helm" / "microseg" / "crds"
        self.assertEqual(sorted(p.name for p in chart.glob("*.yaml")), [p.name for p in CRD_FILES])
        for path in CRD_FILES:
            self.assertEqual((chart / path.name).read_bytes(), path.read_bytes(), path.name)

    def test_every_cel_rule_has_a_twin_and_is_used(self):
        used = set()

        def walk(node):
            if isinstance(node, dict):
                for rule in node.get("x-kubernetes-validations", []):
                    used.add(rule["rule"])
                for child in node.values():
                    walk(child)
            elif isinstance(node, list):
                for child in node:
                    walk(child)
        walk(CRDS)
        self.assertEqual(used, set(generate.CEL_TWINS))
        # Constant estimated cost only: string scans and list macros multiply
        # with the list bounds and can push the CRD over the apiserver's budget.
        for rule in used:
            for costly in ("matches(", "contains(", "startsWith(", "endsWith(", ".all(", ".exists(", ".map(",
                           ".filter(", "split("):
                self.assertNotIn(costly, rule)


class Contract(unittest.TestCase):
    def test_names_scope_and_subresources(self):
        expect = {"SegmentPolicy": ("segmentpolicies", "segpol", "Namespaced"),
                  "ClusterSegmentPolicy": ("clustersegmentpolicies", "csp", "Cluster")}
        self.assertEqual(set(CRDS), set(expect))
        for kind, (plural, short, scope) in expect.items():
            spec = CRDS[kind]["spec"]
            self.assertEqual(CRDS[kind]["apiVersion"], "apiextensions.k8s.io/v1")
            self.assertEqual(CRDS[kind]["metadata"]["name"], f"{plural}.microseg.io")
            self.assertEqual(spec["group"], "microseg.io")
            self.assertEqual(spec["scope"], scope)
            self.assertEqual(spec["names"]["plural"], plural)
            self.assertEqual(spec["names"]["shortNames"], [short])
            self.assertIn("microseg", spec["names"]["categories"])
            (version,) = spec["versions"]
            self.assertEqual((version["name"], version["served"], version["storage"]), ("v1alpha1", True, True))
            self.assertEqual(version["subresources"], {"status": {}})
            columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
            self.assertEqual(columns["Accepted"], '.status.conditions[?(@.type=="Accepted")].status')
            self.assertEqual(columns["Age"], ".metadata.creationTimestamp")
            cond = schema_of(kind)["properties"]["status"]["properties"]["conditions"]
            self.assertEqual(cond["x-kubernetes-list-map-keys"], ["type"])
            self.assertEqual(set(cond["items"]["properties"]),
                             {"type", "status", "reason", "message", "observedGeneration", "lastTransitionTime"})

    def test_schemas_are_structural(self):
        for kind in CRDS:
            self.assertEqual(structural_problems(schema_of(kind)), [], kind)

    def test_structural_check_can_fail(self):
        self.assertTrue(structural_problems({"type": "object", "properties": {"x": {}}}))
        self.assertTrue(structural_problems({"type": "object", "properties": {
            "x": {"type": "object", "anyOf": [{"type": "string"}]}}}))
        self.assertTrue(structural_problems({"type": "array"}))

    def test_defaults(self):
        stored = with_defaults(schema_of("SegmentPolicy"), {"spec": SEGPOL["spec"]})
        self.assertEqual(stored["spec"]["enforcement"], "Enforce")
        self.assertEqual(stored["spec"]["ingress"][0]["action"], "Allow")
        self.assertEqual(stored["spec"]["egress"][0]["action"], "Deny")


class Objects(unittest.TestCase):
    def test_table(self):
        for name, obj, expected in CASES:
            with self.subTest(name):
                errors = errors_of(obj)
                if expected is None:
                    self.assertEqual(errors, [])
                else:
                    self.assertTrue(any(expected in e for e in errors), f"want '{expected}', got {errors}")

    def test_examples_validate(self):
        seen = set()
        for path in sorted((REPO / "deploy" / "examples").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc is None or doc.get("kind") not in CRDS:
                    continue
                seen.add(doc["kind"])
                with self.subTest(f"{path.name} {doc['metadata']['name']}"):
                    self.assertEqual(doc["apiVersion"], "microseg.io/v1alpha1")
                    self.assertEqual("namespace" in doc["metadata"], doc["kind"] == "SegmentPolicy")
                    self.assertEqual(errors_of(doc), [])
        self.assertEqual(seen, set(CRDS), "examples of every kind")


if __name__ == "__main__":
    unittest.main(verbosity=1)
