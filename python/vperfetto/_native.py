"""Loads the compiled cffi module and checks that it matches this package."""

from __future__ import annotations

from typing import Any

from ._vperfetto_cffi import ffi, lib

__all__ = ["ffi", "lib", "ABI_VERSION", "VERSION", "new_error"]

# The ABI this Python code was written against (VPERFETTO_ABI_VERSION).
ABI_VERSION = 1

if lib.vp_abi_version() != ABI_VERSION:  # a stale or foreign libvperfetto
    raise ImportError(
        f"libvperfetto ABI {lib.vp_abi_version()} does not match the Python "
        f"package (ABI {ABI_VERSION}); reinstall vperfetto"
    )

VERSION = ffi.string(lib.vp_version()).decode()


def new_error() -> Any:
    """A fresh ``vp_error`` for one call that may fail."""
    return ffi.new("vp_error*")
