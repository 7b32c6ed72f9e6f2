"""Statistics and table printing shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from typing import List, Optional


def median(values) -> float:
    return statistics.median(values)


@dataclass
class Row:
    """One line of a report table.

    ``ns`` holds one ns-per-op figure per repetition (or is empty for a row
    that only carries a note). ``basis`` is the median ns of what the ratio is
    taken against; ``target`` is the ratio (or absolute ns / bytes, see
    ``target_kind``) the row must not exceed.
    """

    label: str
    ns: List[float] = field(default_factory=list)
    basis: Optional[float] = None
    basis_name: str = ""
    target: Optional[float] = None
    target_kind: str = "ratio"  # "ratio": target on ns/basis; "abs": on ns itself
    note: str = ""
    unit: str = "ns"
    op: str = "<="  # how the figure must compare with the target: "<=" or "<"

    @property
    def med(self) -> float:
        return median(self.ns)

    @property
    def best(self) -> float:
        return min(self.ns)

    @property
    def ratio(self) -> Optional[float]:
        return self.med / self.basis if self.basis else None

    def verdict(self) -> str:
        if self.target is None:
            return ""
        value = self.ratio if self.target_kind == "ratio" else self.med
        if value is None:
            return "MISS"
        ok = value < self.target if self.op == "<" else value <= self.target
        return "PASS" if ok else "MISS"


def machine_line() -> str:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    clock = ""
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            clock = f.read().strip()
    except OSError:
        pass
    return (f"{platform.machine()} {cpu or platform.processor()}, {os.cpu_count()} CPUs, "
            f"clocksource {clock or '?'}, Python {sys.version.split()[0]}")


def print_table(title: str, rows: List[Row]) -> None:
    print(title)
    head = (f"{'operation':<56} {'median':>8} {'best':>8} {'ratio':>7} {'vs':<11} "
            f"{'target':<16} {'':4}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if not r.ns:
            print(f"{r.label:<56} {r.note}")
            continue
        ratio = f"{r.ratio:6.2f}x" if r.ratio is not None else ""
        vs = r.basis_name if r.ratio is not None else ""
        if r.target is None:
            tgt = ""
        elif r.target_kind == "ratio":
            tgt = f"{r.op} {r.target:g}x"
        else:
            tgt = f"{r.op} {r.target:g} {r.unit}"
        note = f"  {r.note}" if r.note else ""
        print(f"{r.label:<56} {r.med:8.1f} {r.best:8.1f} {ratio:>7} {vs:<11} "
              f"{tgt:<16} {r.verdict():4}{note}".rstrip())
    print()


def boottime_varint_bytes() -> int:
    """Bytes of the varint of a CLOCK_BOOTTIME timestamp (ns) taken now."""
    import time

    return (time.clock_gettime_ns(time.CLOCK_BOOTTIME).bit_length() + 6) // 7


def uptime_note() -> str:
    """How the trace size depends on uptime: timestamps are absolute varints.

    Every begin/end pair carries two absolute CLOCK_BOOTTIME timestamps, whose
    varints grow by a byte at 2^42 ns (73 min), 2^49 ns (6.5 days) and 2^56 ns
    (2.3 years) of uptime: each extra byte is 2 more bytes per pair.
    """
    import time

    up = time.clock_gettime_ns(time.CLOCK_BOOTTIME) / 1e9
    return (f"uptime {up / 3600:.1f} h: timestamps are {boottime_varint_bytes()}-byte varints "
            f"(7 bytes after 73 min of uptime, 8 after 6.5 days, 9 after 2.3 years; "
            f"each extra byte adds 2 B per pair)")


def bytes_at_8_byte_timestamps(measured: float) -> float:
    """`measured` bytes per pair, projected to 8-byte timestamps (uptime 6.5 d..2.3 y)."""
    return measured + 2 * (8 - boottime_varint_bytes())
