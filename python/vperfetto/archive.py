"""Guest and host traces packed, unchanged, into one TAR that Perfetto merges.

    python -m vperfetto.merge guest.trace host.trace --archive out.tar
    python -m vperfetto.merge --host host.trace --guest vm1=a.trace --archive out.tar [-o combined.trace]

Trace Processor v58 and later (and the Perfetto UI) open a ZIP or TAR of
several traces as one merged trace. A ``perfetto_manifest`` JSON member
tells them how the files relate; ``write_archive`` writes one that gives every
trace its own named machine and relates each guest's BOOTTIME to the host's
BOOTTIME by the offset the merge measured. The traces themselves go into the
archive byte for byte (gzip inputs decompressed, since Trace Processor
rejects machine and clock overrides on a gzip member).

The format (https://perfetto.dev/docs/reference/perfetto-manifest):

* the manifest is found by content (text starting ``{"perfetto_manifest"``),
  is named ``perfetto_manifest.json`` by convention and may sit anywhere in
  the archive (it is always applied before the traces);
* ``version`` must be 1; fields a Trace Processor does not know are ignored;
* ``files[].path`` is the exact member name, ``files[].machine.name`` the
  machine it belongs to;
* ``files[].clocks`` = ``{"clock": C, "sync_to": {"file": F, "clock": C2},
  "offset_ns": N}`` means that at one instant this file's clock C reads T
  while F's clock C2 reads T + N. With guest BOOTTIME - host BOOTTIME = D
  (the merge's ``offset_ns``), the guest entry therefore says N = -D;
* ``trace_time`` picks the clock (and, with ``file``, the machine) that is the
  merged timeline.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Dict, Iterable, List, Mapping, Optional, Tuple, Union, cast

from . import errors
from ._merge_api import Alignment, merge

__all__ = ["write_archive", "ArchiveReport", "ArchiveMember", "manifest_offset_ns",
           "MANIFEST_NAME"]

MANIFEST_NAME = "perfetto_manifest.json"
_CLOCK = "BOOTTIME"
_ATTR_PREFIX = "vperfetto."
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_MAX_NAME = 128          # characters in a machine (guest) name
_MAX_MEMBER_STEM = 60    # member names stay far below the 100 bytes of a ustar name

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class ArchiveMember:
    name: str            # member path in the TAR (what the manifest names)
    machine: str         # machine name in the manifest
    role: str            # "host" or "guest"
    source: str          # the input file
    size: int            # bytes stored
    decompressed: bool   # the input was gzip and is stored decompressed


@dataclass(frozen=True)
class ArchiveReport:
    output: str
    bytes_written: int
    timeline: str                                     # machine whose BOOTTIME is the timeline
    manifest: Dict[str, Any] = field(default_factory=dict)
    members: List[ArchiveMember] = field(default_factory=list)  # manifest excluded; host first
    alignments: List[Alignment] = field(default_factory=list)   # per guest (offset: guest - host)
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"output": self.output, "bytes_written": self.bytes_written,
                "timeline": self.timeline, "manifest_member": MANIFEST_NAME,
                "members": [m.__dict__ for m in self.members],
                "alignments": [a.__dict__ for a in self.alignments],
                "warnings": list(self.warnings), "manifest": self.manifest}


def manifest_offset_ns(guest_minus_host_ns: int) -> int:
    """The manifest's ``offset_ns`` for a guest entry synced to the host.

    The manifest reads "the guest clock shows T when the host clock shows
    T + offset_ns", so it is host - guest: the merge's offset negated."""
    return -guest_minus_host_ns


# --- validation ------------------------------------------------------------------

def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError(f"{what} must not be empty")
    if len(name) > _MAX_NAME:
        raise ValueError(f"{what} {name[:20]!r}... is longer than {_MAX_NAME} characters")
    if name != name.strip():
        raise ValueError(f"{what} {name!r} must not start or end with whitespace")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in name):
        raise ValueError(f"{what} {name!r} contains control or unprintable characters")
    return name


def _check_input(path: object, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path, not {type(path).__name__}")
    p = os.fspath(path)
    if not isinstance(p, str) or not p:
        raise ValueError(f"{what} must be a non-empty path")
    if not os.path.exists(p):
        raise FileNotFoundError(f"{what} {p}: no such file")
    if not os.path.isfile(p):
        raise IsADirectoryError(f"{what} {p}: not a regular file")
    return p


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _guest_items(guests: Any) -> List[Tuple[str, str]]:
    if guests is None:
        raise TypeError("write_archive() needs guests (a dict name -> path)")
    items = list(guests.items() if isinstance(guests, Mapping) else guests)
    if not items:
        raise ValueError("guests is empty")
    out = []
    for item in items:
        try:
            name, path = item
        except (TypeError, ValueError):
            raise TypeError("guests must map names to paths") from None
        out.append((_check_name(name, "guest name"), path))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError("guest names must be distinct")
    return out


def _member_names(host_machine: str, guest_names: Iterable[str]) -> List[str]:
    """Safe, unique TAR member names: ASCII, no directories, no leading dot
    (Trace Processor skips hidden members), short enough for a ustar header."""
    taken = {MANIFEST_NAME.casefold()}
    result = []
    for name in [host_machine, *guest_names]:
        stem = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:_MAX_MEMBER_STEM] or "trace"
        candidate, n = f"{stem}.pftrace", 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{stem}-{n}.pftrace"
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


def _normalise_alignments(alignments: Any, guest_names: List[str]) -> List[Alignment]:
    by_name: Dict[str, Alignment] = {}
    if isinstance(alignments, Mapping):
        for name, a in alignments.items():
            if isinstance(a, Alignment):
                if a.guest != name:
                    raise ValueError(f"alignment for {name!r} is for guest {a.guest!r}")
            elif isinstance(a, int) and not isinstance(a, bool):
                a = Alignment(guest=name, method="given", offset_ns=a, approximate=False,
                              spread_ns=-1, samples=0, detail="given", applied=True)
            else:
                raise TypeError("alignments values must be Alignment or int offsets (guest - host, ns)")
            by_name[name] = a
    else:
        for a in alignments:
            if not isinstance(a, Alignment):
                raise TypeError("alignments must be Alignment objects or a dict name -> offset")
            if a.guest in by_name:
                raise ValueError(f"two alignments for guest {a.guest!r}")
            by_name[a.guest] = a
    missing = [n for n in guest_names if n not in by_name]
    extra = sorted(set(by_name) - set(guest_names))
    if missing or extra:
        raise ValueError(f"alignments do not match the guests (missing {missing}, unknown {extra})")
    result = []
    for n in guest_names:
        a = by_name[n]
        if not isinstance(a.offset_ns, int) or not _INT64_MIN < a.offset_ns <= _INT64_MAX:
            raise ValueError(f"offset of guest {n!r} is not a 64-bit int")
        result.append(a)
    return result


# --- the manifest --------------------------------------------------------------------

def build_manifest(host_member: str, host_machine: str,
                   guests: List[Tuple[str, str, Alignment]], timeline_member: str,
                   version: str = "") -> Dict[str, Any]:
    """The ``perfetto_manifest`` document. ``guests`` holds (machine, member,
    alignment) per guest; ``timeline_member`` is the member whose machine's
    BOOTTIME becomes the merged trace's timeline."""
    files = [{"path": host_member, "machine": {"name": host_machine}}]
    attributes: Dict[str, Union[str, int]] = {}
    if version:
        attributes[_ATTR_PREFIX + "version"] = version
    for machine, member, a in guests:
        files.append({
            "path": member,
            "machine": {"name": machine},
            "clocks": {
                "clock": _CLOCK,
                "sync_to": {"file": host_member, "clock": _CLOCK},
                "offset_ns": manifest_offset_ns(a.offset_ns),
            },
        })
        # How each offset was found. "attributes" is documented (values are
        # strings or integers, keys should be namespaced); a Trace Processor
        # that predates it ignores it like any unknown field.
        key = f"{_ATTR_PREFIX}{machine}."
        attributes[key + "method"] = a.method
        attributes[key + "approximate"] = int(bool(a.approximate))
        attributes[key + "guest_minus_host_ns"] = a.offset_ns
    return {"perfetto_manifest": {
        "version": 1,
        "trace_time": {"clock": _CLOCK, "file": timeline_member},
        "files": files,
        "attributes": attributes,
    }}


def manifest_json(manifest: Dict[str, Any]) -> str:
    """The manifest as text that starts exactly with ``{"perfetto_manifest":``.

    Trace Processor finds the manifest by that prefix; v58's reference says
    "after leading whitespace", later ones "ignoring whitespace", so no
    whitespace goes before the key."""
    (key, inner), = manifest.items()
    body = json.dumps(inner, indent=2, ensure_ascii=False)
    return "{" + json.dumps(key) + ": " + body + "}\n"


# --- writing ------------------------------------------------------------------------------

def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


class _Counting:
    """A write-only file that counts what goes through (a FIFO cannot tell())."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self.written = 0

    def write(self, b: bytes) -> int:
        n = self._f.write(b)
        self.written += len(b)
        return n

    def tell(self) -> int:  # where tarfile believes it is
        return self.written

    def flush(self) -> None:
        self._f.flush()


def _add_file(tar: tarfile.TarFile, name: str, fileobj: BinaryIO, size: int, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    info.uname = info.gname = ""
    tar.addfile(info, fileobj)


def write_archive(out_tar: PathLike, host: PathLike,
                  guests: Union[Mapping[str, PathLike], Iterable[Tuple[str, PathLike]]], *,
                  alignments: Any = None, time_diff_ns: Optional[int] = None,
                  guest_boot_time_ns: Optional[int] = None, guest_tsc_offset: int = 0,
                  host_name: str = "host", timeline: Optional[str] = None) -> ArchiveReport:
    """Writes ``out_tar``: the host and guest traces plus a ``perfetto_manifest``.

    Each trace becomes its own machine (the host named ``host_name``, each
    guest after its key in ``guests``); each guest's BOOTTIME is related to the
    host's by its offset. ``alignments`` (the ``alignments`` of a
    ``MergeReport``, or a dict guest name -> offset in ns, guest minus host)
    gives the offsets; without it they are measured with a dry-run merge,
    honouring ``time_diff_ns``, ``guest_boot_time_ns`` and ``guest_tsc_offset``
    as ``merge()`` does. ``timeline`` names the machine whose BOOTTIME is the
    merged timeline (default: the host). The file is written atomically.
    """
    host_name = _check_name(host_name, "host name")
    items = _guest_items(guests)
    if any(n == host_name for n, _ in items):
        raise ValueError(f"guest name {host_name!r} is the host machine's name")
    host_path = _check_input(host, "host trace")
    guest_paths = [(n, _check_input(p, f"guest trace {n!r}")) for n, p in items]
    if not isinstance(out_tar, (str, os.PathLike)) or not os.fspath(out_tar):
        raise TypeError("out_tar must be a non-empty path")
    out = os.fspath(out_tar)
    if os.path.isdir(out):
        raise IsADirectoryError(f"output {out} is a directory")
    for _, p in [("host", host_path), *guest_paths]:
        if _same_file(out, p):
            raise ValueError(f"output {out} is also an input")
    if timeline is None:
        timeline = host_name
    machines = [host_name] + [n for n, _ in items]
    if timeline not in machines:
        raise ValueError(f"timeline {timeline!r} is not one of the machines {machines}")

    warnings: List[str] = []
    names = [n for n, _ in items]
    if alignments is None:
        # The dry run also says whether anything would land before the
        # timeline's zero (the viewer drops it): with one guest the other
        # machine's clock becomes the timeline, with several it refuses.
        guest_timeline = timeline != host_name and len(items) == 1
        report = merge(host=host_path, guests=guest_paths, output=None, dry_run=True,
                       mode="host-into-guest" if guest_timeline else "guest-into-host",
                       time_diff_ns=time_diff_ns, guest_boot_time_ns=guest_boot_time_ns,
                       guest_tsc_offset=guest_tsc_offset)
        if report.main_switched:
            timeline = host_name if guest_timeline else names[0]
        aligned = _normalise_alignments(report.alignments, names)
        warnings.extend(report.warnings)
    else:
        if time_diff_ns is not None or guest_boot_time_ns is not None:
            raise ValueError("give alignments or time_diff_ns/guest_boot_time_ns, not both")
        aligned = _normalise_alignments(alignments, names)

    members = _member_names(host_name, names)
    sources = [(host_name, "host", host_path)] + [(n, "guest", p) for n, p in guest_paths]
    member_of = dict(zip(machines, members))
    from ._native import VERSION
    manifest = build_manifest(members[0], host_name,
                              [(n, member_of[n], a) for n, a in zip(names, aligned)],
                              member_of[timeline], version=VERSION)
    manifest_bytes = manifest_json(manifest).encode("utf-8")

    # A device or FIFO is written through; a file is replaced atomically (a
    # symlink's target), keeping its permissions (a new one: 0666 less the umask).
    through = os.path.exists(out) and not os.path.isfile(out)
    target = out if through else os.path.realpath(out)
    out_dir = os.path.dirname(target) or "."
    if through:
        fd, tmp = os.open(out, os.O_WRONLY | os.O_CLOEXEC), None
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                   dir=out_dir)
    written: List[ArchiveMember] = []
    try:
        with os.fdopen(fd, "wb") as fobj:
            raw = _Counting(fobj)
            with tarfile.open(fileobj=cast(BinaryIO, raw), mode="w", format=tarfile.USTAR_FORMAT) as tar:
                now = int(time.time())
                _add_file(tar, MANIFEST_NAME, io.BytesIO(manifest_bytes), len(manifest_bytes), now)
                for (machine, role, path), member in zip(sources, members):
                    mtime = int(os.stat(path).st_mtime)
                    if _is_gzip(path):
                        with tempfile.TemporaryFile(dir=None if through else out_dir) as plain:
                            with gzip.open(path, "rb") as z:
                                shutil.copyfileobj(z, plain, 1 << 20)
                            size = plain.tell()
                            plain.seek(0)
                            _add_file(tar, member, plain, size, mtime)
                        decompressed = True
                    else:
                        with open(path, "rb") as f:
                            size = os.fstat(f.fileno()).st_size
                            _add_file(tar, member, f, size, mtime)
                        decompressed = False
                    written.append(ArchiveMember(name=member, machine=machine, role=role,
                                                 source=path, size=size,
                                                 decompressed=decompressed))
            fobj.flush()
            total = raw.written
            if tmp is not None:
                os.fsync(fobj.fileno())
        if tmp is not None:
            if os.path.isfile(target):
                mode = os.stat(target).st_mode & 0o7777
            else:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.chmod(tmp, mode)
            os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    return ArchiveReport(output=out, bytes_written=total, timeline=timeline, manifest=manifest,
                         members=written, alignments=aligned, warnings=warnings)


# --- command line (reached from python -m vperfetto.merge --archive OUT.tar) ---------------

def _print(r: ArchiveReport) -> None:
    for a in r.alignments:
        approx = " (approximate)" if a.approximate else ""
        print(f"{a.guest}: offset {a.offset_ns} ns by {a.method}{approx}")
    for m in r.members:
        how = " (decompressed)" if m.decompressed else ""
        print(f"  {m.role:5} {m.machine}: {m.name}, {m.size} bytes{how}")
    print(f"wrote {r.output} ({len(r.members)} traces + {MANIFEST_NAME}, timeline: "
          f"{r.timeline} {_CLOCK}, {r.bytes_written} bytes)")


def cli(ap: argparse.ArgumentParser, a: argparse.Namespace, prog: str) -> int:
    """Runs ``python -m vperfetto.merge ... --archive OUT.tar``; ``ap`` and ``a``
    are merge's parser and parsed arguments. With a combined output too
    (``-o`` or the third positional), that is written first and its
    alignments go into the manifest."""
    from ._merge_api import _print_report, _report_dict
    if a.add_traces:
        ap.error("--archive cannot be combined with --add-traces")
    kwargs = dict(time_diff_ns=a.time_diff, guest_tsc_offset=a.guest_tsc_offset)
    if a.host or a.guest or a.output:
        if a.traces or not (a.host and a.guest):
            ap.error("the named form is --host HOST --guest NAME=PATH [--guest ...] "
                     "--archive OUT.tar [-o OUT]")
        names = [n for n, _ in a.guest]
        if len(set(names)) != len(names):
            ap.error("guest names must be distinct")
        guests, host, combined, boot = a.guest, a.host, a.output, None
        timeline = None
        call = dict(host=host, guests=guests, output=combined,
                    mode="guest-into-host", machine_ids=a.machine_id, **kwargs)
    else:
        if len(a.traces) not in (2, 3, 4):
            ap.error("expected guest.trace host.trace [combined.trace [guestClockBootTimeNs]] "
                     "--archive OUT.tar")
        boot = None
        if len(a.traces) == 4:
            try:
                boot = int(a.traces[3])
            except ValueError:
                ap.error(f"guestClockBootTimeNs must be an integer, not {a.traces[3]!r}")
            if not 0 <= boot < 1 << 64:
                ap.error("guestClockBootTimeNs must be in [0, 2**64)")
        guests, host = [("guest", a.traces[0])], a.traces[1]
        combined = a.traces[2] if len(a.traces) >= 3 else None
        # as for the combined trace: the guest is the timeline unless --merge-guest-into-host
        timeline = None if a.merge_guest_into_host else "guest"
        call = dict(guest=a.traces[0], host=host, output=combined,
                    mode="guest-into-host" if a.merge_guest_into_host else "host-into-guest",
                    guest_boot_time_ns=boot, machine_ids=a.machine_id, **kwargs)
    if combined is not None and _same_file(combined, a.archive):
        ap.error("--archive and the combined output must be different files")
    try:
        report = None
        if combined is not None:
            report = merge(**call)
            # the timeline the merge ended up with (it may have switched)
            timeline = guests[0][0] if report.mode == "host-into-guest" else None
            archive = write_archive(a.archive, host, guests, alignments=report.alignments,
                                    timeline=timeline)
        else:
            archive = write_archive(a.archive, host, guests, time_diff_ns=a.time_diff,
                                    guest_boot_time_ns=boot,
                                    guest_tsc_offset=a.guest_tsc_offset, timeline=timeline)
    except (errors.VperfettoError, OSError, ValueError, TypeError) as e:
        msg = str(e).replace("\n", " ")
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    for w in (report.warnings if report else archive.warnings):
        print(f"warning: {w}", file=sys.stderr)
    if a.json:
        d = {"archive": archive.to_dict()}
        if report is not None:
            d["merge"] = _report_dict(report)
        print(json.dumps(d, indent=2))
    elif not a.quiet:
        if report is not None:
            _print_report(report)
        _print(archive)
    return 0
