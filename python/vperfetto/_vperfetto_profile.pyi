# Whole-program tracing's callbacks in C (cpp/pyext/_vperfetto_profile.c):
# sys.monitoring callbacks on Python 3.12+, the C profile hook on 3.10-3.11.
from types import CodeType, FrameType
from typing import Any, Callable, Optional

def init(decide: Callable[[CodeType, object], int], decide_c: Callable[[object], int],
         name_thread: Callable[[], Any], disable: Optional[object]) -> None: ...
def configure(c_calls: bool, redecide: bool) -> None: ...
def set_profile_all(on: bool) -> None: ...
def thread_hook(frame: FrameType, event: str, arg: Any) -> Any: ...
def thread_named() -> None: ...
# The sys.monitoring callbacks: objects of the module's own callable type
# (vectorcall, no builtin-function wrapper).
py_start: Callable[..., Any]
py_return: Callable[..., Any]
py_throw: Callable[..., Any]
py_unwind: Callable[..., Any]
call: Callable[..., Any]
c_return: Callable[..., Any]
