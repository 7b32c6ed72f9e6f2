"""Where the merge and the archive write: files replaced atomically with the
permissions a user expects, devices and FIFOs written through, never replaced."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading

import pytest

from vperfetto.archive import write_archive
from vperfetto.merge import merge
from conftest import SHARED

SDK = SHARED / "sdk-v7"
pytestmark = pytest.mark.skipif(not (SDK / "guest.pftrace").exists(),
                                reason="../shared/testdata/sdk-v7 is not beside the project")


def do_merge(out):
    merge(SDK / "guest.pftrace", SDK / "host.pftrace", out)


def do_archive(out):
    write_archive(out, SDK / "host.pftrace", {"vm": SDK / "guest.pftrace"})


WRITERS = {"merge": do_merge, "archive": do_archive}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_null_device_stays_a_device(tmp_path, kind):
    # A private twin of /dev/null (as root: a regression must not replace the
    # machine's own).
    null = tmp_path / "null"
    try:
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a device node here: {e}")
    WRITERS[kind](null)
    after = os.stat(null)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == os.makedev(1, 3)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_fifo_written_through(tmp_path, kind):
    ref = tmp_path / "ref"
    WRITERS[kind](ref)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    WRITERS[kind](fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a file"
    reader.join(timeout=60)
    if kind == "merge":
        assert got == [ref.read_bytes()]
    else:  # (the archive's members carry no varying data but mtimes, the manifest's the
        # time of writing: the two writes may fall in different seconds)
        def header(b):   # the first member's tar header without mtime and checksum
            return b[:136] + b[156:512]
        assert len(got[0]) == ref.stat().st_size and header(got[0]) == header(ref.read_bytes())


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_new_file_honours_the_umask(tmp_path, kind):
    out = tmp_path / "out"
    code = (f"import os; os.umask(0o027); from tests_outputs_helper import run; "
            f"run({kind!r}, {str(out)!r})")
    helper = tmp_path / "tests_outputs_helper.py"
    helper.write_text(
        "from vperfetto.merge import merge\nfrom vperfetto.archive import write_archive\n"
        f"SDK = {str(SDK)!r}\n"
        "def run(kind, out):\n"
        "    if kind == 'merge':\n"
        "        merge(SDK + '/guest.pftrace', SDK + '/host.pftrace', out)\n"
        "    else:\n"
        "        write_archive(out, SDK + '/host.pftrace', {'vm': SDK + '/guest.pftrace'})\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_replaced_file_keeps_its_permissions_and_symlinks_stay(tmp_path, kind):
    target = tmp_path / "target"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    link = tmp_path / "link"
    link.symlink_to(target)
    WRITERS[kind](link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.stat().st_size > 1000 and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]  # no temp left


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_directory_refused(tmp_path, kind):
    with pytest.raises(OSError, match="directory"):
        WRITERS[kind](tmp_path)
