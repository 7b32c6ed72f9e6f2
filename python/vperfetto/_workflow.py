"""The original vperfetto's host-side online workflow (re-exported as
``vperfetto.vm.Workflow``)."""

from __future__ import annotations

import os
from typing import Optional

from . import errors
from ._native import ffi, lib, new_error

class Workflow:
    """The original vperfetto host-side workflow, shared with the C/C++ API.

    ``enable()`` starts host tracing into ``host_file``; ``disable()`` saves it
    and, in the background, once the guest trace has stopped growing, writes
    the combined trace; ``wait_saving_done()`` waits and raises if that failed.
    VPERFETTO_HOST_FILE / VPERFETTO_GUEST_FILE / VPERFETTO_COMBINED_FILE
    override the file names at enable time.
    """

    _FILES = {"host_file": 0, "guest_file": 1, "combined_file": 2}

    def __init__(self, host_file: Optional[str] = None, guest_file: Optional[str] = None,
                 combined_file: Optional[str] = None, *, verbose: bool = False,
                 poll_ms: int = 1000, timeout_ms: int = 20000):
        for attr, path in (("host_file", host_file), ("guest_file", guest_file),
                           ("combined_file", combined_file)):
            if path is not None:
                setattr(self, attr, path)
        lib.vp_vm_set_verbose(1 if verbose else 0)
        lib.vp_vm_set_guest_wait(poll_ms, timeout_ms)

    def _get(which: int):
        def get(self) -> Optional[str]:
            p = lib.vp_vm_file(which)
            return None if p == ffi.NULL else ffi.string(p).decode()

        def set_(self, path: Optional[str]) -> None:
            err = new_error()
            errors.check(lib.vp_vm_set_file(which, os.fsencode(path) if path else ffi.NULL, err), err)

        return property(get, set_)

    host_file = _get(0)
    guest_file = _get(1)
    combined_file = _get(2)
    del _get

    def set_guest_time(self, guest_boot_ns: int) -> None:
        lib.vp_vm_set_guest_time(guest_boot_ns)

    @property
    def time_diff_ns(self) -> Optional[int]:
        return lib.vp_vm_time_diff() if lib.vp_vm_has_time_diff() else None

    @time_diff_ns.setter
    def time_diff_ns(self, v: int) -> None:
        lib.vp_vm_set_time_diff(v)

    def enable(self) -> None:
        err = new_error()
        errors.check(lib.vp_vm_enable(err), err)

    def disable(self) -> None:
        err = new_error()
        errors.check(lib.vp_vm_disable(err), err)

    @property
    def enabled(self) -> bool:
        return bool(lib.vp_vm_is_enabled())

    @property
    def saving(self) -> bool:
        return bool(lib.vp_vm_is_saving())

    def wait_saving_done(self) -> None:
        err = new_error()
        errors.check(lib.vp_vm_wait_saving_done(err), err)
