"""Hostile inputs for the merge: every input the fuzzers (fuzz/, scripts/fuzz.sh)
ever crashed on, and hand-made ones.

Each input is merged through the Python API in a child interpreter (a crash
must not take pytest down with it), as the guest trace against a small valid
host trace, in every mode and with extreme alignment options. Every merge must
either write a trace the official schema reads or raise a
vperfetto.VperfettoError with a message: a crash, another exception type, an
invalid output or a hang fails the test. CI runs this file against the
library built with ASan and UBSan too (scripts/sanitize.sh --python), where
any memory error or undefined behaviour aborts the child and fails the test;
scripts/fuzz.sh replays the same inputs through the fuzzer builds.

Inputs kept by the fuzzers live in fuzz/regressions/<target>/. An input that
holds the separator b"VPSPLIT!" is a guest/host pair (GUEST, separator, HOST),
as rewriter_fuzzer reads it; any other one is merged against both a host
recorded here with vperfetto.Session and the fuzzer's own fixed host trace
(fuzz/builtin_host.bin, written by VPFUZZ_DUMP_HOST=... rewriter_fuzzer).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

import vperfetto

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fuzz"))
import hostile_inputs as hi  # noqa: E402  (fuzz/hostile_inputs.py: stdlib only)

REGRESSIONS = ROOT / "fuzz" / "regressions"
BUILTIN_HOST = ROOT / "fuzz" / "builtin_host.bin"
SPLIT = b"VPSPLIT!"

I64_MIN, I64_MAX, U64_MAX = hi.I64_MIN, hi.I64_MAX, hi.U64_MAX

# Every mode, machine ids, and given alignments with extreme values (what
# rewriter_fuzzer picks from an input's hash, all of it here).
VARIANTS = [
    {},
    {"mode": "guest-into-host"},
    {"mode": "add-traces"},
    {"machine_ids": True},
    {"mode": "guest-into-host", "machine_ids": True},
    {"dry_run": True},
    {"time_diff_ns": I64_MIN},
    {"time_diff_ns": I64_MAX},
    {"mode": "guest-into-host", "time_diff_ns": I64_MIN},
    {"mode": "guest-into-host", "time_diff_ns": I64_MAX, "machine_ids": True},
    {"guest_boot_time_ns": U64_MAX},
    {"mode": "guest-into-host", "guest_boot_time_ns": 0},
    {"guest_tsc_offset": I64_MIN},
    {"mode": "guest-into-host", "guest_tsc_offset": I64_MAX},
]
FEW = VARIANTS[:3]  # for the expensive inputs

# Runs in a child interpreter: argv[1] is a JSON job; prints one JSON line.
RUNNER = r"""
import json, os, sys
import vperfetto
from vperfetto.merge import merge

try:
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb2
except ImportError:
    pb2 = None


def parses(path):
    data = open(path, "rb").read()
    if data[:2] == b"\x1f\x8b":
        import gzip
        try:
            data = gzip.decompress(data)
        except Exception:
            return False
    try:
        pb2.Trace().ParseFromString(data)
        return True
    except Exception:
        return False


job = json.loads(sys.argv[1])
results = []
for v in job["variants"]:
    kw = dict(v)
    out = None if kw.get("dry_run") else job["out"]
    try:
        merge(job["guest"], job["host"], out, **kw)
        if out is not None and not os.path.isfile(out):
            raise SystemExit("merge() succeeded without writing %s" % out)
        # A valid trace by the official schema -- unless an input is not one
        # either: what the merge copies as it is (the main side) stays as it was.
        if out is not None and pb2 is not None and not parses(out):
            if parses(job["guest"]) and parses(job["host"]):
                raise SystemExit("merge() wrote an invalid trace from valid inputs")
        results.append("ok")
    except vperfetto.VperfettoError as e:
        if not str(e).strip():
            raise SystemExit("an error without a message: %r" % e)
        results.append("%s: %s" % (type(e).__name__, str(e)[:300]))
    if out is not None and os.path.exists(out):
        os.unlink(out)
    left = [n for n in os.listdir(os.path.dirname(job["out"])) if ".tmp-" in n]
    if left:
        raise SystemExit("temporary output left behind: %s" % left)
print("RESULTS " + json.dumps(results))
"""


def run_merges(tmp_path, guest_bytes, host_path, variants=VARIANTS, timeout=300):
    """Merges guest_bytes (as the guest) with host_path in a child interpreter;
    returns one result per variant: "ok" or "<ErrorClass>: message"."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    guest = work / "guest.trace"
    guest.write_bytes(guest_bytes)
    job = {"guest": str(guest), "host": str(host_path), "out": str(work / "out.trace"),
           "variants": variants}
    env = dict(os.environ)
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    p = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(job)], capture_output=True,
                       text=True, timeout=timeout, env=env)
    assert p.returncode == 0, (
        f"the merge crashed or raised a non-vperfetto error (exit {p.returncode}):\n"
        f"{p.stderr[-4000:]}")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULTS ")][-1]
    results = json.loads(line[len("RESULTS "):])
    assert len(results) == len(variants)
    return results


@pytest.fixture(scope="module")
def host_trace(tmp_path_factory):
    """A small valid host trace recorded here."""
    path = tmp_path_factory.mktemp("host") / "host.trace"
    with vperfetto.Session(path):
        vperfetto.set_process_name("fuzz_host")
        vperfetto.clock_sync_marker()
        for i in range(5):
            with vperfetto.slice("work", args={"i": i}):
                vperfetto.counter("depth", i)
        vperfetto.clock_sync_marker()
    return path


# --- inputs the fuzzers kept ------------------------------------------------------------

def _kept(target=None):
    if not REGRESSIONS.is_dir():
        return []
    return sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file() and p.suffix != ".md" and
                  (p.parent.name == target if target else p.parent.name != "recover_fuzzer"))


@pytest.mark.parametrize("path", _kept(), ids=lambda p: f"{p.parent.name}/{p.name[:20]}")
def test_kept_fuzzer_input(tmp_path, host_trace, path):
    data = path.read_bytes()
    i = data.find(SPLIT)
    if i >= 0:  # a guest/host pair
        host = tmp_path / "split_host.trace"
        host.write_bytes(data[i + len(SPLIT):])
        run_merges(tmp_path, data[:i], host)
        return
    run_merges(tmp_path, data, host_trace)
    if BUILTIN_HOST.is_file():
        run_merges(tmp_path, data, BUILTIN_HOST)


_RECOVER_CHILD = r"""
import pathlib, sys
import vperfetto
from vperfetto import recover
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb2
data = pathlib.Path(sys.argv[1]).read_bytes()
work = pathlib.Path(sys.argv[2])
i = data.find(b"VPSPLIT!")
image = work / "in.pftrace.vpbuf"
if i >= 0:  # IMAGE, separator, the stream session's output file (beside it)
    image.write_bytes(data[:i])
    (work / "in.pftrace").write_bytes(data[i + 8:])
else:
    image.write_bytes(data)
out = work / "out.pftrace"
try:
    recover.recover(image, out)
except vperfetto.VperfettoError as e:
    assert str(e) and not out.exists()
    print("error", type(e).__name__)
else:
    t = pb2.Trace()
    t.ParseFromString(out.read_bytes())
    print("ok", len(t.packet))
"""


@pytest.mark.parametrize("path", _kept("recover_fuzzer"), ids=lambda p: p.name[:40])
def test_kept_recover_input(tmp_path, path):
    # Crash images the recover fuzzer kept: a trace the official schema
    # reads or a clean error, in a child (a crash must not take pytest down).
    p = subprocess.run([sys.executable, "-c", _RECOVER_CHILD, str(path), str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split()[0] in ("ok", "error"), p.stdout


# --- hand-made hostile inputs ------------------------------------------------------------

def _run_case(tmp_path, host_trace, data, variants=VARIANTS):
    return run_merges(tmp_path, data, host_trace, variants)


def _ok_or_format_error(results):
    # A hostile trace may also align so absurdly that nothing fits on either
    # timeline: then the merge refuses (and says why) instead of writing it.
    for r in results:
        assert (r == "ok" or r.startswith("TraceFormatError") or
                (r.startswith("InvalidArgumentError") and "clock's zero" in r)), r


def test_nesting_bomb(tmp_path, host_trace):
    _ok_or_format_error(_run_case(tmp_path, host_trace, hi.nesting_bomb_trace()))


def test_nesting_bomb_as_whole_trace(tmp_path, host_trace):
    # One huge chain of nested packets: each a single valid field holding the next.
    _run_case(tmp_path, host_trace, hi.nesting_bomb(200_000, (1,)), FEW)


@pytest.mark.parametrize("claim", hi.HUGE_CLAIMS)
def test_packet_claiming_a_huge_length(tmp_path, host_trace, claim):
    for r in _run_case(tmp_path, host_trace, hi.huge_packet_claim(claim), FEW):
        assert r.startswith("TraceFormatError") and "claims" in r, r


def test_packet_claiming_more_than_the_file_holds(tmp_path, host_trace):
    # Under the packet limit: the reader must not trust it (a truncated tail).
    data = hi.valid_trace() + b"\x0a" + hi.varint(200 << 20) + b"\x40\x01"
    for r in _run_case(tmp_path, host_trace, data, FEW):
        assert r == "ok", r


@pytest.mark.parametrize("field", hi.CLAIMING_FIELDS)
def test_field_claiming_a_huge_length(tmp_path, host_trace, field):
    for r in _run_case(tmp_path, host_trace, hi.huge_field_claim(field), FEW):
        assert r.startswith("TraceFormatError"), r


def test_compressed_packets_zlib_bomb(tmp_path, host_trace):
    # 513 MiB of zeros in about half a MiB: past the 512 MiB inflate limit.
    bomb = hi.zlib_stream(b"\0", 513 << 20)
    assert len(bomb) < (1 << 20)
    for r in run_merges(tmp_path, hi.compressed(bomb), host_trace, [{}], timeout=600):
        assert r.startswith("TraceFormatError") and "beyond" in r, r


def test_compressed_packets_bomb_of_empty_packets(tmp_path, host_trace):
    # 64 MiB of zero-length packets (b"\x0a\x00"), within the limit: 32 Mi
    # empty packets, each handled or rejected.
    bomb = hi.zlib_stream(b"\x0a\x00", 64 << 20)
    _ok_or_format_error(run_merges(tmp_path, hi.compressed(bomb), host_trace, FEW, timeout=600))


@pytest.mark.parametrize("payload", hi.BAD_COMPRESSED)
def test_bad_compressed_packets(tmp_path, host_trace, payload):
    _ok_or_format_error(_run_case(tmp_path, host_trace, hi.compressed(payload)))


@pytest.mark.parametrize("tail", hi.TRUNCATED_TAILS)
def test_truncated_tails(tmp_path, host_trace, tail):
    _ok_or_format_error(_run_case(tmp_path, host_trace, hi.valid_trace() + tail, FEW))


@pytest.mark.parametrize("body", hi.MALFORMED_BODIES)
def test_malformed_packet_bodies(tmp_path, host_trace, body):
    for r in _run_case(tmp_path, host_trace, hi.malformed_body(body)):
        assert r.startswith("TraceFormatError"), r


@pytest.mark.parametrize("body", hi.MALFORMED_NESTED)
def test_malformed_nested_messages(tmp_path, host_trace, body):
    # Content the rewriter copies without decoding may pass through as it is.
    _ok_or_format_error(_run_case(tmp_path, host_trace, hi.malformed_nested(body)))


@pytest.mark.parametrize("data", hi.ZERO_LENGTH)
def test_zero_length_packets(tmp_path, host_trace, data):
    _ok_or_format_error(_run_case(tmp_path, host_trace, data))


@pytest.mark.parametrize("data", hi.NOT_QUITE_TRACES)
def test_not_quite_traces(tmp_path, host_trace, data):
    for r in _run_case(tmp_path, host_trace, data, FEW):
        assert r == "ok" or r.startswith(("TraceFormatError", "TraceIOError")), r


def test_extreme_values(tmp_path, host_trace):
    """Every id and timestamp the merge offsets or shifts at its extremes (a
    cpu number of 2^32-1 once hung the merge)."""
    _ok_or_format_error(_run_case(tmp_path, host_trace, hi.extreme_values_trace()))


@pytest.mark.parametrize("boot,tsc", hi.ALIGNMENT_SAMPLES)
def test_extreme_alignment_samples(tmp_path, host_trace, boot, tsc):
    _ok_or_format_error(_run_case(tmp_path, host_trace, hi.alignment_trace(boot, tsc)))


@pytest.mark.parametrize("boot,real", hi.REALTIME_SAMPLES)
def test_extreme_realtime_snapshots(tmp_path, host_trace, boot, real):
    _ok_or_format_error(_run_case(tmp_path, host_trace, hi.realtime_trace(boot, real)))


def test_many_clock_snapshots_stay_fast(tmp_path, host_trace):
    """150k clock snapshots and 150k timestamps on a clock they convert (7 MB):
    a fraction of a second; it was quadratic (every timestamp scanned every
    snapshot), about 40 s."""
    data = hi.many_snapshots_trace(150_000)
    for r in run_merges(tmp_path, data, host_trace, [{"mode": "guest-into-host"}], timeout=30):
        assert r == "ok", r
