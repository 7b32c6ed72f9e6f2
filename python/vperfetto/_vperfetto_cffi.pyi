# The cffi module compiled from cpp/include/vperfetto/vperfetto.h (API mode):
# `lib` holds the vp_* functions and constants of that header, `ffi` the cffi
# FFI for its types. Their signatures are the C header's; Python sees them
# untyped.
from typing import Any

ffi: Any
lib: Any
