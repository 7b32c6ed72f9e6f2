"""Calls of the public API that are wrong, each marked with the error mypy
--strict must report on its line (tests/test_package.py checks that it does):
the annotations and stubs constrain a user's code, they do not just pass it."""

from __future__ import annotations

import vperfetto
from vperfetto import timeline
from vperfetto.inspect import inspect
from vperfetto.merge import merge
from vperfetto.vm import HostAgent

vperfetto.counter("depth", "three")  # error: arg-type
vperfetto.begin(42)  # error: arg-type
vperfetto.Session("t.pftrace", buffer_kb="big")  # error: arg-type
n: str = vperfetto.boot_time_ns()  # error: assignment
offset: str = merge("g", "h", "o").offset_ns  # error: assignment
summary: list[int] = inspect("t.pftrace")  # error: assignment
timeline.render_svg({}, width="wide")  # error: arg-type
HostAgent(7777)  # error: arg-type


@vperfetto.traced
def twice(x: int) -> int:
    return 2 * x


twice("x")  # error: arg-type
s: str = twice(1)  # error: assignment
