#!/usr/bin/env python3
"""Self-tests of the test apiserver: each behaviour the agent's e2e tests rely
on, checked over the real path (HTTPS + bearer token) against what
kube-apiserver does."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import shutil
import socket
import ssl
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from client import ApiServerError, KubeHttp, TestApiServer  # noqa: E402

SERVER: TestApiServer | None = None
WORKDIR = ""

SEGMENT_POLICY_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "segmentpolicies.microseg.io"},
    "spec": {
        "group": "microseg.io", "scope": "Namespaced",
        "names": {"plural": "segmentpolicies", "singular": "segmentpolicy", "kind": "SegmentPolicy",
                  "shortNames": ["segpol"]},
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}},
            "additionalPrinterColumns": [{"name": "Enforcement", "type": "string", "jsonPath": ".spec.enforcement"}],
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "enforcement": {"type": "string", "enum": ["Enforce", "Audit"], "default": "Enforce"},
                    "podSelector": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "policyTypes": {"type": "array", "items": {"type": "string", "enum": ["Ingress", "Egress"]}},
                    "ingress": {"type": "array", "items": {"type": "object", "properties": {
                        "action": {"type": "string", "enum": ["Allow", "Deny"], "default": "Allow"},
                        "from": {"type": "array", "items": {"type": "object",
                                                            "x-kubernetes-preserve-unknown-fields": True}},
                        "ports": {"type": "array", "items": {
                            "type": "object",
                            "x-kubernetes-validations": [{
                                "rule": "!has(self.endPort) || (has(self.port) && type(self.port) == int && "
                                        "self.endPort >= self.port)",
                                "message": "endPort needs a numeric port and must not be below it"}],
                            "properties": {
                                "port": {"x-kubernetes-int-or-string": True},
                                "endPort": {"type": "integer"},
                                "protocol": {"type": "string"}}}}}}}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}

CLUSTER_POLICY_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "clustersegmentpolicies.microseg.io"},
    "spec": {
        "group": "microseg.io", "scope": "Cluster",
        "names": {"plural": "clustersegmentpolicies", "kind": "ClusterSegmentPolicy", "shortNames": ["csp"]},
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "required": ["spec"], "properties": {
                "spec": {"type": "object", "required": ["priority"], "properties": {
                    "priority": {"type": "integer", "minimum": 0, "maximum": 1000},
                    "subject": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "ingress": {"type": "array", "items": {"type": "object",
                                                           "x-kubernetes-preserve-unknown-fields": True}}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


def pod(name: str, labels: dict | None = None, node: str | None = None, namespace: str = "default") -> dict:
    spec = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}}, "spec": spec}


def configmap(name: str, namespace: str, data: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data or {}}


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


class ApiTestCase(unittest.TestCase):
    counter = 0

    @property
    def srv(self) -> TestApiServer:
        return SERVER

    @property
    def api(self) -> KubeHttp:
        return self.srv.api_client()

    def unique(self, prefix: str) -> str:
        ApiTestCase.counter += 1
        return f"{prefix}-{ApiTestCase.counter}"

    def fresh_namespace(self) -> str:
        name = self.unique("ns")
        self.srv.create(namespace(name))
        return name

    def assertStatus(self, body: dict, code: int, reason: str) -> None:
        self.assertEqual(body.get("kind"), "Status", body)
        self.assertEqual(body.get("apiVersion"), "v1", body)
        self.assertEqual(body.get("status"), "Failure", body)
        self.assertEqual(body.get("code"), code, body)
        self.assertEqual(body.get("reason"), reason, body)

    def call_expect(self, code: int, method: str, path: str, body=None, content_type="application/json"):
        status, headers, parsed = self.api.request(method, path, body, content_type)
        self.assertEqual(status, code, parsed)
        return parsed, headers


class Discovery(ApiTestCase):
    def test_core_and_groups(self):
        api, _ = self.call_expect(200, "GET", "/api")
        self.assertEqual((api["kind"], api["versions"]), ("APIVersions", ["v1"]))
        core, _ = self.call_expect(200, "GET", "/api/v1")
        self.assertEqual(core["kind"], "APIResourceList")
        by_name = {r["name"]: r for r in core["resources"]}
        for name, namespaced in (("pods", True), ("namespaces", False), ("events", True), ("configmaps", True)):
            self.assertEqual(by_name[name]["namespaced"], namespaced, name)
            self.assertIn("watch", by_name[name]["verbs"])
        self.assertEqual(by_name["pods/status"]["verbs"], ["get", "patch", "update"])
        groups, _ = self.call_expect(200, "GET", "/apis")
        names = {g["name"] for g in groups["groups"]}
        self.assertTrue({"networking.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io"} <= names)
        netpol, _ = self.call_expect(200, "GET", "/apis/networking.k8s.io/v1")
        self.assertEqual([r["kind"] for r in netpol["resources"]], ["NetworkPolicy"])
        version, _ = self.call_expect(200, "GET", "/version")
        self.assertEqual(version["major"], "1")
        missing, _ = self.call_expect(404, "GET", "/apis/nope.example/v1")
        self.assertStatus(missing, 404, "NotFound")


class Auth(ApiTestCase):
    def test_token_required(self):
        for token in (None, "wrong"):
            client = KubeHttp(self.srv.url, self.srv.ca_file, token)
            status, _, body = client.request("GET", "/api/v1/pods")
            self.assertEqual(status, 401, token)
            self.assertStatus(body, 401, "Unauthorized")
        status, _, _ = KubeHttp(self.srv.url, self.srv.ca_file, None).request("GET", "/version")
        self.assertEqual(status, 200)

    def test_client_certificate_authenticates(self):
        paths = self.srv.client_certificate("system:node:node-1")
        context = ssl.create_default_context(cafile=self.srv.ca_file)
        context.load_cert_chain(paths["crt"], paths["key"])
        conn = http.client.HTTPSConnection("127.0.0.1", self.srv.port, context=context, timeout=10)
        try:
            conn.request("GET", "/api/v1/pods", headers={"User-Agent": "client-cert-test"})
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        self.assertEqual(response.status, 200)
        (entry,) = [e for e in self.srv.requests() if e["userAgent"] == "client-cert-test"]
        self.assertEqual(entry["user"], "system:node:node-1")

    def test_tls_verifies_with_the_ca_only(self):
        for host in ("127.0.0.1", "localhost"):
            context = ssl.create_default_context(cafile=self.srv.ca_file)
            with socket.create_connection(("127.0.0.1", self.srv.port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    self.assertTrue(tls.version().startswith("TLS"))
        context = ssl.create_default_context()  # system CAs: must not trust the per-run CA
        with socket.create_connection(("127.0.0.1", self.srv.port), timeout=10) as raw:
            with self.assertRaises(ssl.SSLCertVerificationError):
                context.wrap_socket(raw, server_hostname="127.0.0.1")

    def test_token_rotation(self):
        old = self.srv.token
        new = self.srv.rotate_token()
        try:
            with open(self.srv.token_file) as f:
                self.assertEqual(f.read().strip(), new)
            status, _, body = KubeHttp(self.srv.url, self.srv.ca_file, old).request("GET", "/api/v1/pods")
            self.assertEqual(status, 401)
            self.assertStatus(body, 401, "Unauthorized")
            status, _, _ = KubeHttp(self.srv.url, self.srv.ca_file, new).request("GET", "/api/v1/pods")
            self.assertEqual(status, 200)
        finally:
            self.srv.rotate_token(old)

    def test_admin_endpoint_needs_admin_token(self):
        status, _, _ = self.api.request("GET", "/__admin/state")
        self.assertEqual(status, 401)
        admin = KubeHttp(self.srv.url, self.srv.ca_file, self.srv.admin_token)
        status, _, body = admin.request("GET", "/__admin/state")
        self.assertEqual(status, 200)
        self.assertIn("resourceVersion", body)


class Objects(ApiTestCase):
    def test_create_get_shapes_and_errors(self):
        ns = self.fresh_namespace()
        created, _ = self.call_expect(201, "POST", f"/api/v1/namespaces/{ns}/pods", pod("p", {"app": "a"}, namespace=ns))
        meta = created["metadata"]
        self.assertTrue(meta["uid"] and meta["creationTimestamp"].endswith("Z"))
        self.assertEqual(meta["generation"], 1)
        self.assertEqual(meta["namespace"], ns)
        self.assertEqual(created["status"]["phase"], "Pending")
        self.assertGreater(int(meta["resourceVersion"]), 1000)
        got, _ = self.call_expect(200, "GET", f"/api/v1/namespaces/{ns}/pods/p")
        self.assertEqual(got["metadata"]["uid"], meta["uid"])
        dup, _ = self.call_expect(409, "POST", f"/api/v1/namespaces/{ns}/pods", pod("p", namespace=ns))
        self.assertStatus(dup, 409, "AlreadyExists")
        self.assertEqual(dup["details"], {"name": "p", "group": "", "kind": "pods"})
        missing, _ = self.call_expect(404, "GET", f"/api/v1/namespaces/{ns}/pods/nope")
        self.assertStatus(missing, 404, "NotFound")
        self.assertEqual(missing["message"], 'pods "nope" not found')
        nons, _ = self.call_expect(404, "POST", "/api/v1/namespaces/absent/pods", pod("q", namespace="absent"))
        self.assertEqual(nons["message"], 'namespaces "absent" not found')
        bad, _ = self.call_expect(422, "POST", f"/api/v1/namespaces/{ns}/pods", pod("Bad_Name", namespace=ns))
        self.assertStatus(bad, 422, "Invalid")
        self.assertEqual(bad["details"]["causes"][0]["field"], "metadata.name")
        nocontainers = pod("empty", namespace=ns)
        nocontainers["spec"] = {}
        bad, _ = self.call_expect(422, "POST", f"/api/v1/namespaces/{ns}/pods", nocontainers)
        self.assertEqual(bad["details"]["causes"][0]["field"], "spec.containers")
        generated = pod("", namespace=ns)
        generated["metadata"] = {"generateName": "gen-"}
        made, _ = self.call_expect(201, "POST", f"/api/v1/namespaces/{ns}/pods", generated)
        self.assertRegex(made["metadata"]["name"], r"^gen-[a-z0-9]{5}$")

    def test_namespace_defaults(self):
        ns = self.fresh_namespace()
        got = self.srv.get("v1", "namespaces", ns)
        self.assertEqual(got["metadata"]["labels"]["kubernetes.io/metadata.name"], ns)
        self.assertEqual(got["status"]["phase"], "Active")

    def test_network_policy_defaults_and_validation(self):
        ns = self.fresh_namespace()
        path = f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
        np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np"},
              "spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}}
        created, _ = self.call_expect(201, "POST", path, np)
        self.assertEqual(created["spec"]["policyTypes"], ["Ingress", "Egress"])
        self.assertEqual(created["spec"]["egress"][0]["ports"][0]["protocol"], "TCP")
        np["metadata"]["name"] = "bad"
        np["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}], "ports": [{"port": 70000}]}]
        bad, _ = self.call_expect(422, "POST", path, np)
        fields = {c["field"] for c in bad["details"]["causes"]}
        self.assertEqual(fields, {"spec.egress[0].to[0].ipBlock.cidr", "spec.egress[0].ports[0].port"})

    def test_update_conflict_generation_and_noop(self):
        ns = self.fresh_namespace()
        base = f"/api/v1/namespaces/{ns}/configmaps"
        created, _ = self.call_expect(201, "POST", base, configmap("c", ns, {"a": "1"}))
        rv1 = created["metadata"]["resourceVersion"]
        created["data"] = {"a": "2"}
        updated, _ = self.call_expect(200, "PUT", f"{base}/c", created)
        self.assertGreater(int(updated["metadata"]["resourceVersion"]), int(rv1))
        self.assertEqual(updated["metadata"]["uid"], created["metadata"]["uid"])
        stale = dict(created, data={"a": "3"})
        stale["metadata"] = dict(created["metadata"], resourceVersion=rv1)
        conflict, _ = self.call_expect(409, "PUT", f"{base}/c", stale)
        self.assertStatus(conflict, 409, "Conflict")
        self.assertIn("the object has been modified", conflict["message"])
        unconditional = dict(stale)
        unconditional["metadata"] = {k: v for k, v in stale["metadata"].items() if k != "resourceVersion"}
        self.call_expect(200, "PUT", f"{base}/c", unconditional)
        again, _ = self.call_expect(200, "PUT", f"{base}/c", unconditional)
        same, _ = self.call_expect(200, "PUT", f"{base}/c", unconditional)
        self.assertEqual(same["metadata"]["resourceVersion"], again["metadata"]["resourceVersion"],
                         "a no-op update must not write")
        wrong_name, _ = self.call_expect(400, "PUT", f"{base}/other", unconditional)
        self.assertStatus(wrong_name, 400, "BadRequest")
        missing, _ = self.call_expect(404, "PUT", f"{base}/absent",
                                      dict(unconditional, metadata={"name": "absent"}))
        self.assertStatus(missing, 404, "NotFound")

    def test_patch_types(self):
        ns = self.fresh_namespace()
        path = f"/api/v1/namespaces/{ns}/pods/p"
        self.srv.create(pod("p", {"a": "1", "b": "2"}, namespace=ns))
        merged, _ = self.call_expect(200, "PATCH", path, {"metadata": {"labels": {"a": None, "c": "3"}}},
                                     "application/merge-patch+json")
        self.assertEqual(merged["metadata"]["labels"], {"b": "2", "c": "3"})
        self.assertEqual(merged["metadata"]["generation"], 1)
        patched, _ = self.call_expect(200, "PATCH", path, [{"op": "add", "path": "/metadata/labels/d", "value": "4"},
                                                           {"op": "remove", "path": "/metadata/labels/b"}],
                                      "application/json-patch+json")
        self.assertEqual(patched["metadata"]["labels"], {"c": "3", "d": "4"})
        failed, _ = self.call_expect(422, "PATCH", path, [{"op": "test", "path": "/metadata/labels/c", "value": "x"}],
                                     "application/json-patch+json")
        self.assertStatus(failed, 422, "Invalid")
        strategic, _ = self.call_expect(200, "PATCH", path, {"metadata": {"labels": {"e": "5"}}},
                                        "application/strategic-merge-patch+json")
        self.assertEqual(strategic["metadata"]["labels"]["e"], "5")
        stale, _ = self.call_expect(409, "PATCH", path, {"metadata": {"resourceVersion": "1", "labels": {"f": "6"}}},
                                    "application/merge-patch+json")
        self.assertStatus(stale, 409, "Conflict")
        immutable, _ = self.call_expect(422, "PATCH", path, {"spec": {"nodeName": "elsewhere"}},
                                        "application/merge-patch+json")
        self.assertStatus(immutable, 422, "Invalid")
        unsupported, _ = self.call_expect(415, "PATCH", path, {}, "application/xml")
        self.assertStatus(unsupported, 415, "UnsupportedMediaType")
        self.call_expect(422, "PATCH", path + "?", {"metadata": {"labels": {"g": "7"}}}, "application/apply-patch+yaml")
        applied, _ = self.call_expect(200, "PATCH", path + "?fieldManager=test",
                                      {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"g": "7"}}},
                                      "application/apply-patch+yaml")
        self.assertEqual(applied["metadata"]["labels"]["g"], "7")
        new_cm = configmap("applied", ns, {"k": "v"})
        created, _ = self.call_expect(201, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/applied?fieldManager=test",
                                      new_cm, "application/apply-patch+yaml")
        self.assertEqual(created["data"], {"k": "v"})

    def test_status_subresource(self):
        ns = self.fresh_namespace()
        path = f"/api/v1/namespaces/{ns}/pods/p"
        self.srv.create(pod("p", namespace=ns))
        got, _ = self.call_expect(200, "GET", path + "/status")
        got["status"] = {"phase": "Running", "podIP": "10.244.3.4"}
        got["metadata"]["labels"] = {"ignored": "on-status"}
        updated, _ = self.call_expect(200, "PUT", path + "/status", got)
        self.assertEqual(updated["status"]["podIP"], "10.244.3.4")
        self.assertEqual(updated["metadata"]["generation"], 1)
        self.assertNotIn("ignored", updated["metadata"].get("labels", {}))
        main = dict(updated, status={"phase": "Failed"})
        main["metadata"] = dict(updated["metadata"], labels={"x": "y"})
        through_main, _ = self.call_expect(200, "PUT", path, main)
        self.assertEqual(through_main["status"]["phase"], "Running", "the main resource ignores status")
        self.assertEqual(through_main["metadata"]["labels"], {"x": "y"})
        patched, _ = self.call_expect(200, "PATCH", path + "/status", {"status": {"phase": "Succeeded"}},
                                      "application/merge-patch+json")
        self.assertEqual(patched["status"]["phase"], "Succeeded")
        stale = dict(patched)
        stale["metadata"] = dict(patched["metadata"], resourceVersion=updated["metadata"]["resourceVersion"])
        conflict, _ = self.call_expect(409, "PUT", path + "/status", stale)
        self.assertStatus(conflict, 409, "Conflict")

    def test_delete_finalizers_and_preconditions(self):
        ns = self.fresh_namespace()
        base = f"/api/v1/namespaces/{ns}/configmaps"
        cm = configmap("f", ns)
        cm["metadata"]["finalizers"] = ["test/hold"]
        created = self.srv.create(cm)
        wrong = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-it"}}
        conflict, _ = self.call_expect(409, "DELETE", f"{base}/f", wrong)
        self.assertStatus(conflict, 409, "Conflict")
        pending, _ = self.call_expect(200, "DELETE", f"{base}/f")
        self.assertTrue(pending["metadata"]["deletionTimestamp"])
        self.assertIsNotNone(self.srv.get("v1", "configmaps", "f", ns))
        self.srv.patch("v1", "configmaps", "f", {"metadata": {"finalizers": None}}, ns)
        self.assertIsNone(self.srv.get("v1", "configmaps", "f", ns))
        self.srv.create(configmap("g", ns))
        status, _ = self.call_expect(200, "DELETE", f"{base}/g")
        self.assertEqual((status["kind"], status["status"], status["details"]["name"]), ("Status", "Success", "g"))
        self.srv.create(pod("p", namespace=ns))
        deleted_pod, _ = self.call_expect(200, "DELETE", f"/api/v1/namespaces/{ns}/pods/p")
        self.assertEqual(deleted_pod["kind"], "Pod")
        self.assertEqual(created["metadata"]["namespace"], ns)

    def test_namespace_deletion_removes_content(self):
        ns = self.fresh_namespace()
        self.srv.create(pod("p", namespace=ns))
        start = self.srv.resource_version()
        with self.api.watch(f"/api/v1/pods?watch=true&resourceVersion={start}", timeout=10) as stream:
            gone, _ = self.call_expect(200, "DELETE", f"/api/v1/namespaces/{ns}")
            self.assertEqual(gone["status"]["phase"], "Terminating")
            event = stream.next()
            self.assertEqual((event["type"], event["object"]["metadata"]["name"]), ("DELETED", "p"))
        self.assertIsNone(self.srv.get("v1", "namespaces", ns))
        self.assertIsNone(self.srv.get("v1", "pods", "p", ns))

    def test_table_output(self):
        ns = self.fresh_namespace()
        self.srv.create(pod("p", namespace=ns))
        status, _, table = self.api.request("GET", f"/api/v1/namespaces/{ns}/pods", headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
        self.assertEqual(status, 200)
        self.assertEqual(table["kind"], "Table")
        self.assertEqual(table["columnDefinitions"][0]["name"], "Name")
        self.assertEqual(table["rows"][0]["cells"][:2], ["p", "Pending"])


class Lists(ApiTestCase):
    def fill(self, ns: str, count: int) -> None:
        for i in range(count):
            self.srv.create(configmap(f"cm-{i}", ns, {"i": str(i)}))

    def test_pagination_is_a_consistent_snapshot(self):
        ns = self.fresh_namespace()
        self.fill(ns, 5)
        base = f"/api/v1/namespaces/{ns}/configmaps"
        first, _ = self.call_expect(200, "GET", f"{base}?limit=2")
        self.assertEqual(first["kind"], "ConfigMapList")
        self.assertEqual(first["metadata"]["remainingItemCount"], 3)
        names = [i["metadata"]["name"] for i in first["items"]]
        self.srv.create(configmap("cm-9", ns))  # after the snapshot: not in later pages
        self.srv.delete("v1", "configmaps", "cm-4", ns)  # deleted after the snapshot: still listed
        token = first["metadata"]["continue"]
        while token:
            page, _ = self.call_expect(200, "GET", f"{base}?limit=2&continue={urllib.parse.quote(token)}")
            self.assertEqual(page["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"])
            names += [i["metadata"]["name"] for i in page["items"]]
            token = page["metadata"].get("continue")
        self.assertEqual(names, [f"cm-{i}" for i in range(5)])
        bad, _ = self.call_expect(400, "GET", f"{base}?limit=2&continue=garbage")
        self.assertStatus(bad, 400, "BadRequest")
        both, _ = self.call_expect(400, "GET", f"{base}?limit=2&continue={first['metadata']['continue']}"
                                               "&resourceVersion=5")
        self.assertStatus(both, 400, "BadRequest")

    def test_expired_continue_and_resource_version(self):
        ns = self.fresh_namespace()
        self.fill(ns, 3)
        base = f"/api/v1/namespaces/{ns}/configmaps"
        first, _ = self.call_expect(200, "GET", f"{base}?limit=1")
        old_rv = first["metadata"]["resourceVersion"]
        self.srv.create(configmap("later", ns))
        self.srv.compact()
        expired, _ = self.call_expect(410, "GET", f"{base}?limit=1&continue={urllib.parse.quote(first['metadata']['continue'])}")
        self.assertStatus(expired, 410, "Expired")
        exact, _ = self.call_expect(410, "GET", f"{base}?resourceVersion={old_rv}&resourceVersionMatch=Exact")
        self.assertStatus(exact, 410, "Expired")
        # NotOlderThan an old revision is served from the current state.
        current, _ = self.call_expect(200, "GET", f"{base}?resourceVersion={old_rv}&resourceVersionMatch=NotOlderThan")
        self.assertEqual(len(current["items"]), 4)

    def test_resource_version_semantics(self):
        ns = self.fresh_namespace()
        base = f"/api/v1/namespaces/{ns}/configmaps"
        self.srv.create(configmap("a", ns))
        before = self.srv.resource_version()
        self.srv.create(configmap("b", ns))
        snap, _ = self.call_expect(200, "GET", f"{base}?resourceVersion={before}&resourceVersionMatch=Exact")
        self.assertEqual([i["metadata"]["name"] for i in snap["items"]], ["a"])
        self.assertEqual(snap["metadata"]["resourceVersion"], str(before))
        now, _ = self.call_expect(200, "GET", base)
        self.assertEqual(len(now["items"]), 2)
        self.assertEqual(now["metadata"]["resourceVersion"], str(self.srv.resource_version()))
        any_rv, _ = self.call_expect(200, "GET", f"{base}?resourceVersion=0")
        self.assertEqual(len(any_rv["items"]), 2)
        bad, _ = self.call_expect(400, "GET", f"{base}?resourceVersionMatch=Exact")
        self.assertStatus(bad, 400, "BadRequest")
        future = self.srv.resource_version() + 1000
        too_large, _ = self.call_expect(504, "GET", f"{base}?resourceVersion={future}&resourceVersionMatch=NotOlderThan")
        self.assertStatus(too_large, 504, "Timeout")
        self.assertEqual(too_large["details"]["causes"][0]["reason"], "ResourceVersionTooLarge")

    def test_selectors(self):
        ns = self.fresh_namespace()
        self.srv.create(pod("a", {"app": "web", "tier": "front"}, node="node-1", namespace=ns))
        self.srv.create(pod("b", {"app": "db"}, node="node-2", namespace=ns))
        self.srv.create(pod("c", {"app": "web"}, node="node-2", namespace=ns))
        cases = [
            ("labelSelector=app%3Dweb", ["a", "c"]),
            ("labelSelector=app%21%3Dweb", ["b"]),
            ("labelSelector=app+in+%28web%2Cdb%29%2Ctier", ["a"]),
            ("labelSelector=app+notin+%28web%29", ["b"]),
            ("labelSelector=%21tier", ["b", "c"]),
            ("fieldSelector=spec.nodeName%3Dnode-2", ["b", "c"]),
            ("fieldSelector=spec.nodeName%3Dnode-2%2Cmetadata.name%21%3Db", ["c"]),
            ("fieldSelector=metadata.name%3Da&labelSelector=app%3Dweb", ["a"]),
        ]
        for query, expected in cases:
            listing, _ = self.call_expect(200, "GET", f"/api/v1/namespaces/{ns}/pods?{query}")
            self.assertEqual([i["metadata"]["name"] for i in listing["items"]], expected, query)
        bad, _ = self.call_expect(400, "GET", f"/api/v1/namespaces/{ns}/pods?fieldSelector=spec.bogus%3Dx")
        self.assertStatus(bad, 400, "BadRequest")
        self.assertIn("field label not supported", bad["message"])
        all_ns, _ = self.call_expect(200, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1")
        self.assertIn("a", [i["metadata"]["name"] for i in all_ns["items"]])


class Watches(ApiTestCase):
    def test_events_in_order_from_a_resource_version(self):
        ns = self.fresh_namespace()
        start = self.srv.resource_version()
        base = f"/api/v1/namespaces/{ns}/configmaps"
        self.srv.create(configmap("w", ns, {"v": "1"}))
        self.srv.patch("v1", "configmaps", "w", {"data": {"v": "2"}}, ns)
        self.srv.delete("v1", "configmaps", "w", ns)
        with self.api.watch(f"{base}?watch=true&resourceVersion={start}", timeout=10) as stream:
            events = [stream.next() for _ in range(3)]
        self.assertEqual([e["type"] for e in events], ["ADDED", "MODIFIED", "DELETED"])
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        self.assertEqual(rvs, sorted(rvs))
        self.assertEqual(events[1]["object"]["data"], {"v": "2"})
        self.assertEqual(events[0]["object"]["kind"], "ConfigMap")

    def test_initial_state_and_selector_transitions(self):
        ns = self.fresh_namespace()
        self.srv.create(pod("in", {"app": "web"}, namespace=ns))
        self.srv.create(pod("out", {"app": "db"}, namespace=ns))
        with self.api.watch(f"/api/v1/namespaces/{ns}/pods?watch=1&labelSelector=app%3Dweb", timeout=10) as stream:
            first = stream.next()
            self.assertEqual((first["type"], first["object"]["metadata"]["name"]), ("ADDED", "in"))
            self.srv.patch("v1", "pods", "in", {"metadata": {"labels": {"app": "db"}}}, ns)
            left = stream.next()
            self.assertEqual((left["type"], left["object"]["metadata"]["name"]), ("DELETED", "in"))
            self.srv.patch("v1", "pods", "out", {"metadata": {"labels": {"app": "web"}}}, ns)
            joined = stream.next()
            self.assertEqual((joined["type"], joined["object"]["metadata"]["name"]), ("ADDED", "out"))

    def test_watch_of_one_object(self):
        ns = self.fresh_namespace()
        self.srv.create(configmap("one", ns))
        self.srv.create(configmap("other", ns))
        with self.api.watch(f"/api/v1/namespaces/{ns}/configmaps/one?watch=true", timeout=10) as stream:
            first = stream.next()
            self.assertEqual((first["type"], first["object"]["metadata"]["name"]), ("ADDED", "one"))
            self.srv.patch("v1", "configmaps", "other", {"data": {"x": "1"}}, ns)
            self.srv.patch("v1", "configmaps", "one", {"data": {"x": "2"}}, ns)
            second = stream.next()
            self.assertEqual((second["type"], second["object"]["metadata"]["name"]), ("MODIFIED", "one"))

    def test_bookmarks_and_timeout(self):
        ns = self.fresh_namespace()
        rv = self.srv.resource_version()
        path = f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}"
        with self.api.watch(path + "&allowWatchBookmarks=true", timeout=20) as stream:
            event = stream.next()
            self.assertEqual(event["type"], "BOOKMARK")
            self.assertEqual(event["object"]["kind"], "ConfigMap")
            self.assertGreaterEqual(int(event["object"]["metadata"]["resourceVersion"]), rv)
        with self.api.watch(path + "&timeoutSeconds=2", timeout=20) as stream:
            self.assertIsNone(stream.next(), "no bookmarks unless asked for; the stream ends at timeoutSeconds")

    def test_send_initial_events(self):
        ns = self.fresh_namespace()
        self.srv.create(configmap("x", ns))
        path = (f"/api/v1/namespaces/{ns}/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
                "&resourceVersionMatch=NotOlderThan")
        with self.api.watch(path, timeout=10) as stream:
            added, marker = stream.next(), stream.next()
        self.assertEqual(added["type"], "ADDED")
        self.assertEqual(marker["type"], "BOOKMARK")
        self.assertEqual(marker["object"]["metadata"]["annotations"], {"k8s.io/initial-events-end": "true"})

    def test_expired_resource_version(self):
        ns = self.fresh_namespace()
        old = self.srv.resource_version()
        self.srv.create(configmap("e", ns))
        self.srv.compact()
        with self.api.watch(f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={old}",
                            timeout=10) as stream:
            event = stream.next()
            self.assertEqual(event["type"], "ERROR")
            self.assertStatus(event["object"], 410, "Expired")
            self.assertIn("too old resource version", event["object"]["message"])
            self.assertIsNone(stream.next())
        expired, _ = self.call_expect(410, "GET", f"/api/v1/namespaces/{ns}/configmaps?resourceVersion={old}"
                                                  "&resourceVersionMatch=Exact")
        self.assertStatus(expired, 410, "Expired")


class Faults(ApiTestCase):
    def tearDown(self):
        self.srv.clear_faults()
        self.srv.unstall_watches()

    def test_429_with_retry_after_for_n_requests(self):
        ns = self.fresh_namespace()
        path = f"/api/v1/namespaces/{ns}/configmaps"
        self.srv.add_fault(rf"^/api/v1/namespaces/{ns}/configmaps", code=429, count=2, retry_after=3)
        for _ in range(2):
            status, headers, body = self.api.request("GET", path)
            self.assertEqual(status, 429)
            self.assertEqual(headers.get("Retry-After"), "3")
            self.assertStatus(body, 429, "TooManyRequests")
            self.assertEqual(body["details"]["retryAfterSeconds"], 3)
        self.call_expect(200, "GET", path)
        self.call_expect(200, "GET", "/api/v1/namespaces")  # other paths never matched
        log = [e for e in self.srv.requests() if e["path"] == path]
        self.assertEqual([e["code"] for e in log[-3:]], [429, 429, 200])
        self.assertTrue(all("fault" in e for e in log[-3:-1]))

    def test_500_and_connection_reset(self):
        ns = self.fresh_namespace()
        path = f"/api/v1/namespaces/{ns}/pods"
        self.srv.add_fault(f"/namespaces/{ns}/pods", code=500, method="POST")
        body, _ = self.call_expect(500, "POST", path, pod("p", namespace=ns))
        self.assertStatus(body, 500, "InternalError")
        self.assertIsNone(self.srv.get("v1", "pods", "p", ns), "a failed request changes nothing")
        self.srv.add_fault(f"/namespaces/{ns}/pods", code=0)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
            self.api.request("GET", path)
        self.call_expect(200, "GET", path)

    def test_watch_faults_only_hit_watches(self):
        ns = self.fresh_namespace()
        self.srv.add_fault(f"/namespaces/{ns}/configmaps", code=503, watch=True, retry_after=1)
        self.call_expect(200, "GET", f"/api/v1/namespaces/{ns}/configmaps")
        with self.assertRaises(ApiServerError) as raised:
            self.api.watch(f"/api/v1/namespaces/{ns}/configmaps?watch=true")
        self.assertEqual(raised.exception.code, 503)

    def test_drop_watches(self):
        for graceful in (False, True):
            ns = self.fresh_namespace()
            with self.api.watch(f"/api/v1/namespaces/{ns}/configmaps?watch=true", timeout=10) as stream:
                self.srv.wait_for(lambda: any(w["namespace"] == ns for w in self.srv.watches()), what="the watch")
                dropped = self.srv.drop_watches(resource="configmaps", graceful=graceful)
                self.assertGreaterEqual(len(dropped), 1)
                try:
                    end = stream.next()
                except (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError):
                    end = None
                self.assertIsNone(end)
            self.srv.wait_for(lambda: not any(w["namespace"] == ns for w in self.srv.watches()), what="watch gone")

    def test_stall_watches(self):
        ns = self.fresh_namespace()
        with self.api.watch(f"/api/v1/namespaces/{ns}/configmaps?watch=true", timeout=3) as stream:
            self.srv.wait_for(lambda: any(w["namespace"] == ns for w in self.srv.watches()), what="the watch")
            self.srv.stall_watches(resource="configmaps")
            self.srv.create(configmap("during-stall", ns))
            # Nothing was sent before the stall (empty namespace, no bookmarks),
            # so an unreadable socket means the event is being held back.
            self.assertEqual(select.select([stream.conn.sock], [], [], 1.5)[0], [])
            held = [w for w in self.srv.watches() if w["namespace"] == ns]
            self.assertEqual((held[0]["stalled"], held[0]["sent"]), (True, 0))
            self.srv.unstall_watches()
            event = stream.next()
            self.assertEqual((event["type"], event["object"]["metadata"]["name"]), ("ADDED", "during-stall"))


class Restart(ApiTestCase):
    def test_restart_keeps_objects_and_history(self):
        ns = self.fresh_namespace()
        self.srv.create(configmap("kept", ns))
        rv = self.srv.resource_version()
        stream = self.api.watch(f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}", timeout=20)
        self.srv.restart()
        try:
            end = stream.next()
        except (ConnectionError, http.client.HTTPException, ssl.SSLError, OSError):
            end = None
        self.assertIsNone(end, "watches break when the server restarts")
        stream.close()
        self.assertEqual(self.srv.resource_version(), rv)
        self.assertIsNotNone(self.srv.get("v1", "configmaps", "kept", ns))
        self.srv.create(configmap("after", ns))
        with self.api.watch(f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}",
                            timeout=10) as resumed:
            event = resumed.next()
        self.assertEqual((event["type"], event["object"]["metadata"]["name"]), ("ADDED", "after"))


class CustomResources(ApiTestCase):
    def test_crd_lifecycle(self):
        ns = self.fresh_namespace()
        crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        self.call_expect(404, "GET", f"/apis/microseg.io/v1alpha1/namespaces/{ns}/segmentpolicies")
        crd, _ = self.call_expect(201, "POST", crd_path, SEGMENT_POLICY_CRD)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        self.assertEqual(conditions["Established"], "True")
        self.call_expect(201, "POST", crd_path, CLUSTER_POLICY_CRD)
        discovery, _ = self.call_expect(200, "GET", "/apis/microseg.io/v1alpha1")
        resources = {r["name"]: r for r in discovery["resources"]}
        self.assertTrue(resources["segmentpolicies"]["namespaced"])
        self.assertFalse(resources["clustersegmentpolicies"]["namespaced"])
        self.assertEqual(resources["segmentpolicies"]["shortNames"], ["segpol"])
        self.assertIn("segmentpolicies/status", resources)
        groups, _ = self.call_expect(200, "GET", "/apis")
        self.assertIn("microseg.io", [g["name"] for g in groups["groups"]])

        base = f"/apis/microseg.io/v1alpha1/namespaces/{ns}/segmentpolicies"
        sp = {"apiVersion": "microseg.io/v1alpha1", "kind": "SegmentPolicy", "metadata": {"name": "sp"},
              "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "unknownField": 1,
                       "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}]},
              "status": {"ignored": True}}
        created, _ = self.call_expect(201, "POST", base, sp)
        self.assertNotIn("status", created, "status is dropped on create with a status subresource")
        self.assertNotIn("unknownField", created["spec"], "unknown fields are pruned")
        self.assertEqual(created["spec"]["enforcement"], "Enforce")
        self.assertEqual(created["spec"]["ingress"][0]["action"], "Allow")
        self.assertEqual(created["metadata"]["generation"], 1)
        with self.api.watch(f"{base}?watch=true&resourceVersion={created['metadata']['resourceVersion']}",
                            timeout=10) as stream:
            status = {"conditions": [{"type": "Accepted", "status": "True", "reason": "Valid", "message": "",
                                      "observedGeneration": 1}]}
            with_status, _ = self.call_expect(200, "PATCH", f"{base}/sp/status", {"status": status},
                                              "application/merge-patch+json")
            self.assertEqual(with_status["metadata"]["generation"], 1)
            self.assertEqual(with_status["status"], status)
            spec_change, _ = self.call_expect(200, "PATCH", f"{base}/sp", {"spec": {"enforcement": "Audit"}},
                                              "application/merge-patch+json")
            self.assertEqual(spec_change["metadata"]["generation"], 2)
            label_change, _ = self.call_expect(200, "PATCH", f"{base}/sp", {"metadata": {"labels": {"x": "y"}}},
                                               "application/merge-patch+json")
            self.assertEqual(label_change["metadata"]["generation"], 2)
            types = [stream.next()["type"] for _ in range(3)]
            self.assertEqual(types, ["MODIFIED"] * 3)
        strict, _ = self.call_expect(400, "POST", base + "?fieldValidation=Strict",
                                     dict(sp, metadata={"name": "strict"}))
        self.assertIn('strict decoding error: unknown field "spec.unknownField"', strict["message"])
        _, headers, _ = self.api.request("POST", base, dict(sp, metadata={"name": "warned"}))
        self.assertEqual(headers.get("Warning"), '299 - "unknown field \\"spec.unknownField\\""')
        self.call_expect(200, "DELETE", f"{base}/warned")
        index, _ = self.call_expect(200, "GET", "/openapi/v3")
        self.assertIn("apis/microseg.io/v1alpha1", index["paths"])
        doc, _ = self.call_expect(200, "GET", "/" + index["paths"]["apis/microseg.io/v1alpha1"]["serverRelativeURL"]
                                  .lstrip("/"))
        patch_op = doc["paths"]["/apis/microseg.io/v1alpha1/namespaces/{namespace}/segmentpolicies/{name}"]["patch"]
        self.assertEqual(patch_op["x-kubernetes-group-version-kind"]["kind"], "SegmentPolicy")
        self.assertIn("fieldValidation", [p["name"] for p in patch_op["parameters"]])
        smp, _ = self.call_expect(415, "PATCH", f"{base}/sp", {}, "application/strategic-merge-patch+json")
        self.assertStatus(smp, 415, "UnsupportedMediaType")
        rule = dict(sp, metadata={"name": "rule"}, spec={"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]})
        broken, _ = self.call_expect(422, "POST", base, rule)
        self.assertEqual(broken["details"]["causes"][0]["field"], "spec.ingress[0].ports[0]")
        self.assertEqual(broken["details"]["causes"][0]["message"],
                         'Invalid value: "object": endPort needs a numeric port and must not be below it')
        rule["spec"]["ingress"][0]["ports"][0]["endPort"] = 100
        self.call_expect(201, "POST", base, rule)
        bad = dict(sp, metadata={"name": "bad"}, spec={"enforcement": "Sometimes"})
        invalid, _ = self.call_expect(422, "POST", base, bad)
        self.assertStatus(invalid, 422, "Invalid")
        self.assertEqual(invalid["details"]["causes"][0]["field"], "spec.enforcement")
        self.assertIn('SegmentPolicy.microseg.io "bad" is invalid', invalid["message"])

        csp_base = "/apis/microseg.io/v1alpha1/clustersegmentpolicies"
        csp = {"apiVersion": "microseg.io/v1alpha1", "kind": "ClusterSegmentPolicy", "metadata": {"name": "c"},
               "spec": {"priority": 5000}}
        too_high, _ = self.call_expect(422, "POST", csp_base, csp)
        self.assertIn("less than or equal to 1000", too_high["details"]["causes"][0]["message"])
        csp["spec"]["priority"] = 10
        made, _ = self.call_expect(201, "POST", csp_base, csp)
        self.assertNotIn("namespace", made["metadata"])
        table_status, _, table = self.api.request("GET", base, headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
        self.assertEqual([c["name"] for c in table["columnDefinitions"]], ["Name", "Enforcement"])
        self.assertEqual([r["cells"] for r in table["rows"]], [["rule", "Enforce"], ["sp", "Audit"]])

        with self.api.watch(f"{base}?watch=true", timeout=10) as stream:
            self.assertEqual([stream.next()["type"] for _ in range(2)], ["ADDED"] * 2)
            self.call_expect(200, "DELETE", f"{crd_path}/segmentpolicies.microseg.io")
            self.assertEqual([stream.next()["type"] for _ in range(2)], ["DELETED"] * 2)
            self.assertIsNone(stream.next(), "watches of a removed CRD end")
        self.call_expect(404, "GET", base)
        self.call_expect(200, "DELETE", f"{crd_path}/clustersegmentpolicies.microseg.io")
        groups, _ = self.call_expect(200, "GET", "/apis")
        self.assertNotIn("microseg.io", [g["name"] for g in groups["groups"]])


def main() -> int:
    global SERVER, WORKDIR
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", help="keep server files here (default: a temporary directory)")
    args, rest = parser.parse_known_args()
    if shutil.which("openssl") is None:
        print("SKIPPED: needs openssl (scripts/setup.sh installs it)")
        return 77
    WORKDIR = args.workdir or tempfile.mkdtemp(prefix="ms-apiserver-")
    SERVER = TestApiServer(WORKDIR, bookmark_interval=0.5)
    ok = False
    try:
        SERVER.start()
        program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        ok = program.result.wasSuccessful()
    finally:
        SERVER.stop()
        if not ok:
            print(f"server log:\n{SERVER.log_tail(50)}")
        if not args.workdir:
            shutil.rmtree(WORKDIR, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
