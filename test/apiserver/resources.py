"""The resource types the test apiserver serves and its discovery documents.

Built-in types are fixed; custom resources are added and removed as
CustomResourceDefinitions are created and deleted. Objects are stored per
(group, plural), whatever version they are read through (our CRDs have one
version; the conversion strategy is "None", which only rewrites apiVersion).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

COMMON_FIELDS = {"metadata.name", "metadata.namespace"}

POD_FIELDS = COMMON_FIELDS | {
    "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
    "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
}

EVENT_FIELDS = COMMON_FIELDS | {
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
    "reason", "reportingComponent", "source", "type",
}


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: list[str] = field(default_factory=list)
    has_status: bool = False
    # Real kube-apiserver returns the deleted object for these, a Status otherwise.
    returns_deleted_object: bool = False
    field_selectors: set[str] = field(default_factory=lambda: set(COMMON_FIELDS))
    categories: list[str] = field(default_factory=list)
    crd_name: str | None = None
    schema: dict | None = None  # openAPIV3Schema of a custom resource version
    printer_columns: list[dict] = field(default_factory=list)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def storage_key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def discovery_entries(self) -> list[dict]:
        entry = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
            "storageVersionHash": hashlib.sha256(f"{self.api_version}/{self.kind}".encode()).hexdigest()[:11],
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        entries = [entry]
        if self.has_status:
            entries.append({"name": f"{self.plural}/status", "singularName": "", "namespaced": self.namespaced,
                            "kind": self.kind, "verbs": ["get", "patch", "update"]})
        return entries


def builtin_types() -> list[ResourceType]:
    return [
        ResourceType("", "v1", "namespaces", "namespace", "Namespace", False, ["ns"], has_status=True,
                     returns_deleted_object=True, field_selectors=COMMON_FIELDS | {"status.phase"}),
        ResourceType("", "v1", "pods", "pod", "Pod", True, ["po"], has_status=True, returns_deleted_object=True,
                     field_selectors=POD_FIELDS, categories=["all"]),
        ResourceType("", "v1", "events", "event", "Event", True, ["ev"], field_selectors=EVENT_FIELDS),
        ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, ["cm"]),
        ResourceType("", "v1", "services", "service", "Service", True, ["svc"], has_status=True,
                     returns_deleted_object=True, categories=["all"]),
        ResourceType("", "v1", "nodes", "node", "Node", False, ["no"], has_status=True, returns_deleted_object=True,
                     field_selectors=COMMON_FIELDS | {"spec.unschedulable"}),
        ResourceType("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", True,
                     ["netpol"]),
        ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
        ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
                     "CustomResourceDefinition", False, ["crd", "crds"], has_status=True,
                     categories=["api-extensions"]),
    ]


class Registry:
    """Thread-safe map of served (group, version, plural) -> ResourceType."""

    def __init__(self):
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for t in builtin_types():
            self._types[(t.group, t.version, t.plural)] = t

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def by_storage_key(self, key: tuple[str, str]) -> list[ResourceType]:
        with self._lock:
            return [t for t in self._types.values() if t.storage_key == key]

    def add(self, types: list[ResourceType]) -> None:
        with self._lock:
            for t in types:
                self._types[(t.group, t.version, t.plural)] = t

    def remove_crd(self, crd_name: str) -> list[ResourceType]:
        with self._lock:
            gone = [k for k, t in self._types.items() if t.crd_name == crd_name]
            return [self._types.pop(k) for k in gone]

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def namespaced_storage_keys(self) -> set[tuple[str, str]]:
        return {t.storage_key for t in self.all() if t.namespaced}

    # Discovery documents (legacy, unaggregated: kubectl falls back to them
    # when the response is plain application/json).

    def group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for t in self.all():
            versions = groups.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return groups

    def api_versions(self, server_address: str) -> dict:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}

    def api_group(self, group: str) -> dict | None:
        versions = self.group_versions().get(group)
        if not versions or not group:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
                "preferredVersion": entries[0]}

    def api_group_list(self) -> dict:
        groups = []
        for group in sorted(g for g in self.group_versions() if g):
            doc = self.api_group(group)
            doc.pop("kind")
            doc.pop("apiVersion")
            groups.append(doc)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> dict | None:
        types = sorted((t for t in self.all() if t.group == group and t.version == version), key=lambda t: t.plural)
        if not types:
            return None
        resources = [e for t in types for e in t.discovery_entries()]
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}
