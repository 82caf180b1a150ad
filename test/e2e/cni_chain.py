"""Runs a CNI network configuration list the way containerd's CRI plugin does
(through libcni): ADD in order with each plugin's result passed to the next as
`prevResult`, the final result cached; CHECK in order and DEL in reverse order,
both with the cached result as `prevResult`. Plugins are found on CNI_PATH and
get their parameters as environment variables plus the network config on stdin.

Stdlib only, so the tests and the demo run on a bare Debian with python3.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Sequence


class CniError(RuntimeError):
    """A plugin failed; carries the CNI error object (code, msg, details)."""

    def __init__(self, plugin: str, command: str, returncode: int, error: dict, stderr: str):
        self.plugin = plugin
        self.command = command
        self.returncode = returncode
        self.error = error
        self.stderr = stderr
        super().__init__(
            f"CNI {command} failed in plugin '{plugin}' (exit {returncode}): "
            f"code={error.get('code')} msg={error.get('msg')!r} details={error.get('details')!r}"
            + (f"\nstderr: {stderr.strip()}" if stderr.strip() else "")
        )


@dataclass(frozen=True)
class PodRef:
    """What the runtime knows about a pod sandbox when it calls CNI."""

    container_id: str
    netns_path: str
    ifname: str
    pod_namespace: str
    pod_name: str

    def cni_args(self) -> str:
        # The exact shape containerd passes; IgnoreUnknown lets plugins that
        # do not know the K8S_* keys accept them.
        return (
            "IgnoreUnknown=1;"
            f"K8S_POD_NAMESPACE={self.pod_namespace};"
            f"K8S_POD_NAME={self.pod_name};"
            f"K8S_POD_INFRA_CONTAINER_ID={self.container_id}"
        )


class CniChain:
    """One conflist, executed plugin by plugin.

    `exec_prefix` runs every plugin inside another context (for the tests:
    `ip netns exec <node netns>`), the way the runtime runs them on the node.
    """

    def __init__(
        self,
        conflist: dict,
        cni_path: Sequence[str],
        cache_dir: str,
        exec_prefix: Sequence[str] = (),
        timeout_seconds: float = 60.0,
    ):
        for field in ("cniVersion", "name", "plugins"):
            if field not in conflist:
                raise ValueError(f"conflist lacks '{field}'")
        if not conflist["plugins"]:
            raise ValueError("conflist has no plugins")
        self.conflist = conflist
        self.cni_path = list(cni_path)
        self.cache_dir = cache_dir
        self.exec_prefix = list(exec_prefix)
        self.timeout_seconds = timeout_seconds
        os.makedirs(cache_dir, exist_ok=True)

    # ---- the three runtime operations -------------------------------------

    def add(self, pod: PodRef) -> dict:
        """ADD through the chain; returns (and caches) the final result.

        Like the CRI plugin, a failed ADD is followed by a DEL of the whole
        chain so nothing half-made stays behind, then the error is raised.
        """
        prev_result = None
        for plugin in self.conflist["plugins"]:
            try:
                prev_result = self._invoke("ADD", plugin, pod, prev_result)
            except CniError:
                try:
                    self.delete(pod, prev_result=prev_result)
                except CniError:
                    pass  # the ADD error is the one worth reporting
                raise
        self._write_cache(pod, prev_result)
        return prev_result

    def check(self, pod: PodRef) -> None:
        cached = self.cached_result(pod)
        if cached is None:
            raise ValueError(f"no cached result for {pod.pod_namespace}/{pod.pod_name}: CHECK needs a prior ADD")
        for plugin in self.conflist["plugins"]:
            self._invoke("CHECK", plugin, pod, cached)

    def delete(self, pod: PodRef, prev_result: dict | None = None, only_types: Sequence[str] | None = None) -> None:
        """DEL in reverse order with the cached result.

        `only_types` restricts the call to the named plugin types (tests use it
        to observe the state between one plugin's DEL and the next).
        Every plugin is called even when an earlier one fails; the first error
        is raised at the end, and the cache is only dropped on full success.
        """
        if prev_result is None:
            prev_result = self.cached_result(pod)
        first_error = None
        for plugin in reversed(self.conflist["plugins"]):
            if only_types is not None and plugin["type"] not in only_types:
                continue
            try:
                self._invoke("DEL", plugin, pod, prev_result)
            except CniError as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error
        if only_types is None:
            try:
                os.unlink(self._cache_path(pod))
            except FileNotFoundError:
                pass

    def cached_result(self, pod: PodRef) -> dict | None:
        try:
            with open(self._cache_path(pod), encoding="utf-8") as f:
                return json.load(f)["result"]
        except FileNotFoundError:
            return None

    def version(self, plugin_type: str) -> dict:
        """VERSION of one plugin binary (no network config needed beyond cniVersion)."""
        stdin = json.dumps({"cniVersion": self.conflist["cniVersion"]})
        env = self._base_env("VERSION", None)
        return self._run(plugin_type, "VERSION", env, stdin)

    # ---- plumbing ----------------------------------------------------------

    def _cache_path(self, pod: PodRef) -> str:
        return os.path.join(self.cache_dir, f"{self.conflist['name']}-{pod.container_id}-{pod.ifname}.json")

    def _write_cache(self, pod: PodRef, result: dict) -> None:
        tmp = self._cache_path(pod) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"kind": "cniCacheV1", "containerId": pod.container_id, "ifName": pod.ifname,
                       "networkName": self.conflist["name"], "result": result}, f)
        os.replace(tmp, self._cache_path(pod))

    def _base_env(self, command: str, pod: PodRef | None) -> dict:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_PATH": ":".join(self.cni_path),
        }
        if pod is not None:
            env.update({
                "CNI_CONTAINERID": pod.container_id,
                "CNI_NETNS": pod.netns_path,
                "CNI_IFNAME": pod.ifname,
                "CNI_ARGS": pod.cni_args(),
            })
        return env

    def _invoke(self, command: str, plugin: dict, pod: PodRef, prev_result: dict | None) -> dict:
        config = dict(plugin)
        config["cniVersion"] = self.conflist["cniVersion"]
        config["name"] = self.conflist["name"]
        if prev_result is not None:
            config["prevResult"] = prev_result
        return self._run(plugin["type"], command, self._base_env(command, pod), json.dumps(config))

    def _find_plugin(self, plugin_type: str) -> str:
        for directory in self.cni_path:
            candidate = os.path.join(directory, plugin_type)
            if os.access(candidate, os.X_OK):
                return candidate
        raise CniError(plugin_type, "lookup", -1,
                       {"code": 999, "msg": f"plugin '{plugin_type}' not found on CNI_PATH {self.cni_path}"}, "")

    def _run(self, plugin_type: str, command: str, env: dict, stdin: str) -> dict:
        binary = self._find_plugin(plugin_type)
        proc = subprocess.run(
            self.exec_prefix + [binary],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=self.timeout_seconds,
        )
        stdout = proc.stdout.strip()
        if proc.returncode != 0:
            try:
                error = json.loads(stdout) if stdout else {}
            except json.JSONDecodeError:
                error = {"code": 999, "msg": "plugin printed no JSON error", "details": stdout}
            raise CniError(plugin_type, command, proc.returncode, error, proc.stderr)
        if command in ("DEL", "CHECK") and not stdout:
            return {}
        try:
            return json.loads(stdout)
        except json.JSONDecodeError as error:
            raise CniError(plugin_type, command, proc.returncode,
                           {"code": 999, "msg": f"plugin printed invalid JSON ({error})", "details": stdout},
                           proc.stderr) from None
