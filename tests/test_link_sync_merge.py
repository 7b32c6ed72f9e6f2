"""The offline merge aligned by the link's clock-sync rounds (recorded in the
host trace as `vperfetto_clock_sync_round` events): drift interpolated
between bursts, also for events on an incremental clock, and an error bound
that covers the truth."""

from __future__ import annotations

import pytest

import vperfetto
from conftest import load_trace, packet_times, pb2
from vperfetto.merge import merge

D0, T0 = 5_000_000_000, 10_000_000_000  # guest - host at guest time T0
PPM = 100                                # the guest clock runs this fast


def d_at(g):
    """guest - host at guest time g."""
    return D0 + (g - T0) * PPM // 1_000_000


def host_with_rounds(rounds):
    """A host trace holding sync rounds to peer "vm1": each (t1, t2, t3, t4),
    t1/t4 on the guest's BOOTTIME, t2/t3 on the host's."""
    host = pb2.Trace()
    host.packet.add(trusted_packet_sequence_id=1).clock_snapshot.clocks.add(
        clock_id=pb2.BUILTIN_CLOCK_BOOTTIME, timestamp=1)
    p = host.packet.add(trusted_packet_sequence_id=2, timestamp=rounds[0][1],
                        sequence_flags=pb2.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED)
    p.interned_data.event_names.add(iid=1, name=vperfetto.vm.SYNC_EVENT)
    for t1, t2, t3, t4 in rounds:
        e = host.packet.add(trusted_packet_sequence_id=2, timestamp=t2).track_event
        e.type, e.name_iid = pb2.TrackEvent.TYPE_INSTANT, 1
        for k, v in (("sync_t1", t1), ("sync_t2", t2), ("sync_t3", t3), ("sync_t4", t4)):
            e.debug_annotations.add(name=k, uint_value=v)
        e.debug_annotations.add(name="sync_peer", string_value="vm1")
    return host


def drifting_rounds(delays=lambda i: 20_000):
    """Two bursts 10 s apart of 8 symmetric rounds each, on the drifting clock."""
    rounds = []
    for burst_start in (T0, T0 + 10_000_000_000):
        for i in range(8):
            t1 = burst_start + i * 100_000
            delay = delays(i)
            t2 = t1 - d_at(t1) + delay // 2
            t3 = t2 + 1_000
            rounds.append((t1, t2, t3, t3 + d_at(t1) + delay // 2))
    return rounds


def guest_base():
    guest = pb2.Trace()
    guest.packet.add(trusted_packet_sequence_id=1).clock_snapshot.clocks.add(
        clock_id=pb2.BUILTIN_CLOCK_BOOTTIME, timestamp=1)
    return guest


def write_pair(tmp_path, host, guest):
    hp, gp = tmp_path / "h.pftrace", tmp_path / "g.pftrace"
    hp.write_bytes(host.SerializeToString())
    gp.write_bytes(guest.SerializeToString())
    return hp, gp


def test_offline_merge_uses_link_records_and_corrects_drift(tmp_path):
    """The merge prefers the link's rounds, and with two bursts it
    interpolates the offset."""
    guest = guest_base()
    marks = [T0, T0 + 5_000_000_000, T0 + 10_000_000_000]
    for g in marks:
        e = guest.packet.add(trusted_packet_sequence_id=2, timestamp=g).track_event
        e.type, e.name = pb2.TrackEvent.TYPE_INSTANT, "mark"
    hp, gp = write_pair(tmp_path, host_with_rounds(drifting_rounds(lambda i: 20_000 + (i % 3) * 5_000)),
                        guest)
    out = tmp_path / "o.pftrace"
    r = merge(host=hp, guests={"vm1": gp}, output=out)
    a = r.alignments[0]
    assert a.method == "link-sync" and a.sync_points == 2 and "drift" in a.detail
    moved = [p.timestamp for p in load_trace(out).packet if p.HasField("track_event")
             and p.track_event.name == "mark"]
    expect = [g - d_at(g) for g in marks]
    assert all(abs(m - e) < 2_000 for m, e in zip(moved, expect)), (moved, expect)


@pytest.mark.parametrize("unit", [1, 1000])
def test_drift_correction_moves_incremental_timestamps(tmp_path, unit):
    """The same drifting guest, its events on an incremental clock as SDKs
    (and vperfetto) write them: one snapshot defining clock 64, then deltas.
    Only the snapshot carries a time the merge can move; each delta must
    change with the drift too, or every event after it lands where the
    snapshot's shift puts it (~100 us off per second here)."""
    guest = guest_base()
    start = T0 - 2_000_000_000  # before the first burst, and on past the last
    p = guest.packet.add(trusted_packet_sequence_id=3, timestamp=0,
                         sequence_flags=pb2.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED)
    p.clock_snapshot.clocks.add(clock_id=pb2.BUILTIN_CLOCK_BOOTTIME, timestamp=start)
    c = p.clock_snapshot.clocks.add(clock_id=64, timestamp=start // unit, is_incremental=True)
    if unit != 1:
        c.unit_multiplier_ns = unit
    p.trace_packet_defaults.timestamp_clock_id = 64
    # Every 125 us for 15 s: MB, so the rewrite runs in several batches (each
    # starts from the clock's value where it begins).
    marks = [start + k * 125_000 for k in range(1, 120_001)]
    prev = start
    for g in marks:
        q = guest.packet.add(trusted_packet_sequence_id=3, timestamp=(g - prev) // unit,
                             sequence_flags=pb2.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE)
        q.track_event.type, q.track_event.name = pb2.TrackEvent.TYPE_INSTANT, "mark"
        prev = g
    hp, gp = write_pair(tmp_path, host_with_rounds(drifting_rounds()), guest)
    assert gp.stat().st_size > 2_000_000
    out = tmp_path / "o.pftrace"
    r = merge(host=hp, guests={"vm1": gp}, output=out, threads=1)
    assert r.alignments[0].sync_points == 2
    one = out.read_bytes()
    merge(host=hp, guests={"vm1": gp}, output=out, threads=3)
    assert out.read_bytes() == one, "3 threads wrote other bytes"
    # Where trace_processor puts them (its rules for sequence clocks).
    comb = load_trace(out)
    times = [ts for ts, p in zip(packet_times(comb), comb.packet)
             if p.HasField("track_event") and p.track_event.name == "mark"]

    def expect(g):  # interpolated between the bursts, the nearest burst's outside them
        return g - d_at(min(max(g, T0 + 350_000), T0 + 10_000_350_000))

    assert len(times) == len(marks)
    worst = max(abs(t - expect(g)) for t, g in zip(times, marks))
    assert worst <= 2_000 + unit, worst


def test_link_sync_claims_no_less_than_its_error(tmp_path):
    """The alignment record's spread must cover the true offset. One burst
    whose best round is symmetric (20 us round trip) but whose other rounds
    are lopsided (5 us out, 45 us back): the estimate (the median of the
    best rounds) is 20 us off, more than the best round's half round trip
    (10 us, what was claimed), within what the rounds together allow."""
    rounds = []
    for i, (out_ns, back_ns) in enumerate([(10_000, 10_000)] + [(5_000, 45_000)] * 7):
        t1 = T0 + i * 100_000
        t2 = t1 - D0 + out_ns
        t3 = t2 + 1_000
        rounds.append((t1, t2, t3, t3 + D0 + back_ns))
    guest = guest_base()
    e = guest.packet.add(trusted_packet_sequence_id=2, timestamp=T0).track_event
    e.type, e.name = pb2.TrackEvent.TYPE_INSTANT, "mark"
    hp, gp = write_pair(tmp_path, host_with_rounds(rounds), guest)
    a = merge(host=hp, guests={"vm1": gp}, output=tmp_path / "o.pftrace").alignments[0]
    assert a.method == "link-sync"
    error = abs(a.offset_ns - D0)
    assert error == 20_000, a  # the median of the three best rounds: two lopsided ones
    assert a.spread_ns >= error, a
    assert a.spread_ns <= 30_000, a  # and not much more: the rounds meet in [D - 10, D + 5] us
