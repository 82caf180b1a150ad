"""A throw-away microseg node whose agent runs in Kubernetes mode against the
test API server (test/apiserver), instead of reading a manifest directory.

The API server runs inside the node's network namespace (the agent reaches it
at https://127.0.0.1:<port>, with a per-run CA and a bearer token read from a
file, so token rotation is real); the test drives it over its control socket.
Cluster objects that `Node` would write as manifest files (namespaces, pods
with their status.podIP) become API objects, so the pod/CNI machinery of
node.py is reused unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from node import METRICS_ADDRESS, Node, NodeOptions, SetupError, run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def import_test_apiserver(directory: str | None = None):
    sys.path.insert(0, directory or os.path.join(REPO, "test", "apiserver"))
    import client  # noqa: E402  (test/apiserver/client.py)
    return client


class KubeNode(Node):
    def __init__(self, options: NodeOptions, apiserver_dir: str | None = None, cni_timeout_seconds: int = 10):
        super().__init__(options)
        self.client = import_test_apiserver(apiserver_dir)
        self.apiserver = None
        self.kubeconfig = os.path.join(self.run_dir, "kubeconfig")
        self.cni_timeout_seconds = cni_timeout_seconds
        self.wait_ready_on_start = True

    # The API server starts with the node netns, before the first agent.
    def _start_agent(self) -> None:
        if self.apiserver is None:
            self.apiserver = self.client.TestApiServer(os.path.join(self.run_dir, "apiserver"),
                                                       netns=self.node_netns, bookmark_interval=1.0)
            self.apiserver.start()
            self.apiserver.write_kubeconfig(self.kubeconfig, namespace="kube-system", use_token_file=True)
            self.log(f"[kube] test API server {self.apiserver.url} in {self.node_netns}")
            self.on_apiserver_started()
        cmd = self.in_node() + [
            self.agent_bin, "--kubeconfig", self.kubeconfig, "--node_name", self.node_name,
            "--bpffs_dir", self.bpffs, "--grpc_socket", self.socket, "--state_dir", self.state_dir,
            "--metrics_address", METRICS_ADDRESS, "--unpin_on_exit",
            # Short enough for a test run of a few minutes; production keeps the defaults.
            "--kube_watch_idle_timeout", "4s", "--kube_backoff_max", "2s", "--kube_lease_duration", "6s",
            "--kube_page_size", "3", "--log_level", "debug",
        ] + self.options.agent_args
        log_file = open(self.agent_log, "ab")
        self.agent = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                      start_new_session=True)
        log_file.close()
        if self.wait_ready_on_start:
            self.wait_ready()

    def on_apiserver_started(self) -> None:
        """Hook: objects that must exist before the first agent starts."""

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.agent.poll() is not None:
                raise SetupError(f"microseg-agent exited with {self.agent.returncode}:\n" + self.agent_log_tail())
            if self.readyz()[0] == 200 and self.ctl("status", check=False).returncode == 0:
                self.log(f"[node] agent ready (pid {self.agent.pid})")
                return
            time.sleep(0.1)
        raise SetupError("microseg-agent not ready after 30 s:\n" + self.agent_log_tail())

    def readyz(self) -> tuple[int, str]:
        proc = run(self.in_node() + ["curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}",
                                     f"http://{METRICS_ADDRESS}/readyz"], check=False)
        body, _, code = proc.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body

    def attached_filters(self) -> list[str]:
        """Host-side links of the node netns that carry a TC filter."""
        links = run(["ip", "-n", self.node_netns, "-o", "link", "show"]).stdout
        found = []
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name == "lo":
                continue
            for hook in ("ingress", "egress"):
                proc = run(["tc", "-n", self.node_netns, "filter", "show", "dev", name, hook], check=False)
                if proc.stdout.strip():
                    found.append(f"{name} {hook}")
        return found

    def _conflist(self) -> dict:
        conflist = super()._conflist()
        conflist["plugins"][-1]["timeoutSeconds"] = self.cni_timeout_seconds
        return conflist

    def _cleanup(self) -> None:
        super()._cleanup()  # stops the agent first
        if self.apiserver is not None:
            try:
                self.apiserver.stop()
            except Exception as error:  # keep going, like Node's clean-up
                self.log(f"[node] cleanup: stop apiserver: {error}")

    # Manifests become API objects.
    def write_manifest(self, filename: str, text: str) -> None:
        obj = json.loads(text)
        status = obj.pop("status", None)
        if obj["kind"] == "Pod":
            obj["spec"]["containers"][0].setdefault("image", "probe")
        stored = self.apiserver.apply(obj)
        if obj["kind"] == "Pod" and status:
            self.apiserver.set_status("v1", "pods", obj["metadata"]["name"],
                                      dict(stored.get("status", {}), phase="Running", **status),
                                      namespace=obj["metadata"]["namespace"])

    def remove_manifest(self, filename: str) -> None:
        if filename.startswith("pod-"):
            for pod in self.pods.values():
                if self._pod_manifest_name(pod) == filename:
                    self.apiserver.delete("v1", "pods", pod.name, namespace=pod.namespace, missing_ok=True)
                    return
        raise FileNotFoundError(filename)
