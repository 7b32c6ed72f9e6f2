"""Any workload in the guest (`python -m vperfetto guest ... -- CMD`): a C
program linked to libvperfetto traces from the environment as a Python one
does (VPERFETTO_AUTOSTART); a command that writes its own Perfetto trace
writes it to --out ($VPERFETTO_GUEST_TRACE) and it is shipped; when nothing
was written, both sides say so and the host keeps its own trace."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vperfetto.vm import HostAgent
from conftest import descriptors, load_trace, resolve
from test_interop import CC, build

needs_cc = pytest.mark.skipif(not CC, reason="needs a C compiler")

C_PROG = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vperfetto/vperfetto.h>

int main(int argc, char** argv) {
  uint32_t cat = vp_category("cprog");
  vp_set_process_name("c_workload");
  for (int i = 0; i < 5; i++) {
    vp_begin_str(cat, "c_work", 6);
    vp_instant_str(cat, "c_tick", 6);
    vp_end();
  }
  /* the variable is taken: a child of this program does not write the trace too */
  const char* v = getenv("VPERFETTO_AUTOSTART");
  printf("tracing=%d child_sees=%s\n", vp_is_tracing(), v ? v : "(unset)");
  return argc > 1 ? atoi(argv[1]) : 0;
}
"""


def _guest(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "vperfetto", "guest", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@needs_cc
def test_a_c_program_traces_from_the_environment(tmp_path):
    prog = build(tmp_path, "cprog", C_PROG, lang="c")
    out = tmp_path / "c.pftrace"
    p = subprocess.run([str(prog)], env=dict(os.environ, VPERFETTO_AUTOSTART=str(out)),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["tracing=1", "child_sees=(unset)"]
    ev = resolve(load_trace(out))
    assert [e.name for e in ev if e.name and e.name.startswith("c_")].count("c_work") == 5
    names = {d.process.process_name for d in descriptors(load_trace(out)).values() if d.HasField("process")}
    assert "c_workload" in names
    # without the variable: no trace, nothing said
    p = subprocess.run([str(prog)], capture_output=True, text=True, timeout=60)
    assert p.stdout.split()[0] == "tracing=0" and p.stderr == ""


@needs_cc
def test_a_c_program_whose_trace_cannot_be_written_still_runs(tmp_path):
    prog = build(tmp_path, "cprog", C_PROG, lang="c")
    bad = tmp_path / "no" / "such" / "dir" / "t.pftrace"
    p = subprocess.run([str(prog), "3"], env=dict(os.environ, VPERFETTO_AUTOSTART=str(bad)),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and p.stdout.startswith("tracing=0")
    assert p.stderr.count("\n") == 1 and "VPERFETTO_AUTOSTART" in p.stderr and "not tracing" in p.stderr


def test_a_python_program_traces_once_from_the_environment(tmp_path):
    # the library's own autostart must not take the Python session's place
    out = tmp_path / "py.pftrace"
    code = ("import os, vperfetto; vperfetto.instant('py_event'); "
            "print(vperfetto.is_tracing(), os.environ.get('VPERFETTO_AUTOSTART'))")
    p = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, VPERFETTO_AUTOSTART=str(out)),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.split() == ["True", "None"]
    assert [e.name for e in resolve(load_trace(out))].count("py_event") == 1
    bad = tmp_path / "nope" / "x.pftrace"
    p = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, VPERFETTO_AUTOSTART=str(bad)),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.split()[0] == "False"
    assert "not tracing" in p.stderr and "Traceback" not in p.stderr


@needs_cc
def test_guest_cli_ships_a_c_programs_trace(tmp_path):
    prog = build(tmp_path, "cprog", C_PROG, lang="c")
    with HostAgent(f"unix:{tmp_path / 'h.sock'}", str(tmp_path / "traces")) as agent:
        p = _guest("--connect", agent.address, "--name", "cvm", "--out", tmp_path / "g.pftrace", "--", prog)
        (res,) = agent.wait_for(1, 60)
    assert p.returncode == 0, p.stderr
    assert "host wrote" in p.stdout and res.error is None
    comb = resolve(load_trace(res.combined))
    assert sum(e.name == "c_work" for e in comb) == 5
    names = {d.process.process_name for d in descriptors(load_trace(res.combined)).values()
             if d.HasField("process")}
    assert "cvm: c_workload" in names


def test_guest_cli_ships_a_trace_the_command_wrote_itself(tmp_path):
    # as the guest OS's `perfetto -o "$VPERFETTO_GUEST_TRACE" ...` would
    made = tmp_path / "own.pftrace"
    subprocess.run([sys.executable, "-c", "import sys, vperfetto\n"
                    "with vperfetto.Session(sys.argv[1]):\n    vperfetto.instant('own_event')",
                    str(made)], check=True, timeout=60)
    with HostAgent("tcp:127.0.0.1:0", str(tmp_path / "traces")) as agent:
        p = _guest("--connect", agent.address, "--name", "pf", "--out", tmp_path / "out.pftrace",
                   "--", "sh", "-c", f'cp "{made}" "$VPERFETTO_GUEST_TRACE"')
        (res,) = agent.wait_for(1, 60)
    assert p.returncode == 0 and "wrote no trace" not in p.stderr, p.stderr
    assert res.error is None
    assert sum(e.name == "own_event" for e in resolve(load_trace(res.combined))) == 1


def test_nothing_written_is_said_plainly_on_both_sides(tmp_path):
    out = tmp_path / "stale.pftrace"
    out.write_bytes(b"an earlier run's trace")   # must not pass for this run's
    sock = tmp_path / "cli.sock"
    host = subprocess.Popen([sys.executable, "-m", "vperfetto", "host", "--listen", f"unix:{sock}",
                             "--out-dir", str(tmp_path / "traces"), "--once"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert host.stdout.readline().startswith("listening on ")
        p = _guest("--connect", f"unix:{sock}", "--name", "quiet", "--out", out, "--", "true")
        hout, _ = host.communicate(timeout=60)
    finally:
        host.kill()
    assert p.returncode == 0
    assert "wrote no trace" in p.stderr and "nothing was sent" in p.stderr
    assert "host: the guest sent no trace" in p.stderr and "pending" not in p.stdout + p.stderr
    assert not out.exists()
    assert "quiet: no combined trace: the guest sent no trace" in hout
    assert [f for f in os.listdir(tmp_path / "traces") if f.startswith("host-")]   # kept its own
