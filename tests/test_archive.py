"""``--archive``: the inputs plus a ``perfetto_manifest`` in one TAR, as
trace_processor v58+ opens it.

The manifest is checked against the documented schema
(https://perfetto.dev/docs/reference/perfetto-manifest), written out below as
explicit checks rather than trusted to the writer.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import vperfetto
from vperfetto.archive import MANIFEST_NAME, write_archive
from vperfetto.merge import merge

SDK = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "sdk-v7"
TRUTH_NS = 1_234_500_000_000  # guest BOOTTIME - host BOOTTIME (sdk-v7/README.md)

needs_sdk = pytest.mark.skipif(not (SDK / "guest.pftrace").exists(),
                               reason=f"the SDK v7 reference traces are not at {SDK}")

# --- the documented format, as explicit checks --------------------------------------------

CLOCK_NAMES = {"REALTIME", "REALTIME_COARSE", "MONOTONIC", "MONOTONIC_COARSE",
               "MONOTONIC_RAW", "BOOTTIME"}
TOP_FIELDS = {"version", "trace_time", "files", "attributes"}
FILE_FIELDS = {"path", "machine", "machines", "clocks"}
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_manifest(raw: bytes, members: set) -> dict:
    """Checks a manifest member against the reference page; returns its body."""
    # Detection is by content: the text starts with {"perfetto_manifest" (v58's
    # page: after leading whitespace; we write none at all).
    assert raw.startswith(b'{"perfetto_manifest"'), raw[:40]
    doc = json.loads(raw.decode("utf-8"))
    assert isinstance(doc, dict) and list(doc) == ["perfetto_manifest"]
    m = doc["perfetto_manifest"]
    assert isinstance(m, dict)
    assert set(m) <= TOP_FIELDS, set(m) - TOP_FIELDS  # we emit only documented fields
    assert _is_int(m["version"]) and m["version"] == 1  # required, must be 1

    files = m.get("files", [])
    assert isinstance(files, list)
    paths = []
    for f in files:
        assert isinstance(f, dict) and set(f) <= FILE_FIELDS
        assert isinstance(f["path"], str) and f["path"] in members  # exact member path
        paths.append(f["path"])
        assert not ("machine" in f and "machines" in f)  # mutually exclusive
        if "machine" in f:
            assert isinstance(f["machine"], dict)
            assert isinstance(f["machine"]["name"], str) and f["machine"]["name"]
        if "machines" in f:
            for e in f["machines"]:
                assert _is_int(e["id"]) and 0 <= e["id"] <= 0xFFFFFFFF
                assert isinstance(e["name"], str) and e["name"]
        if "clocks" in f:
            c = f["clocks"]
            assert isinstance(c, dict)
            assert set(c) <= {"clock", "machine", "sync_to", "offset_ns"}
            if "clock" in c:
                assert c["clock"] in CLOCK_NAMES
            if "machine" in c:  # only for multi-machine files
                assert "machines" in f
            s = c["sync_to"]  # required
            assert isinstance(s, dict) and set(s) <= {"file", "machine", "clock"}
            assert isinstance(s["file"], str)  # required; must name a files entry (below)
            if "clock" in s:
                assert s["clock"] in CLOCK_NAMES
            if "offset_ns" in c:
                assert _is_int(c["offset_ns"]) and INT64_MIN < c["offset_ns"] <= INT64_MAX
    assert len(set(paths)) == len(paths)
    for f in files:
        if "clocks" in f:
            assert f["clocks"]["sync_to"]["file"] in paths

    if "trace_time" in m:
        t = m["trace_time"]
        assert isinstance(t, dict) and set(t) <= {"clock", "file", "machine"}
        assert t["clock"] in CLOCK_NAMES  # required
        if "file" in t:
            assert t["file"] in paths
        if "machine" in t:
            assert "file" in t

    if "attributes" in m:
        a = m["attributes"]
        assert isinstance(a, dict)
        for k, v in a.items():
            assert isinstance(k, str) and k
            assert isinstance(v, str) or _is_int(v)
    return m


def open_archive(path) -> tuple:
    """(manifest body, {member name: bytes}) after checking the TAR itself."""
    raw = Path(path).read_bytes()
    # plain ustar headers: what Trace Processor's TAR reader accepts
    assert raw[257:265] == b"ustar\x0000"
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
        names = [i.name for i in infos]
        assert len(set(names)) == len(names)
        for i in infos:
            assert i.isreg(), i.name
            assert "/" not in i.name and not i.name.startswith(".")  # hidden members are skipped
            assert len(i.name.encode()) < 100
        data = {i.name: tar.extractfile(i).read() for i in infos}
    assert MANIFEST_NAME in data
    manifest = validate_manifest(data.pop(MANIFEST_NAME), set(data))
    # the members are exactly the files the manifest names
    assert {f["path"] for f in manifest["files"]} == set(data)
    return manifest, data


def entries(manifest) -> dict:
    """machine name -> files entry."""
    return {f["machine"]["name"]: f for f in manifest["files"]}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vperfetto.merge", *map(str, args)],
                          capture_output=True, text=True)


def assert_error(proc, needle=None):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    if needle:
        assert needle in lines[0], lines[0]


def no_leftovers(directory: Path, keep=()):
    left = sorted(p.name for p in directory.iterdir() if p.name not in keep)
    assert left == [], left


# --- SDK v7 reference traces ---------------------------------------------------------------

@needs_sdk
def test_sdk_v7_archive_relates_guest_boottime_to_host(tmp_path):
    out = tmp_path / "out.tar"
    r = write_archive(out, SDK / "host.pftrace", {"vm1": SDK / "guest.pftrace"})
    measured = merge(host=SDK / "host.pftrace", guests={"vm1": SDK / "guest.pftrace"},
                     output=None, dry_run=True).alignments[0]
    assert measured.method == "tsc-markers" and abs(measured.offset_ns - TRUTH_NS) <= 2

    manifest, data = open_archive(out)
    e = entries(manifest)
    assert set(e) == {"host", "vm1"}
    host, vm1 = e["host"], e["vm1"]
    assert host["path"] == "host.pftrace" and vm1["path"] == "vm1.pftrace"
    assert "clocks" not in host
    # the host's BOOTTIME is the timeline
    assert manifest["trace_time"] == {"clock": "BOOTTIME", "file": "host.pftrace"}
    # "at a common instant the source clock reads T when the reference reads
    # T + offset_ns": guest = host + D, so offset_ns = -D
    c = vm1["clocks"]
    assert c["clock"] == "BOOTTIME"
    assert c["sync_to"] == {"file": "host.pftrace", "clock": "BOOTTIME"}
    assert c["offset_ns"] == -measured.offset_ns
    assert abs(c["offset_ns"] + TRUTH_NS) <= 2
    # the archived traces are the inputs, byte for byte
    assert data["host.pftrace"] == (SDK / "host.pftrace").read_bytes()
    assert data["vm1.pftrace"] == (SDK / "guest.pftrace").read_bytes()
    # how the offset was found, in the documented (namespaced) attributes
    attrs = manifest["attributes"]
    assert attrs["vperfetto.vm1.method"] == "tsc-markers"
    assert attrs["vperfetto.vm1.approximate"] == 0
    assert attrs["vperfetto.vm1.guest_minus_host_ns"] == measured.offset_ns
    # the report says the same
    assert r.output == str(out) and r.bytes_written == out.stat().st_size
    assert r.timeline == "host" and r.alignments == [measured]
    assert [(m.name, m.machine, m.role, m.decompressed) for m in r.members] == [
        ("host.pftrace", "host", "host", False), ("vm1.pftrace", "vm1", "guest", False)]
    no_leftovers(tmp_path, keep={"out.tar"})


@needs_sdk
def test_cli_named_form_archive_only_and_with_combined_output(tmp_path):
    out = tmp_path / "a.tar"
    proc = run_cli("--host", SDK / "host.pftrace", "--guest", f"vm1={SDK / 'guest.pftrace'}",
                   "--guest", f"vm2={SDK / 'guest.pftrace'}", "--archive", out)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    manifest, data = open_archive(out)
    e = entries(manifest)
    assert set(e) == {"host", "vm1", "vm2"}
    for g in ("vm1", "vm2"):
        assert abs(e[g]["clocks"]["offset_ns"] + TRUTH_NS) <= 2
        assert data[e[g]["path"]] == (SDK / "guest.pftrace").read_bytes()
    assert manifest["trace_time"]["file"] == e["host"]["path"]
    assert not list(tmp_path.glob("*.pftrace"))  # no combined output asked for

    # -o and --archive: both written, the archive with the merge's own offsets
    out2, comb = tmp_path / "b.tar", tmp_path / "comb.pftrace"
    proc = run_cli("--host", SDK / "host.pftrace", "--guest", f"vm1={SDK / 'guest.pftrace'}",
                   "-o", comb, "--archive", out2, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    printed = report["merge"]["alignments"][0]["offset_ns"]
    assert abs(printed - TRUTH_NS) <= 2
    assert report["archive"]["output"] == str(out2)
    manifest, _ = open_archive(out2)
    assert entries(manifest)["vm1"]["clocks"]["offset_ns"] == -printed
    ref = tmp_path / "ref.pftrace"
    merge(host=SDK / "host.pftrace", guests={"vm1": SDK / "guest.pftrace"}, output=ref)
    assert comb.read_bytes() == ref.read_bytes()


@needs_sdk
@pytest.mark.parametrize("with_combined", [False, True])
def test_timeline_never_puts_events_before_zero(tmp_path, with_combined):
    # The guest booted after the host began tracing: on the guest's clock the
    # host's first events are negative and trace_processor would drop them;
    # the archive's timeline becomes the host's, as the merge's does.
    out = tmp_path / "p.tar"
    args = [SDK / "guest.pftrace", SDK / "host.pftrace"]
    if with_combined:
        args.append(tmp_path / "c.pftrace")
    proc = run_cli(*args, "--archive", out, "--time-diff", "-1151400000000")
    assert proc.returncode == 0, proc.stderr
    assert "warning: the host would put" in proc.stderr and "main timeline instead" in proc.stderr
    manifest, _ = open_archive(out)
    assert manifest["trace_time"] == {"clock": "BOOTTIME", "file": "host.pftrace"}
    assert entries(manifest)["guest"]["clocks"]["offset_ns"] == 1151400000000

    # several guests before the host's zero: refused, nothing written
    out2 = tmp_path / "q.tar"
    proc = run_cli("--host", SDK / "host.pftrace", "--guest", f"a={SDK / 'guest.pftrace'}",
                   "--guest", f"b={SDK / 'guest.pftrace'}", "--archive", out2,
                   "--time-diff", "2386000000000")
    assert proc.returncode == 2 and "before the host clock's zero" in proc.stderr
    assert not out2.exists()


@needs_sdk
def test_cli_positional_form(tmp_path):
    # guest host --archive: the original tool's form; the guest is its timeline
    out = tmp_path / "p.tar"
    proc = run_cli(SDK / "guest.pftrace", SDK / "host.pftrace", "--archive", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    manifest, data = open_archive(out)
    e = entries(manifest)
    assert set(e) == {"host", "guest"}
    assert manifest["trace_time"] == {"clock": "BOOTTIME", "file": "guest.pftrace"}
    assert abs(e["guest"]["clocks"]["offset_ns"] + TRUTH_NS) <= 2
    assert data["guest.pftrace"] == (SDK / "guest.pftrace").read_bytes()
    assert data["host.pftrace"] == (SDK / "host.pftrace").read_bytes()

    # --merge-guest-into-host: the host is the timeline; same clock relation
    out2 = tmp_path / "q.tar"
    proc = run_cli("--merge-guest-into-host", SDK / "guest.pftrace", SDK / "host.pftrace",
                   "--archive", out2)
    assert proc.returncode == 0, proc.stderr
    manifest2, _ = open_archive(out2)
    assert manifest2["trace_time"] == {"clock": "BOOTTIME", "file": "host.pftrace"}
    assert entries(manifest2)["guest"]["clocks"] == e["guest"]["clocks"]

    # guest host combined [boot] --archive: the combined trace is written as before
    comb, out3 = tmp_path / "c.pftrace", tmp_path / "r.tar"
    proc = run_cli(SDK / "guest.pftrace", SDK / "host.pftrace", comb, "--archive", out3)
    assert proc.returncode == 0, proc.stderr
    ref = tmp_path / "ref.pftrace"
    merge(SDK / "guest.pftrace", SDK / "host.pftrace", ref)
    assert comb.read_bytes() == ref.read_bytes()
    assert open_archive(out3)[0]["files"] == manifest["files"]

    # the boot-time argument and --time-diff reach the offset
    out4 = tmp_path / "s.tar"
    proc = run_cli(SDK / "guest.pftrace", SDK / "host.pftrace", "--time-diff", 1000, "--archive", out4)
    assert proc.returncode == 0, proc.stderr
    m4 = open_archive(out4)[0]
    assert entries(m4)["guest"]["clocks"]["offset_ns"] == -1000
    assert m4["attributes"]["vperfetto.guest.method"] == "time-diff"


@needs_sdk
def test_gzip_input_is_stored_decompressed(tmp_path):
    gz = tmp_path / "host.pftrace.gz"
    gz.write_bytes(gzip.compress((SDK / "host.pftrace").read_bytes()))
    out = tmp_path / "g.tar"
    r = write_archive(out, gz, {"vm1": SDK / "guest.pftrace"})
    _, data = open_archive(out)
    # Trace Processor refuses machine/clock overrides on a gzip member
    # (a container), so the trace goes in decompressed
    assert data["host.pftrace"] == (SDK / "host.pftrace").read_bytes()
    assert r.members[0].decompressed and not r.members[1].decompressed
    assert abs(r.alignments[0].offset_ns - TRUTH_NS) <= 2
    no_leftovers(tmp_path, keep={"g.tar", "host.pftrace.gz"})


@needs_sdk
def test_member_names_are_sanitised_and_unique(tmp_path):
    g = SDK / "guest.pftrace"
    guests = {"vm 1": g, "vm/1": g, ".hidden": g, "Ünïcode vm": g, "perfetto_manifest": g,
              "HOST": g, "x" * 100: g}
    out = tmp_path / "n.tar"
    r = write_archive(out, SDK / "host.pftrace", guests, alignments={n: 5 for n in guests})
    manifest, data = open_archive(out)
    e = entries(manifest)
    assert set(e) == {"host", *guests}  # machine names are kept as given
    names = [f["path"] for f in manifest["files"]]
    assert len({n.casefold() for n in names}) == len(names)
    for n in names:
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.pftrace", n), n
    assert e["vm 1"]["path"] == "vm_1.pftrace" and e["vm/1"]["path"] == "vm_1-2.pftrace"
    assert e[".hidden"]["path"] == "hidden.pftrace"
    assert e["Ünïcode vm"]["path"] == "Unicode_vm.pftrace"
    assert e["HOST"]["path"] == "HOST-2.pftrace"  # host.pftrace is taken, whatever the case
    for name in guests:
        assert data[e[name]["path"]] == g.read_bytes()
        assert e[name]["clocks"]["offset_ns"] == -5
        assert manifest["attributes"][f"vperfetto.{name}.method"] == "given"
    assert [m.name for m in r.members] == names


# --- traces recorded here ------------------------------------------------------------------

def _record(path, name, n=10):
    with vperfetto.Session(path):
        vperfetto.set_process_name(name)
        vperfetto.clock_sync_marker()
        for i in range(n):
            with vperfetto.slice("work", args={"i": i}):
                vperfetto.counter(f"{name}_depth", i)
        vperfetto.clock_sync_marker()
    return path


def test_own_traces_offset_is_the_merges_measurement(tmp_path):
    g = _record(tmp_path / "g.pftrace", "guest_proc")
    h = _record(tmp_path / "h.pftrace", "host_proc")
    measured = merge(host=h, guests={"vm": g}, output=None, dry_run=True).alignments[0]
    out = tmp_path / "own.tar"
    r = write_archive(out, h, {"vm": g})
    manifest, data = open_archive(out)
    c = entries(manifest)["vm"]["clocks"]
    assert r.alignments[0].offset_ns == measured.offset_ns
    assert c["offset_ns"] == -measured.offset_ns
    assert manifest["attributes"]["vperfetto.vm.method"] == measured.method
    if os.uname().machine == "x86_64":  # one machine: the true offset is 0
        # (within what a marker's TSC and BOOTTIME reads can be apart when the
        # writer is preempted between them on a loaded machine: 5.9 us seen)
        assert abs(measured.offset_ns) < 50_000
    assert data[entries(manifest)["vm"]["path"]] == g.read_bytes()
    assert data[entries(manifest)["host"]["path"]] == h.read_bytes()

    # a given difference (guest - host) comes out negated, whatever its sign
    for diff in (7_000_000_000, -3_000):
        out2 = tmp_path / f"d{diff}.tar"
        r2 = write_archive(out2, h, {"vm": g}, time_diff_ns=diff)
        assert r2.alignments[0].method == "time-diff"
        assert entries(open_archive(out2)[0])["vm"]["clocks"]["offset_ns"] == -diff

    # an archive replaces an older file at the same path in one step
    out.write_bytes(b"old")
    write_archive(out, h, {"vm": g}, alignments=r.alignments)
    assert open_archive(out)[0] == manifest
    no_leftovers(tmp_path, keep={"g.pftrace", "h.pftrace", "own.tar",
                                 "d7000000000.tar", "d-3000.tar"})


# --- errors ------------------------------------------------------------------------------------

@needs_sdk
def test_cli_errors_exit_2_with_one_line(tmp_path):
    host, guest = SDK / "host.pftrace", SDK / "guest.pftrace"
    out = tmp_path / "o.tar"
    g = tmp_path / "g.pftrace"
    shutil.copyfile(guest, g)

    # missing input, either side, either form
    assert_error(run_cli(tmp_path / "nope.pftrace", host, "--archive", out), "nope.pftrace")
    assert_error(run_cli(guest, tmp_path / "nope.pftrace", "--archive", out), "nope.pftrace")
    assert_error(run_cli("--host", host, "--guest", f"vm1={tmp_path / 'nope'}", "--archive", out),
                 "nope")
    # the output is one of the inputs: refused, the input left alone
    assert_error(run_cli(g, host, "--archive", g), "also an input")
    assert_error(run_cli("--host", host, "--guest", f"vm1={g}", "--archive", g), "also an input")
    assert g.read_bytes() == guest.read_bytes()
    # the archive and the combined output are one file
    assert_error(run_cli(g, host, tmp_path / "x.tar", "--archive", tmp_path / "x.tar"))
    # bad guest names
    assert_error(run_cli("--host", host, "--guest", f"host={g}", "--archive", out), "host")
    assert_error(run_cli("--host", host, "--guest", f"vm\n1={g}", "--archive", out), "control")
    assert_error(run_cli("--host", host, "--guest", f" vm1={g}", "--archive", out), "whitespace")
    assert_error(run_cli("--host", host, "--guest", f"=={g}", "--archive", out))
    assert_error(run_cli("--host", host, "--guest", f"vm1={g}", "--guest", f"vm1={g}",
                         "--archive", out), "distinct")
    # bad forms
    assert_error(run_cli(g, "--archive", out))
    assert_error(run_cli("--host", host, "--archive", out))
    assert_error(run_cli(g, host, tmp_path / "c.pftrace", "notanumber", "--archive", out))
    assert_error(run_cli("--add-traces", g, host, "--archive", out), "--add-traces")
    assert_error(run_cli(g, host, "--archive", ""))
    assert_error(run_cli(g, host, "--archive", tmp_path))  # a directory
    assert_error(run_cli(g, host, "--archive", tmp_path / "no-dir" / "o.tar"))
    # inputs that are not traces fail in the measuring merge
    bad = tmp_path / "bad.pftrace"
    bad.write_bytes(b"hello, this is not a trace at all\n" * 10)
    assert_error(run_cli(bad, host, "--archive", out), "not a Perfetto trace")
    assert_error(run_cli(g, bad, "--archive", out), "not a Perfetto trace")

    assert not out.exists()
    no_leftovers(tmp_path, keep={"g.pftrace", "bad.pftrace"})


@needs_sdk
def test_failed_write_keeps_the_old_file(tmp_path):
    bad = tmp_path / "bad.pftrace"
    bad.write_bytes(b"")
    out = tmp_path / "o.tar"
    out.write_bytes(b"previous")
    proc = run_cli(SDK / "guest.pftrace", bad, "--archive", out)
    assert_error(proc)
    assert out.read_bytes() == b"previous"
    no_leftovers(tmp_path, keep={"bad.pftrace", "o.tar"})


def test_python_api_argument_errors(tmp_path):
    t = tmp_path / "t.pftrace"
    t.write_bytes(b"\x0a\x00")
    out = tmp_path / "o.tar"
    with pytest.raises(TypeError):
        write_archive(out, t, None)
    with pytest.raises(ValueError, match="empty"):
        write_archive(out, t, {})
    with pytest.raises(ValueError, match="empty"):
        write_archive(out, t, {"": t}, alignments={"": 0})
    with pytest.raises(TypeError):
        write_archive(out, t, {3: t}, alignments={3: 0})
    with pytest.raises(ValueError, match="do not match"):
        write_archive(out, t, {"vm": t}, alignments={"other": 0})
    with pytest.raises(ValueError, match="not both"):
        write_archive(out, t, {"vm": t}, alignments={"vm": 0}, time_diff_ns=1)
    with pytest.raises(ValueError, match="timeline"):
        write_archive(out, t, {"vm": t}, alignments={"vm": 0}, timeline="nowhere")
    with pytest.raises(ValueError, match="64-bit"):
        write_archive(out, t, {"vm": t}, alignments={"vm": 1 << 63})
    with pytest.raises(FileNotFoundError):
        write_archive(out, tmp_path / "missing", {"vm": t}, alignments={"vm": 0})
    with pytest.raises(ValueError, match="also an input"):
        write_archive(t, t, {"vm": tmp_path / "t.pftrace"}, alignments={"vm": 0})
    assert not out.exists()
    # with the offsets given, no merge runs: any file goes in as it is
    r = write_archive(out, t, {"vm": t}, alignments={"vm": -42}, host_name="hv")
    manifest, data = open_archive(out)
    assert entries(manifest)["vm"]["clocks"]["offset_ns"] == 42
    assert manifest["trace_time"]["file"] == entries(manifest)["hv"]["path"] == "hv.pftrace"
    assert data == {"hv.pftrace": b"\x0a\x00", "vm.pftrace": b"\x0a\x00"}
    assert r.timeline == "hv"


@needs_sdk
def test_manifest_sign_from_the_sdk_v7_clock_sync_markers(tmp_path):
    # Independent of the merge: at the instant of a guest marker (guest
    # BOOTTIME Tg, TSC c), the host's BOOTTIME is found from the host's own
    # markers through the shared TSC. The manifest says the guest's clock reads
    # T when the host's reads T + offset_ns, so offset_ns = host - guest there.
    from conftest import load_trace, resolve

    def markers(name):
        return sorted((e.args["clock_sync_cputime"], e.args["clock_sync_boottime"])
                      for e in resolve(load_trace(SDK / name))
                      if e.name == "guest_clock_sync" and "clock_sync_cputime" in e.args)

    host, guest = markers("host.pftrace"), markers("guest.pftrace")
    (c0, b0), (c1, b1) = host[0], host[-1]
    c, tg = guest[len(guest) // 2]
    th = b0 + (c - c0) * (b1 - b0) / (c1 - c0)  # host BOOTTIME at that TSC
    out = tmp_path / "s.tar"
    write_archive(out, SDK / "host.pftrace", {"vm": SDK / "guest.pftrace"})
    offset = entries(open_archive(out)[0])["vm"]["clocks"]["offset_ns"]
    assert abs(offset - (th - tg)) < 1_000  # TSC interpolation: well within a microsecond
    assert offset < 0  # this guest's clock is ahead of the host's


# --- the real reader, when one is at hand ------------------------------------------------------

TP_SHELL = os.environ.get("VPERFETTO_TRACE_PROCESSOR") or shutil.which("trace_processor_shell")


@needs_sdk
@pytest.mark.skipif(not TP_SHELL, reason="set VPERFETTO_TRACE_PROCESSOR to a trace_processor_shell "
                                         "v58+ (none on PATH) to open the archive for real")
def test_trace_processor_places_guest_on_host_timeline(tmp_path):
    from perfetto.trace_processor import TraceProcessor, TraceProcessorConfig
    from conftest import load_trace, resolve

    out = tmp_path / "tp.tar"
    r = write_archive(out, SDK / "host.pftrace", {"vm1": SDK / "guest.pftrace"})
    d = r.alignments[0].offset_ns
    first = {k: min(e.ts for e in resolve(load_trace(SDK / f)) if e.name == "frame")
             for k, f in (("host", "host.pftrace"), ("vm1", "guest.pftrace"))}
    tp = TraceProcessor(trace=str(out), config=TraceProcessorConfig(bin_path=TP_SHELL))
    try:
        rows = {row.machine: row.ts for row in tp.query(
            "SELECT m.name AS machine, MIN(s.ts) AS ts FROM slice s "
            "JOIN track t ON s.track_id = t.id JOIN machine m ON t.machine_id = m.id "
            "WHERE s.name = 'frame' GROUP BY m.name")}
    finally:
        tp.close()
    assert rows == {"host": first["host"], "vm1": first["vm1"] - d}
