#!/usr/bin/env bash
# What of the release can be checked without containers (CI runs this):
#   1. the sdist builds, and installs (an isolated build from the sdist alone)
#      into a fresh venv, where the installed package traces, merges, inspects,
#      draws its timeline and ships its typing (py.typed, stubs) and viewer;
#   2. a wheel built from that sdist holds the package and nothing else, its
#      shared objects need no library but libc, libm, libstdc++, libgcc_s and
#      libz (readelf), and `auditwheel show` finds no external library, i.e.
#      nothing `auditwheel repair` would have to graft for manylinux;
#   3. cibuildwheel's selection from pyproject.toml is CPython 3.10-3.13 on
#      manylinux and musllinux (`--print-build-identifiers` needs no container).
# The manylinux2014/musllinux builds themselves need containers: the release
# job's `cibuildwheel --platform linux`.
#
# Usage: scripts/check_dist.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=$(command -v python3)

"$py" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet build auditwheel cibuildwheel

echo "== sdist"
"$work/tools/bin/python" -m build --sdist --outdir "$work/dist" "$root" >"$work/sdist.log" 2>&1 \
  || { cat "$work/sdist.log"; exit 1; }
sdist=$(ls "$work"/dist/vperfetto-*.tar.gz)
echo "$(basename "$sdist"): $(tar -tzf "$sdist" | wc -l) files"
if tar -tzf "$sdist" | grep -E '/(build|\.ci|\.git)/|\.so$|__pycache__'; then
  echo "the sdist holds build products or CI files (above)" >&2
  exit 1
fi

echo "== the sdist installed into a fresh venv"
"$py" -m venv "$work/user"
"$work/user/bin/python" -m pip install --quiet "$sdist"
(cd "$work" && "$work/user/bin/python" - <<'PY')
import importlib.resources, os, tempfile
import vperfetto
from vperfetto import timeline
from vperfetto.inspect import inspect
from vperfetto.merge import merge

pkg = importlib.resources.files("vperfetto")
for f in ("py.typed", "_vperfetto_cffi.pyi", "_vperfetto_fast.pyi", "_vperfetto_profile.pyi",
          "timeline/viewer.js", "timeline/viewer.css", "include/vperfetto/vperfetto.h"):
    assert pkg.joinpath(f).is_file(), f"the installed package lacks {f}"
d = tempfile.mkdtemp()
g, h, out = (os.path.join(d, n) for n in ("g.pftrace", "h.pftrace", "c.pftrace"))
for path, name in ((g, "guest_work"), (h, "host_work")):
    with vperfetto.Session(path):
        vperfetto.clock_sync_marker()
        with vperfetto.slice(name):
            vperfetto.counter("depth", 1)
report = merge(g, h, out)
summary = inspect(out, check=True)
model = timeline.model_from_trace(out)
names = {s[2] for t in model["tracks"] for s in t["slices"]}
assert {"guest_work", "host_work"} <= names, names
assert "<svg" in timeline.render_svg(model) and "<html" in timeline.render_html(model).lower()
print(f"installed {vperfetto.__file__}: merged {report.packets_written} packets "
      f"({report.mode}), {summary['packets']} inspected, {len(model['tracks'])} timeline tracks")
PY

echo "== a wheel from the sdist"
"$work/tools/bin/python" -m build --wheel --outdir "$work/wheel" "$sdist" >"$work/wheel.log" 2>&1 \
  || { cat "$work/wheel.log"; exit 1; }
wheel=$(ls "$work"/wheel/vperfetto-*.whl)
"$work/tools/bin/auditwheel" show "$wheel" >"$work/show.txt" 2>&1 || { cat "$work/show.txt"; exit 1; }
"$work/tools/bin/python" - "$wheel" "$work/show.txt" <<'PY'
import os, re, subprocess, sys, tempfile, zipfile
wheel, show = sys.argv[1], open(sys.argv[2]).read()
allowed = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1",
           "libpthread.so.0", "libdl.so.2", "librt.so.1", "ld-linux-x86-64.so.2"}
zf = zipfile.ZipFile(wheel)
names = zf.namelist()
top = {n.split("/")[0] for n in names}
stray = {t for t in top if t != "vperfetto" and not t.endswith((".dist-info", ".data"))
         and t != "vperfetto_follow.pth"}
assert not stray, f"the wheel holds more than the package: {sorted(stray)}"
for f in ("vperfetto/py.typed", "vperfetto/libvperfetto.so", "vperfetto/timeline/viewer.js"):
    assert f in names, f"the wheel lacks {f}"
assert not any("/tests/" in n or n.endswith(".pyc") for n in names), "tests or bytecode in the wheel"
needed = {}
with tempfile.TemporaryDirectory() as d:
    for n in names:
        if n.endswith(".so") or "/scripts/" in n:
            path = zf.extract(n, d)
            with open(path, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            dyn = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
            needed[n] = set(re.findall(r"\(NEEDED\).*\[(.+?)\]", dyn))
assert "vperfetto/libvperfetto.so" in needed, sorted(needed)
own = {os.path.basename(n) for n in needed}
for n, libs in sorted(needed.items()):
    if libs - allowed - own:
        sys.exit(f"{n} needs unexpected libraries: {sorted(libs - allowed - own)}")
# "The following external shared libraries are required by the wheel: {...}"
m = re.search(r"external shared libraries are required by the wheel:\s*(\{.*?\})", show, re.S)
external = set(re.findall(r'"([^"]+)"\s*:', m.group(1))) if m else set()
tag = (re.search(r'constrains the platform tag to\s+"([^"]+)"', show)
       or re.search(r'following platform tag:\s+"([^"]+)"', show))
print(f"{wheel.rsplit('/', 1)[-1]}: {len(names)} files, {len(needed)} ELF objects needing "
      f"{sorted(set().union(*needed.values()) - own)}; auditwheel: external libraries "
      f"{sorted(external) or 'none'}, best tag here {tag.group(1) if tag else '?'} (this machine's glibc)")
if external:
    sys.exit("auditwheel would graft external libraries:\n" + show)
PY

echo "== cibuildwheel's selection"
ids=$(cd "$root" && "$work/tools/bin/cibuildwheel" --print-build-identifiers --platform linux)
echo $ids
want="cp310-manylinux_x86_64 cp311-manylinux_x86_64 cp312-manylinux_x86_64 cp313-manylinux_x86_64
cp310-musllinux_x86_64 cp311-musllinux_x86_64 cp312-musllinux_x86_64 cp313-musllinux_x86_64"
if [ "$(echo "$ids" | sort)" != "$(echo "$want" | tr ' ' '\n' | sort)" ]; then
  echo "cibuildwheel would build other wheels than CPython 3.10-3.13 x86_64 manylinux/musllinux" >&2
  exit 1
fi
(cd "$root" && "$work/tools/bin/python" - <<'PY')
import tomllib
cfg = tomllib.load(open("pyproject.toml", "rb"))["tool"]["cibuildwheel"]
assert cfg["manylinux-x86_64-image"] == "manylinux2014", cfg
assert cfg["musllinux-x86_64-image"].startswith("musllinux"), cfg
assert "zlib" in cfg["linux"]["before-all"], cfg
print("manylinux image:", cfg["manylinux-x86_64-image"], "; musllinux image:", cfg["musllinux-x86_64-image"])
PY
echo "dist checks: passed"
