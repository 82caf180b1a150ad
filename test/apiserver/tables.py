"""Server-side printing (meta.k8s.io/v1 Table), what `kubectl get` asks for:
a Name column, the CRD's additionalPrinterColumns (or a few built-in
columns), and Age."""

from __future__ import annotations

import datetime
import json
import re

NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "priority": 0,
               "description": "Name must be unique within a namespace."}
AGE_COLUMN = {"name": "Age", "type": "date", "format": "", "priority": 0,
              "description": "CreationTimestamp is a timestamp representing the server time when this object "
                             "was created."}

BUILTIN_COLUMNS = {
    ("", "pods"): [("Status", "string", ".status.phase", 0), ("IP", "string", ".status.podIP", 1),
                   ("Node", "string", ".spec.nodeName", 1)],
    ("", "namespaces"): [("Status", "string", ".status.phase", 0)],
    ("networking.k8s.io", "networkpolicies"): [("Pod-Selector", "string", ".spec.podSelector", 0)],
    ("coordination.k8s.io", "leases"): [("Holder", "string", ".spec.holderIdentity", 0)],
}


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return "<invalid>"
    seconds = max(0, int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600 * 2:
        return f"{seconds // 60}m"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def json_path(obj, path: str):
    """The subset of JSONPath printer columns use: `.a.b`, `.a[0]`,
    `.a[?(@.k=='v')].b`."""
    current = [obj]
    for token in re.findall(r"\.([^.\[]+)|\[([^\]]*)\]", path.strip().lstrip("{").rstrip("}")):
        key, index = token
        nxt = []
        for value in current:
            if key:
                if isinstance(value, dict) and key in value:
                    nxt.append(value[key])
            elif index.startswith("?("):
                m = re.fullmatch(r"\?\(@\.([\w.-]+)\s*==\s*['\"]([^'\"]*)['\"]\)", index)
                if m and isinstance(value, list):
                    nxt.extend(v for v in value if isinstance(v, dict) and str(v.get(m.group(1))) == m.group(2))
            elif isinstance(value, list):
                if index == "*":
                    nxt.extend(value)
                else:
                    try:
                        nxt.append(value[int(index)])
                    except (ValueError, IndexError):
                        pass
        current = nxt
    return current[0] if current else None


def _columns(rt) -> list[tuple[dict, str | None]]:
    columns: list[tuple[dict, str | None]] = [(NAME_COLUMN, None)]
    if rt.crd_name:
        specs = [(c["name"], c.get("type", "string"), c["jsonPath"], c.get("priority", 0), c.get("description", ""))
                 for c in rt.printer_columns]
        if not specs:
            specs = [("Age", "date", ".metadata.creationTimestamp", 0, "")]
    else:
        specs = [(n, t, p, prio, "") for n, t, p, prio in BUILTIN_COLUMNS.get(rt.storage_key, [])]
        specs.append(("Age", "date", ".metadata.creationTimestamp", 0, ""))
    for name, kind, path, priority, description in specs:
        if name == "Age" and path == ".metadata.creationTimestamp":
            columns.append((AGE_COLUMN, path))
        else:
            columns.append(({"name": name, "type": kind, "format": "", "description": description,
                             "priority": priority}, path))
    return columns


def _cell(column: dict, value):
    if value is None:
        return None
    if column["type"] == "date":
        return age(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return value


def to_table(rt, obj: dict, is_list: bool, include_object: str) -> dict:
    columns = _columns(rt)
    items = obj["items"] if is_list else [obj]
    rows = []
    for item in items:
        cells = [item["metadata"]["name"] if path is None else _cell(col, json_path(item, path))
                 for col, path in columns]
        row = {"cells": cells}
        if include_object == "Object":
            row["object"] = item
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": item["metadata"]}
        rows.append(row)
    meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
    if is_list and obj["metadata"].get("continue"):
        meta["continue"] = obj["metadata"]["continue"]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": [col for col, _ in columns], "rows": rows}
