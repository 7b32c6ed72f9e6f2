"""``python -m vperfetto``: the demo and package information.

    python -m vperfetto demo [--out-dir DIR] [--simulate]   # guest + host traced, merged, checked
    python -m vperfetto --version
"""

from __future__ import annotations

import argparse
import sys

from . import __version__


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from .demo import main as demo_main

        return demo_main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m vperfetto",
                                 description="Perfetto tracing across the VM boundary.",
                                 epilog="commands: demo (record a guest and a host, merge, check)")
    ap.add_argument("--version", action="version", version=f"vperfetto {__version__}")
    ap.parse_args(argv)
    ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
