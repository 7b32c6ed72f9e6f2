"""Hand-made hostile traces for the merge: builders, the cases that
tests/test_fuzz_regressions.py merges through the Python API, and the same
cases as seed inputs for the fuzzers (scripts/fuzz.sh runs
`python3 fuzz/hostile_inputs.py DIR`, so they also run under ASan and UBSan).

Standard library only.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib

I64_MIN, I64_MAX, U64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def vi(field: int, v: int) -> bytes:
    return tag(field, 0) + varint(v)


def ld(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def packet(*fields: bytes) -> bytes:
    return ld(1, b"".join(fields))


def clock(cid: int, ts: int) -> bytes:
    return ld(1, vi(1, cid) + vi(2, ts))


def snapshot(boot: int, real: int, tsc: int) -> bytes:
    return packet(vi(8, boot), vi(10, 1), ld(6, clock(6, boot) + clock(1, real) + clock(9, tsc)))


def marker(ts: int, boot: int, tsc: int) -> bytes:
    """A guest_clock_sync track event with its annotations, names inline."""
    ann = (ld(4, ld(10, b"clock_sync_boottime") + vi(3, boot)) +
           ld(4, ld(10, b"clock_sync_cputime") + vi(3, tsc)))
    return packet(vi(8, ts), vi(10, 2), ld(11, vi(9, 3) + ld(23, b"guest_clock_sync") + ann))


def slice_event(ts: int, uuid: int = 77) -> bytes:
    return packet(vi(8, ts), vi(10, 2), ld(11, vi(9, 3) + ld(23, b"e") + vi(11, uuid)))


def valid_trace() -> bytes:
    t0 = 5_000_000_000
    return (snapshot(t0, 1_700_000_000_000_000_000, 10_000) +
            packet(vi(10, 2), ld(60, vi(1, 77) + ld(3, vi(1, 10) + ld(6, b"p")))) +
            b"".join(slice_event(t0 + i) for i in range(5)))


def nesting_bomb(levels: int, fields=(11, 6, 60, 3)) -> bytes:
    """`levels` nested length-delimited fields, built from the inside out in O(n)."""
    headers, size = [], 0
    for i in range(levels):
        h = tag(fields[i % len(fields)], 2) + varint(size)
        headers.append(h)
        size += len(h)
    return b"".join(reversed(headers))


def zlib_stream(chunks, size: int) -> bytes:
    """zlib data inflating to `size` bytes of `chunks` (a repeating bytes), made
    without holding the plain text."""
    c = zlib.compressobj(9)
    out, left = [], size
    block = (chunks * (1 + (1 << 20) // len(chunks)))[: 1 << 20]
    while left > 0:
        n = min(left, len(block))
        out.append(c.compress(block[:n]))
        left -= n
    out.append(c.flush())
    return b"".join(out)


# --- the cases ----------------------------------------------------------------------------

def nesting_bomb_trace() -> bytes:
    data = valid_trace() + packet(vi(8, 5_000_000_100), vi(10, 2), nesting_bomb(100_000))
    data += packet(vi(10, 2), ld(60, nesting_bomb(50_000, (3, 4, 60))))
    data += packet(vi(10, 3), ld(1, nesting_bomb(50_000, (2, 4, 3))))  # ftrace
    data += packet(ld(2, nesting_bomb(50_000, (1, 2))))  # process tree
    return data


HUGE_CLAIMS = [(256 << 20) + 1, 1 << 40, U64_MAX]  # packet lengths past the 256 MiB limit
CLAIMING_FIELDS = [8, 11, 60, 6, 1, 2, 50, 12]     # TracePacket fields claiming 2^40 bytes


def huge_packet_claim(claim: int) -> bytes:
    return valid_trace() + b"\x0a" + varint(claim) + b"\x08\x01" * 8


def huge_field_claim(field: int) -> bytes:
    return valid_trace() + packet(vi(10, 2) + tag(field, 2) + varint(1 << 40) + b"abc")


def compressed(payload: bytes) -> bytes:
    return valid_trace() + packet(vi(10, 4), ld(50, payload))


BAD_COMPRESSED = [
    b"",                                                      # empty
    b"not zlib at all",                                       # garbage
    zlib.compress(packet(vi(8, 1), vi(10, 9)))[:-6],          # truncated stream
    zlib.compress(b"\x12\x02ab"),                             # inner field 2, not a packet
    zlib.compress(b"\x0a\x05\x40"),                           # inner packet cut short
    zlib.compress(packet(vi(10, 4), ld(50, zlib.compress(packet(vi(8, 1)))))),  # nested
    gzip.compress(packet(vi(8, 5_000_000_001), vi(10, 4))),   # gzip framing: accepted too
]

TRUNCATED_TAILS = [
    b"\x0a",                     # a tag and nothing more
    b"\x0a\xff",                 # a truncated length varint
    b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # an 11-byte varint
    b"\x0a\x10\x40",             # a packet cut short
    b"\xff",                     # a truncated tag varint
]

MALFORMED_BODIES = [  # TracePacket bodies the decoder must reject
    b"\x40",                     # timestamp without its varint
    b"\x40\xff\xff",             # timestamp varint truncated
    b"\x40" + b"\xff" * 10 + b"\x01",  # timestamp varint of 11 bytes
    b"\x5a\x03\x08",             # track_event claiming more than it has
    b"\x0b\x01",                 # a group (wire type 3)
    b"\x00",                     # field number 0
    b"\x45\x01\x02",             # fixed32 cut short
    b"\x41\x01\x02\x03",         # fixed64 cut short
]

MALFORMED_NESTED = [  # bad nested messages in a well-formed packet
    b"\x5a\x02\x48\xff",                     # track_event: a truncated inner varint
    b"\x5a\x04\x5a\x02\x48\xff",             # ... one level deeper
    b"\xe2\x03\x04\x1a\x02\x08\xff",         # track_descriptor.process: truncated pid
    b"\x0a\x04\x12\x02\x22\x05",             # ftrace event: a field claiming too much
    b"\x32\x03\x0a\x01\x08",                 # clock_snapshot.clock cut short
    b"\xda\x03\x03\xd0\x03\xff",             # defaults: truncated clock id
]


def malformed_body(body: bytes) -> bytes:
    return valid_trace() + packet(body) + slice_event(5_000_000_900)


def malformed_nested(body: bytes) -> bytes:
    return valid_trace() + packet(vi(10, 2), body) + slice_event(5_000_000_900)


ZERO_LENGTH = [b"\x0a\x00" * 1000 + valid_trace() + b"\x0a\x00" * 1000, b"\x0a\x00" * 10]

NOT_QUITE_TRACES = [
    b"",
    b"hello, not a trace\n",
    b"\x12\x00",                              # Trace field 2
    gzip.compress(b""),                       # an empty gzip file
    gzip.compress(b"\0" * (8 << 20)),          # gzip of zeros
    gzip.compress(valid_trace())[:-12],       # a truncated gzip file
    gzip.compress(valid_trace()) + b"junk",   # junk after the gzip member
    gzip.compress(valid_trace()) * 3,         # several members
    b"\x1f\x8b" + b"\0" * 30,                 # gzip magic, corrupt header
]


def extreme_values_trace() -> bytes:
    """Every id and timestamp the merge offsets or shifts, at its extremes."""
    big = [0, 1, I64_MAX, I64_MAX + 1, U64_MAX, (1 << 32) - 1, 1 << 31]
    parts = [valid_trace()]
    for v in big:
        parts.append(packet(vi(8, v), vi(10, 2), ld(11, vi(9, 3) + vi(11, v) + vi(16, v) +
                                                     ld(6, vi(18, v) + vi(19, v)) +
                                                     ld(31, varint(v)) + vi(45, v))))
        parts.append(packet(vi(3, v), vi(79, v), vi(10, v & 0xFFFFFFFF), vi(98, v), vi(58, v)))
        parts.append(packet(vi(10, 3), ld(1, vi(1, v) + ld(2, vi(1, v) + vi(2, v) +
                                                              ld(4, vi(2, v) + vi(6, v))) +
                                             ld(4, ld(1, varint(v)) + ld(3, varint(v))) +
                                             vi(7, v) + vi(9, v))))
        parts.append(packet(vi(10, 4), ld(2, ld(1, vi(1, v) + vi(2, v)) + ld(2, vi(1, v) + vi(3, v)))))
        parts.append(packet(vi(10, 5), ld(66, vi(1, v) + vi(2, v) + vi(3, v))))
        parts.append(packet(vi(10, 6), ld(39, ld(1, vi(2, v) + vi(3, v) + vi(5, v)))))
        parts.append(packet(vi(10, 2), ld(60, vi(1, v) + vi(5, v) + ld(4, vi(1, v) + vi(2, v)))))
        parts.append(packet(vi(10, 7), ld(59, vi(58, v) + ld(11, vi(11, v) + vi(31, v)))))
    return b"".join(parts)


ALIGNMENT_SAMPLES = [(0, 1), (U64_MAX, 1), (1, U64_MAX), (I64_MAX, I64_MAX + 1), (U64_MAX, U64_MAX)]


def alignment_trace(boot: int, tsc: int) -> bytes:
    """Clock snapshots and sync markers whose values overflow the alignment's arithmetic."""
    return (snapshot(boot, U64_MAX - boot, tsc) + snapshot(1, 2, 3) +
            marker(5, boot, tsc) + marker(6, 1, 2) + marker(7, U64_MAX - boot, U64_MAX - tsc) +
            slice_event(boot))


REALTIME_SAMPLES = [(I64_MAX, 0), (0, I64_MAX + 1), (U64_MAX, 0), (1 << 62, U64_MAX)]


def realtime_trace(boot: int, real: int) -> bytes:
    """BOOTTIME and REALTIME snapshots only (no TSC): aligned by REALTIME, whose
    offset (boot - real, guest minus host) overflows at these values."""
    return (packet(vi(8, boot), vi(10, 1), ld(6, clock(6, boot) + clock(1, real))) +
            slice_event(boot) + slice_event(boot + 1))


def many_snapshots_trace(n: int) -> bytes:
    """n clock snapshots, then n timestamps on a clock they convert (MONOTONIC)."""
    snaps = b"".join(packet(vi(10, 1), ld(6, clock(6, 10_000 + i) + clock(3, i) + clock(1, i)))
                     for i in range(n))
    events = b"".join(packet(vi(8, i), vi(58, 3), vi(10, 2), ld(11, vi(9, 3) + ld(23, b"e")))
                      for i in range(n))
    return snaps + events


def seeds():
    """(name, bytes) of every cheap case (the zlib bombs are left to the tests)."""
    yield "valid", valid_trace()
    yield "nesting_bomb", nesting_bomb_trace()
    yield "nesting_bomb_whole", nesting_bomb(200_000, (1,))
    for i, c in enumerate(HUGE_CLAIMS):
        yield f"huge_packet_claim_{i}", huge_packet_claim(c)
    for f in CLAIMING_FIELDS:
        yield f"huge_field_claim_{f}", huge_field_claim(f)
    for i, p in enumerate(BAD_COMPRESSED):
        yield f"bad_compressed_{i}", compressed(p)
    for i, t in enumerate(TRUNCATED_TAILS):
        yield f"truncated_tail_{i}", valid_trace() + t
    for i, b in enumerate(MALFORMED_BODIES):
        yield f"malformed_body_{i}", malformed_body(b)
    for i, b in enumerate(MALFORMED_NESTED):
        yield f"malformed_nested_{i}", malformed_nested(b)
    for i, d in enumerate(ZERO_LENGTH):
        yield f"zero_length_{i}", d
    for i, d in enumerate(NOT_QUITE_TRACES):
        yield f"not_quite_{i}", d
    yield "extreme_values", extreme_values_trace()
    for i, (b, t) in enumerate(ALIGNMENT_SAMPLES):
        yield f"alignment_{i}", alignment_trace(b, t)
    for i, (b, r) in enumerate(REALTIME_SAMPLES):
        yield f"realtime_{i}", realtime_trace(b, r)
    yield "many_snapshots", many_snapshots_trace(5000)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: hostile_inputs.py OUT_DIR")
    os.makedirs(sys.argv[1], exist_ok=True)
    n = 0
    for name, data in seeds():
        with open(os.path.join(sys.argv[1], "hostile_" + name), "wb") as f:
            f.write(data)
        n += 1
    print(f"{n} hostile inputs written to {sys.argv[1]}")
