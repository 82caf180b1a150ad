#!/usr/bin/env python3
"""microseg's test Kubernetes API server.

Two listeners share one API state:
  * the API: HTTPS + bearer token on --listen (default 127.0.0.1:0), what the
    agent and kubectl talk to. Fault injection applies here only.
  * the control socket: plain HTTP on a Unix socket (--control-socket). It
    serves the same API without token or faults, plus the /__admin/ endpoints.
    A Unix socket is reachable from every network namespace, so a test in the
    host namespace drives a server running inside a node namespace.
The /__admin/ endpoints are also served on the API listener for requests that
carry the admin token (for tools that cannot reach the socket).

See docs/testing-apiserver.md for what is faithful to kube-apiserver and what
is not.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import select
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import certs  # noqa: E402
import openapi  # noqa: E402
import protobuf  # noqa: E402
import tables  # noqa: E402
from api import Api, ApiError, Route, WatchPlan, status_object  # noqa: E402
from store import Expired  # noqa: E402

PUBLIC_PATHS = ("/version", "/healthz", "/livez", "/readyz")
VERSION = {"major": "1", "minor": "34", "gitVersion": "v1.34.0-microseg-test", "gitCommit": "0" * 40,
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
           "compiler": "gc", "platform": "linux/amd64"}


class Fault:
    def __init__(self, spec: dict):
        self.id = str(uuid.uuid4())[:8]
        self.path = re.compile(spec.get("path", ""))
        self.method = (spec.get("method") or "").upper() or None
        self.watch = spec.get("watch")  # None: any request, True: watches only, False: non-watches only
        self.code = int(spec.get("code", 500))  # 0: close the connection without an answer
        self.remaining = int(spec.get("count", 1))  # -1: until cleared
        self.retry_after = spec.get("retryAfter")
        self.hits = 0

    def matches(self, method: str, path_and_query: str, is_watch: bool) -> bool:
        if self.remaining == 0:
            return False
        if self.method and self.method != method:
            return False
        if self.watch is not None and bool(self.watch) != is_watch:
            return False
        return bool(self.path.search(path_and_query))

    def describe(self) -> dict:
        return {"id": self.id, "path": self.path.pattern, "method": self.method, "watch": self.watch,
                "code": self.code, "remaining": self.remaining, "retryAfter": self.retry_after, "hits": self.hits}


class State:
    """Everything the two listeners share."""

    def __init__(self, token: str, admin_token: str, bookmark_interval: float, saved_state: dict | None = None):
        self.api = Api(saved_state)
        self.token = token
        self.admin_token = admin_token
        self.bookmark_interval = bookmark_interval
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.requests: list[dict] = []
        self.stall_new_watches = False
        self.server_address = ""

    def take_fault(self, method: str, path_and_query: str, is_watch: bool) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path_and_query, is_watch):
                    if fault.remaining > 0:
                        fault.remaining -= 1
                    fault.hits += 1
                    return fault
        return None

    def log_request(self, entry: dict) -> dict:
        with self.lock:
            entry["id"] = len(self.requests) + 1
            self.requests.append(entry)
        return entry


def is_watch(query: dict) -> bool:
    return query.get("watch", "") in ("true", "1")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "microseg-test-apiserver"
    sys_version = ""

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    @property
    def state(self) -> State:
        return self.server.state

    @property
    def is_control(self) -> bool:
        return self.server.is_control

    def log_message(self, format, *args):  # noqa: A002 - the request log replaces stderr lines
        pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = lambda self: self.dispatch()  # noqa: E731

    # Responses

    def send_json(self, code: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        for warning in getattr(self.state.api.warnings, "warnings", []):
            self.send_header("Warning", '299 - "' + warning.replace('"', '\\"') + '"')
        self.state.api.warnings.warnings = []
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        self.entry["code"] = code

    def send_error_status(self, error: ApiError) -> None:
        self.send_json(error.code, error.status(), error.headers)

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # Dispatch

    def dispatch(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        self.state.api.warnings.warnings = []
        self.entry = {"time": time.time(), "method": self.command, "path": path, "query": url.query,
                      "watch": is_watch(query), "source": "control" if self.is_control else "api",
                      "userAgent": self.headers.get("User-Agent", ""), "code": None}
        if not (self.is_control and path.startswith("/__admin/")):
            self.state.log_request(self.entry)
        try:
            if path.startswith("/__admin/"):
                if not self.is_control and self.bearer() != self.state.admin_token:
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                return self.admin(path, query, body)
            if not self.is_control:
                token = self.bearer()
                user = self.client_certificate_user()
                if user:
                    self.entry["user"] = user
                elif token != self.state.token and not (token is None and path in PUBLIC_PATHS):
                    raise ApiError(401, "Unauthorized", "Unauthorized")
                fault = self.state.take_fault(self.command, url.path + ("?" + url.query if url.query else ""),
                                              is_watch(query))
                if fault is not None:
                    return self.inject(fault)
            self.serve_api(path, query, body)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:  # a bug here must still give the client an answer (and the log a trace)
            import traceback
            traceback.print_exc()
            if self.entry.get("code") is None:
                self.send_error_status(ApiError(500, "InternalError", f"Internal error occurred: {e!r}"))

    def client_certificate_user(self) -> str | None:
        """CN of a client certificate the TLS handshake verified against the run's CA."""
        if not isinstance(self.request, ssl.SSLSocket):
            return None
        certificate = self.request.getpeercert() or {}
        for rdn in certificate.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def bearer(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return None if not header else ""

    def inject(self, fault: Fault) -> None:
        self.entry["fault"] = fault.id
        if fault.code == 0:
            self.entry["code"] = 0
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        headers = {}
        if fault.code == 429:
            retry = fault.retry_after if fault.retry_after is not None else 1
            headers["Retry-After"] = retry
            error = ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                             {"retryAfterSeconds": int(retry)}, headers)
        elif fault.code == 503:
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            error = ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request",
                             {}, headers)
        elif fault.code == 504:
            error = ApiError(504, "Timeout", "the server was unable to return a response in the time allotted",
                             {}, headers)
        else:
            error = ApiError(fault.code, "InternalError", "Internal error occurred: injected fault "
                             f"{fault.id}", {"causes": [{"message": "injected by the test"}]}, headers)
        self.send_error_status(error)

    def serve_api(self, path: str, query: dict, body: bytes) -> None:
        api = self.state.api
        if path == "/version" and self.command == "GET":
            return self.send_json(200, VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.entry["code"] = 200
            return
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            return self.serve_openapi(path)
        route = api.route(path)
        if isinstance(route, dict):
            if self.command != "GET":
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                               "resource")
            if route.get("__discovery__") == "api":
                route = api.registry.api_versions(self.state.server_address)
            return self.send_json(200, route)
        rt, method = route.rt, self.command
        if method == "GET":
            if route.name is None:
                if is_watch(query):
                    return self.watch(route, query)
                listing = api.list(rt, route.namespace, query)
                return self.send_json(200, self.maybe_table(rt, listing, query, is_list=True))
            if is_watch(query) and route.subresource is None:
                # A watch on one object is a watch of its collection by name.
                named = dict(query, fieldSelector=",".join(
                    f for f in (query.get("fieldSelector", ""), f"metadata.name={route.name}") if f))
                return self.watch(Route(rt, route.namespace, None, None), named)
            return self.send_json(200, self.maybe_table(rt, api.get(route), query, is_list=False))
        if method == "POST" and route.name is None:
            return self.send_json(201, api.create(rt, route.namespace, self.json_body(body), query))
        if method == "PUT" and route.name is not None:
            return self.send_json(200, api.update(route, self.json_body(body), query))
        if method == "PATCH" and route.name is not None:
            code, obj = api.patch(route, body, self.headers.get("Content-Type", ""), query)
            return self.send_json(code, obj)
        if method == "DELETE" and route.subresource is None:
            options = self.json_body(body) if body.strip() else {}
            if route.name is None:
                return self.send_json(200, api.delete_collection(rt, route.namespace, query))
            code, obj = api.delete(route, options, query)
            return self.send_json(code, obj)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def serve_openapi(self, path: str) -> None:
        registry = self.state.api.registry
        if path == "/openapi/v3":
            return self.send_json(200, openapi.root(registry))
        parts = path[len("/openapi/v3/"):].split("/")
        doc = None
        if len(parts) == 2 and parts[0] == "api":
            doc = openapi.group_version(registry, "", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = openapi.group_version(registry, parts[1], parts[2])
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return self.send_json(200, doc)

    def json_body(self, body: bytes):
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return protobuf.decode(body)
            except protobuf.ProtobufError as e:
                raise ApiError(415, "UnsupportedMediaType", str(e)) from None
        if ctype not in ("application/json", "", "*/*"):
            raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - '
                           f'accepted media types include: application/json, application/yaml (got "{ctype}")')
        try:
            return json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, "BadRequest", f"the body of the request was not valid JSON: {e}") from None

    def maybe_table(self, rt, obj: dict, query: dict, is_list: bool) -> dict:
        accept = self.headers.get("Accept", "")
        if "as=Table" in accept and "g=meta.k8s.io" in accept:
            return tables.to_table(rt, obj, is_list, query.get("includeObject", "Metadata"))
        return obj

    # Watch

    def watch(self, route: Route, query: dict) -> None:
        description = {"path": self.entry["path"], "query": self.entry["query"], "source": self.entry["source"],
                       "requestId": self.entry.get("id")}
        try:
            plan = self.state.api.watch(route.rt, route.namespace, query, description)
        except Expired:
            self.start_stream()
            rv = query.get("resourceVersion")
            status = status_object(410, "Expired", f"too old resource version: {rv} "
                                   f"({self.state.api.store.compacted_rv + 1})")
            self.write_event({"type": "ERROR", "object": status})
            self.end_stream()
            return
        self.start_stream()
        try:
            self.stream(plan)
        finally:
            self.state.api.store.stop_watch(plan.watcher)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.entry["code"] = 200
        self.close_connection = True

    def write_event(self, event: dict) -> None:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass

    def peer_gone(self) -> bool:
        """True once the client has closed its end (a watch client sends
        nothing after its request, so anything readable means EOF)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            self.connection.settimeout(0.1)
            try:
                return self.connection.recv(1) == b""
            finally:
                self.connection.settimeout(None)
        except TimeoutError:
            return False  # a TLS record that carried no application data
        except (OSError, ValueError, ssl.SSLError):
            return True

    def bookmark(self, plan: WatchPlan, rv: int, initial_end: bool = False) -> dict:
        meta = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK", "object": {"kind": plan.rt.kind, "apiVersion": plan.rt.api_version,
                                                "metadata": meta}}

    def stream(self, plan: WatchPlan) -> None:
        watcher, store, api = plan.watcher, self.state.api.store, self.state.api
        watcher.stalled = self.state.stall_new_watches
        deadline = time.monotonic() + plan.timeout
        interval = self.state.bookmark_interval
        next_bookmark = time.monotonic() + interval
        pending_initial_end = plan.initial_events_end
        accept = self.headers.get("Accept", "")
        as_table = "as=Table" in accept and "g=meta.k8s.io" in accept  # `kubectl get -w`
        try:
            while True:
                if watcher.drop and not (watcher.drop == "drain" and watcher.queue):
                    if watcher.drop == "abrupt":
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    break
                if watcher.stalled:
                    if self.peer_gone():
                        return
                    with watcher.cond:
                        watcher.cond.wait(0.2)
                    continue
                now = time.monotonic()
                if now >= deadline:
                    break
                with watcher.cond:
                    if not watcher.queue:
                        watcher.cond.wait(min(0.25, max(0.0, deadline - now), max(0.0, next_bookmark - now)))
                    # Re-checked under the lock: a stall or drop ordered while
                    # this thread waited wins over the event that woke it.
                    ready = watcher.queue and not watcher.stalled and watcher.drop in (None, "drain")
                    item = watcher.queue.popleft() if ready else None
                if item is None and (watcher.stalled or watcher.drop):  # handled at the top
                    continue
                if item is not None:
                    kind, obj = item
                    shown = api.present(plan.rt, obj)
                    if as_table:
                        shown = tables.to_table(plan.rt, shown, False, "Object")
                    self.write_event({"type": kind, "object": shown})
                    watcher.sent += 1
                    continue
                if pending_initial_end:
                    self.write_event(self.bookmark(plan, plan.start_rv, initial_end=True))
                    pending_initial_end = False
                    continue
                if plan.allow_bookmarks and time.monotonic() >= next_bookmark:
                    with store.lock:
                        # Under the store lock no event can be queued behind
                        # this bookmark, so every change up to its RV was sent.
                        with watcher.cond:
                            empty = not watcher.queue
                        rv = store.rv
                    if empty and not watcher.stalled and not watcher.drop:
                        self.write_event(self.bookmark(plan, rv))
                    next_bookmark = time.monotonic() + interval
                elif self.peer_gone():
                    return
            self.end_stream()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    # Admin

    def admin(self, path: str, query: dict, body: bytes) -> None:
        state, store = self.state, self.state.api.store
        args = json.loads(body) if body.strip() else {}
        op = path[len("/__admin/"):]
        method = self.command

        def watches(selector) -> list:
            resource = args.get("resource")
            chosen = []
            for w in list(store.watchers):
                if resource and w.storage_key[1] != resource:
                    continue
                if args.get("source", "api") != "any" and w.description.get("source") != args.get("source", "api"):
                    continue
                selector(w)
                chosen.append(w.id)
            return chosen

        if op == "state" and method == "GET":
            with state.lock:
                faults = [f.describe() for f in state.faults]
            return self.send_json(200, {"resourceVersion": store.rv, "compactedResourceVersion": store.compacted_rv,
                                        "faults": faults, "stallNewWatches": state.stall_new_watches,
                                        "bookmarkInterval": state.bookmark_interval})
        if op == "watches" and method == "GET":
            listing = [dict(w.description, id=w.id, resource=w.storage_key[1], group=w.storage_key[0],
                            namespace=w.namespace, stalled=w.stalled, sent=w.sent, started=w.started)
                       for w in list(store.watchers)]
            return self.send_json(200, {"watches": sorted(listing, key=lambda w: w["id"])})
        if op == "requests" and method == "GET":
            since = int(query.get("since", "0"))
            with state.lock:
                entries = [dict(e) for e in state.requests if e["id"] > since]
            return self.send_json(200, {"requests": entries})
        if op == "faults" and method == "POST":
            fault = Fault(args)
            with state.lock:
                state.faults.append(fault)
            return self.send_json(201, fault.describe())
        if op == "faults" and method == "DELETE":
            with state.lock:
                state.faults.clear()
            return self.send_json(200, {})
        if op == "drop-watches" and method == "POST":
            mode = "graceful" if args.get("graceful") else "abrupt"

            def drop(w):
                w.drop = mode
                w.wake()
            return self.send_json(200, {"dropped": watches(drop)})
        if op == "stall-watches" and method == "POST":
            def stall(w):
                w.stalled = True
            if args.get("newWatches"):
                state.stall_new_watches = True
            return self.send_json(200, {"stalled": watches(stall)})
        if op == "unstall-watches" and method == "POST":
            state.stall_new_watches = False

            def release(w):
                w.stalled = False
                w.wake()
            return self.send_json(200, {"released": watches(release)})
        if op == "compact" and method == "POST":
            rv = args.get("resourceVersion")
            return self.send_json(200, {"compactedResourceVersion": store.compact(int(rv) if rv else None)})
        if op == "rotate-token" and method == "POST":
            new = args.get("token") or uuid.uuid4().hex
            state.token = new
            return self.send_json(200, {"token": new})
        if op == "bookmark-interval" and method == "POST":
            state.bookmark_interval = float(args["seconds"])
            return self.send_json(200, {"bookmarkInterval": state.bookmark_interval})
        raise ApiError(404, "NotFound", f"no admin operation {method} {path}")


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    is_control = False

    def __init__(self, address, state: State, tls: ssl.SSLContext, family: int):
        self.address_family = family
        self.state = state
        self.tls = tls
        super().__init__(address, Handler)

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name (slow, pointless here).
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        # Clients that vanish mid-request are normal in fault tests.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (OSError, ssl.SSLError, ConnectionError)):
            super().handle_error(request, client_address)


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    is_control = True

    def __init__(self, path: str, state: State):
        self.state = state
        if os.path.exists(path):
            os.unlink(path)
        old_umask = os.umask(0o177)
        try:
            super().__init__(path, Handler)
        finally:
            os.umask(old_umask)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if not isinstance(exc, (OSError, ConnectionError)):
            super().handle_error(request, client_address)


def parse_listen(text: str) -> tuple[str, int, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return host, int(port), family


def read_secret(path: str) -> str:
    with open(path) as f:
        value = f.read().strip()
    if not value:
        raise SystemExit(f"server.py: {path} is empty")
    return value


def write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HTTPS address, host:port (port 0: any free one)")
    parser.add_argument("--control-socket", required=True, help="Unix socket for tests (API + /__admin/)")
    parser.add_argument("--cert-dir", required=True, help="where ca.crt/server.crt/server.key are made or reused")
    parser.add_argument("--san", action="append", default=[], help="extra subjectAltName (IP or DNS name)")
    parser.add_argument("--token-file", required=True, help="the bearer token clients must send")
    parser.add_argument("--admin-token-file", required=True, help="bearer token for /__admin/ on the API listener")
    parser.add_argument("--ready-file", required=True, help="written (JSON: url, port, pid) once serving")
    parser.add_argument("--bookmark-interval", type=float, default=5.0, help="seconds between watch bookmarks")
    parser.add_argument("--state-file", help="objects and history are loaded from here at start (if it exists) "
                        "and saved here at exit, so a restarted server keeps them, like etcd")
    args = parser.parse_args(argv)

    host, port, family = parse_listen(args.listen)
    paths = certs.generate(args.cert_dir, [host] + args.san)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(paths["server.crt"], paths["server.key"])
    # x509 client certificates signed by the run's CA authenticate, like
    # kube-apiserver's --client-ca-file; a client without one uses a token.
    tls.load_verify_locations(paths["ca.crt"])
    tls.verify_mode = ssl.CERT_OPTIONAL
    tls.set_alpn_protocols(["http/1.1"])

    saved = None
    if args.state_file and os.path.exists(args.state_file):
        with open(args.state_file) as f:
            saved = json.load(f)
    state = State(read_secret(args.token_file), read_secret(args.admin_token_file), args.bookmark_interval, saved)
    api_server = ApiServer((host, port), state, tls, family)
    bound_port = api_server.server_address[1]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    state.server_address = f"{url_host}:{bound_port}"
    control = ControlServer(args.control_socket, state)

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
               for s in (api_server, control)]
    for t in threads:
        t.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    write_atomically(args.ready_file, json.dumps({
        "url": f"https://{url_host}:{bound_port}", "host": host, "port": bound_port, "pid": os.getpid(),
        "controlSocket": args.control_socket, "caFile": paths["ca.crt"],
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat()}))
    print(f"test apiserver serving https://{url_host}:{bound_port} (control {args.control_socket})", flush=True)
    stop.wait()
    api_server.shutdown()
    control.shutdown()
    api_server.server_close()
    control.server_close()
    if args.state_file:
        write_atomically(args.state_file, json.dumps(state.api.store.dump()))
    try:
        os.unlink(args.control_socket)
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
