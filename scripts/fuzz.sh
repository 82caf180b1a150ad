#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of outside input (test/fuzz) with
# libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer, in a build
# directory of its own (clang). ctest's fuzz_* tests run the same targets
# without libFuzzer on every build; this is for long runs.
#
#   scripts/fuzz.sh [seconds per target, default 300] [ctest -R regex]
#
# New inputs libFuzzer finds go to <build>/test/fuzz/found_<target>/, a
# failing input to <build>/test/fuzz/crash-*; replay one with
# <build>/test/fuzz/fuzz_<target> <file>.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${MICROSEG_FUZZ_BUILD_DIR:-${repo_root}/build-fuzz}"
seconds="${1:-300}"
only="${2:-.}"
sanitizers="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

# clang 16 is the first to capture structured bindings in lambdas (C++20),
# which the policy code does; Debian 12's default clang is 14.
if ! command -v clang++-16 >/dev/null || [ ! -d /usr/lib/llvm-16/lib/clang/16/lib/linux ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-16 libclang-rt-16-dev
fi

cmake -S "${repo_root}" -B "${build_dir}" -G Ninja \
  -DCMAKE_C_COMPILER=clang-16 -DCMAKE_CXX_COMPILER=clang++-16 \
  -DCMAKE_C_FLAGS="${sanitizers}" -DCMAKE_CXX_FLAGS="${sanitizers} -fsanitize=fuzzer-no-link" \
  -DCMAKE_EXE_LINKER_FLAGS="${sanitizers}" \
  -DMICROSEG_LIBFUZZER=ON -DMICROSEG_FUZZ_SECONDS="${seconds}" >/dev/null

mapfile -t targets < <(ctest --test-dir "${build_dir}" -N -L fuzz -R "${only}" | sed -n 's/^ *Test *#[0-9]*: *\(fuzz_[a-z0-9_]*\)$/\1/p')
if [ "${#targets[@]}" -eq 0 ]; then
  echo "fuzz.sh: no fuzz target matches '${only}'" >&2
  exit 2
fi
ninja -C "${build_dir}" "${targets[@]}"
exec ctest --test-dir "${build_dir}" -L fuzz -R "${only}" --output-on-failure
