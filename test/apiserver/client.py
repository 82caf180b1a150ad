"""Test-side fixture for the test apiserver (see docs/testing-apiserver.md).

    from client import TestApiServer
    with TestApiServer(workdir, netns="ms-1a2b3c-node") as srv:   # netns optional
        srv.write_kubeconfig(path)          # real kubeconfig: server URL, CA data, token
        srv.create(pod_manifest)            # via the control socket (no faults, no token)
        srv.set_status("v1", "pods", "p", {"podIP": "10.244.1.5"}, namespace="default")
        srv.add_fault(r"/segmentpolicies", code=429, count=3, retry_after=1)
        srv.drop_watches(); srv.compact(); srv.rotate_token()
        srv.requests()                      # what the agent asked for

The server runs as a subprocess (optionally under `ip netns exec <netns>`),
serving HTTPS on `listen` inside that namespace; the fixture talks to it
over its Unix control socket, which works from any network namespace.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import certs  # noqa: E402  (test/apiserver/certs.py)

# Core resources the fixture can address by kind without asking discovery.
_BUILTIN_PLURALS = {
    ("v1", "Namespace"): ("namespaces", False), ("v1", "Pod"): ("pods", True), ("v1", "Event"): ("events", True),
    ("v1", "ConfigMap"): ("configmaps", True), ("v1", "Service"): ("services", True),
    ("v1", "Node"): ("nodes", False),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
}


class ApiServerError(RuntimeError):
    def __init__(self, code: int, body):
        self.code, self.body = code, body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {code}: {message}")

    @property
    def reason(self) -> str:
        return self.body.get("reason", "") if isinstance(self.body, dict) else ""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class KubeHttp:
    """A minimal Kubernetes HTTP client: over TLS with a bearer token (what
    the agent does), or over the control socket."""

    def __init__(self, url: str | None = None, ca_file: str | None = None, token: str | None = None,
                 unix_socket: str | None = None, timeout: float = 30.0):
        self.url, self.ca_file, self.token, self.unix_socket, self.timeout = url, ca_file, token, unix_socket, timeout

    def connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        timeout = self.timeout if timeout is None else timeout
        if self.unix_socket:
            return _UnixConnection(self.unix_socket, timeout)
        parts = urllib.parse.urlsplit(self.url)
        context = ssl.create_default_context(cafile=self.ca_file)
        return http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)

    def headers(self, extra: dict | None = None) -> dict:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def request(self, method: str, path: str, body=None, content_type: str = "application/json",
                headers: dict | None = None, raw: bool = False):
        """Returns (status, headers, parsed JSON or text)."""
        conn = self.connection()
        try:
            data = None
            if body is not None:
                data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            hdrs = self.headers(headers)
            if data is not None:
                hdrs["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode()
            try:
                parsed = text if raw else json.loads(text)
            except ValueError:
                parsed = text
            return resp.status, dict(resp.getheaders()), parsed
        finally:
            conn.close()

    def call(self, method: str, path: str, body=None, content_type: str = "application/json",
             expect: tuple[int, ...] = (200, 201)):
        status, _, parsed = self.request(method, path, body, content_type)
        if status not in expect:
            raise ApiServerError(status, parsed)
        return parsed

    def watch(self, path: str, timeout: float = 30.0) -> "WatchStream":
        return WatchStream(self, path, timeout)


class WatchStream:
    """Iterates the events of a watch (`None` when the stream ended)."""

    def __init__(self, client: KubeHttp, path: str, timeout: float):
        self.conn = client.connection(timeout)
        self.conn.request("GET", path, headers=client.headers())
        self.response = self.conn.getresponse()
        self.status = self.response.status
        if self.status != 200:
            body = self.response.read().decode()
            self.conn.close()
            raise ApiServerError(self.status, json.loads(body) if body.startswith("{") else body)

    def next(self) -> dict | None:
        """The next event; None at the end of the stream. Raises
        TimeoutError (socket timeout) if nothing comes in time."""
        try:
            line = self.response.readline()
        except http.client.IncompleteRead:
            return None
        if not line:
            return None
        return json.loads(line)

    def close(self) -> None:
        try:
            self.conn.sock and self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def api_prefix(api_version: str) -> str:
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


def resource_path(api_version: str, plural: str, name: str | None = None, namespace: str | None = None,
                  subresource: str | None = None) -> str:
    path = api_prefix(api_version)
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class TestApiServer:
    """Starts, drives and stops one test apiserver process."""

    __test__ = False  # not a pytest test class

    def __init__(self, workdir: str, netns: str | None = None, listen: str = "127.0.0.1:0",
                 extra_sans: list[str] | None = None, bookmark_interval: float = 1.0, python: str | None = None):
        self.workdir = os.path.abspath(workdir)
        self.netns, self.listen = netns, listen
        self.extra_sans = list(extra_sans or [])
        self.bookmark_interval = bookmark_interval
        self.python = python or sys.executable
        self.control_socket = os.path.join(self.workdir, "control.sock")
        self.cert_dir = os.path.join(self.workdir, "certs")
        self.token_file = os.path.join(self.workdir, "token")
        self.admin_token_file = os.path.join(self.workdir, "admin-token")
        self.ready_file = os.path.join(self.workdir, "ready.json")
        self.log_file = os.path.join(self.workdir, "apiserver.log")
        self.state_file = os.path.join(self.workdir, "state.json")
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.port = 0
        self.token = ""
        self.admin_token = ""
        self.control = KubeHttp(unix_socket=self.control_socket)
        self._plurals: dict[tuple[str, str], tuple[str, bool]] = dict(_BUILTIN_PLURALS)

    # Lifecycle

    @property
    def ca_file(self) -> str:
        return os.path.join(self.cert_dir, "ca.crt")

    def command(self) -> list[str]:
        cmd = [self.python, SERVER, "--listen", self.listen, "--control-socket", self.control_socket,
               "--cert-dir", self.cert_dir, "--token-file", self.token_file,
               "--admin-token-file", self.admin_token_file, "--ready-file", self.ready_file,
               "--bookmark-interval", str(self.bookmark_interval), "--state-file", self.state_file]
        for san in self.extra_sans:
            cmd += ["--san", san]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd

    def start(self, timeout: float = 60.0, keep_objects: bool = False) -> "TestApiServer":
        os.makedirs(self.workdir, exist_ok=True)
        if not keep_objects and os.path.exists(self.state_file):
            os.unlink(self.state_file)
        if not self.token:
            self.token = secrets.token_hex(16)
            self.admin_token = secrets.token_hex(16)
        self._write_secret(self.token_file, self.token)
        self._write_secret(self.admin_token_file, self.admin_token)
        if os.path.exists(self.ready_file):
            os.unlink(self.ready_file)
        log = open(self.log_file, "ab")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                        stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.ready_file):
            if self.process.poll() is not None:
                raise RuntimeError(f"test apiserver exited with {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"test apiserver not ready after {timeout}s: {self.log_tail()}")
            time.sleep(0.05)
        with open(self.ready_file) as f:
            ready = json.load(f)
        self.url, self.port = ready["url"], ready["port"]
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def restart(self, keep_objects: bool = True) -> None:
        """A new process with the same certificates, token and port: open
        connections and watches break. With keep_objects (like etcd surviving
        a kube-apiserver restart) objects, resourceVersions and history
        survive; otherwise the new server starts empty."""
        port = self.port
        self.stop()
        listen = self.listen
        if port and listen.endswith(":0"):
            self.listen = f"{listen.rsplit(':', 1)[0]}:{port}"
        try:
            self.start(keep_objects=keep_objects)
        finally:
            self.listen = listen

    def __enter__(self) -> "TestApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_file, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    @staticmethod
    def _write_secret(path: str, value: str) -> None:
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        os.replace(tmp, path)

    # What clients under test need

    def ca_data(self) -> str:
        with open(self.ca_file, "rb") as f:
            return base64.b64encode(f.read()).decode()

    def client_certificate(self, user: str) -> dict[str, str]:
        """Paths ("crt", "key") of a client certificate for `user`, signed by the run's CA."""
        return certs.generate_client(self.cert_dir, user)

    def kubeconfig(self, namespace: str = "default", use_token_file: bool = False,
                   client_certificate_user: str | None = None) -> dict:
        """With client_certificate_user: x509 auth, the certificate and key inline (*-data), no token."""
        user = {"tokenFile": self.token_file} if use_token_file else {"token": self.token}
        if client_certificate_user:
            paths = self.client_certificate(client_certificate_user)
            with open(paths["crt"], "rb") as crt, open(paths["key"], "rb") as key:
                user = {"client-certificate-data": base64.b64encode(crt.read()).decode(),
                        "client-key-data": base64.b64encode(key.read()).decode()}
        return {"apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "microseg-test", "cluster": {"server": self.url,
                                                                   "certificate-authority-data": self.ca_data()}}],
                "users": [{"name": "microseg-test", "user": user}],
                "contexts": [{"name": "microseg-test", "context": {"cluster": "microseg-test",
                                                                   "user": "microseg-test", "namespace": namespace}}],
                "current-context": "microseg-test", "preferences": {}}

    def write_kubeconfig(self, path: str, namespace: str = "default", use_token_file: bool = False,
                         client_certificate_user: str | None = None) -> str:
        """A kubeconfig (JSON, which is YAML) with the CA data and the token
        (inline, or as tokenFile so token rotation is picked up) or a client certificate."""
        with open(path, "w") as f:
            json.dump(self.kubeconfig(namespace, use_token_file, client_certificate_user), f, indent=2)
        os.chmod(path, 0o600)
        return path

    def api_client(self, token: str | None = None) -> KubeHttp:
        """A client that goes through TLS + token + faults, like the agent."""
        return KubeHttp(self.url, self.ca_file, self.token if token is None else token)

    # Objects (through the control socket)

    def resource_of(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) for a kind, from discovery when not built in."""
        key = (api_version, kind)
        if key not in self._plurals:
            listing = self.control.call("GET", api_prefix(api_version))
            for r in listing.get("resources", []):
                if "/" not in r["name"]:
                    self._plurals[(api_version, r["kind"])] = (r["name"], r["namespaced"])
        if key not in self._plurals:
            raise KeyError(f"the server does not serve {kind} in {api_version}")
        return self._plurals[key]

    def _path_of(self, obj: dict, with_name: bool = True, subresource: str | None = None) -> str:
        plural, namespaced = self.resource_of(obj["apiVersion"], obj["kind"])
        meta = obj.get("metadata", {})
        namespace = (meta.get("namespace") or "default") if namespaced else None
        return resource_path(obj["apiVersion"], plural, meta.get("name") if with_name else None, namespace,
                             subresource)

    def create(self, obj: dict) -> dict:
        """POSTs `obj`; a `status` in it is then written through /status (the
        real server ignores status on create for resources with a status
        subresource)."""
        created = self.control.call("POST", self._path_of(obj, with_name=False), obj)
        if "status" in obj and obj["status"] != created.get("status"):
            plural, namespaced = self.resource_of(obj["apiVersion"], obj["kind"])
            created = self.set_status(obj["apiVersion"], plural, created["metadata"]["name"], obj["status"],
                                      created["metadata"].get("namespace") if namespaced else None)
        return created

    def apply(self, obj: dict) -> dict:
        """Create or replace (spec, labels, annotations) `obj`."""
        try:
            return self.create(obj)
        except ApiServerError as e:
            if e.code != 409:
                raise
        current = self.control.call("GET", self._path_of(obj))
        replacement = dict(obj)
        replacement["metadata"] = dict(obj.get("metadata", {}), resourceVersion=current["metadata"]["resourceVersion"])
        replacement.pop("status", None)
        return self.control.call("PUT", self._path_of(obj), replacement)

    def get(self, api_version: str, plural: str, name: str, namespace: str | None = None) -> dict | None:
        status, _, body = self.control.request("GET", resource_path(api_version, plural, name, namespace))
        if status == 404:
            return None
        if status != 200:
            raise ApiServerError(status, body)
        return body

    def list(self, api_version: str, plural: str, namespace: str | None = None, **query) -> dict:
        path = resource_path(api_version, plural, None, namespace)
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return self.control.call("GET", path)

    def update(self, obj: dict) -> dict:
        return self.control.call("PUT", self._path_of(obj), obj)

    def patch(self, api_version: str, plural: str, name: str, patch, namespace: str | None = None,
              patch_type: str = "merge", subresource: str | None = None) -> dict:
        content_type = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
                        "strategic": "application/strategic-merge-patch+json"}[patch_type]
        return self.control.call("PATCH", resource_path(api_version, plural, name, namespace, subresource), patch,
                                 content_type)

    def set_status(self, api_version: str, plural: str, name: str, status: dict,
                   namespace: str | None = None) -> dict:
        """Replaces .status through the /status subresource."""
        path = resource_path(api_version, plural, name, namespace, "status")
        current = self.control.call("GET", path)
        current["status"] = status
        return self.control.call("PUT", path, current)

    def delete(self, api_version: str, plural: str, name: str, namespace: str | None = None,
               missing_ok: bool = False) -> dict | None:
        status, _, body = self.control.request("DELETE", resource_path(api_version, plural, name, namespace))
        if status == 404 and missing_ok:
            return None
        if status != 200:
            raise ApiServerError(status, body)
        return body

    def events(self, namespace: str | None = None, **query) -> list[dict]:
        """core/v1 Events (what the agent records), oldest first."""
        items = self.list("v1", "events", namespace, **query)["items"]
        return sorted(items, key=lambda e: int(e["metadata"]["resourceVersion"]))

    def apply_crds(self, directory: str) -> list[dict]:
        """Creates every CustomResourceDefinition in `directory` (*.json, or
        *.yaml when PyYAML happens to be installed)."""
        created = []
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if name.endswith(".json"):
                with open(path) as f:
                    created.append(self.apply(json.load(f)))
            elif name.endswith((".yaml", ".yml")):
                created.extend(self.apply(doc) for doc in load_yaml_documents(path))
        return created

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
        """Polls `predicate()` until truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    # Observation and faults

    def admin(self, method: str, op: str, body: dict | None = None, query: str = ""):
        return self.control.call(method, f"/__admin/{op}" + (f"?{query}" if query else ""), body)

    def state(self) -> dict:
        return self.admin("GET", "state")

    def resource_version(self) -> int:
        return int(self.state()["resourceVersion"])

    def requests(self, since: int = 0, source: str = "api") -> list[dict]:
        """Logged requests (`source` "api": the TLS listener; "control": this
        fixture; "any"). Each: id, time, method, path, query, watch, code,
        userAgent, fault (id of an injected fault)."""
        entries = self.admin("GET", "requests", query=f"since={since}")["requests"]
        return [e for e in entries if source == "any" or e["source"] == source]

    def watches(self, source: str = "api") -> list[dict]:
        """Open watches: id, path, query, resource, group, namespace, stalled, sent, started."""
        return [w for w in self.admin("GET", "watches")["watches"] if source == "any" or w["source"] == source]

    def add_fault(self, path: str, code: int = 500, count: int = 1, retry_after: int | None = None,
                  method: str | None = None, watch: bool | None = None) -> dict:
        """The next `count` API requests (-1: all until clear_faults) whose
        path+query matches the regex `path` get `code` (429/503 carry
        Retry-After; 0 closes the connection without an answer)."""
        return self.admin("POST", "faults", {"path": path, "code": code, "count": count, "retryAfter": retry_after,
                                             "method": method, "watch": watch})

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def drop_watches(self, resource: str | None = None, graceful: bool = False) -> list[int]:
        """Ends open API watches (of one plural resource, or all): abruptly
        (TCP close without the final chunk) or gracefully (final chunk)."""
        return self.admin("POST", "drop-watches", {"resource": resource, "graceful": graceful})["dropped"]

    def stall_watches(self, resource: str | None = None, new_watches: bool = False) -> list[int]:
        """Open API watches stop sending (events, bookmarks) without closing;
        with new_watches, watches opened later stall too."""
        return self.admin("POST", "stall-watches", {"resource": resource, "newWatches": new_watches})["stalled"]

    def unstall_watches(self) -> list[int]:
        return self.admin("POST", "unstall-watches", {})["released"]

    def compact(self, resource_version: int | None = None) -> int:
        """Forgets history up to `resource_version` (default: now): lists and
        watches from older resourceVersions get 410 Expired."""
        return self.admin("POST", "compact", {"resourceVersion": resource_version})["compactedResourceVersion"]

    def rotate_token(self, new_token: str | None = None) -> str:
        """Writes the new token to token_file, then makes the server accept
        only it."""
        new_token = new_token or secrets.token_hex(16)
        self._write_secret(self.token_file, new_token)
        self.admin("POST", "rotate-token", {"token": new_token})
        self.token = new_token
        return new_token

    def set_bookmark_interval(self, seconds: float) -> None:
        self.admin("POST", "bookmark-interval", {"seconds": seconds})


def load_yaml_documents(path: str) -> list[dict]:
    try:
        import yaml  # type: ignore
    except ImportError:
        raise RuntimeError(f"{path}: reading YAML needs PyYAML; convert to JSON or use kubectl") from None
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]
