#!/usr/bin/env bash
# The README's main command: set-up (packages + build), then the one-machine
# demo: agent in standalone mode, pods made through the real CNI chain,
# policies applied step by step, allowed/denied matrix and metrics after each.
# Everything it creates lives in a per-run network namespace and is removed at
# the end, also on Ctrl-C.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

"${repo_root}/scripts/setup.sh"

exec python3 "${repo_root}/test/e2e/demo.py" --build-dir "${MICROSEG_BUILD_DIR:-${repo_root}/build}" "$@"
