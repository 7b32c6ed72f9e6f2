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
        return "PASS" if value is not None and value <= self.target else "MISS"


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
    head = f"{'operation':<58} {'median':>9} {'best':>9} {'x basis':>8}  {'target':<14} {'':4}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if not r.ns:
            print(f"{r.label:<58} {'':>9} {'':>9} {'':>8}  {'':<14} {'':4}  {r.note}")
            continue
        unit = "" if r.unit == "ns" else f" {r.unit}"
        ratio = f"{r.ratio:7.2f}x" if r.ratio is not None else ""
        if r.target is None:
            tgt = ""
        elif r.target_kind == "ratio":
            tgt = f"<= {r.target:g}x {r.basis_name}"
        else:
            tgt = f"<= {r.target:g}{unit or ' ns'}"
        med = f"{r.med:9.1f}"
        best = f"{r.best:9.1f}"
        note = f"  {r.note}" if r.note else ""
        print(f"{r.label + unit:<58} {med} {best} {ratio:>8}  {tgt:<14} {r.verdict():4}{note}")
    print()
