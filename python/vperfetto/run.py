"""``python -m vperfetto run``: trace a whole Python program, unchanged.

    python -m vperfetto run [-o trace.pftrace] [--mode ring|stream] [--buffer-kb N] [--compress LEVEL]
                            [--include PATTERN] [--exclude PATTERN] [--min-duration-us N]
                            [--max-depth N] [--c-calls] [--follow-children] [-q]
                            (script.py | -m module) [args...]

The program runs as ``python script.py args`` would run it: the same
``sys.argv``, ``sys.path[0]``, ``__main__``, stdin/stdout/stderr and exit
code. Every Python call on every thread is a slice (vperfetto.profile). The
trace is written at interpreter exit, after the program's own exit handlers
and its non-daemon threads: also when it raises or calls ``sys.exit``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import types
from typing import List, Optional, Sequence, Tuple

from . import _follow, errors
from ._cli import Parser as _Parser
from .profiler import Profiler
from .session import Session, running_session

EXAMPLE = """example:
  python -m vperfetto run -o app.pftrace --exclude 'logging' --min-duration-us 5 app.py --port 80
  python -m vperfetto run --follow-children -m mypkg.worker      # children in the same trace
  python -m vperfetto.open app.pftrace                            # look at it in ui.perfetto.dev

patterns: a module name glob ("json", "myapp.*"; a module includes its submodules)
or a file glob when it has a '/' or ends in .py ("*/site-packages/*")."""


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m vperfetto run", epilog=EXAMPLE,
                 description="Trace every Python call of a program (one slice per call, "
                             "on every thread) into a Perfetto trace.",
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default="trace.pftrace", help="the trace (default: %(default)s)")
    ap.add_argument("--mode", choices=("ring", "stream"), default="stream",
                    help="stream: straight to the file, nothing lost (default); ring: in memory, "
                         "the newest --buffer-kb kept")
    ap.add_argument("--buffer-kb", type=int, default=262144, help="ring size (default: 256 MiB)")
    ap.add_argument("--compress", type=int, default=1, metavar="LEVEL", choices=range(10),
                    help="deflate the trace at exit at this zlib level, 0-9 (default: 1; "
                         "0: as written)")
    ap.add_argument("--include", action="append", metavar="PATTERN",
                    help="trace only these modules or files (repeatable)")
    ap.add_argument("--exclude", action="append", metavar="PATTERN",
                    help="do not trace these modules or files (repeatable)")
    ap.add_argument("--min-duration-us", type=float, default=0, metavar="N",
                    help="leave out calls shorter than N microseconds")
    ap.add_argument("--max-depth", type=int, default=0, metavar="N",
                    help="leave out calls deeper than N (default: no limit)")
    ap.add_argument("--c-calls", action="store_true", help="also trace calls of C functions")
    ap.add_argument("--follow-children", action="store_true",
                    help="also trace multiprocessing children and python subprocesses, "
                         "into the same trace")
    ap.add_argument("-q", "--quiet", action="store_true",
                    help="no summary line on a terminal's stderr")
    ap.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m")
    ap.add_argument("program", nargs=argparse.REMAINDER, help="script.py [args...]")
    return ap


def _split(argv: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Our options end at the script (or at -m MODULE); the rest is the program's."""
    argv = list(argv)
    for i, a in enumerate(argv):
        if a == "-m" and i + 1 < len(argv):
            return argv[:i + 2], argv[i + 2:]
        if a == "--":
            return argv[:i], argv[i + 1:]
        if not a.startswith("-") and (i == 0 or not _takes_value(argv[i - 1])):
            return argv[:i], argv[i:]
    return argv, []


def _takes_value(opt: str) -> bool:
    return opt in ("-o", "--output", "--mode", "--buffer-kb", "--compress", "--include", "--exclude",
                   "--min-duration-us", "--max-depth")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, program = _split(argv)
    ap = build_parser()
    a = ap.parse_args(ours)
    if a.module:
        target = ["-m", a.module]
    elif a.program:
        target, program = a.program[:1], a.program[1:] + program
    elif program:
        target, program = program[:1], program[1:]
    else:
        ap.error("give a script (or -m MODULE) to run")
    if a.buffer_kb < 4:
        ap.error("--buffer-kb must be at least 4")
    try:
        profiler = Profiler(include=a.include, exclude=a.exclude,
                            min_duration_us=a.min_duration_us, max_depth=a.max_depth,
                            c_calls=a.c_calls)
        if a.module:
            code, main_mod = _load_module(a.module)
            prog_name = a.module
        else:
            code, main_mod = _load_script(target[0])
            prog_name = os.path.basename(target[0])
    except (OSError, SyntaxError, ImportError, ValueError, TypeError, errors.VperfettoError) as e:
        print(f"python -m vperfetto run: error: {e}", file=sys.stderr)
        return 2

    from .tracing import set_process_name
    set_process_name(prog_name)
    session = running_session()  # started by `python -m vperfetto guest ... --`
    output = session.path if session is not None else a.output
    try:
        if session is None:
            session = Session(output, mode=a.mode, buffer_kb=a.buffer_kb,
                              compress=a.compress).start()
        follow = _follow.Follower(output, profiler, prog_name, session.compress) \
            if a.follow_children else None
    except (OSError, ValueError, errors.VperfettoError) as e:
        print(f"python -m vperfetto run: error: {e}", file=sys.stderr)
        return 2
    quiet = a.quiet or not sys.stderr.isatty()
    atexit.register(_finish, profiler, session, follow, quiet, os.getpid())

    sys.argv = [str(main_mod.__file__) if a.module else target[0], *program]
    sys.modules["__main__"] = main_mod
    if follow is not None:
        follow.start()
    profiler.start()
    try:
        exec(code, main_mod.__dict__)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _print_exception()
        return 130
    except BaseException:  # noqa: BLE001 - the program's own exception: shown as python does
        _print_exception()
        return 1
    return 0


def _load_script(path: str) -> Tuple[types.CodeType, types.ModuleType]:
    with open(path, "rb") as f:
        source = f.read()
    code = compile(source, path, "exec", dont_inherit=True)
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    mod = types.ModuleType("__main__")
    mod.__file__ = path
    setattr(mod, "__builtins__", __builtins__)
    mod.__spec__ = None
    setattr(mod, "__cached__", None)
    return code, mod


def _load_module(name: str) -> Tuple[types.CodeType, types.ModuleType]:
    import runpy

    sys.path[0] = os.getcwd()
    mod_name, spec, code = runpy._get_module_details(name)  # type: ignore[attr-defined]  # noqa: SLF001 - what python -m uses
    mod = types.ModuleType("__main__")
    mod.__file__ = spec.origin
    setattr(mod, "__builtins__", __builtins__)
    mod.__spec__ = spec
    mod.__loader__ = spec.loader
    mod.__package__ = spec.parent
    setattr(mod, "__cached__", spec.cached)
    return code, mod


def _print_exception() -> None:
    """The traceback python would print: without the frames of this runner."""
    exc_type, exc, tb = sys.exc_info()
    here = __file__.rstrip("c")
    while tb is not None and tb.tb_frame.f_code.co_filename == here:
        tb = tb.tb_next
    if exc is not None:
        exc.__traceback__ = tb  # what the default hook prints
    if exc_type is not None and exc is not None:
        sys.excepthook(exc_type, exc, tb)


def _finish(profiler: Profiler, session: Session, follow: Optional[_follow.Follower], quiet: bool,
            pid: int) -> None:
    if os.getpid() != pid:
        return  # a forked child that exits normally: its own handler writes its trace
    profiler.stop()
    path = session.stop()
    children = follow.finish(path) if follow is not None else None
    if not quiet:
        extra = f", {children} child processes" if children else ""
        print(f"vperfetto: wrote {path}{extra} (python -m vperfetto.open {path})", file=sys.stderr)
