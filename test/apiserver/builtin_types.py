"""Per-type behaviour of the built-in resources: server-side defaults,
validation kube-apiserver would do (the parts our clients can hit), and the
resource types a CustomResourceDefinition makes servable."""

from __future__ import annotations

import copy
import ipaddress
import re

from resources import ResourceType

Cause = tuple[str, str, str]  # (field, reason, message)


def _is(rt: ResourceType, group: str, plural: str) -> bool:
    return rt.crd_name is None and rt.group == group and rt.plural == plural


def prepare_create(rt: ResourceType, obj: dict) -> None:
    if _is(rt, "", "namespaces"):
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
    elif _is(rt, "", "pods"):
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif _is(rt, "apiextensions.k8s.io", "customresourcedefinitions"):
        _default_crd(obj)
        names = obj["spec"]["names"]
        storage = [v["name"] for v in obj["spec"].get("versions", []) if v.get("storage")]
        obj["status"] = {
            "acceptedNames": copy.deepcopy(names),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": obj["metadata"]["creationTimestamp"]},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted",
                 "lastTransitionTime": obj["metadata"]["creationTimestamp"]},
            ],
            "storedVersions": storage,
        }
    _defaults(rt, obj)


def prepare_update(rt: ResourceType, new: dict, old: dict) -> None:
    if _is(rt, "apiextensions.k8s.io", "customresourcedefinitions"):
        _default_crd(new)
    _defaults(rt, new)


def _defaults(rt: ResourceType, obj: dict) -> None:
    if _is(rt, "", "namespaces"):
        # kube-apiserver labels every namespace with its name (1.21+), which
        # is what namespaceSelectors match namespaces by name with.
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif _is(rt, "", "pods"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            if isinstance(container, dict):
                for port in container.get("ports", []) or []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")
    elif _is(rt, "networking.k8s.io", "networkpolicies"):
        spec = obj.setdefault("spec", {})
        if not spec.get("policyTypes"):
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction) or []:
                if isinstance(rule, dict):
                    for port in rule.get("ports") or []:
                        if isinstance(port, dict):
                            port.setdefault("protocol", "TCP")


def _default_crd(obj: dict) -> None:
    names = obj.setdefault("spec", {}).setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")


# Top-level fields of the built-in kinds, for fieldValidation=Strict (the
# test server knows no deeper built-in schema).
TOP_LEVEL_FIELDS = {
    "Namespace": {"spec", "status"}, "Pod": {"spec", "status"}, "Service": {"spec", "status"},
    "Node": {"spec", "status"}, "ConfigMap": {"data", "binaryData", "immutable"}, "NetworkPolicy": {"spec"},
    "Lease": {"spec"}, "CustomResourceDefinition": {"spec", "status"},
    "Event": {"involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count", "type",
              "eventTime", "series", "action", "related", "reportingComponent", "reportingInstance"},
}


def unknown_top_level_fields(rt: ResourceType, obj: dict) -> list[str]:
    known = TOP_LEVEL_FIELDS.get(rt.kind) if rt.crd_name is None else None
    if known is None:
        return []
    return sorted(k for k in obj if k not in known and k not in ("apiVersion", "kind", "metadata"))


# Validation


def validate(rt: ResourceType, obj: dict, old: dict | None) -> list[Cause]:
    if _is(rt, "", "pods"):
        return _validate_pod(obj, old)
    if _is(rt, "networking.k8s.io", "networkpolicies"):
        return _validate_network_policy(obj)
    if _is(rt, "apiextensions.k8s.io", "customresourcedefinitions"):
        return _validate_crd(obj, old)
    return []


_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")


def _validate_pod(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = []
    containers = spec.get("containers")
    if not containers:
        causes.append(("spec.containers", "FieldValueRequired", "Required value"))
    for i, c in enumerate(containers or []):
        if not isinstance(c, dict) or not c.get("name"):
            causes.append((f"spec.containers[{i}].name", "FieldValueRequired", "Required value"))
        if not isinstance(c, dict) or not c.get("image"):
            causes.append((f"spec.containers[{i}].image", "FieldValueRequired", "Required value"))
    if old is not None and not causes:
        def comparable(pod_spec: dict) -> dict:
            clone = copy.deepcopy(pod_spec)
            for field in _POD_MUTABLE:
                clone.pop(field, None)
            for c in clone.get("containers", []) + clone.get("initContainers", []):
                c.pop("image", None)
            return clone
        if comparable(spec) != comparable(old.get("spec") or {}):
            causes.append(("spec", "FieldValueForbidden",
                           "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                           "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                           "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                           "(allow it to be set to 1 if it was previously negative)"))
    return causes


def _validate_port(path: str, port: dict) -> list[Cause]:
    causes = []
    if port.get("protocol") not in ("TCP", "UDP", "SCTP"):
        causes.append((f"{path}.protocol", "FieldValueNotSupported",
                       f'Unsupported value: "{port.get("protocol")}": supported values: "SCTP", "TCP", "UDP"'))
    value = port.get("port")
    if isinstance(value, int) and not 1 <= value <= 65535:
        causes.append((f"{path}.port", "FieldValueInvalid",
                       f"Invalid value: {value}: must be between 1 and 65535, inclusive"))
    elif isinstance(value, str) and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value):
        causes.append((f"{path}.port", "FieldValueInvalid", f'Invalid value: "{value}": must be a valid port name'))
    end = port.get("endPort")
    if end is not None:
        if not isinstance(value, int):
            causes.append((f"{path}.endPort", "FieldValueRequired",
                           "Required value: may not be specified when `port` is non-numeric"))
        elif not isinstance(end, int) or end < value or end > 65535:
            causes.append((f"{path}.endPort", "FieldValueInvalid",
                           f"Invalid value: {end}: must be greater than or equal to `port`"))
    return causes


def _validate_peer(path: str, peer: dict) -> list[Cause]:
    block = peer.get("ipBlock")
    if block is None:
        return []
    causes = []
    try:
        net = ipaddress.ip_network(block.get("cidr", ""), strict=False)
    except ValueError:
        return [(f"{path}.ipBlock.cidr", "FieldValueInvalid",
                 f'Invalid value: "{block.get("cidr", "")}": must be a valid CIDR value, (e.g. 10.9.8.0/24 or '
                 "2001:db8::/64)")]
    for j, except_cidr in enumerate(block.get("except") or []):
        try:
            sub = ipaddress.ip_network(except_cidr, strict=False)
            if sub.version != net.version or not sub.subnet_of(net) or sub == net:
                causes.append((f"{path}.ipBlock.except[{j}]", "FieldValueInvalid",
                               f'Invalid value: "{except_cidr}": must be a strict subset of `cidr`'))
        except ValueError:
            causes.append((f"{path}.ipBlock.except[{j}]", "FieldValueInvalid",
                           f'Invalid value: "{except_cidr}": must be a valid CIDR value'))
    return causes


def _validate_network_policy(obj: dict) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes = []
    for i, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in ("Ingress", "Egress"):
            causes.append((f"spec.policyTypes[{i}]", "FieldValueNotSupported",
                           f'Unsupported value: "{kind}": supported values: "Ingress", "Egress"'))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            for j, port in enumerate(rule.get("ports") or []):
                causes += _validate_port(f"spec.{direction}[{i}].ports[{j}]", port)
            for j, peer in enumerate(rule.get(peers) or []):
                causes += _validate_peer(f"spec.{direction}[{i}].{peers}[{j}]", peer)
    return causes


def _validate_crd(obj: dict, old: dict | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes = []
    group, plural = spec.get("group", ""), names.get("plural", "")
    if not group or "." not in group:
        causes.append(("spec.group", "FieldValueInvalid", f'Invalid value: "{group}": should be a domain with at '
                       "least one dot"))
    if not plural:
        causes.append(("spec.names.plural", "FieldValueRequired", "Required value"))
    if not names.get("kind"):
        causes.append(("spec.names.kind", "FieldValueRequired", "Required value"))
    if obj["metadata"].get("name") != f"{plural}.{group}":
        causes.append(("metadata.name", "FieldValueInvalid",
                       f'Invalid value: "{obj["metadata"].get("name")}": must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(("spec.scope", "FieldValueNotSupported",
                       f'Unsupported value: "{spec.get("scope")}": supported values: "Cluster", "Namespaced"'))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(("spec.versions", "FieldValueInvalid", "Invalid value: must have exactly one version "
                       "marked as storage version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(("spec.versions", "FieldValueInvalid",
                       "Invalid value: must have exactly one version marked as storage version"))
    for i, v in enumerate(versions):
        if not (v.get("schema") or {}).get("openAPIV3Schema"):
            causes.append((f"spec.versions[{i}].schema.openAPIV3Schema", "FieldValueRequired",
                           "Required value: schemas are required"))
    if old is not None and old.get("spec", {}).get("scope") != spec.get("scope"):
        causes.append(("spec.scope", "FieldValueInvalid", "Invalid value: field is immutable"))
    return causes


def crd_resource_types(crd: dict) -> list[ResourceType]:
    spec, name = crd["spec"], crd["metadata"]["name"]
    names = spec["names"]
    types = []
    for version in spec.get("versions", []):
        if not version.get("served"):
            continue
        types.append(ResourceType(
            group=spec["group"], version=version["name"], plural=names["plural"],
            singular=names.get("singular") or names["kind"].lower(), kind=names["kind"],
            namespaced=spec.get("scope") == "Namespaced", short_names=list(names.get("shortNames") or []),
            has_status="status" in (version.get("subresources") or {}), returns_deleted_object=True,
            categories=list(names.get("categories") or []), crd_name=name,
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
            printer_columns=list(version.get("additionalPrinterColumns") or [])))
    return types
