"""Loads the compiled cffi module and checks that it matches this package."""

from __future__ import annotations

import os

# Set by `python -m vperfetto guest ... -- CMD`: trace this process into that
# file from its start. Taken out of the environment before libvperfetto loads
# (which would otherwise start a session of its own from it, as it does in a
# C/C++ program) and before any child inherits it; session.py starts the
# Python session.
AUTOSTART = os.environ.pop("VPERFETTO_AUTOSTART", None)

from ._vperfetto_cffi import ffi, lib  # noqa: E402,F401  (re-exported)

# The ABI this Python code was written against (VPERFETTO_ABI_VERSION).
ABI_VERSION = 1

if lib.vp_abi_version() != ABI_VERSION:  # a stale or foreign libvperfetto
    raise ImportError(
        f"libvperfetto ABI {lib.vp_abi_version()} does not match the Python "
        f"package (ABI {ABI_VERSION}); reinstall vperfetto"
    )

VERSION = ffi.string(lib.vp_version()).decode()


def new_error():
    """A fresh ``vp_error`` for one call that may fail."""
    return ffi.new("vp_error*")
