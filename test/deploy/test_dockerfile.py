#!/usr/bin/env python3
"""Keeps the Dockerfile true without a Docker engine:

- the build stage's `cmake --install` (run here into a temp prefix from the
  real build dir) produces every file the runtime stage COPYs: the three
  binaries and the BPF object;
- every shared library those binaries load (ldd) belongs to a Debian package
  that the runtime stage installs, or that one of those depends on, or that
  debian:12-slim ships (the Essential/required set) — so the image starts
  instead of failing on a missing .so;
- the build stage runs scripts/setup.sh, the runtime stage is debian:12-slim,
  the image is non-root by default and carries OCI labels.
Uses dpkg on this Debian 12 machine, stdlib only.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def runtime_stage(dockerfile: str) -> str:
    stages = re.split(r"(?m)^FROM ", dockerfile)
    return "FROM " + stages[-1]


def runtime_packages(stage: str) -> set[str]:
    m = re.search(r"apt-get install -y --no-install-recommends(.*?)&&", stage, re.S)
    return set(m.group(1).replace("\\", " ").split()) if m else set()


def installed_depends() -> dict[str, list[str]]:
    """Package -> the packages it depends on (every alternative), one dpkg call."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Depends},${Pre-Depends}\t${Essential} ${Priority}\n"],
                         capture_output=True, text=True).stdout
    deps: dict[str, list[str]] = {}
    for line in out.splitlines():
        name, depends, _ = line.split("\t")
        deps[name] = [a.strip().split(" ")[0].split(":")[0] for a in re.split(r"[,|]", depends) if a.strip()]
    return deps


def closure(packages: set[str], deps: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(packages)
    while todo:
        pkg = todo.pop()
        if pkg not in seen:
            seen.add(pkg)
            todo += deps.get(pkg, [])
    return seen


def base_image_packages(deps: dict[str, list[str]]) -> set[str]:
    # debian:12-slim is the Essential and "required" priority set.
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Essential} ${Priority}\n"],
                         capture_output=True, text=True).stdout
    base = {f[0] for f in (line.split() for line in out.splitlines())
            if len(f) == 3 and (f[1] == "yes" or f[2] == "required")}
    return closure(base, deps)


def packages_of(paths: set[str]) -> dict[str, str]:
    """Library path -> owning package, with one `dpkg -S` call (merged /usr: try /lib too)."""
    variants = {}
    for path in paths:
        for v in (path, str(pathlib.Path(path).resolve())):
            variants[v] = path
            variants[v.replace("/usr/lib/", "/lib/", 1)] = path
    out = subprocess.run(["dpkg", "-S", *sorted(variants)], capture_output=True, text=True).stdout
    owner = {}
    for line in out.splitlines():
        pkgs, _, file = line.partition(": ")
        if file in variants:
            owner.setdefault(variants[file], pkgs.split(",")[0].split(":")[0].strip())
    return owner


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-dir", required=True)
    args = parser.parse_args()
    dockerfile = (REPO / "Dockerfile").read_text()
    stage = runtime_stage(dockerfile)

    check(re.search(r"(?m)^FROM debian:12 AS build$", dockerfile) is not None, "build stage is Debian 12")
    check("./scripts/setup.sh" in dockerfile.split("FROM debian:12-slim")[0], "build stage runs scripts/setup.sh")
    check(stage.startswith("FROM debian:12-slim"), "runtime stage is debian:12-slim")
    check(re.search(r"(?m)^USER 65534:65534$", stage) is not None, "runtime image is non-root by default")
    for label in ("title", "description", "version", "revision", "licenses"):
        check(f"org.opencontainers.image.{label}=" in stage, f"OCI label {label}")

    with tempfile.TemporaryDirectory(prefix="ms-image-") as prefix:
        run = subprocess.run(["cmake", "--install", args.build_dir, "--prefix", prefix],
                             capture_output=True, text=True)
        check(run.returncode == 0, f"cmake --install works ({run.stderr.strip()[:200]})")
        copies = re.findall(r"(?m)^COPY --from=build (.+) (\S+)$", stage)
        check(len(copies) >= 2, "runtime stage copies from the build stage")
        binaries = []
        for sources, _dest in copies:
            for src in sources.split():
                local = pathlib.Path(prefix) / src.removeprefix("/out/")
                check(local.exists(), f"the build stage produces {src}")
                if local.is_file():
                    binaries.append(local)
        names = sorted(b.name for b in binaries)
        check(names == ["microseg-agent", "microseg-cni", "microsegctl"], f"the three binaries ({names})")
        bpf_objects = list(pathlib.Path(prefix, "lib", "microseg").glob("*.bpf.o"))
        check(len(bpf_objects) == 1, "and the BPF object (lib/microseg/*.bpf.o)")

        deps = installed_depends()
        available = closure(runtime_packages(stage), deps) | base_image_packages(deps)
        libs: dict[str, set[str]] = {}
        for binary in binaries:
            ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
            for lib in re.findall(r"=> (/\S+)", ldd):
                libs.setdefault(lib, set()).add(binary.name)
        owner = packages_of(set(libs))
        missing = [f"{lib} ({owner.get(lib, 'no package')}) for {', '.join(sorted(users))}"
                   for lib, users in sorted(libs.items()) if owner.get(lib) not in available]
        check(not missing, f"every shared library ({len(libs)}) is in the runtime stage; missing: {missing}")
        shutil.rmtree(prefix, ignore_errors=True)

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
