"""NetworkPolicy conformance cases in the upstream Kubernetes test model.

Model: namespaces x, y, z (labelled ns=<name>; the agent adds the implicit
kubernetes.io/metadata.name=<name> itself, as the API server would), pods a, b,
c in each (labelled pod=<name>), every pod serving TCP and UDP on 80 and 81
with container ports named serve-80-tcp, serve-80-udp, serve-81-tcp,
serve-81-udp.

Each case is a list of steps. A step declares the WHOLE desired state: the
policy manifests present (everything else is removed), label overrides for pods
and namespaces (everything else has its model labels), and the expected verdict
of every probe as a plain predicate written from the NetworkPolicy
specification for that one situation. The predicates never look at selectors or
labels: they say in so many words who may talk to whom, so they cannot share a
bug with the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PORTS = (80, 81)
PROTOCOLS = ("tcp", "udp")


class PodId(NamedTuple):
    ns: str
    name: str

    def __str__(self) -> str:
        return f"{self.ns}/{self.name}"


X_A, X_B, X_C = PodId("x", "a"), PodId("x", "b"), PodId("x", "c")
Y_A, Y_B, Y_C = PodId("y", "a"), PodId("y", "b"), PodId("y", "c")
Z_A, Z_B, Z_C = PodId("z", "a"), PodId("z", "b"), PodId("z", "c")
ALL_PODS = tuple(PodId(ns, name) for ns in NAMESPACES for name in POD_NAMES)

# expect(source, destination, proto, port) -> True when the probe must get its echo back
Expect = Callable[[PodId, PodId, str, int], bool]


def model_pod_labels(pod: PodId) -> dict:
    return {"pod": pod.name}


def model_namespace_labels(ns: str) -> dict:
    return {"ns": ns}


def container_port_name(port: int, proto: str) -> str:
    return f"serve-{port}-{proto}"


@dataclass
class Step:
    title: str
    expect: Expect
    policies: dict[str, dict] = field(default_factory=dict)  # manifest file name -> NetworkPolicy object
    pod_labels: dict[PodId, dict] = field(default_factory=dict)  # overrides of the model labels
    namespace_labels: dict[str, dict] = field(default_factory=dict)
    # After the probes: the agent's metrics ({'name{labels}': value}) -> what
    # is still missing, None when all is there (polled for a few seconds).
    metrics_expect: Callable[[dict[str, float]], str | None] | None = None


@dataclass
class Case:
    name: str
    steps: list[Step]


class Context(NamedTuple):
    """What some cases need to know about the running cluster."""
    pod_ip: dict  # PodId -> "10.244.N.M"
    pod_subnet: str  # the node's pod CIDR, e.g. "10.244.N.0/24"


def netpol(ns: str, name: str, pod_selector: dict, ingress: list | None = None, egress: list | None = None,
           policy_types: list[str] | None = None) -> dict:
    spec: dict = {"podSelector": pod_selector}
    if policy_types is not None:
        spec["policyTypes"] = policy_types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def segpol(ns: str, name: str, pod_selector: dict, ingress: list | None = None, egress: list | None = None,
           enforcement: str | None = None, policy_types: list[str] | None = None) -> dict:
    """microseg.io SegmentPolicy: a NetworkPolicy whose rules may say action: Deny, optionally audited."""
    obj = netpol(ns, name, pod_selector, ingress, egress, policy_types)
    obj["apiVersion"], obj["kind"] = "microseg.io/v1alpha1", "SegmentPolicy"
    if enforcement is not None:
        obj["spec"]["enforcement"] = enforcement
    return obj


def csp(name: str, priority: int, subject: dict | None = None, ingress: list | None = None,
        egress: list | None = None, policy_types: list[str] | None = None) -> dict:
    """microseg.io ClusterSegmentPolicy (cluster-scoped; every rule has an action)."""
    spec: dict = {"priority": priority}
    if subject is not None:
        spec["subject"] = subject
    if policy_types is not None:
        spec["policyTypes"] = policy_types
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "microseg.io/v1alpha1", "kind": "ClusterSegmentPolicy",
            "metadata": {"name": name}, "spec": spec}


def labels(**kv: str) -> dict:
    return {"matchLabels": dict(kv)}


def one(name: str, policy: dict) -> dict[str, dict]:
    return {f"netpol-{name}.yaml": policy}


def everything(s: PodId, d: PodId, proto: str, port: int) -> bool:
    return True


def build_cases(ctx: Context) -> list[Case]:
    cases: list[Case] = []

    def case(name: str, *steps: Step) -> None:
        cases.append(Case(name, list(steps)))

    case("no policies: everything allowed",
         Step("no policy objects", everything))

    case("default-deny ingress in x",
         Step("podSelector {} in x, policyTypes [Ingress], no rules",
              lambda s, d, proto, port: d.ns != "x",
              one("deny-ingress", netpol("x", "deny-ingress", {}, policy_types=["Ingress"]))))

    case("allow ingress to x/a from pod=b in the same namespace",
         Step("x/a: from podSelector pod=b",
              lambda s, d, proto, port: d != X_A or s == X_B,
              one("a-from-b", netpol("x", "a-from-b", labels(pod="a"),
                                     ingress=[{"from": [{"podSelector": labels(pod="b")}]}]))))

    case("allow ingress to x/a from namespace ns=y",
         Step("x/a: from namespaceSelector ns=y",
              lambda s, d, proto, port: d != X_A or s.ns == "y",
              one("a-from-ns-y", netpol("x", "a-from-ns-y", labels(pod="a"),
                                        ingress=[{"from": [{"namespaceSelector": labels(ns="y")}]}]))))

    case("namespaceSelector on the implicit kubernetes.io/metadata.name label",
         Step("x/a: from namespaceSelector kubernetes.io/metadata.name=z",
              lambda s, d, proto, port: d != X_A or s.ns == "z",
              one("a-from-name-z", netpol("x", "a-from-name-z", labels(pod="a"), ingress=[
                  {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}]))))

    case("podSelector AND namespaceSelector in one peer",
         Step("x/a: from one peer {namespaceSelector ns=y, podSelector pod=b}",
              lambda s, d, proto, port: d != X_A or s == Y_B,
              one("a-from-y-and-b", netpol("x", "a-from-y-and-b", labels(pod="a"), ingress=[
                  {"from": [{"namespaceSelector": labels(ns="y"), "podSelector": labels(pod="b")}]}]))))

    case("podSelector OR namespaceSelector as two peers",
         Step("x/a: from peers [namespaceSelector ns=y] or [podSelector pod=b] (the latter: x only)",
              lambda s, d, proto, port: d != X_A or s.ns == "y" or s == X_B,
              one("a-from-y-or-b", netpol("x", "a-from-y-or-b", labels(pod="a"), ingress=[
                  {"from": [{"namespaceSelector": labels(ns="y")}, {"podSelector": labels(pod="b")}]}]))))

    case("matchExpressions In / NotIn / Exists",
         Step("x/a: from podSelector pod In [b, c] in namespaces ns NotIn [x] with ns Exists",
              lambda s, d, proto, port: d != X_A or (s.ns != "x" and s.name in ("b", "c")),
              one("a-expressions", netpol("x", "a-expressions", labels(pod="a"), ingress=[
                  {"from": [{"namespaceSelector": {"matchExpressions": [
                                {"key": "ns", "operator": "NotIn", "values": ["x"]},
                                {"key": "ns", "operator": "Exists"}]},
                             "podSelector": {"matchExpressions": [
                                {"key": "pod", "operator": "In", "values": ["b", "c"]}]}}]}]))))

    y_b_ip = ctx.pod_ip[Y_B]
    case("ipBlock with except, pod addresses included",
         Step(f"x/a: from ipBlock {ctx.pod_subnet} except {y_b_ip}/32 (y/b)",
              lambda s, d, proto, port: d != X_A or s != Y_B,
              one("a-from-ipblock", netpol("x", "a-from-ipblock", labels(pod="a"), ingress=[
                  {"from": [{"ipBlock": {"cidr": ctx.pod_subnet, "except": [f"{y_b_ip}/32"]}}]}]))))

    case("named ports resolved from the destination's container ports",
         Step("x/a: from anywhere, ports [serve-80-tcp, UDP serve-81-udp]",
              lambda s, d, proto, port: d != X_A or (proto, port) in (("tcp", 80), ("udp", 81)),
              one("a-named-ports", netpol("x", "a-named-ports", labels(pod="a"), ingress=[
                  {"ports": [{"port": "serve-80-tcp"}, {"protocol": "UDP", "port": "serve-81-udp"}]}]))))

    case("endPort ranges",
         Step("x/a: TCP port 80 endPort 81",
              lambda s, d, proto, port: d != X_A or proto == "tcp",
              one("a-range", netpol("x", "a-range", labels(pod="a"), ingress=[
                  {"ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}]))),
         # Wider than the 1,024 ports the agent once limited ranges to.
         Step("x/a: TCP port 81 endPort 60000 (80 is outside)",
              lambda s, d, proto, port: d != X_A or (proto, port) == ("tcp", 81),
              one("a-range", netpol("x", "a-range", labels(pod="a"), ingress=[
                  {"ports": [{"protocol": "TCP", "port": 81, "endPort": 60000}]}]))))

    case("protocol UDP only (no port: every UDP port)",
         Step("x/a: ports [{protocol: UDP}]",
              lambda s, d, proto, port: d != X_A or proto == "udp",
              one("a-udp", netpol("x", "a-udp", labels(pod="a"), ingress=[{"ports": [{"protocol": "UDP"}]}]))))

    case("egress default-deny in x; replies to allowed ingress still flow",
         Step("podSelector {} in x, policyTypes [Egress], no rules",
              # x pods open nothing, but y/z -> x gets its echo back (the reply is x's egress)
              lambda s, d, proto, port: s.ns != "x",
              one("deny-egress", netpol("x", "deny-egress", {}, policy_types=["Egress"]))))

    case("egress allow to ns=y on port 81",
         Step("podSelector {} in x: egress to namespaceSelector ns=y, TCP 81 and UDP 81",
              lambda s, d, proto, port: s.ns != "x" or (d.ns == "y" and port == 81),
              one("egress-y-81", netpol("x", "egress-y-81", {}, policy_types=["Egress"], egress=[
                  {"to": [{"namespaceSelector": labels(ns="y")}],
                   "ports": [{"protocol": "TCP", "port": 81}, {"protocol": "UDP", "port": 81}]}]))))

    case("egress of the source AND ingress of the destination must both allow",
         Step("x: egress only to pod=a (any ns); y/a: ingress only from ns=x",
              lambda s, d, proto, port: ((s.ns != "x" or d.name == "a") and (d != Y_A or s.ns == "x")),
              {"netpol-x-egress-to-a.yaml": netpol("x", "x-egress-to-a", {}, policy_types=["Egress"], egress=[
                  {"to": [{"namespaceSelector": {}, "podSelector": labels(pod="a")}]}]),
               "netpol-y-a-from-x.yaml": netpol("y", "y-a-from-x", labels(pod="a"), ingress=[
                   {"from": [{"namespaceSelector": labels(ns="x")}]}])}))

    case("several policies on one pod: union",
         Step("x/a: policy 1 from pod=b on TCP 80, policy 2 from ns=z on UDP 81",
              lambda s, d, proto, port: (d != X_A or (s == X_B and (proto, port) == ("tcp", 80))
                                         or (s.ns == "z" and (proto, port) == ("udp", 81))),
              {"netpol-a-from-b-tcp80.yaml": netpol("x", "a-from-b-tcp80", labels(pod="a"), ingress=[
                  {"from": [{"podSelector": labels(pod="b")}], "ports": [{"port": 80}]}]),
               "netpol-a-from-z-udp81.yaml": netpol("x", "a-from-z-udp81", labels(pod="a"), ingress=[
                   {"from": [{"namespaceSelector": labels(ns="z")}], "ports": [{"protocol": "UDP", "port": 81}]}])}))

    case("policy update and delete",
         Step("x/a: from pod=b",
              lambda s, d, proto, port: d != X_A or s == X_B,
              one("a-update", netpol("x", "a-update", labels(pod="a"),
                                     ingress=[{"from": [{"podSelector": labels(pod="b")}]}]))),
         Step("same policy changed: from pod=c",
              lambda s, d, proto, port: d != X_A or s == X_C,
              one("a-update", netpol("x", "a-update", labels(pod="a"),
                                     ingress=[{"from": [{"podSelector": labels(pod="c")}]}]))),
         Step("policy deleted", everything))

    a_from_b = one("relabel-pods", netpol("x", "relabel-pods", labels(pod="a"),
                                          ingress=[{"from": [{"podSelector": labels(pod="b")}]}]))
    case("pod relabel changes its verdicts (as source and as destination)",
         Step("x/a: from pod=b",
              lambda s, d, proto, port: d != X_A or s == X_B, a_from_b),
         Step("x/c relabelled pod=b: now allowed into x/a",
              lambda s, d, proto, port: d != X_A or s in (X_B, X_C), a_from_b,
              pod_labels={X_C: {"pod": "b"}}),
         Step("x/b relabelled pod=a: x/b is now isolated too and no longer a pod=b source",
              lambda s, d, proto, port: d not in (X_A, X_B) or s == X_C, a_from_b,
              pod_labels={X_C: {"pod": "b"}, X_B: {"pod": "a"}}),
         Step("labels restored", lambda s, d, proto, port: d != X_A or s == X_B, a_from_b))

    a_from_ns_y = one("relabel-ns", netpol("x", "relabel-ns", labels(pod="a"),
                                           ingress=[{"from": [{"namespaceSelector": labels(ns="y")}]}]))
    case("namespace relabel changes its pods' verdicts",
         Step("x/a: from ns=y",
              lambda s, d, proto, port: d != X_A or s.ns == "y", a_from_ns_y),
         Step("namespace z relabelled ns=y, namespace y relabelled ns=other",
              lambda s, d, proto, port: d != X_A or s.ns == "z", a_from_ns_y,
              namespace_labels={"z": {"ns": "y"}, "y": {"ns": "other"}}),
         Step("namespace labels restored",
              lambda s, d, proto, port: d != X_A or s.ns == "y", a_from_ns_y))

    # ---- microseg.io SegmentPolicy and ClusterSegmentPolicy ----
    case("SegmentPolicy: Deny wins over Allow in the namespace tier",
         Step("x/a: NetworkPolicy from ns=y; SegmentPolicy Deny from y/b",
              lambda s, d, proto, port: d != X_A or (s.ns == "y" and s != Y_B),
              {"netpol-a-from-y.yaml": netpol("x", "a-from-y", labels(pod="a"), ingress=[
                  {"from": [{"namespaceSelector": labels(ns="y")}]}]),
               "segpol-a-deny-y-b.yaml": segpol("x", "a-deny-y-b", labels(pod="a"), ingress=[
                   {"action": "Deny", "from": [{"namespaceSelector": labels(ns="y"), "podSelector": labels(pod="b")}]}])}),
         Step("the SegmentPolicy alone, Deny pod=b then Allow everyone",
              lambda s, d, proto, port: d != X_A or s != X_B,
              {"segpol-a-deny-y-b.yaml": segpol("x", "a-deny-y-b", labels(pod="a"), ingress=[
                  {"action": "Deny", "from": [{"podSelector": labels(pod="b")}]},
                  {"action": "Allow", "from": [{"namespaceSelector": {}}]}])}))

    def audit_events_of_x_audit(samples: dict[str, float]) -> str | None:
        """Both directions' would-be drops were reported under the policy's name."""
        missing = [direction for direction in ("ingress", "egress")
                   if not any(series.startswith("microseg_policy_audit_events_total{") and value > 0
                              and 'policy="x/x-audit"' in series and f'direction="{direction}"' in series
                              for series, value in samples.items())]
        return f"no microseg_policy_audit_events_total for x/x-audit, {' and '.join(missing)}" if missing else None

    case("SegmentPolicy in Audit mode drops nothing",
         Step("x: Audit SegmentPolicy denying all ingress and egress",
              everything,
              {"segpol-x-audit.yaml": segpol("x", "x-audit", {}, ingress=[{"action": "Deny"}],
                                             policy_types=["Ingress", "Egress"], enforcement="Audit")},
              metrics_expect=audit_events_of_x_audit),
         Step("the same policy switched to Enforce",
              lambda s, d, proto, port: s.ns != "x" and d.ns != "x",
              {"segpol-x-audit.yaml": segpol("x", "x-audit", {}, ingress=[{"action": "Deny"}],
                                             policy_types=["Ingress", "Egress"], enforcement="Enforce")}))

    case("ClusterSegmentPolicy Deny beats a namespace Allow",
         Step("cluster: pods in ns=x deny ingress from ns=z; x: NetworkPolicy allows everything",
              lambda s, d, proto, port: d.ns != "x" or s.ns != "z",
              {"csp-x-deny-z.yaml": csp("x-deny-z", 10, subject={"namespaceSelector": labels(ns="x")}, ingress=[
                  {"action": "Deny", "from": [{"namespaceSelector": labels(ns="z")}]}]),
               "netpol-x-allow-all.yaml": netpol("x", "x-allow-all", {}, ingress=[{}])}))

    case("ClusterSegmentPolicy priorities: the lower number decides first, Allow is final",
         Step("priority 1: x allows pod=c on TCP 80 (any namespace); priority 2: x denies all ingress",
              lambda s, d, proto, port: d.ns != "x" or (s.name == "c" and (proto, port) == ("tcp", 80)),
              {"csp-1-allow-c.yaml": csp("allow-c", 1, subject={"namespaceSelector": labels(ns="x")}, ingress=[
                  {"action": "Allow", "from": [{"podSelector": labels(pod="c")}],
                   "ports": [{"protocol": "TCP", "port": 80}]}]),
               "csp-2-deny-x.yaml": csp("deny-x", 2, subject={"namespaceSelector": labels(ns="x")},
                                        ingress=[{"action": "Deny"}])}),
         Step("priorities swapped: the Deny comes first",
              lambda s, d, proto, port: d.ns != "x",
              {"csp-1-allow-c.yaml": csp("allow-c", 3, subject={"namespaceSelector": labels(ns="x")}, ingress=[
                  {"action": "Allow", "from": [{"podSelector": labels(pod="c")}],
                   "ports": [{"protocol": "TCP", "port": 80}]}]),
               "csp-2-deny-x.yaml": csp("deny-x", 2, subject={"namespaceSelector": labels(ns="x")},
                                        ingress=[{"action": "Deny"}])}),
         Step("Deny deleted; a NetworkPolicy default-denies x: the cluster Allow still admits",
              lambda s, d, proto, port: d.ns != "x" or (s.name == "c" and (proto, port) == ("tcp", 80)),
              {"csp-1-allow-c.yaml": csp("allow-c", 3, subject={"namespaceSelector": labels(ns="x")}, ingress=[
                  {"action": "Allow", "from": [{"podSelector": labels(pod="c")}],
                   "ports": [{"protocol": "TCP", "port": 80}]}]),
               "netpol-x-deny.yaml": netpol("x", "x-deny", {}, policy_types=["Ingress"])}))

    case("ClusterSegmentPolicy Pass hands the decision to the namespace tier",
         Step("priority 1: x passes ns=y; priority 2: x denies all; x/a: NetworkPolicy from pod=b (any ns)",
              lambda s, d, proto, port: d.ns != "x" or (s.ns == "y" and (d != X_A or s.name == "b")),
              {"csp-pass-y.yaml": csp("pass-y", 1, subject={"namespaceSelector": labels(ns="x")}, ingress=[
                  {"action": "Pass", "from": [{"namespaceSelector": labels(ns="y")}]}]),
               "csp-deny-rest.yaml": csp("deny-rest", 2, subject={"namespaceSelector": labels(ns="x")},
                                         ingress=[{"action": "Deny"}]),
               "netpol-a-from-b.yaml": netpol("x", "a-from-b", labels(pod="a"), ingress=[
                   {"from": [{"namespaceSelector": {}, "podSelector": labels(pod="b")}]}])}))

    case("ClusterSegmentPolicy egress: endPort range and named port",
         Step("pods in ns=y deny egress to ns=z on TCP 80-81",
              lambda s, d, proto, port: not (s.ns == "y" and d.ns == "z" and proto == "tcp"),
              {"csp-y-egress.yaml": csp("y-egress", 5, subject={"namespaceSelector": labels(ns="y")}, egress=[
                  {"action": "Deny", "to": [{"namespaceSelector": labels(ns="z")}],
                   "ports": [{"protocol": "TCP", "port": 80, "endPort": 81}]}])}),
         Step("pods in ns=y deny egress to any pod's serve-81-udp",
              lambda s, d, proto, port: not (s.ns == "y" and (proto, port) == ("udp", 81)),
              {"csp-y-egress.yaml": csp("y-egress", 5, subject={"namespaceSelector": labels(ns="y")}, egress=[
                  {"action": "Deny", "to": [{"podSelector": {}}],
                   "ports": [{"protocol": "UDP", "port": "serve-81-udp"}]}])}))

    protect_a = {"csp-protect-a.yaml": csp("protect-a", 7, subject={"podSelector": labels(pod="a")}, ingress=[
        {"action": "Deny", "from": [{"namespaceSelector": labels(ns="y")}]}])}
    case("ClusterSegmentPolicy follows relabelling of subjects and peers",
         Step("pods pod=a (any namespace) deny ingress from ns=y",
              lambda s, d, proto, port: not (d.name == "a" and s.ns == "y"), protect_a),
         Step("x/b relabelled pod=a: it is protected too",
              lambda s, d, proto, port: not ((d.name == "a" or d == X_B) and s.ns == "y"), protect_a,
              pod_labels={X_B: {"pod": "a"}}),
         Step("namespace y relabelled ns=other: its pods are no longer denied",
              everything, protect_a, namespace_labels={"y": {"ns": "other"}}),
         Step("labels restored, policy deleted", everything))

    case("all policies removed: everything allowed again",
         Step("no policy objects", everything))
    return cases
