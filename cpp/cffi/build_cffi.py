"""Emit the C source of the cffi extension module (API / out-of-line mode).

Run by CMake at build time: the public C header is preprocessed with
-DVPERFETTO_CDEF (which strips includes, export attributes and extern "C")
and handed to cffi as the cdef, so Python can never drift from the ABI.
The generated C file is a build product and is never committed.
"""

import argparse
import pathlib
import subprocess
import sys

import cffi


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cc", required=True, help="C compiler used to preprocess")
    ap.add_argument("--include-dir", required=True)
    ap.add_argument("--module", default="vperfetto._vperfetto_cffi")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    header = pathlib.Path(args.include_dir) / "vperfetto" / "vperfetto.h"
    cdef = subprocess.run(
        [args.cc, "-E", "-P", "-DVPERFETTO_CDEF", "-x", "c", str(header)],
        check=True, capture_output=True, text=True,
    ).stdout

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(args.module, "#include <vperfetto/vperfetto.h>\n")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    ffi.emit_c_code(str(tmp))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
