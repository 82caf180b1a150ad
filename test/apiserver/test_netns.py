#!/usr/bin/env python3
"""The test apiserver inside a network namespace, the way the agent's e2e
tests run it: started with `ip netns exec`, reachable over HTTPS only from
inside that namespace, driven from the host namespace through its Unix
control socket."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from client import TestApiServer  # noqa: E402

# Runs inside the namespace: list pods over HTTPS with the token, like the agent.
IN_NAMESPACE_CLIENT = """
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[1])
from client import KubeHttp
client = KubeHttp(sys.argv[2], sys.argv[3], open(sys.argv[4]).read().strip())
listing = client.call("GET", "/api/v1/namespaces/default/pods")
print(" ".join(item["metadata"]["name"] for item in listing["items"]))
"""


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kwargs)


def main() -> int:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("SKIPPED: needs root/CAP_NET_ADMIN and 'ip' (network namespaces)")
        return 77
    if shutil.which("openssl") is None:
        print("SKIPPED: needs openssl (scripts/setup.sh installs it)")
        return 77
    netns = f"ms-{secrets.token_hex(3)}-apiserver"
    workdir = tempfile.mkdtemp(prefix="ms-apiserver-netns-")
    server = TestApiServer(workdir, netns=netns)
    failures = []
    try:
        created = run(["ip", "netns", "add", netns])
        if created.returncode != 0:
            print(f"FAIL: ip netns add {netns}: {created.stderr.strip()}")
            return 1
        run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"])
        server.start()
        server.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "from-host", "namespace": "default"},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        inside = run(["ip", "netns", "exec", netns, sys.executable, "-c", IN_NAMESPACE_CLIENT, HERE, server.url,
                      server.ca_file, server.token_file])
        if inside.returncode != 0 or inside.stdout.split() != ["from-host"]:
            failures.append(f"client inside {netns} did not list the pod: rc={inside.returncode} "
                            f"out={inside.stdout!r} err={inside.stderr.strip()}")
        logged = [e for e in server.requests() if e["path"] == "/api/v1/namespaces/default/pods"]
        if [e["code"] for e in logged] != [200]:
            failures.append(f"request log from inside the namespace: {logged}")
        ns_of_server = run(["ip", "netns", "identify", str(server.process.pid)]).stdout.strip()
        if ns_of_server != netns:
            failures.append(f"server runs in netns {ns_of_server!r}, not {netns!r}")
    finally:
        server.stop()
        run(["ip", "netns", "delete", netns])
        if failures:
            print(server.log_tail())
        shutil.rmtree(workdir, ignore_errors=True)
    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print(f"ok: server in {netns} served HTTPS inside it and was driven from the host over its control socket")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
