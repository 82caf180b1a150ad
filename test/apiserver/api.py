"""The Kubernetes API semantics of the test apiserver, independent of HTTP:
routing of resource paths, create/update/patch/delete with kube-apiserver's
rules (resourceVersion preconditions, generation, status subresource,
finalizers, namespace lifecycle), and list parameters (selectors, pagination,
resourceVersion/resourceVersionMatch). Watches are set up here and streamed
by server.py.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import random
import re
import threading
import uuid
from dataclasses import dataclass

import builtin_types
import schema
from label_selectors import FieldSelector, LabelSelector, SelectorError
from patch import PatchError, json_patch, merge_patch, strip_strategic_directives
from resources import Registry, ResourceType
from store import Expired, Store, TooLarge, Watcher

NAMESPACES = ("", "namespaces")
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# How long a list/watch waits for a resourceVersion newer than the store's
# before answering "Too large resource version" (kube-apiserver: 3 s).
TOO_LARGE_WAIT = 3.0
DEFAULT_WATCH_TIMEOUT = 1800


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict:
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {},
              "status": "Success" if code < 400 else "Failure", "message": message, "reason": reason,
              "code": code}
    if details is not None:
        status["details"] = details
    if not message:
        del status["message"]
    if not reason:
        del status["reason"]
    return status


def not_routable() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def qualified(rt: ResourceType) -> str:
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(rt)} "{name}" not found',
                    {"name": name, "group": rt.group, "kind": rt.plural})


def conflict(rt: ResourceType, name: str, why: str = "the object has been modified; please apply your "
             "changes to the latest version and try again") -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(rt)} "{name}": {why}',
                    {"name": name, "group": rt.group, "kind": rt.plural})


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """causes: (field, reason, message) like field.ErrorList."""
    text = "; ".join(f"{f}: {m}" for f, _, m in causes)
    if len(causes) > 1:
        text = "[" + ", ".join(f"{f}: {m}" for f, _, m in causes) + "]"
    kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}',
                    {"name": name, "group": rt.group, "kind": rt.kind,
                     "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def name_problem(rt: ResourceType, name: str) -> str | None:
    if rt.storage_key == NAMESPACES:
        if len(name) > 63 or not _DNS1123_LABEL.fullmatch(name):
            return (f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                    "alphanumeric characters or '-', and must start and end with an alphanumeric character")
        return None
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        return (f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
    return None


def strip_for_generation(rt: ResourceType, obj: dict) -> dict:
    """What a change must touch to bump metadata.generation."""
    rest = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    if rt.has_status:
        rest.pop("status", None)
    return rest


def without_rv(obj: dict) -> dict:
    clone = copy.deepcopy(obj)
    clone.get("metadata", {}).pop("resourceVersion", None)
    clone.pop("apiVersion", None)
    clone.pop("kind", None)
    return clone


def encode_continue(rv: int, start: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\u0000"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if raw.get("v") != "meta.k8s.io/v1" or not isinstance(raw.get("rv"), int) or raw["rv"] <= 0:
            raise ValueError("bad version or rv")
        return raw["rv"], raw["start"].rstrip("\u0000")
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise bad_request(f"continue key is not valid: {e}") from None


@dataclass
class Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclass
class WatchPlan:
    rt: ResourceType
    watcher: Watcher
    start_rv: int
    allow_bookmarks: bool
    timeout: float
    initial_events_end: bool  # send the "k8s.io/initial-events-end" bookmark after the initial events


class Api:
    def __init__(self, saved_state: dict | None = None):
        self.store = Store()
        self.registry = Registry()
        self.warnings = threading.local()  # per request: what goes out as `Warning: 299` headers
        if saved_state is not None:
            self.store.load(saved_state)
            _, crds = self.store.snapshot(CRDS)
            for crd in crds.values():
                self.registry.add(builtin_types.crd_resource_types(crd))
            return
        for name in INITIAL_NAMESPACES:
            ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            self.create(self.registry.lookup("", "v1", "namespaces"), None, ns, {})

    # Routing

    def route(self, path: str) -> Route | dict:
        """A resource route, or a discovery document (dict) for discovery paths."""
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            raise not_routable()
        if parts[0] == "api":
            if len(parts) == 1:
                return {"__discovery__": "api"}
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) == 1:
                return self.registry.api_group_list()
            if len(parts) == 2:
                doc = self.registry.api_group(parts[1])
                if doc is None:
                    raise not_routable()
                return doc
            group, version, rest = parts[1], parts[2], parts[3:]
        if not rest:
            doc = self.registry.resource_list(group, version)
            if doc is None:
                raise not_routable()
            return doc
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise not_routable()
        rt = self.registry.lookup(group, version, rest[0])
        if rt is None:
            raise not_routable()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if namespace is not None and not rt.namespaced:
            raise not_routable()
        if rt.namespaced and namespace is None and name is not None:
            raise not_routable()
        if sub is not None and not (sub == "status" and rt.has_status):
            raise not_routable()
        return Route(rt, namespace, name, sub)

    # Helpers

    @staticmethod
    def present(rt: ResourceType, obj: dict) -> dict:
        out = {"apiVersion": rt.api_version, "kind": rt.kind}
        out.update({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
        return out

    def _check_body(self, rt: ResourceType, obj) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("the object provided is not a JSON object")
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if not kind:
            raise bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        if api_version and api_version != rt.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected API "
                              f"version ({rt.api_version})")
        if kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        return obj

    def _strict_fields(self, rt: ResourceType, obj: dict, query: dict) -> None:
        """fieldValidation: Strict makes unknown fields an error; Warn (the
        default) drops them with a warning; Ignore drops them silently."""
        mode = query.get("fieldValidation", "") or "Warn"
        if mode == "Ignore":
            return
        unknown = (schema.unknown_fields(rt.schema, obj) if rt.schema is not None
                   else builtin_types.unknown_top_level_fields(rt, obj))
        if unknown and mode != "Strict":
            self.warnings.warnings = getattr(self.warnings, "warnings", []) + [f'unknown field "{f}"' for f in unknown]
        elif unknown:
            raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict '
                              "decoding error: " + ", ".join(f'unknown field "{f}"' for f in unknown))

    def _namespace_must_exist(self, rt: ResourceType, namespace: str | None) -> None:
        if rt.namespaced:
            ns = self.store.get(NAMESPACES, ("", namespace))
            if ns is None:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                               {"name": namespace, "kind": "namespaces"})
            if ns.get("status", {}).get("phase") == "Terminating":
                raise ApiError(403, "Forbidden", f'{qualified(rt)} is forbidden: unable to create new content '
                               f"in namespace {namespace} because it is being terminated",
                               {"kind": rt.plural, "group": rt.group})

    def _validate(self, rt: ResourceType, obj: dict, old: dict | None) -> None:
        name = obj["metadata"].get("name", "")
        causes = builtin_types.validate(rt, obj, old)
        if rt.schema is not None:
            causes += schema.validate(rt.schema, obj)
        if causes:
            raise invalid(rt, name, causes)

    # Writes

    def create(self, rt: ResourceType, namespace: str | None, obj, query: dict) -> dict:
        obj = self._check_body(rt, copy.deepcopy(obj))
        meta = obj["metadata"]
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on "
                                  "the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choice("bcdfghjklmnpqrstvwxz2456789")
                                                          for _ in range(5))
        name = meta.get("name", "")
        if not name:
            raise invalid(rt, "", [("metadata.name", "FieldValueRequired",
                                    "Required value: name or generateName is required")])
        problem = name_problem(rt, name)
        if problem:
            raise invalid(rt, name, [("metadata.name", "FieldValueInvalid", problem)])
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        for server_owned in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                             "managedFields", "selfLink", "generation"):
            meta.pop(server_owned, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        if rt.has_status and rt.crd_name:
            obj.pop("status", None)
        self._strict_fields(rt, obj, query)
        if rt.schema is not None:
            obj = schema.prune_and_default(rt.schema, obj)
        builtin_types.prepare_create(rt, obj)
        with self.store.lock:
            self._namespace_must_exist(rt, namespace)
            key = (namespace or "", name)
            if self.store.get(rt.storage_key, key) is not None:
                raise ApiError(409, "AlreadyExists", f'{qualified(rt)} "{name}" already exists',
                               {"name": name, "group": rt.group, "kind": rt.plural})
            self._validate(rt, obj, None)
            if query.get("dryRun"):
                return self.present(rt, obj)
            created = self.store.commit(rt.storage_key, key, "ADDED", obj)
            if rt.storage_key == CRDS:
                self._crd_changed(None, created)
            return self.present(rt, created)

    def _updated_object(self, rt: ResourceType, old: dict, incoming: dict, subresource: str | None) -> dict:
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in incoming:
                new["status"] = incoming["status"]
            else:
                new.pop("status", None)
            return new
        new = copy.deepcopy(incoming)
        meta, old_meta = new["metadata"], old["metadata"]
        for immutable in ("uid", "creationTimestamp", "generation", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "namespace"):
            if immutable in old_meta:
                meta[immutable] = old_meta[immutable]
            else:
                meta.pop(immutable, None)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        if rt.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if rt.schema is not None:
            new = schema.prune_and_default(rt.schema, new)
        builtin_types.prepare_update(rt, new, old)
        return new

    def _check_identity(self, rt: ResourceType, route: Route, obj: dict) -> None:
        meta = obj["metadata"]
        if meta.get("name") != route.name:
            raise bad_request(f"the name of the object ({meta.get('name', '')}) does not match the name on the "
                              f"URL ({route.name})")
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != route.namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                              "request")

    def _write_update(self, rt: ResourceType, route: Route, old: dict, new: dict, query: dict) -> dict:
        if strip_for_generation(rt, new) != strip_for_generation(rt, old):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        self._validate(rt, new, old)
        if query.get("dryRun"):
            return self.present(rt, new)
        key = (route.namespace or "", route.name)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            # Removing the last finalizer deletes instead of updating (one
            # DELETED event, no MODIFIED), as the generic registry does.
            gone = self.store.commit(rt.storage_key, key, "DELETED", None)
            self._after_delete(rt, gone)
            return self.present(rt, gone)
        if without_rv(new) == without_rv(old):
            return self.present(rt, old)  # a no-op write is not persisted: no new resourceVersion, no event
        updated = self.store.commit(rt.storage_key, key, "MODIFIED", new)
        if rt.storage_key == CRDS:
            self._crd_changed(old, updated)
        return self.present(rt, updated)

    def update(self, route: Route, obj, query: dict) -> dict:
        rt = route.rt
        obj = self._check_body(rt, copy.deepcopy(obj))
        self._check_identity(rt, route, obj)
        with self.store.lock:
            old = self.store.get(rt.storage_key, (route.namespace or "", route.name))
            if old is None:
                raise not_found(rt, route.name)
            wanted = obj["metadata"].get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise conflict(rt, route.name)
            self._strict_fields(rt, obj, query)
            new = self._updated_object(rt, old, obj, route.subresource)
            return self._write_update(rt, route, old, new, query)

    def patch(self, route: Route, body: bytes, content_type: str, query: dict) -> tuple[int, dict]:
        rt = route.rt
        ctype = content_type.split(";")[0].strip().lower()
        accepted = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        if not rt.crd_name:
            accepted.append("application/strategic-merge-patch+json")
        if ctype not in accepted:
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                           f"accepted media types include: {', '.join(accepted)}")
        try:
            patch_doc = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            if ctype == "application/apply-patch+yaml":
                raise bad_request("this test apiserver accepts apply patches in JSON only (YAML is a superset; "
                                  "kubectl sends JSON)") from None
            raise bad_request("the body of the request was not valid JSON") from None
        if ctype == "application/apply-patch+yaml" and not query.get("fieldManager"):
            raise invalid(rt, route.name, [("fieldManager", "FieldValueRequired",
                                            "Required value: is required for apply patch")])
        with self.store.lock:
            old = self.store.get(rt.storage_key, (route.namespace or "", route.name))
            if old is None:
                if ctype == "application/apply-patch+yaml" and route.subresource is None:
                    return 201, self.create(rt, route.namespace, patch_doc, query)
                raise not_found(rt, route.name)
            doc = self.present(rt, old)
            try:
                if ctype == "application/json-patch+json":
                    patched = json_patch(doc, patch_doc)
                elif ctype == "application/strategic-merge-patch+json":
                    patched = merge_patch(doc, strip_strategic_directives(patch_doc))
                else:
                    if not isinstance(patch_doc, dict):
                        raise PatchError("a merge patch must be a JSON object")
                    if ctype == "application/apply-patch+yaml":
                        patch_doc = copy.deepcopy(patch_doc)
                        patch_doc.get("metadata", {}).pop("managedFields", None)
                    patched = merge_patch(doc, patch_doc)
            except PatchError as e:
                raise ApiError(422 if ctype == "application/json-patch+json" else 400,
                               "Invalid" if ctype == "application/json-patch+json" else "BadRequest",
                               str(e)) from None
            patched = self._check_body(rt, patched)
            self._check_identity(rt, route, patched)
            if patched["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
                raise conflict(rt, route.name)
            self._strict_fields(rt, patched, query)
            new = self._updated_object(rt, old, patched, route.subresource)
            return 200, self._write_update(rt, route, old, new, query)

    def delete(self, route: Route, options, query: dict) -> tuple[int, dict]:
        rt = route.rt
        options = options if isinstance(options, dict) else {}
        key = (route.namespace or "", route.name)
        with self.store.lock:
            old = self.store.get(rt.storage_key, key)
            if old is None:
                raise not_found(rt, route.name)
            pre = options.get("preconditions") or {}
            meta = old["metadata"]
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise conflict(rt, route.name, f"Precondition failed: UID in precondition: {pre['uid']}, "
                               f"UID in object meta: {meta['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(rt, route.name, f"Precondition failed: ResourceVersion in precondition: "
                               f"{pre['resourceVersion']}, ResourceVersion in object meta: {meta['resourceVersion']}")
            if query.get("dryRun") or options.get("dryRun"):
                return 200, self.present(rt, old)
            if rt.storage_key == NAMESPACES:
                return 200, self._delete_namespace(rt, key, old)
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return 200, self.present(rt, old)
                pending = copy.deepcopy(old)
                pending["metadata"]["deletionTimestamp"] = now_rfc3339()
                pending["metadata"]["deletionGracePeriodSeconds"] = 0
                pending["metadata"]["generation"] = meta.get("generation", 1) + 1
                return 200, self.present(rt, self.store.commit(rt.storage_key, key, "MODIFIED", pending))
            gone = self.store.commit(rt.storage_key, key, "DELETED", None)
            self._after_delete(rt, gone)
            if rt.returns_deleted_object:
                return 200, self.present(rt, gone)
            return 200, status_object(200, "", "", {"name": route.name, "group": rt.group, "kind": rt.plural,
                                                    "uid": meta["uid"]})

    def _delete_namespace(self, rt: ResourceType, key, old: dict) -> dict:
        """The namespace turns Terminating, its content goes, then it goes
        (what the namespace controller does, done at once)."""
        name = key[1]
        if old.get("status", {}).get("phase") == "Terminating":
            return self.present(rt, old)
        terminating = copy.deepcopy(old)
        terminating["metadata"]["deletionTimestamp"] = now_rfc3339()
        terminating.setdefault("status", {})["phase"] = "Terminating"
        terminating = self.store.commit(rt.storage_key, key, "MODIFIED", terminating)
        for skey in sorted(self.registry.namespaced_storage_keys()):
            _, objects = self.store.snapshot(skey)
            for okey in sorted(k for k in objects if k[0] == name):
                self.store.commit(skey, okey, "DELETED", None)
        self.store.commit(rt.storage_key, key, "DELETED", None)
        return self.present(rt, terminating)

    def _after_delete(self, rt: ResourceType, gone: dict) -> None:
        if rt.storage_key == CRDS:
            self._crd_changed(gone, None)

    def delete_collection(self, rt: ResourceType, namespace: str | None, query: dict) -> dict:
        listing = self.list(rt, namespace, {k: v for k, v in query.items()
                                            if k in ("labelSelector", "fieldSelector")})
        deleted = []
        for item in listing["items"]:
            route = Route(rt, item["metadata"].get("namespace") if rt.namespaced else None,
                          item["metadata"]["name"], None)
            try:
                deleted.append(self.delete(route, {}, query)[1])
            except ApiError:
                pass  # deleted meanwhile
        return {"kind": rt.list_kind, "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": deleted}

    # Custom resource definitions

    def _crd_changed(self, old: dict | None, new: dict | None) -> None:
        if new is None:
            group, plural = old["spec"]["group"], old["spec"]["names"]["plural"]
            _, objects = self.store.snapshot((group, plural))
            for okey in sorted(objects):
                self.store.commit((group, plural), okey, "DELETED", None)
            self.registry.remove_crd(old["metadata"]["name"])
            self._end_watches((group, plural))
            return
        if old is not None and old.get("spec") == new.get("spec"):
            return
        self.registry.remove_crd(new["metadata"]["name"])
        self.registry.add(builtin_types.crd_resource_types(new))

    def _end_watches(self, skey) -> None:
        for watcher in list(self.store.watchers):
            if watcher.storage_key == skey:
                watcher.drop = "drain"  # deliver the DELETED events, then end like kube-apiserver
                watcher.wake()

    # Reads

    def get(self, route: Route) -> dict:
        obj = self.store.get(route.rt.storage_key, (route.namespace or "", route.name))
        if obj is None:
            raise not_found(route.rt, route.name)
        return self.present(route.rt, obj)

    def _selectors(self, rt: ResourceType, query: dict):
        try:
            labels = LabelSelector(query.get("labelSelector"))
            fields = FieldSelector(query.get("fieldSelector"), rt.field_selectors)
        except SelectorError as e:
            raise bad_request(f"unable to parse requirement: {e}" if "label" in str(e) else str(e)) from None
        return labels, fields

    def _parse_rv(self, value: str) -> int:
        try:
            rv = int(value)
            if rv < 0:
                raise ValueError
            return rv
        except ValueError:
            raise ApiError(400, "BadRequest", f'invalid resource version "{value}"') from None

    def _wait_not_too_large(self, rv: int) -> None:
        if not self.store.wait_for_rv(rv, TOO_LARGE_WAIT):
            raise ApiError(504, "Timeout", f"Too large resource version: {rv}, current: {self.store.rv}",
                           {"causes": [{"reason": "ResourceVersionTooLarge",
                                        "message": "Too large resource version"}], "retryAfterSeconds": 1})

    def list(self, rt: ResourceType, namespace: str | None, query: dict) -> dict:
        labels, fields = self._selectors(rt, query)
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise bad_request(f"invalid limit \"{query.get('limit')}\"") from None
        rv_param, match = query.get("resourceVersion", ""), query.get("resourceVersionMatch", "")
        token, start = query.get("continue", ""), ""
        at: int | None = None
        if token:
            if rv_param:
                raise bad_request("specifying resource version is not allowed when using continue")
            at, start = decode_continue(token)
        else:
            if match and not rv_param:
                raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
            if match not in ("", "Exact", "NotOlderThan"):
                raise bad_request(f'resourceVersionMatch: Unsupported value: "{match}": supported values: '
                                  '"Exact", "NotOlderThan"')
            if match == "Exact" and rv_param == "0":
                raise bad_request('resourceVersionMatch "exact" is forbidden for resourceVersion "0"')
            if rv_param and rv_param != "0":
                rv = self._parse_rv(rv_param)
                self._wait_not_too_large(rv)
                if match == "Exact" or (not match and limit):
                    at = rv
        try:
            snap_rv, objects = self.store.snapshot(rt.storage_key, at)
        except Expired:
            if token:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                               "consistent list result. You can start a new list without the continue "
                               "parameter.") from None
            raise ApiError(410, "Expired", "The resourceVersion for the provided list is too old.") from None
        except TooLarge:
            self._wait_not_too_large(at)
            raise
        keys = sorted(objects)
        items = []
        for key in keys:
            obj = objects[key]
            if namespace is not None and key[0] != namespace:
                continue
            if start and "/".join(key) <= start:
                continue
            if labels.matches(obj["metadata"].get("labels")) and fields.matches(obj):
                items.append(obj)
        meta = {"resourceVersion": str(snap_rv)}
        if limit and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            last = items[-1]["metadata"]
            meta["continue"] = encode_continue(snap_rv, f"{last.get('namespace', '')}/{last['name']}")
            if not query.get("labelSelector") and not query.get("fieldSelector"):
                meta["remainingItemCount"] = remaining
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta,
                "items": [self.present(rt, o) for o in items]}

    def watch(self, rt: ResourceType, namespace: str | None, query: dict, description: dict) -> WatchPlan:
        labels, fields = self._selectors(rt, query)
        rv_param = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks", "") in ("true", "1")
        send_initial = query.get("sendInitialEvents", "") in ("true", "1")
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds \"{query.get('timeoutSeconds')}\"") from None
        if send_initial:
            if query.get("resourceVersionMatch") != "NotOlderThan":
                raise invalid(rt, "", [("resourceVersionMatch", "FieldValueForbidden",
                                        "Forbidden: sendInitialEvents requires setting resourceVersionMatch "
                                        "to NotOlderThan")])
            if not bookmarks:
                raise invalid(rt, "", [("allowWatchBookmarks", "FieldValueForbidden",
                                        "Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true")])
        initial = send_initial or rv_param in ("", "0")
        from_rv = 0
        if rv_param and rv_param != "0":
            from_rv = self._parse_rv(rv_param)
            self._wait_not_too_large(from_rv)

        def matches(obj: dict) -> bool:
            return labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)

        watcher = Watcher(rt.storage_key, namespace, matches, description)
        start = self.store.start_watch(watcher, from_rv, initial)
        return WatchPlan(rt, watcher, start, bookmarks, timeout, send_initial)
