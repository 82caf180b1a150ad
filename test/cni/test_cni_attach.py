#!/usr/bin/env python3
"""microseg-cni on a real veth, without an agent: every failure path.

Builds a throw-away "node" and "pod" network namespace joined by a veth,
pins the data path programs in a private bpffs, and runs microseg-cni the
way a container runtime does (env vars + stdin). The agent is deliberately
absent: this suite proves the plugin fails closed, leaves nothing attached
in failMode closed, isolates the pod in failMode isolate, and that DEL always
cleans up. The success path with a live agent is the e2e suite's.
"""
import argparse
import json
import os
import secrets
import subprocess
import sys

SKIP = 77

LISTENER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.244.250.1", 7777))
s.listen(16)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""

CONNECT = """
import socket, sys
try:
    socket.create_connection(("10.244.250.1", 7777), timeout=1).close()
except OSError:
    sys.exit(1)
"""


def run(*cmd, check=True, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


class Fixture:
    def __init__(self, cni, bpf_object):
        self.id = secrets.token_hex(3)
        self.node = f"mscni-{self.id}-node"
        self.pod = f"mscni-{self.id}-pod"
        self.root = f"/run/mscni-{self.id}"
        self.bpffs = f"{self.root}/bpffs"
        self.host_veth = f"mscni{self.id}h"
        self.cni = cni
        self.bpf_object = bpf_object
        self.mounted = False
        self.listener = None

    def __enter__(self):
        try:
            os.makedirs(self.bpffs)
            run("mount", "-t", "bpf", "bpf", self.bpffs)
            self.mounted = True
            run("bpftool", "prog", "loadall", self.bpf_object, f"{self.bpffs}/progs")
            run("ip", "netns", "add", self.node)
            run("ip", "netns", "add", self.pod)
            self.node_exec("ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", "eth0",
                           "netns", self.pod)
            self.node_exec("ip", "addr", "add", "10.244.250.1/24", "dev", self.host_veth)
            self.node_exec("ip", "link", "set", self.host_veth, "up")
            run("ip", "-n", self.pod, "addr", "add", "10.244.250.2/24", "dev", "eth0")
            run("ip", "-n", self.pod, "link", "set", "eth0", "up")
            run("ip", "-n", self.pod, "link", "set", "lo", "up")
            # A TCP listener on the node side: the pod's reachability probe.
            self.listener = subprocess.Popen(
                ["ip", "netns", "exec", self.node, sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True)
            self.listener.stdout.readline()  # "ready"
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.listener:
            self.listener.kill()
            self.listener.wait()
        for ns in (self.pod, self.node):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self.mounted:
            subprocess.run(["umount", self.bpffs], capture_output=True)
        subprocess.run(["rm", "-rf", self.root], capture_output=True)

    def node_exec(self, *cmd, check=True, **kw):
        return run("ip", "netns", "exec", self.node, *cmd, check=check, **kw)

    def prev_result(self, with_host=True):
        interfaces = [{"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": f"/var/run/netns/{self.pod}"}]
        if with_host:
            interfaces.insert(0, {"name": self.host_veth, "mac": "02:00:00:00:00:01"})
        return {"cniVersion": "1.0.0", "interfaces": interfaces,
                "ips": [{"interface": len(interfaces) - 1, "address": "10.244.250.2/24", "gateway": "10.244.250.1"}]}

    def config(self, **overrides):
        conf = {"cniVersion": "1.0.0", "name": f"mscni-{self.id}", "type": "microseg-cni",
                "agentSocket": f"{self.root}/no-agent.sock", "bpfPinDir": self.bpffs,
                "stateDir": f"{self.root}/state", "timeoutSeconds": 1,
                "prevResult": self.prev_result()}
        conf.update(overrides)
        return {k: v for k, v in conf.items() if v is not None}

    def cni_call(self, command, stdin, args="K8S_POD_NAMESPACE=x;K8S_POD_NAME=a", container="c0ffee"):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": command,
               "CNI_CONTAINERID": container, "CNI_NETNS": f"/var/run/netns/{self.pod}",
               "CNI_IFNAME": "eth0", "CNI_ARGS": args, "CNI_PATH": os.path.dirname(self.cni)}
        text = stdin if isinstance(stdin, str) else json.dumps(stdin)
        return subprocess.run(["ip", "netns", "exec", self.node, self.cni], input=text, env=env,
                              capture_output=True, text=True)

    def filters(self, hook):
        return self.node_exec("tc", "filter", "show", "dev", self.host_veth, hook, check=False).stdout.strip()

    def has_clsact(self):
        return "clsact" in self.node_exec("tc", "qdisc", "show", "dev", self.host_veth).stdout

    def pod_reaches_node(self):
        return run("ip", "netns", "exec", self.pod, sys.executable, "-c", CONNECT, check=False).returncode == 0


failures = []


def expect(name, condition, detail=""):
    print(f"{'ok  ' if condition else 'FAIL'} {name}" + (f": {detail}" if detail and not condition else ""))
    if not condition:
        failures.append(name)


def expect_error(name, result, code):
    try:
        body = json.loads(result.stdout)
    except ValueError:
        body = {}
    expect(name, result.returncode != 0 and body.get("code") == code and body.get("msg"),
           f"exit {result.returncode}, stdout {result.stdout!r}, stderr {result.stderr!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cni", required=True)
    parser.add_argument("--bpf-object", required=True)
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("SKIPPED: cni_attach needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN for bpffs)")
        return SKIP
    for path, hint in ((opts.cni, "microseg-cni"), (opts.bpf_object, "microseg_bpf_gen")):
        if not os.path.exists(path):
            print(f"FAIL {path} is missing: build the {hint} target first")
            return 1

    with Fixture(opts.cni, opts.bpf_object) as f:
        version = f.cni_call("VERSION", "")
        expect("VERSION lists 1.0.0", version.returncode == 0 and
               "1.0.0" in json.loads(version.stdout)["supportedVersions"], version.stdout)

        expect_error("bad stdin -> code 6", f.cni_call("ADD", "{not json"), 6)
        expect_error("missing prevResult -> code 7", f.cni_call("ADD", f.config(prevResult=None)), 7)
        expect_error("missing K8S_POD_NAME -> code 4", f.cni_call("ADD", f.config(), args="K8S_POD_NAMESPACE=x"), 4)
        expect_error("unsupported cniVersion -> code 1", f.cni_call("ADD", f.config(cniVersion="0.2.0")), 1)
        expect_error("missing pinned programs -> code 100",
                     f.cni_call("ADD", f.config(bpfPinDir=f"{f.root}/nowhere")), 100)
        expect("nothing attached after the failed attach", f.filters("ingress") == "" and not f.has_clsact())

        expect("pod reaches the node before microseg", f.pod_reaches_node())
        closed = f.cni_call("ADD", f.config())
        expect_error("agent down, failMode closed -> code 11", closed, 11)
        expect("closed: no filters left on ingress", f.filters("ingress") == "", f.filters("ingress"))
        expect("closed: no filters left on egress", f.filters("egress") == "", f.filters("egress"))
        expect("closed: the clsact qdisc we added is gone", not f.has_clsact())

        isolate = f.cni_call("ADD", f.config(failMode="isolate"))
        expect("agent down, failMode isolate -> success", isolate.returncode == 0, isolate.stdout + isolate.stderr)
        if isolate.returncode == 0:
            result = json.loads(isolate.stdout)
            expect("isolate: prevResult passed through", result["ips"] == f.prev_result()["ips"])
        expect("isolate: filter on ingress", "from_pod" in f.filters("ingress"), f.filters("ingress"))
        expect("isolate: filter on egress", "to_pod" in f.filters("egress"), f.filters("egress"))
        pending = f"{f.root}/state/pending/c0ffee-eth0.json"
        expect("isolate: pending registration written", os.path.exists(pending))
        if os.path.exists(pending):
            request = json.load(open(pending))
            expect("pending registration names the pod and veth",
                   request.get("pod_name") == "a" and request.get("host_ifname") == f.host_veth, request)
        expect("isolate: the unregistered pod is cut off (fail closed)", not f.pod_reaches_node())

        expect_error("CHECK with the agent down -> code 11", f.cni_call("CHECK", f.config()), 11)

        deleted = f.cni_call("DEL", f.config())
        expect("DEL with the agent down succeeds", deleted.returncode == 0, deleted.stdout + deleted.stderr)
        expect("DEL removes our filters", f.filters("ingress") == "" and f.filters("egress") == "")
        expect("DEL removes the pending registration", not os.path.exists(pending))
        expect("pod reaches the node again after DEL", f.pod_reaches_node())
        expect("DEL again (nothing left) succeeds", f.cni_call("DEL", f.config()).returncode == 0)

        peer = f.cni_call("ADD", f.config(failMode="isolate", prevResult=f.prev_result(with_host=False)))
        expect("host veth found through the pod's veth peer", peer.returncode == 0 and
               "from_pod" in f.filters("ingress"), peer.stdout + peer.stderr)
        f.cni_call("DEL", f.config(prevResult=None))
        expect("DEL without prevResult finds the veth through the netns", f.filters("ingress") == "")

    print(f"{len(failures)} failed" if failures else "all cni_attach checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
