#!/usr/bin/env bash
# Builds the C++ tracing core and its tests (perfetto-sdk/tests/)
# with sanitizers and runs them through ctest. Exits non-zero when the build
# or any test fails, or when a sanitizer reports an error.
#
# Usage: scripts/sanitize.sh [--tsan] [--werror] [--keep] [--python] [BUILD_DIR]
#   (default)  AddressSanitizer + UndefinedBehaviorSanitizer, Debug build
#   --tsan     ThreadSanitizer instead (data races in writers/sessions)
#   --werror   also fail when the build prints a compiler warning
#   --keep     keep the build directory (default: a temp dir, removed)
#   --python   instead: install the package built with ASan + UBSan into a
#              venv in the build directory and run the Python tests that
#              reach native code (tracing, merge, inspect, timeline, link,
#              archive, the kept fuzz regressions) against it
#   BUILD_DIR  build there instead of a temp dir (kept, reused)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=asan
werror=0
keep=0
build=""
python_mode=0
for arg in "$@"; do
  case "$arg" in
    --tsan) mode=tsan ;;
    --python) python_mode=1 ;;
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

if [[ $python_mode == 1 ]]; then
  py="${PYTHON:-python3}"
  echo "== building the package with ASan + UBSan into $build/venv"
  "$py" -m venv "$build/venv"
  vpy="$build/venv/bin/python"
  "$vpy" -m pip install --quiet --upgrade pip
  "$vpy" -m pip install --quiet scikit-build-core cffi ninja cmake
  "$vpy" -m pip install --quiet --no-build-isolation \
    -C cmake.define.VPERFETTO_SANITIZE=ON -C cmake.build-type=RelWithDebInfo \
    -C build-dir="$build/wheel" "$root[test]"
  # The interpreter is not instrumented: the ASan runtime must come first.
  # CPython keeps memory until exit on purpose, so leaks are not checked here
  # (the C++ tests above check them).
  asan_rt="$(${CC:-cc} -print-file-name=libasan.so)"
  export LD_PRELOAD="$asan_rt"
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  echo "== the native paths of the Python tests under ASan + UBSan"
  cd "$root"
  "$vpy" -m pytest -q -p no:cacheprovider tests/test_tracing.py tests/test_incremental_state.py \
    tests/test_args.py tests/test_asyncio.py tests/test_names.py tests/test_logging.py \
    tests/test_run.py tests/test_compression.py \
    tests/test_merge.py tests/test_merge_features.py tests/test_merge_timeline.py \
    tests/test_merge_real.py tests/test_merge_parallel.py tests/test_merge_many.py tests/test_link_sync_merge.py \
    tests/test_inspect.py tests/test_outputs.py tests/test_archive.py \
    tests/test_vm_link.py tests/test_serial_link.py tests/test_guest_workloads.py tests/test_probes.py \
    tests/test_fuzz_regressions.py tests/test_demo.py tests/test_crash.py \
    tests/test_timeline.py tests/test_timeline_model.py tests/test_incremental_timestamps.py
  exit $?
fi

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
