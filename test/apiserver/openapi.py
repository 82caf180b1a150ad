"""A minimal OpenAPI v3 document set: for each group/version, the object
paths of its resources with the PATCH operation's group-version-kind and its
`fieldValidation` query parameter. That is what kubectl (1.27+) reads to
decide the server validates fields itself, so `kubectl apply` works without
--validate=false. Schemas are not published (no `kubectl explain`)."""

from __future__ import annotations

import hashlib
import json

QUERY_PARAMS = ("fieldValidation", "fieldManager", "dryRun")


def _prefix(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def root(registry) -> dict:
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            doc = group_version(registry, group, version)
            digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
            prefix = _prefix(group, version)
            paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={digest}"}
    return {"paths": paths}


def group_version(registry, group: str, version: str) -> dict | None:
    types = [t for t in registry.all() if t.group == group and t.version == version]
    if not types:
        return None
    params = [{"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
              for name in QUERY_PARAMS]
    paths = {}
    for t in sorted(types, key=lambda t: t.plural):
        gvk = {"group": group, "version": version, "kind": t.kind}
        base = f"/{_prefix(group, version)}" + ("/namespaces/{namespace}" if t.namespaced else "")
        item = {"parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]}
        for verb, action in (("get", "get"), ("put", "put"), ("patch", "patch"), ("delete", "delete")):
            item[verb] = {"operationId": f"{action}{t.kind}", "parameters": list(params),
                          "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                          "responses": {"200": {"description": "OK"}}}
        collection = {"post": {"operationId": f"create{t.kind}", "parameters": list(params),
                               "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk,
                               "responses": {"201": {"description": "Created"}}}}
        paths[f"{base}/{t.plural}/{{name}}"] = item
        paths[f"{base}/{t.plural}"] = collection
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.34.0"}, "paths": paths,
            "components": {"schemas": {}}}
