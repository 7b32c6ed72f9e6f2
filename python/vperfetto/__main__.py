"""``python -m vperfetto``: the commands, and where the C/C++ API is installed.

    python -m vperfetto demo [--out-dir DIR] [--simulate]   # guest + host traced, merged, checked
    python -m vperfetto run [-o trace.pftrace] ... (script.py | -m module) [args...]
    python -m vperfetto host --listen tcp:0.0.0.0:7777 --out-dir traces/
    python -m vperfetto guest --connect tcp:10.0.2.2:7777 --name vm1 -- python workload.py
    python -m vperfetto guest --connect serial:/dev/virtio-ports/vperfetto -- ./workload
    python -m vperfetto --includes | --libs                 # compiler flags, like pybind11's helpers
    python -m vperfetto --cmake-dir | --pkgconfig-dir       # for find_package / pkg-config
    python -m vperfetto --version
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__

COMMANDS = """commands (each has --help):
  run         trace every Python call of a program: run [-o OUT] (script.py | -m module) [args...]
  demo        trace a guest and a host on different clocks, merge them, check the result
  host        serve guests: sync their clocks, trace the host, merge each guest's trace
  guest       run a command traced, on the host's timeline: guest --connect ADDR -- CMD...
modules:
  python -m vperfetto.merge     merge guest and host traces onto one clock
  python -m vperfetto.inspect   summarise or --check a trace; --svg/--html timelines
  python -m vperfetto.open      serve a trace to ui.perfetto.dev and print the link
  python -m vperfetto.recover   rebuild the trace of a process that died (from TRACE.vpbuf)
  python -m vperfetto.probes    check the link's kicks and pings (causality) in a merged trace"""

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
INCLUDE_DIR = os.path.join(PACKAGE_DIR, "include")
LIB_DIR = PACKAGE_DIR
CMAKE_DIR = os.path.join(PACKAGE_DIR, "lib", "cmake", "vperfetto")
PKGCONFIG_DIR = os.path.join(PACKAGE_DIR, "lib", "pkgconfig")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from .demo import main as demo_main

        return demo_main(argv[1:])
    if argv and argv[0] == "run":
        from .run import main as run_main

        return run_main(argv[1:])
    if argv and argv[0] in ("host", "guest"):
        from . import _vmcli

        return (_vmcli.main_host if argv[0] == "host" else _vmcli.main_guest)(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m vperfetto",
                                 usage="python -m vperfetto COMMAND ... | [options]",
                                 description="Perfetto tracing across the VM boundary.",
                                 epilog=COMMANDS, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"vperfetto {__version__}")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--includes", action="store_true", help="print -I flags for the C/C++ headers")
    where.add_argument("--libs", action="store_true", help="print linker flags for libvperfetto")
    where.add_argument("--cmake-dir", action="store_true",
                       help="print the directory of vperfettoConfig.cmake")
    where.add_argument("--pkgconfig-dir", action="store_true",
                       help="print the directory of vperfetto.pc")
    a = ap.parse_args(argv)
    if a.includes:
        print(f"-I{INCLUDE_DIR}")
    elif a.libs:
        print(f"-L{LIB_DIR} -Wl,-rpath,{LIB_DIR} -lvperfetto")
    elif a.cmake_dir:
        print(CMAKE_DIR)
    elif a.pkgconfig_dir:
        print(PKGCONFIG_DIR)
    else:
        ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
