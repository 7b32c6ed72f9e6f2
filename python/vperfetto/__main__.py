"""``python -m vperfetto``: package information."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vperfetto",
                                 description="Perfetto tracing across the VM boundary.")
    ap.add_argument("--version", action="version", version=f"vperfetto {__version__}")
    ap.parse_args(argv)
    ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
