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
from dataclasses import dataclass

from node import METRICS_ADDRESS, Node, NodeOptions, run, tail, terminate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def import_test_apiserver(directory: str | None = None):
    sys.path.insert(0, directory or os.path.join(REPO, "test", "apiserver"))
    import client  # noqa: E402  (test/apiserver/client.py)
    return client


def accepted_condition(api, resource: tuple[str, str], name: str, namespace: str | None,
                       generation: int) -> dict | None:
    """status.conditions[type=Accepted] of the object once it speaks of `generation`, else None."""
    obj = api.get(*resource, name, namespace=namespace)
    for condition in (obj or {}).get("status", {}).get("conditions", []):
        if condition["type"] == "Accepted" and condition.get("observedGeneration") == generation:
            return condition
    return None


@dataclass
class PeerAgent:
    node_name: str
    dir: str
    metrics_address: str
    process: subprocess.Popen | None = None
    mounted: bool = False

    @property
    def log(self) -> str:
        return os.path.join(self.dir, "agent.log")

    def log_text(self) -> str:
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()



class KubeNode(Node):
    def __init__(self, options: NodeOptions, apiserver_dir: str | None = None, cni_timeout_seconds: int = 10):
        super().__init__(options)
        self.client = import_test_apiserver(apiserver_dir)
        self.apiserver = None
        self.kubeconfig = os.path.join(self.run_dir, "kubeconfig")
        self.cni_timeout_seconds = cni_timeout_seconds
        self.wait_ready_on_start = True
        self.peers: list[PeerAgent] = []
        self.in_cluster = False  # the next agent start uses the in-cluster config instead of the kubeconfig

    # The API server starts with the node netns, before the first agent.
    def _start_agent(self) -> None:
        if self.apiserver is None:
            self.apiserver = self.client.TestApiServer(os.path.join(self.run_dir, "apiserver"),
                                                       netns=self.node_netns, bookmark_interval=1.0)
            self.apiserver.start()
            self.apiserver.write_kubeconfig(self.kubeconfig, namespace="kube-system", use_token_file=True)
            self.log(f"[kube] test API server {self.apiserver.url} in {self.node_netns}")
            self.on_apiserver_started()
        self.agent = self._spawn_agent(self.node_name, None if self.in_cluster else self.kubeconfig, self.bpffs,
                                       self.socket, self.state_dir, METRICS_ADDRESS, self.agent_log)
        if self.wait_ready_on_start:
            self.wait_ready()

    def _spawn_agent(self, node_name: str, kubeconfig: str | None, bpffs: str, socket: str, state_dir: str,
                     metrics_address: str, log_path: str) -> subprocess.Popen:
        """kubeconfig None: in-cluster config, as a pod sees it (environment and a service-account dir)."""
        env = None
        if kubeconfig is None:
            env = dict(os.environ, KUBERNETES_SERVICE_HOST="127.0.0.1",
                       KUBERNETES_SERVICE_PORT=str(self.apiserver.port))
            source = ["--kube_service_account_dir", self._service_account_dir()]
        else:
            source = ["--kubeconfig", kubeconfig]
        cmd = self.in_node() + [
            self.agent_bin, *source, "--node_name", node_name,
            "--bpffs_dir", bpffs, "--grpc_socket", socket, "--state_dir", state_dir,
            "--metrics_address", metrics_address, "--unpin_on_exit",
            # Short enough for a test run of a few minutes; production keeps the defaults.
            "--kube_watch_idle_timeout", "4s", "--kube_backoff_max", "2s", "--kube_lease_duration", "6s",
            "--kube_page_size", "3", "--log_level", "debug",
        ] + self.options.agent_args
        with open(log_path, "ab") as log_file:
            # Own session: a terminal Ctrl-C reaches only us, and we stop the agents in order.
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                    start_new_session=True, env=env)

    def _service_account_dir(self) -> str:
        """What the kubelet mounts: token (the API server's token file, so rotation is seen), ca.crt, namespace."""
        directory = os.path.join(self.run_dir, "serviceaccount")
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
            os.symlink(self.apiserver.token_file, os.path.join(directory, "token"))
            os.symlink(self.apiserver.ca_file, os.path.join(directory, "ca.crt"))
            with open(os.path.join(directory, "namespace"), "w", encoding="utf-8") as f:
                f.write("kube-system")
        return directory

    def start_peer_agent(self, suffix: str, client_certificate: bool = False) -> "PeerAgent":
        """The agent of another node on the same API server (same netns): its own node
        name, bpffs, socket, state dir and metrics port, so it shares nothing with ours.
        client_certificate: it authenticates with an x509 client certificate
        (CN system:node:<name>, inline in its kubeconfig) instead of the token."""
        peer = PeerAgent(node_name=f"{self.node_name}-{suffix}", dir=os.path.join(self.run_dir, f"peer-{suffix}"),
                         metrics_address=f"127.0.0.1:{9465 + len(self.peers)}")
        os.makedirs(os.path.join(peer.dir, "bpffs"), mode=0o700)
        os.makedirs(os.path.join(peer.dir, "state"), mode=0o700)
        kubeconfig = os.path.join(peer.dir, "kubeconfig")
        self.apiserver.write_kubeconfig(kubeconfig, namespace="kube-system", use_token_file=True,
                                        client_certificate_user=f"system:node:{peer.node_name}"
                                        if client_certificate else None)
        self.peers.append(peer)  # from here on, clean-up knows about it
        run(["mount", "-t", "bpf", "bpf", os.path.join(peer.dir, "bpffs")])
        peer.mounted = True
        peer.process = self._spawn_agent(peer.node_name, kubeconfig, os.path.join(peer.dir, "bpffs"),
                                         os.path.join(peer.dir, "agent.sock"), os.path.join(peer.dir, "state"),
                                         peer.metrics_address, peer.log)
        self.wait_until_agent_ready(peer.process, lambda: self.readyz(peer.metrics_address)[0] == 200,
                                    lambda: tail(peer.log))
        self.log(f"[kube] peer agent {peer.node_name} ready (pid {peer.process.pid})")
        return peer

    def stop_peer_agent(self, peer: "PeerAgent", kill: bool = False) -> int:
        """SIGTERM (a clean shutdown) or SIGKILL (a crash); returns the exit code."""
        if peer.process is None:
            return 0
        if kill and peer.process.poll() is None:
            peer.process.kill()
        return terminate(peer.process, 15)

    def on_apiserver_started(self) -> None:
        """Hook: objects that must exist before the first agent starts."""

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_agent_ready(lambda: self.readyz()[0] == 200 and self.ctl("status", check=False).returncode == 0,
                              timeout)

    def readyz(self, metrics_address: str = METRICS_ADDRESS) -> tuple[int, str]:
        proc = run(self.in_node() + ["curl", "-sS", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}",
                                     f"http://{metrics_address}/readyz"], check=False)
        body, _, code = proc.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body

    def leftovers(self) -> list[str]:
        problems = super().leftovers()
        problems += [f"peer agent {peer.node_name} (pid {peer.process.pid}) still running" for peer in self.peers
                     if peer.process is not None and peer.process.poll() is None]
        return problems

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
        for peer in self.peers:
            try:
                self.stop_peer_agent(peer)
            except Exception as error:  # keep going, like Node's clean-up
                self.log(f"[node] cleanup: stop peer agent {peer.node_name}: {error}")
            if peer.mounted and run(["umount", os.path.join(peer.dir, "bpffs")], check=False).returncode == 0:
                peer.mounted = False
            elif peer.mounted:
                run(["umount", "-l", os.path.join(peer.dir, "bpffs")], check=False)
                peer.mounted = False
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
