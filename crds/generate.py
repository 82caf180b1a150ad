#!/usr/bin/env python3
"""The one source of the microseg CustomResourceDefinitions.

Writes crds/*.yaml and the Helm chart's copies (deploy/helm/microseg/crds/),
byte for byte the same. `--check` writes nothing and fails when a file on disk
differs from what this script produces (a ctest runs it), so the YAML that
users apply and the chart ships can only change through here.

Every CEL rule (x-kubernetes-validations) is declared together with a Python
twin of the same predicate (CEL_TWINS): the schema test evaluates the twins on
its example objects, so each rule's meaning is tested, not only its presence.
The Python validator cannot prove the CEL text itself compiles; the rules use
only the core CEL functions kube-apiserver has had since 1.25 (has, size,
type), nothing of the 1.31 IP/CIDR library.

Usage: crds/generate.py [--check]
Needs PyYAML (Debian: python3-yaml).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import yaml

GROUP = "microseg.io"
VERSION = "v1alpha1"
REPO = pathlib.Path(__file__).resolve().parent.parent
OUTPUT_DIRS = (REPO / "crds", REPO / "deploy" / "helm" / "microseg" / "crds")

# Bounds keep every CEL rule's estimated cost within kube-apiserver's budget
# (the cost of a rule is multiplied by the largest number of times it can run)
# and are far above what a sane policy needs.
MAX_RULES = 100
MAX_PEERS = 100
MAX_PORTS = 100
MAX_EXPRESSIONS = 20
MAX_VALUES = 100
MAX_EXCEPT = 64

# IPv4 with each octet 0..255 and prefix 0..32; IPv6 loosely (hex groups, "::"
# compression, prefix 0..128) — the agent parses and rejects what slips by.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_CIDR = rf"{_OCTET}(\.{_OCTET}){{3}}/(3[0-2]|[12]?[0-9])"
IPV6_CIDR = r"[0-9a-fA-F:]*:[0-9a-fA-F:]*(:(" + IPV4_CIDR.split("/")[0] + r"))?/(12[0-8]|1[01][0-9]|[1-9]?[0-9])"
CIDR_PATTERN = rf"^({IPV4_CIDR}|{IPV6_CIDR})$"

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# CEL rule text -> (message, Python twin). The twin receives the object the
# rule is attached to, as kube-apiserver hands `self` to the rule.
#
# Every rule has a constant estimated cost (has, size, type, integer and enum
# comparisons on bounded strings): kube-apiserver rejects a CRD whose rules'
# worst-case cost, multiplied by the list bounds around them, exceeds its
# budget, and before 1.34 it takes an int-or-string as an unbounded string
# whatever its maxLength. So no matches() on the port: the syntax of a named
# port (IANA_SVC_NAME) is checked by the agent, which rejects the object with
# the reason.
CEL_TWINS = {
    "type(self) == int ? (self >= 1 && self <= 65535) : (size(self) >= 1 && size(self) <= 15)": (
        "port must be a number within 1..65535 or a port name of 1..15 characters",
        lambda v: (1 <= v <= 65535) if _is_int(v) else 1 <= len(v) <= 15,
    ),
    "!has(self.endPort) || (has(self.port) && type(self.port) == int && self.endPort >= self.port)": (
        "endPort needs a numeric port and must not be below it",
        lambda p: "endPort" not in p or (_is_int(p.get("port")) and p["endPort"] >= p["port"]),
    ),
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : "
    "(!has(self.values) || size(self.values) == 0)": (
        "operators In and NotIn need values; Exists and DoesNotExist take none",
        lambda e: (len(e.get("values") or []) > 0) if e.get("operator") in ("In", "NotIn")
        else len(e.get("values") or []) == 0,
    ),
    "!has(self.ipBlock) || (!has(self.podSelector) && !has(self.namespaceSelector))": (
        "a peer is either an ipBlock or pod/namespace selectors, not both",
        lambda p: "ipBlock" not in p or ("podSelector" not in p and "namespaceSelector" not in p),
    ),
}


def cel(rule: str) -> dict:
    message, _ = CEL_TWINS[rule]
    return {"rule": rule, "message": message}


RULE_PORT, RULE_END_PORT, RULE_SELECTOR_VALUES, RULE_PEER_EXCLUSIVE = CEL_TWINS


def label_selector(description: str) -> dict:
    return {
        "type": "object",
        "description": description,
        "properties": {
            "matchLabels": {
                "type": "object",
                "description": "Labels that must all be present with these values.",
                "maxProperties": 64,
                "additionalProperties": {"type": "string", "maxLength": 63},
            },
            "matchExpressions": {
                "type": "array",
                "description": "Requirements that must all hold (ANDed with matchLabels).",
                "maxItems": MAX_EXPRESSIONS,
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"type": "string", "minLength": 1, "maxLength": 317},
                        "operator": {"type": "string", "maxLength": 12,
                                     "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {
                            "type": "array",
                            "maxItems": MAX_VALUES,
                            "items": {"type": "string", "maxLength": 63},
                        },
                    },
                    "x-kubernetes-validations": [cel(RULE_SELECTOR_VALUES)],
                },
            },
        },
        "x-kubernetes-map-type": "atomic",
    }


def ip_block() -> dict:
    return {
        "type": "object",
        "description": "An IP range (CIDR) with optional holes.",
        "required": ["cidr"],
        "properties": {
            "cidr": {"type": "string", "maxLength": 49, "pattern": CIDR_PATTERN,
                     "description": "e.g. 10.0.0.0/8 or 2001:db8::/32."},
            "except": {
                "type": "array",
                "description": "CIDRs inside cidr that are not part of the block.",
                "maxItems": MAX_EXCEPT,
                "items": {"type": "string", "maxLength": 49, "pattern": CIDR_PATTERN},
            },
        },
    }


def peer(namespaced: bool) -> dict:
    pods = ("Pods in the policy's namespace (or in the namespaces namespaceSelector picks) with these labels."
            if namespaced else "Pods with these labels (in the namespaces namespaceSelector picks; all without it).")
    return {
        "type": "object",
        "description": "One peer: pods by labels, namespaces by labels, or an IP block.",
        "minProperties": 1,
        "properties": {
            "podSelector": label_selector(pods),
            "namespaceSelector": label_selector("Namespaces with these labels ({} is every namespace)."),
            "ipBlock": ip_block(),
        },
        "x-kubernetes-validations": [cel(RULE_PEER_EXCLUSIVE)],
    }


def port() -> dict:
    return {
        "type": "object",
        "description": "A port (or range) and protocol; no port means every port of the protocol.",
        "properties": {
            "protocol": {"type": "string", "enum": ["TCP", "UDP", "SCTP"], "default": "TCP"},
            "port": {
                "description": "Number (1..65535) or the name of a container port.",
                "x-kubernetes-int-or-string": True,
                "maxLength": 15,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-validations": [cel(RULE_PORT)],
            },
            "endPort": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535,
                        "description": "Last port of a range starting at port (numeric port only)."},
            "appProtocol": {"type": "string", "maxLength": 63,
                            "description": "Application protocol. Part of the API; the agent rejects it as "
                                           "not supported yet."},
        },
        "x-kubernetes-validations": [cel(RULE_END_PORT)],
    }


def rules(direction: str, peer_field: str, namespaced: bool) -> dict:
    if namespaced:
        action = {"type": "string", "enum": ["Allow", "Deny"], "default": "Allow",
                  "description": "What a match does: Allow (default) or Deny (any matching Deny wins)."}
    else:
        action = {"type": "string", "enum": ["Allow", "Deny", "Pass"],
                  "description": "What the first matching rule does: Allow or Deny (final), or Pass (skip the "
                                 "rest of the cluster tier; namespace policies decide)."}
    item = {
        "type": "object",
        "description": f"One {direction} rule: it matches when a peer and a port match.",
        "properties": {
            peer_field: {"type": "array", "maxItems": MAX_PEERS, "items": peer(namespaced),
                         "description": "Peers; empty or absent means every peer."},
            "ports": {"type": "array", "maxItems": MAX_PORTS, "items": port(),
                      "description": "Ports; empty or absent means every port."},
            "action": action,
        },
    }
    if not namespaced:
        item["required"] = ["action"]
    return {"type": "array", "maxItems": MAX_RULES, "items": item,
            "description": f"{direction.capitalize()} rules."}


def policy_types() -> dict:
    return {
        "type": "array",
        "description": "Directions this policy covers (as NetworkPolicy: default Ingress, plus Egress when egress "
                       "rules exist).",
        "maxItems": 2,
        "x-kubernetes-list-type": "set",
        "items": {"type": "string", "enum": ["Ingress", "Egress"]},
    }


def status() -> dict:
    return {
        "type": "object",
        "description": "Written by the microseg agent holding the status Lease.",
        "properties": {
            "conditions": {
                "type": "array",
                "description": "Accepted: True when the agents enforce this policy, False with the reason it "
                               "was rejected (the last good version stays in force).",
                "maxItems": 8,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": {
                    "type": "object",
                    "required": ["type", "status"],
                    "properties": {
                        "type": {"type": "string", "maxLength": 316},
                        "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                        "reason": {"type": "string", "maxLength": 1024},
                        "message": {"type": "string", "maxLength": 32768},
                        "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                        "lastTransitionTime": {"type": "string", "format": "date-time"},
                    },
                },
            },
        },
    }


def segment_policy_spec() -> dict:
    return {
        "type": "object",
        "description": "A NetworkPolicy with per-rule Allow/Deny and an audit mode.",
        "required": ["podSelector"],
        "properties": {
            "podSelector": label_selector("Pods of this namespace the policy applies to ({} is all)."),
            "policyTypes": policy_types(),
            "enforcement": {"type": "string", "enum": ["Enforce", "Audit"], "default": "Enforce",
                            "description": "Audit: computed and counted (ALLOW_AUDIT) but never drops."},
            "ingress": rules("ingress", "from", True),
            "egress": rules("egress", "to", True),
        },
    }


def cluster_policy_spec() -> dict:
    return {
        "type": "object",
        "description": "Cluster-wide rules evaluated before namespace policies, lowest priority first.",
        "required": ["priority"],
        "properties": {
            "priority": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 1000,
                         "description": "Order among cluster policies: lower first (ties by name)."},
            "subject": {
                "type": "object",
                "description": "Pods the policy applies to: both selectors must match (absent: all).",
                "properties": {
                    "namespaceSelector": label_selector("Namespaces of the subject pods."),
                    "podSelector": label_selector("Labels of the subject pods."),
                },
            },
            "policyTypes": policy_types(),
            "ingress": rules("ingress", "from", False),
            "egress": rules("egress", "to", False),
        },
    }


ACCEPTED = '.status.conditions[?(@.type=="Accepted")]'


def crd(kind: str, plural: str, short: str, scope: str, spec: dict, columns: list[dict]) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "microseg", "app.kubernetes.io/part-of": "microseg"},
        },
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["microseg", "networking"],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns + [
                    {"name": "Accepted", "type": "string", "jsonPath": f"{ACCEPTED}.status"},
                    {"name": "Reason", "type": "string", "jsonPath": f"{ACCEPTED}.reason", "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": f"{kind}: microseg micro-segmentation policy ({scope.lower()}).",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": status(),
                    },
                }},
            }],
        },
    }


def all_crds() -> dict[str, dict]:
    return {
        f"{GROUP}_segmentpolicies.yaml": crd(
            "SegmentPolicy", "segmentpolicies", "segpol", "Namespaced", segment_policy_spec(),
            [{"name": "Enforcement", "type": "string", "jsonPath": ".spec.enforcement"},
             {"name": "Types", "type": "string", "jsonPath": ".spec.policyTypes", "priority": 1}]),
        f"{GROUP}_clustersegmentpolicies.yaml": crd(
            "ClusterSegmentPolicy", "clustersegmentpolicies", "csp", "Cluster", cluster_policy_spec(),
            [{"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
             {"name": "Types", "type": "string", "jsonPath": ".spec.policyTypes", "priority": 1}]),
    }


def render(obj: dict) -> str:
    header = "# Generated by crds/generate.py: edit that script, then run it.\n"
    return header + yaml.safe_dump(obj, sort_keys=False, width=120, default_flow_style=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a file on disk is not what this writes")
    args = parser.parse_args()
    stale = []
    for name, obj in all_crds().items():
        text = render(obj)
        for out_dir in OUTPUT_DIRS:
            path = out_dir / name
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path.relative_to(REPO)))
            else:
                out_dir.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if stale:
        print("crds/generate.py --check: out of date (run crds/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
