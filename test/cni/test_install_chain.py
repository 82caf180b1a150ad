#!/usr/bin/env python3
"""The real `microseg-cni install|uninstall` on temp CNI dirs, as the Helm
chart's init container and preStop hook run it: chained last, second run
changes nothing (not even the file's inode), binary copied, uninstall gives
back the exact original bytes and leaves nothing behind. Also: bad flags are
refused with exit 2, and without a verb the binary is still the CNI plugin.
Unprivileged; stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def run(cni: str, *args: str, env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([cni, *args], capture_output=True, text=True, input=stdin, env=env, timeout=30)


def snapshot(directory: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def scenario(cni: str, conflists: pathlib.Path, fixture: str, installed_name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="ms-cni-install-") as tmp:
        conf_dir = pathlib.Path(tmp, "net.d")
        bin_dir = pathlib.Path(tmp, "bin")
        conf_dir.mkdir()
        shutil.copy(conflists / fixture, conf_dir / f"10-{fixture}")
        (conf_dir / "99-loopback.conf").write_text('{"cniVersion":"1.0.0","name":"lo","type":"loopback"}\n')
        before = snapshot(conf_dir)
        flags = [f"--cni_conf_dir={conf_dir}", f"--cni_bin_dir={bin_dir}"]

        first = run(cni, "install", *flags, "--upgrade_cni_version", "--fail_mode=isolate", "--timeout_seconds=7")
        check(first.returncode == 0, f"{fixture}: install exits 0 ({first.stderr.strip()})")
        target = conf_dir / installed_name
        conf = json.loads(target.read_text())
        last = conf["plugins"][-1]
        check(last["type"] == "microseg-cni" and last["failMode"] == "isolate" and last["timeoutSeconds"] == 7,
              f"{fixture}: microseg-cni is the last plugin with the flags' settings")
        check(sum(p.get("type") == "microseg-cni" for p in conf["plugins"]) == 1, f"{fixture}: exactly one entry")
        check((bin_dir / "microseg-cni").read_bytes() == pathlib.Path(cni).read_bytes(),
              f"{fixture}: the binary is in the CNI bin dir")
        check(os.access(bin_dir / "microseg-cni", os.X_OK), f"{fixture}: and executable")
        check(any(n.endswith(".microseg-backup") for n in os.listdir(conf_dir)), f"{fixture}: a backup is kept")

        inode = target.stat().st_ino
        installed = snapshot(conf_dir)
        second = run(cni, "install", *flags, "--upgrade_cni_version", "--fail_mode=isolate", "--timeout_seconds=7")
        check(second.returncode == 0 and "unchanged" in second.stdout, f"{fixture}: second install says unchanged")
        check(snapshot(conf_dir) == installed and target.stat().st_ino == inode,
              f"{fixture}: second install writes nothing")

        removed = run(cni, "uninstall", *flags)
        check(removed.returncode == 0, f"{fixture}: uninstall exits 0 ({removed.stderr.strip()})")
        check(snapshot(conf_dir) == before, f"{fixture}: uninstall restores the exact original directory")
        check(not (bin_dir / "microseg-cni").exists(), f"{fixture}: uninstall removes the binary")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cni", required=True)
    parser.add_argument("--conflists", required=True)
    args = parser.parse_args()
    conflists = pathlib.Path(args.conflists)

    for fixture in ("containerd-bridge.conflist", "flannel.conflist", "calico.conflist", "aws-vpc.conflist",
                    "cilium-chaining.conflist"):
        scenario(args.cni, conflists, fixture, f"10-{fixture}")
    scenario(args.cni, conflists, "plain-bridge.conf", "10-plain-bridge.conflist")

    with tempfile.TemporaryDirectory(prefix="ms-cni-install-") as tmp:
        bad = run(args.cni, "install", f"--cni_conf_dir={tmp}", "--fail_mode=open")
        check(bad.returncode == 2 and "failMode" in bad.stderr, "an invalid --fail_mode is refused (exit 2)")
        unknown = run(args.cni, "install", f"--cni_conf_dir={tmp}", "--no_such_flag=1")
        check(unknown.returncode == 2 and "no_such_flag" in unknown.stderr, "an unknown flag is refused (exit 2)")
        empty = run(args.cni, "install", f"--cni_conf_dir={tmp}", f"--cni_bin_dir={tmp}/bin")
        check(empty.returncode == 1 and "no CNI network configuration" in empty.stderr,
              "no configuration yet: exit 1 with the reason")
        check(os.listdir(tmp) in ([], [".microseg-cni.lock"]) and not os.path.exists(f"{tmp}/bin"),
              "and nothing installed")

    version = run(args.cni, env={"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", "")})
    check(version.returncode == 0 and "1.0.0" in version.stdout,
          "without a verb the binary is still the CNI plugin (VERSION)")

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
