#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/*.cc) with clang, ASan and UBSan and runs
# each for a bounded time, seeded with the test traces.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  fuzzing time per target (default 60)
#   TARGET   decoder_fuzzer, rewriter_fuzzer and/or recover_fuzzer (default: all)
# Environment:
#   VPFUZZ_BUILD   build directory (default build-fuzz/; corpora, seeds and
#                  raw artifacts are kept there between runs)
#   VPFUZZ_JOBS    parallel fuzzing processes per target (default 1)
#   VPFUZZ_MAX_LEN rewriter_fuzzer's -max_len (default 1048576; smaller runs faster)
#   CC, CXX        clang and clang++ (default: clang, clang++)
#
# First every kept regression (fuzz/regressions/<target>/*) is replayed: one
# that still fails fails the script. Then each target is fuzzed (in fork mode,
# going on after a crash, so a run can find several). Every crash, leak,
# timeout or out-of-memory input found is copied into fuzz/regressions/<target>/
# (keep it there: tests/test_fuzz_regressions.py replays it) and the script
# exits 1 when there is a new one. Prints the executions run per target.
# Needs clang with libFuzzer (Debian: apt-get install clang).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
[[ ${#targets[@]} == 0 ]] && targets=(decoder_fuzzer rewriter_fuzzer recover_fuzzer)
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  sed -n '2,21p' "$0"
  exit 2
fi
build="${VPFUZZ_BUILD:-$root/build-fuzz}"
jobs="${VPFUZZ_JOBS:-1}"
shared="$root/../shared/testdata"
export CC="${CC:-clang}" CXX="${CXX:-clang++}"

if ! command -v "$CXX" >/dev/null; then
  echo "fuzz.sh: $CXX not found (apt-get install clang)" >&2
  exit 2
fi

echo "== building the fuzzers in $build"
mkdir -p "$build"
cmake -S "$root" -B "$build" -DVPERFETTO_FUZZ=ON -DVPERFETTO_PYTHON=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log"; exit 2; }
cmake --build "$build" --target "${targets[@]}" -j "$(nproc 2>/dev/null || echo 2)" \
  >"$build/build.log" 2>&1 || { cat "$build/build.log"; exit 2; }

# ASan/UBSan: every report is fatal; libFuzzer checks leaks itself.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# The rewriter's scratch files: in memory when possible, removed at the end
# (fork-mode workers exit without cleaning up after themselves).
shm=/dev/shm; [[ -d $shm && -w $shm ]] || shm="${TMPDIR:-/tmp}"
export VPFUZZ_TMPDIR="$(mktemp -d "$shm/vp-fuzz.XXXXXX")"
trap 'rm -rf "$VPFUZZ_TMPDIR"' EXIT

# --- seed corpora ----------------------------------------------------------------------
seeds="$build/seeds"
rm -rf "$seeds"
mkdir -p "$seeds/traces" "$seeds/split" "$seeds/images"
add_seed() {  # add_seed FILE: copy (gunzip .gz) into the shared seed directory
  local f="$1" name
  name="$(basename "$f")"
  case "$f" in
    *.gz) gzip -dc "$f" >"$seeds/traces/${name%.gz}" 2>/dev/null || rm -f "$seeds/traces/${name%.gz}"
          cp "$f" "$seeds/traces/$name" ;;  # the gzip form too: the reader inflates it
    *) cp "$f" "$seeds/traces/$name" ;;
  esac
}
if [[ -d "$shared" ]]; then
  for f in "$shared"/sdk-v7/*.pftrace "$shared"/real/*; do
    [[ -f "$f" && "$f" != *.md ]] && add_seed "$f"
  done
else
  echo "fuzz.sh: $shared not found: no shared seed traces"
fi
# The fuzzer's built-in host trace.
VPFUZZ_DUMP_HOST="$seeds/traces/builtin_host.pftrace" "$build/rewriter_fuzzer" -runs=0 \
  /dev/null >/dev/null 2>&1 || true
# Hand-made hostile inputs (the cases of tests/test_fuzz_regressions.py).
python3 "$root/fuzz/hostile_inputs.py" "$seeds/traces" >/dev/null ||
  echo "fuzz.sh: fuzz/hostile_inputs.py failed (skipped)"
# Traces of our own, when vperfetto is installed.
if python3 -c 'import vperfetto' 2>/dev/null; then
  python3 - "$seeds/traces" <<'PY' || echo "fuzz.sh: generating traces with vperfetto failed (skipped)"
import os, sys
import vperfetto
from vperfetto.merge import merge

out = sys.argv[1]

def record(path, name, n, **session):
    with vperfetto.Session(path, **session):
        vperfetto.set_process_name(name)
        vperfetto.set_thread_name("main")
        vperfetto.clock_sync_marker()
        track = vperfetto.Track("custom")
        for i in range(n):
            with vperfetto.slice("work", args={"i": i, "s": "x" * (i % 5), "f": i / 3, "b": i % 2 == 0}):
                vperfetto.counter(f"{name}_depth", i)
                vperfetto.instant("tick", track=track)
        vperfetto.clock_sync_marker()
    return path

g = record(os.path.join(out, "py_guest.pftrace"), "guest_py", 12)
h = record(os.path.join(out, "py_host.pftrace"), "host_py", 8)
# absolute timestamps; a ring that wrapped (a reset, and so a clock 64
# snapshot, per chunk); a unit multiplier
record(os.path.join(out, "py_absolute.pftrace"), "abs_py", 12, incremental_timestamps=False)
record(os.path.join(out, "py_ring.pftrace"), "ring_py", 3000, buffer_kb=16)
record(os.path.join(out, "py_unit.pftrace"), "unit_py", 12, timestamp_unit_ns=1000)
merge(g, h, os.path.join(out, "py_merged.pftrace"))
merge(g, h, os.path.join(out, "py_merged_ids.pftrace"), mode="guest-into-host", machine_ids=True)
PY
  # Crash images for recover_fuzzer: processes killed while tracing, cut
  # after their last chunk with data (a stream image: IMAGE VPSPLIT! FILE).
  python3 - "$seeds/images" <<'PY' || echo "fuzz.sh: generating crash images failed (skipped)"
import os, struct, subprocess, sys, tempfile
child = r"""
import os, signal, sys, threading, vperfetto
vperfetto.Session(sys.argv[1], mode=sys.argv[2], buffer_kb=int(sys.argv[3]), flush_period_ms=0).start()
def work(t):
    for i in range(int(sys.argv[4])):
        vperfetto.begin("work", args={"t": t, "i": i, "s": "x" * (i % 7)})
        vperfetto.counter("c", i)
        vperfetto.end()
ts = [threading.Thread(target=work, args=(t,)) for t in range(2)]
for th in ts: th.start()
for th in ts: th.join()
os.kill(os.getpid(), 9)
"""
d = tempfile.mkdtemp()
for n, (mode, kb, ev) in enumerate((("ring", 8, 60), ("ring", 8, 10), ("discard", 8, 80),
                                    ("stream", 4, 30), ("ring", 4, 5))):
    t = os.path.join(d, f"t{n}.pftrace")
    subprocess.call([sys.executable, "-c", child, t, mode, str(kb), str(ev)])
    img = open(t + ".vpbuf", "rb").read()
    off, = struct.unpack_from("<Q", img, 32)
    size, count = struct.unpack_from("<II", img, 20)
    last = max([off + i * size + (struct.unpack_from("<Q", img, 4096 + 48 * i + 16)[0] >> 24)
                for i in range(count)] + [8192])
    img = img[:last] + (b"VPSPLIT!" + open(t, "rb").read() if mode == "stream" else b"")
    open(os.path.join(sys.argv[1], f"image{n}-{mode}"), "wb").write(img)
PY
else
  echo "fuzz.sh: vperfetto is not installed: no generated seed traces"
fi
# Guest/host pairs for the rewriter's split mode: GUEST "VPSPLIT!" HOST.
pair() { [[ -f "$1" && -f "$2" ]] && { cat "$1"; printf 'VPSPLIT!'; cat "$2"; } >"$seeds/split/$3" || true; }
pair "$shared/sdk-v7/guest.pftrace" "$shared/sdk-v7/host.pftrace" sdk_pair
pair "$seeds/traces/py_guest.pftrace" "$seeds/traces/py_host.pftrace" py_pair
pair "$seeds/traces/py_guest.pftrace" "$seeds/traces/builtin_host.pftrace" py_builtin_pair
pair "$seeds/traces/py_ring.pftrace" "$seeds/traces/py_absolute.pftrace" py_ring_abs_pair
echo "== seeds: $(ls "$seeds/traces" | wc -l) traces, $(ls "$seeds/split" | wc -l) guest/host pairs"

# --- replay the kept regressions -------------------------------------------------------
status=0
for t in "${targets[@]}"; do
  reg="$root/fuzz/regressions/$t"
  [[ -d "$reg" ]] || continue
  mapfile -t kept < <(find "$reg" -type f ! -name '*.md' | sort)
  [[ ${#kept[@]} == 0 ]] && continue
  if "$build/$t" -rss_limit_mb=2048 -timeout=10 "${kept[@]}" >"$build/$t.replay.log" 2>&1; then
    echo "== $t: ${#kept[@]} kept regression input(s) pass"
  else
    tail -40 "$build/$t.replay.log"
    echo "fuzz.sh: $t: a kept regression input fails again (log: $build/$t.replay.log)" >&2
    status=1
  fi
done

# --- fuzz --------------------------------------------------------------------------------
new=0
summary=()
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  art="$build/artifacts/$t"
  reg="$root/fuzz/regressions/$t"
  rm -rf "$art"  # this run's artifacts only
  mkdir -p "$corpus" "$art" "$reg"
  dirs=("$corpus" "$seeds/traces")
  extra=(-max_len=131072)
  if [[ $t == recover_fuzzer ]]; then
    dirs=("$corpus" "$seeds/images")
  fi
  if [[ $t == rewriter_fuzzer ]]; then
    dirs+=("$seeds/split")
    extra=(-max_len="${VPFUZZ_MAX_LEN:-1048576}" -dict="$root/fuzz/rewriter.dict")
  fi
  [[ -n "$(ls -A "$reg" 2>/dev/null)" ]] && dirs+=("$reg")
  log="$build/$t.log"
  echo "== fuzzing $t for ${seconds}s (log: $log)"
  "$build/$t" -fork="$jobs" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$art/" "${extra[@]}" "${dirs[@]}" >"$log" 2>&1 || true
  # Executions: the final stats when libFuzzer prints them, else the last
  # status line of fork mode ("#N: cov: ...").
  execs="$( (grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" || true) | awk '{s += $2} END {print s + 0}')"
  if [[ "$execs" == 0 ]]; then
    execs="$( (grep -oE '^#[0-9]+' "$log" || true) | tail -1 | tr -d '#')"
  fi
  crashes=0
  for a in "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*; do
    [[ -f "$a" ]] || continue
    if [[ ! -f "$reg/$(basename "$a")" ]]; then
      cp "$a" "$reg/"
      echo "   NEW: fuzz/regressions/$t/$(basename "$a")"
      crashes=$((crashes + 1))
    fi
  done
  new=$((new + crashes))
  summary+=("$t: ${execs:-0} executions in ${seconds}s, $crashes new crash/leak/timeout/oom input(s)")
done

echo "== summary"
printf '   %s\n' "${summary[@]}"
if [[ $new -gt 0 ]]; then
  echo "fuzz.sh: $new new failing input(s) kept in fuzz/regressions/: fix them, keep the inputs" >&2
  exit 1
fi
exit $status
