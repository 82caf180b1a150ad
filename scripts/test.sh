#!/usr/bin/env bash
# The README's test command: set-up (packages + build), then the whole ctest
# suite. Privileged suites need root; they skip with a clear message otherwise.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${MICROSEG_BUILD_DIR:-${repo_root}/build}"

"${repo_root}/scripts/setup.sh"

# --timeout is the default for tests without their own TIMEOUT property.
exec ctest --test-dir "${build_dir}" --output-on-failure --timeout 600 "$@"
