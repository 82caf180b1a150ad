"""A throw-away microseg "node" on this machine, for the e2e tests and the demo.

Everything of one run lives in its own places, so nothing on the real host is
touched and parallel runs never collide:
  run id         6 random hex digits
  node netns     ms-<id>-node      (the agent and every CNI plugin run in it;
                                    the pods' host-side veths live in it)
  pod netns      ms-<id>-<ns>-<pod>
  run dir        /run/ms-<id>/     (manifests/, state/, ipam/, cni-cache/, logs/, agent.sock)
  bpffs          /run/ms-<id>/bpffs (a private bpf filesystem; unmounting it drops every pin)
  pod subnet     a random /24 inside 10.244.0.0/16, routes only for 10.244.0.0/16, no default route

`Node` is a context manager; its cleanup runs on normal exit, on exceptions,
on SIGINT/SIGTERM/SIGHUP and (as a last resort) at interpreter exit.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cni_chain import CniChain, CniError, PodRef  # noqa: E402

PROBE_SCRIPT = os.path.join(HERE, "probe.py")
POD_IFNAME = "eth0"
METRICS_ADDRESS = "127.0.0.1:9464"  # inside the node netns, so it never clashes with the host


class SetupError(RuntimeError):
    pass


def run(cmd: list[str], check: bool = True, timeout: float = 30.0, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


class WaitTimeout(AssertionError):
    pass


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Polls `predicate` until it returns something truthy (returned) or `timeout` seconds pass.

    The predicate may raise to give up early (e.g. the agent exited).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def terminate(process: subprocess.Popen, grace: float, on_kill: Callable[[], None] | None = None) -> int:
    """SIGTERM (a clean shutdown), SIGKILL after `grace` seconds; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            if on_kill is not None:
                on_kill()
            process.kill()
            process.wait(timeout=10)
    return process.returncode


def tail(path: str, lines: int = 40) -> str:
    """The last `lines` lines of a log, for a failure message."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def skip_reason_if_unprivileged() -> str | None:
    """Why this machine cannot run the e2e suite, or None."""
    if os.geteuid() != 0:
        return "needs root/CAP_NET_ADMIN (network namespaces, bpffs mounts, TC programs)"
    for tool in ("ip", "mount", "umount", "tc"):
        if shutil.which(tool) is None:
            return f"needs '{tool}' (iproute2/util-linux)"
    return None


@dataclass
class Pod:
    namespace: str
    name: str
    labels: dict
    tcp_ports: list[int]
    udp_ports: list[int]
    netns: str
    ref: PodRef
    ip: str = ""
    host_veth: str = ""
    server: subprocess.Popen | None = None
    cni_added: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def targets(self) -> list[str]:
        return [f"tcp:{self.ip}:{p}" for p in self.tcp_ports] + [f"udp:{self.ip}:{p}" for p in self.udp_ports]


@dataclass
class NodeOptions:
    build_dir: str
    keep_logs_dir: str | None = None  # copy the run's logs here on close
    log: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr, flush=True))
    agent_args: list[str] = field(default_factory=list)
    fail_mode: str = "closed"  # microseg-cni's failMode in the node's conflist


class Node:
    def __init__(self, options: NodeOptions):
        self.options = options
        self.log = options.log
        self.run_id = secrets.token_hex(3)
        self.prefix = f"ms-{self.run_id}"
        self.node_netns = f"{self.prefix}-node"
        self.node_name = f"{self.prefix}-node"
        self.run_dir = f"/run/{self.prefix}"
        self.bpffs = os.path.join(self.run_dir, "bpffs")
        self.manifests = os.path.join(self.run_dir, "manifests")
        self.state_dir = os.path.join(self.run_dir, "state")
        self.socket = os.path.join(self.run_dir, "agent.sock")
        self.logs = os.path.join(self.run_dir, "logs")
        self.agent_log = os.path.join(self.logs, "agent.log")
        self.subnet_octet = random.randint(1, 254)
        self.subnet = f"10.244.{self.subnet_octet}.0/24"
        build = os.path.abspath(options.build_dir)
        self.agent_bin = os.path.join(build, "node-agent", "microseg-agent")
        self.ctl_bin = os.path.join(build, "node-agent", "microsegctl")
        self.cni_dir = os.path.join(build, "cni-plugin")
        self.pods: dict[str, Pod] = {}
        self.agent: subprocess.Popen | None = None
        self._created_run_dir = False
        self._created_node_netns = False
        self._mounted_bpffs = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._old_handlers: dict[int, object] = {}
        self.chain: CniChain | None = None

    # ---- life cycle -----------------------------------------------------------

    def __enter__(self) -> "Node":
        self._install_signal_handlers()
        atexit.register(self.close)
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        for binary in (self.agent_bin, self.ctl_bin, os.path.join(self.cni_dir, "microseg-cni")):
            if not os.access(binary, os.X_OK):
                raise SetupError(f"{binary} is missing: build first (scripts/setup.sh or ninja -C build)")
        for plugin in ("ptp", "host-local"):
            if not os.access(f"/usr/lib/cni/{plugin}", os.X_OK):
                raise SetupError(f"/usr/lib/cni/{plugin} is missing: apt-get install containernetworking-plugins")

        self.log(f"[node] run {self.run_id}: netns {self.node_netns}, subnet {self.subnet}, dir {self.run_dir}")
        os.makedirs(self.run_dir, mode=0o700)  # fails if it exists: never reuse someone's dir
        self._created_run_dir = True
        for directory in (self.bpffs, self.manifests, self.state_dir, self.logs,
                          os.path.join(self.run_dir, "ipam"), os.path.join(self.run_dir, "cni-cache"),
                          os.path.join(self.run_dir, "tmp")):
            os.makedirs(directory, mode=0o700, exist_ok=True)

        run(["ip", "netns", "add", self.node_netns])
        self._created_node_netns = True
        run(["ip", "-n", self.node_netns, "link", "set", "lo", "up"])

        run(["mount", "-t", "bpf", "bpf", self.bpffs])
        self._mounted_bpffs = True

        self.chain = CniChain(self._conflist(), [self.cni_dir, "/usr/lib/cni"],
                              os.path.join(self.run_dir, "cni-cache"), exec_prefix=self.in_node())
        self._start_agent()

    def _conflist(self) -> dict:
        return {
            "cniVersion": "1.0.0",
            "name": f"microseg-{self.run_id}",
            "plugins": [
                {
                    "type": "ptp",
                    "ipMasq": False,
                    "mtu": 1500,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.subnet}]],
                        # Only the pod network: pods get no default route, so nothing can leave.
                        # gw spelled out: ptp routes via the gateway, and CHECK compares the result to it.
                        "routes": [{"dst": "10.244.0.0/16", "gw": f"10.244.{self.subnet_octet}.1"}],
                        "dataDir": os.path.join(self.run_dir, "ipam"),
                    },
                },
                {
                    "type": "microseg-cni",
                    "agentSocket": self.socket,
                    "bpfPinDir": self.bpffs,
                    "failMode": self.options.fail_mode,
                    "timeoutSeconds": 10,
                    "stateDir": self.state_dir,
                },
            ],
        }

    def in_node(self) -> list[str]:
        return ["ip", "netns", "exec", self.node_netns]

    def _start_agent(self) -> None:
        cmd = self.in_node() + [
            self.agent_bin, "--standalone", "--manifests", self.manifests, "--node_name", self.node_name,
            "--bpffs_dir", self.bpffs, "--grpc_socket", self.socket, "--state_dir", self.state_dir,
            "--metrics_address", METRICS_ADDRESS, "--unpin_on_exit",
        ] + self.options.agent_args
        log_file = open(self.agent_log, "ab")
        # Own session: a terminal Ctrl-C reaches only us, and we stop the agent in order.
        self.agent = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                      start_new_session=True)
        log_file.close()
        self.wait_agent_ready(lambda: self.ctl("status", check=False).returncode == 0)

    def wait_agent_ready(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        self.wait_until_agent_ready(self.agent, ready, self.agent_log_tail, timeout)
        self.log(f"[node] agent ready (pid {self.agent.pid})")

    @staticmethod
    def wait_until_agent_ready(agent: subprocess.Popen, ready: Callable[[], bool], log_tail: Callable[[], str],
                               timeout: float = 30.0) -> None:
        """Waits until `ready()`; fails at once, with the log, when the agent exits meanwhile."""
        def check() -> bool:
            if agent.poll() is not None:
                raise SetupError(f"microseg-agent exited with {agent.returncode} during start-up:\n" + log_tail())
            return ready()
        try:
            wait_until(check, timeout, "the agent to be ready")
        except WaitTimeout:
            raise SetupError(f"microseg-agent not ready after {timeout:g} s:\n" + log_tail()) from None

    def agent_log_tail(self, lines: int = 40) -> str:
        return tail(self.agent_log, lines)

    def close(self) -> None:
        """Removes everything this run created; safe to call more than once."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        # A second Ctrl-C must not interrupt the clean-up half way.
        blocked = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                blocked[sig] = signal.signal(sig, signal.SIG_IGN)
        try:
            self._cleanup()
        finally:
            if threading.current_thread() is threading.main_thread():
                for sig, handler in self._old_handlers.items():
                    signal.signal(sig, handler)
            atexit.unregister(self.close)

    def _cleanup(self) -> None:
        def attempt(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as error:  # keep going: every later step still has to run
                self.log(f"[node] cleanup: {what}: {error}")

        for pod in reversed(list(self.pods.values())):
            attempt(f"delete pod {pod.key}", lambda pod=pod: self.delete_pod(pod))
        if self.agent is not None and self.agent.poll() is None:
            attempt("stop agent", self._stop_agent)
        if self._mounted_bpffs:
            def unmount() -> None:
                if run(["umount", self.bpffs], check=False).returncode != 0:
                    run(["umount", "-l", self.bpffs])
                self._mounted_bpffs = False
            attempt("unmount bpffs", unmount)
        if self._created_node_netns:
            # Deleting the netns also removes any veth end still in it.
            attempt("delete node netns", lambda: run(["ip", "netns", "del", self.node_netns]))
            self._created_node_netns = False
        if self.options.keep_logs_dir and os.path.isdir(self.logs):
            def keep() -> None:
                target = os.path.join(self.options.keep_logs_dir, self.run_id)
                shutil.copytree(self.logs, target, dirs_exist_ok=True)
                self.log(f"[node] logs kept in {target}")
            attempt("keep logs", keep)
        if self._created_run_dir and not self._mounted_bpffs:
            attempt("remove run dir", lambda: shutil.rmtree(self.run_dir))

    def _stop_agent(self) -> None:
        assert self.agent is not None
        terminate(self.agent, 10, lambda: self.log("[node] agent ignored SIGTERM for 10 s, killing it"))
        self.log(f"[node] agent stopped (exit {self.agent.returncode})")

    def stop_agent(self) -> int:
        """Stops the agent now (tests check it exits cleanly); returns its exit code."""
        if self.agent is not None and self.agent.poll() is None:
            self._stop_agent()
        return self.agent.returncode if self.agent else 0

    def leftovers(self) -> list[str]:
        """What this run left on the host after close(); empty when nothing."""
        problems = []
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        if self.prefix in netns:
            problems.append(f"network namespaces left:\n{netns}")
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            if self.run_dir in mounts.read():
                problems.append("bpffs still mounted")
        if os.path.exists(self.run_dir):
            problems.append(f"{self.run_dir} still exists")
        if self.agent is not None:
            if self.agent.poll() is None:
                problems.append("agent process still running")
            try:
                os.kill(self.agent.pid, 0)
                problems.append(f"pid {self.agent.pid} still exists")
            except ProcessLookupError:
                pass
        return problems

    def kill_agent(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: pins and attached programs stay."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait(timeout=10)
            self.log(f"[node] agent killed (pid {self.agent.pid})")

    def restart_agent(self) -> None:
        self._start_agent()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum, _frame):
            # Unwind through the normal exception path so every `finally` and
            # the context manager's clean-up run.
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, stop)

    # ---- cluster objects (standalone manifests) -------------------------------

    def write_manifest(self, filename: str, text: str) -> None:
        """Atomically places a manifest: the agent never sees a half-written file."""
        if "/" in filename:
            raise ValueError(f"manifest name must be a plain file name: {filename}")
        tmp = os.path.join(self.run_dir, "tmp", filename)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(self.manifests, filename))

    def remove_manifest(self, filename: str) -> None:
        os.unlink(os.path.join(self.manifests, filename))

    def add_namespace(self, name: str, labels: dict) -> None:
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        # JSON is YAML, and keeps this harness free of non-stdlib modules.
        self.write_manifest(f"namespace-{name}.yaml", json.dumps(manifest, indent=2) + "\n")

    def _container_ports(self, pod: Pod) -> list[dict]:
        return [{"containerPort": p, "protocol": "TCP"} for p in pod.tcp_ports] + \
            [{"containerPort": p, "protocol": "UDP"} for p in pod.udp_ports]

    def _pod_manifest(self, pod: Pod) -> str:
        ports = self._container_ports(pod)
        manifest = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": pod.labels},
            "spec": {"nodeName": self.node_name,
                     "containers": [{"name": "app", "image": "probe", "ports": ports}]},
        }
        if pod.ip:
            manifest["status"] = {"podIP": pod.ip}
        return json.dumps(manifest, indent=2) + "\n"

    def _pod_manifest_name(self, pod: Pod) -> str:
        return f"pod-{pod.namespace}-{pod.name}.yaml"

    # ---- pods -------------------------------------------------------------------

    def add_pod(self, namespace: str, name: str, labels: dict, tcp_ports: Iterable[int] = (),
                udp_ports: Iterable[int] = (), wait_for_agent: bool = True) -> Pod:
        """Creates a pod the way kubelet + containerd would.

        The Pod object exists (scheduled to this node, no IP yet) before the
        sandbox's CNI ADD; after ADD its status.podIP is filled in from the
        CNI result, as kubelet reports it.
        """
        assert self.chain is not None
        key = f"{namespace}/{name}"
        if key in self.pods:
            raise ValueError(f"pod {key} exists")
        netns = f"{self.prefix}-{namespace}-{name}"
        pod = Pod(namespace, name, dict(labels), list(tcp_ports), list(udp_ports), netns,
                  PodRef(container_id=secrets.token_hex(32), netns_path=f"/run/netns/{netns}", ifname=POD_IFNAME,
                         pod_namespace=namespace, pod_name=name))
        self.write_manifest(self._pod_manifest_name(pod), self._pod_manifest(pod))
        # In a cluster the agent's watch has the Pod before kubelet creates the
        # sandbox; wait for the same here, or the ADD could race the manifest scan.
        # (wait_for_agent=False: the agent is down on purpose.)
        if wait_for_agent:
            self.wait_for_status(lambda status: status.get("pods", 0) == len(self.pods) + 1,
                                 f"agent to read the manifest of pod {key}")
        run(["ip", "netns", "add", netns])
        self.pods[key] = pod  # from here on, clean-up knows about it
        run(["ip", "-n", netns, "link", "set", "lo", "up"])

        # Set before the call: if ADD is interrupted half way, clean-up still
        # runs the (idempotent) DEL chain for this sandbox.
        pod.cni_added = True
        result = self.chain.add(pod.ref)
        pod.ip = next(ip["address"].split("/")[0] for ip in result["ips"] if ":" not in ip["address"])
        pod.host_veth = next(i["name"] for i in result["interfaces"] if not i.get("sandbox"))
        self.write_manifest(self._pod_manifest_name(pod), self._pod_manifest(pod))

        if pod.tcp_ports or pod.udp_ports:
            self._start_server(pod)
        self.log(f"[node] pod {key}: {pod.ip} via {pod.host_veth}")
        return pod

    def _start_server(self, pod: Pod) -> None:
        cmd = ["ip", "netns", "exec", pod.netns, sys.executable, PROBE_SCRIPT, "serve"]
        if pod.tcp_ports:
            cmd += ["--tcp", ",".join(map(str, pod.tcp_ports))]
        if pod.udp_ports:
            cmd += ["--udp", ",".join(map(str, pod.udp_ports))]
        with open(os.path.join(self.logs, f"server-{pod.netns}.log"), "ab") as server_log:
            pod.server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=server_log,
                                          text=True, start_new_session=True)
        line = pod.server.stdout.readline().strip()
        if line != "ready":
            raise SetupError(f"probe server in {pod.key} did not start (said {line!r})")

    def cni_check(self, pod: Pod) -> None:
        assert self.chain is not None
        self.chain.check(pod.ref)

    def cni_del(self, pod: Pod, only_types: list[str] | None = None) -> None:
        assert self.chain is not None
        self.chain.delete(pod.ref, only_types=only_types)

    def delete_pod(self, pod: Pod) -> None:
        """Sandbox tear-down: stop the pod's processes, CNI DEL, remove netns and Pod object."""
        errors = []
        if pod.server is not None and pod.server.poll() is None:
            os.killpg(pod.server.pid, signal.SIGKILL)
            pod.server.wait(timeout=10)
        if pod.cni_added:
            try:
                self.cni_del(pod)
                pod.cni_added = False
            except (CniError, subprocess.SubprocessError) as error:
                errors.append(str(error))
        if run(["ip", "netns", "del", pod.netns], check=False).returncode != 0 and os.path.exists(
                f"/run/netns/{pod.netns}"):
            errors.append(f"could not delete netns {pod.netns}")
        try:
            self.remove_manifest(self._pod_manifest_name(pod))
        except FileNotFoundError:
            pass
        self.pods.pop(pod.key, None)
        if errors:
            raise SetupError("; ".join(errors))

    # ---- observation -------------------------------------------------------------

    def probe(self, source: Pod, targets: list[str], timeout: float = 0.6) -> dict[str, str]:
        if not targets:
            return {}
        cmd = ["ip", "netns", "exec", source.netns, sys.executable, PROBE_SCRIPT, "check", "--timeout",
               str(timeout)] + targets
        proc = run(cmd, timeout=30 + timeout * 2)
        results = {}
        for line in proc.stdout.splitlines():
            outcome = json.loads(line)
            results[outcome["target"]] = outcome["result"]
        return results

    def probe_pairs(self, pairs: list[tuple[Pod, str]], timeout: float = 0.6) -> dict[tuple[str, str], str]:
        """Runs (source pod, target) probes, all sources in parallel. Keyed by (source key, target)."""
        by_source: dict[str, list[str]] = {}
        for source, target in pairs:
            by_source.setdefault(source.key, []).append(target)
        with ThreadPoolExecutor(max_workers=max(1, len(by_source))) as pool:
            futures = {key: pool.submit(self.probe, self.pods[key], targets, timeout)
                       for key, targets in by_source.items()}
            return {(key, target): result for key, future in futures.items()
                    for target, result in future.result().items()}

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run([self.ctl_bin, "--socket", self.socket, *args], check=check, timeout=15)

    def ctl_json(self, *args: str) -> dict:
        return json.loads(self.ctl("--json", *args).stdout)

    def wait_for_status(self, predicate: Callable[[dict], bool], what: str, timeout: float = 5.0) -> dict:
        last = {}

        def matches():
            last["status"] = self.ctl_json("status")
            return last["status"] if predicate(last["status"]) else None
        try:
            return wait_until(matches, timeout, what, interval=0.05)
        except WaitTimeout as timed_out:
            raise SetupError(f"{timed_out}; last status: {last.get('status')}") from None

    def metrics_text(self) -> str:
        return run(self.in_node() + ["curl", "-sS", "--max-time", "5", f"http://{METRICS_ADDRESS}/metrics"]).stdout

    def metrics(self) -> dict[str, float]:
        """Prometheus text → {'name{labels}': value} (labels as printed)."""
        samples = {}
        for line in self.metrics_text().splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                samples[name] = float(value)
            except ValueError:
                continue
        return samples

    def tc_filters(self, pod: Pod) -> str:
        """Both clsact hooks of the pod's host veth, as tc prints them ('' when nothing is attached)."""
        out = []
        for hook in ("ingress", "egress"):
            proc = run(["tc", "-n", self.node_netns, "filter", "show", "dev", pod.host_veth, hook], check=False)
            out.append(proc.stdout.strip())
        return "\n".join(part for part in out if part)

    def host_link_exists(self, ifname: str) -> bool:
        return run(["ip", "-n", self.node_netns, "link", "show", "dev", ifname], check=False).returncode == 0
