#!/usr/bin/env bash
# Prints the stripped size of the full libvperfetto and of the tracing-only
# (VPERFETTO_MINIMAL) build, both Release, as quoted in the README.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for v in OFF ON; do
  cmake -S "$root" -B "$work/$v" -DVPERFETTO_PYTHON=OFF -DVPERFETTO_MINIMAL=$v \
        -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$work/$v" -j2 >/dev/null
  strip -o "$work/lib-$v.so" "$work/$v/libvperfetto.so"
  name=$([ "$v" = ON ] && echo "tracing-only (VPERFETTO_MINIMAL)" || echo "full (tracing + merge)")
  printf '%-34s %8d bytes stripped\n' "$name" "$(stat -c %s "$work/lib-$v.so")"
done
