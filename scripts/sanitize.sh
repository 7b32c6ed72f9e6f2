#!/usr/bin/env bash
# Builds the C++ tracing core and its tests (perfetto-sdk/tests/vpsdk_tests.cc)
# with sanitizers and runs them through ctest. Exits non-zero when the build
# or any test fails, or when a sanitizer reports an error.
#
# Usage: scripts/sanitize.sh [--tsan] [--werror] [--keep] [BUILD_DIR]
#   (default)  AddressSanitizer + UndefinedBehaviorSanitizer, Debug build
#   --tsan     ThreadSanitizer instead (data races in writers/sessions)
#   --werror   also fail when the build prints a compiler warning
#   --keep     keep the build directory (default: a temp dir, removed)
#   BUILD_DIR  build there instead of a temp dir (kept, reused)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=asan
werror=0
keep=0
build=""
for arg in "$@"; do
  case "$arg" in
    --tsan) mode=tsan ;;
    --werror) werror=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "sanitize.sh: unknown option $arg" >&2; exit 2 ;;
    *) build="$arg"; keep=1 ;;
  esac
done

if [[ -z "$build" ]]; then
  build="$(mktemp -d "${TMPDIR:-/tmp}/vp-sanitize-$mode.XXXXXX")"
  if [[ $keep == 0 ]]; then trap 'rm -rf "$build"' EXIT; fi
fi
jobs="$(nproc 2>/dev/null || echo 2)"

cmake_args=(-S "$root" -B "$build" -DVPERFETTO_PYTHON=OFF -DVPERFETTO_BUILD_TESTS=ON)
if [[ $mode == asan ]]; then
  cmake_args+=(-DCMAKE_BUILD_TYPE=Debug -DVPERFETTO_SANITIZE=ON)
  # Every report is fatal; leaks are checked at exit.
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
else
  flags="-fsanitize=thread -fno-omit-frame-pointer"
  cmake_args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DVPERFETTO_SANITIZE=OFF
               "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags"
               "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread"
               "-DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread")
  export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
fi

echo "== configuring ($mode) in $build"
cmake "${cmake_args[@]}" >"$build.configure.log" 2>&1 || {
  cat "$build.configure.log"; rm -f "$build.configure.log"; exit 1; }
rm -f "$build.configure.log"

echo "== building"
log="$build/build.log"
if ! cmake --build "$build" -j "$jobs" >"$log" 2>&1; then
  cat "$log"
  echo "sanitize.sh: the build failed" >&2
  exit 1
fi
warnings="$(grep -c 'warning:' "$log" || true)"
if [[ "$warnings" != 0 ]]; then
  grep -A3 'warning:' "$log" || true
  echo "sanitize.sh: $warnings compiler warning(s)" >&2
  [[ $werror == 1 ]] && exit 1
fi

echo "== running the tests"
ctest --test-dir "$build" --output-on-failure --timeout 1200 -V
