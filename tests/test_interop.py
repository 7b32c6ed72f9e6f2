"""C and C++ programs against the installed package, and mixed Python + C++ processes.

Everything is compiled with the system compiler in a temporary directory
against the headers and the very libvperfetto the Python package loads.
"""

from __future__ import annotations

import collections
import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest

import vperfetto
from conftest import TYPE_BEGIN, TYPE_COUNTER, descriptors, load_trace, resolve, slices_by_track

CC = shutil.which("cc") or shutil.which("gcc")
CXX = shutil.which("c++") or shutil.which("g++")
needs_cc = pytest.mark.skipif(not (CC and CXX), reason="needs a C and a C++ compiler")


def flag(opt):
    return subprocess.run([sys.executable, "-m", "vperfetto", opt], check=True,
                          capture_output=True, text=True).stdout.split()


def build(tmp_path, name, source, lang="c++", shared=False):
    src = tmp_path / (name + (".c" if lang == "c" else ".cpp"))
    src.write_text(textwrap.dedent(source))
    out = tmp_path / (f"lib{name}.so" if shared else name)
    compiler = CC if lang == "c" else CXX
    std = "-std=c99" if lang == "c" else "-std=c++17"
    cmd = [compiler, std, "-O2", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(out),
           *flag("--includes"), *flag("--libs"), "-pthread"]
    if shared:
        cmd[1:1] = ["-shared", "-fPIC"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return out


def test_helper_paths_exist():
    inc = flag("--includes")[0][2:]
    assert os.path.isfile(os.path.join(inc, "vperfetto", "vperfetto.h"))
    assert os.path.isfile(os.path.join(inc, "vperfetto", "vperfetto.hpp"))
    libdir = flag("--libs")[0][2:]
    lib = os.path.join(libdir, "libvperfetto.so")
    assert os.path.isfile(lib)
    # C/C++ programs link the library the Python package loads
    maps = open("/proc/self/maps").read()
    assert os.path.realpath(lib) in maps
    cmake_dir = flag("--cmake-dir")[0]
    assert os.path.isfile(os.path.join(cmake_dir, "vperfettoConfig.cmake"))
    assert os.path.isfile(os.path.join(flag("--pkgconfig-dir")[0], "vperfetto.pc"))


@needs_cc
def test_c_program(tmp_path):
    exe = build(tmp_path, "capp", r"""
        #include <stdio.h>
        #include <string.h>
        #include <vperfetto/vperfetto.h>
        int main(int argc, char** argv) {
          vp_error err;
          if (argc != 2) return 7;
          if (vp_abi_version() != VPERFETTO_ABI_VERSION) return 3;
          vp_config* cfg = vp_config_new();
          if (vp_config_set_buffer(cfg, 1, VP_BUFFER_RING, &err) != VP_E_INVALID_ARGUMENT) return 4;
          if (err.code != VP_E_INVALID_ARGUMENT || strlen(err.message) == 0) return 5;
          vp_config_set_output(cfg, argv[1], &err);
          vp_session* s = NULL;
          if (vp_session_start(cfg, &s, &err) != VP_OK) { fprintf(stderr, "%s\n", err.message); return 1; }
          vp_session* s2 = NULL;
          if (vp_session_start(cfg, &s2, &err) != VP_E_STATE) return 6;
          vp_set_process_name("c_app");
          uint32_t cat = vp_category("c");
          uint32_t name = vp_intern("c_slice", 7);
          uint32_t track;
          vp_counter_track("c_counter", "count", &track, &err);
          for (int i = 0; i < 10; i++) {
            vp_begin(cat, name);
            vp_counter_int(track, i);
            vp_end();
          }
          vp_arg args[2];
          memset(args, 0, sizeof args);
          args[0].name = vp_intern("n", 1); args[0].type = VP_ARG_INT; args[0].i = -3;
          args[1].name = vp_intern("s", 1); args[1].type = VP_ARG_STRING; args[1].s = "str"; args[1].len = 3;
          vp_event ev;
          memset(&ev, 0, sizeof ev);
          ev.type = VP_EVENT_INSTANT; ev.category = cat; ev.name_str = "inline"; ev.name_len = 6;
          ev.args = args; ev.nargs = 2;
          vp_emit(&ev);
          if (vp_session_stop(s, &err) != VP_OK) { fprintf(stderr, "%s\n", err.message); return 2; }
          printf("%llu\n", (unsigned long long)vp_session_stat(s, VP_STAT_PACKETS_WRITTEN));
          vp_session_free(s);
          vp_config_free(cfg);
          return 0;
        }
    """, lang="c")
    out = tmp_path / "c.pftrace"
    p = subprocess.run([str(exe), str(out)], capture_output=True, text=True)
    assert p.returncode == 0, (p.returncode, p.stderr)
    trace = load_trace(out)
    assert int(p.stdout) == len(trace.packet)
    events = resolve(trace)
    assert sum(e.name == "c_slice" and e.type == TYPE_BEGIN for e in events) == 10
    assert [e.counter for e in events if e.type == TYPE_COUNTER] == list(range(10))
    inline = next(e for e in events if e.name == "inline")
    assert inline.args == {"n": -3, "s": "str"} and inline.categories == ["c"]
    procs = [d.process.process_name for d in descriptors(trace).values() if d.HasField("process")]
    assert procs == ["c_app"]


@needs_cc
def test_cpp_raii_program_with_threads(tmp_path):
    exe = build(tmp_path, "cppapp", r"""
        #include <thread>
        #include <vector>
        #include <vperfetto/vperfetto.hpp>
        static void work(int n) {
          vp_set_thread_name("cpp_worker");
          for (int i = 0; i < n; i++) {
            VPERFETTO_SCOPE("gfx", "submit");
            { VPERFETTO_SCOPE("gfx", "encode"); }
            vperfetto::counter("fps", 59.9);
          }
        }
        int main(int, char** argv) {
          vp_config* c = vp_config_new();
          vp_config_set_output(c, argv[1], nullptr);
          vp_config_set_buffer(c, 65536, VP_BUFFER_STREAM, nullptr);
          vp_session* s = nullptr;
          if (vp_session_start(c, &s, nullptr) != VP_OK) return 1;
          std::vector<std::thread> ts;
          for (int t = 0; t < 4; t++) ts.emplace_back(work, 1000);
          for (auto& t : ts) t.join();
          vp_session_stop(s, nullptr);
          vp_session_free(s);
          vp_config_free(c);
          return 0;
        }
    """)
    out = tmp_path / "cpp.pftrace"
    subprocess.run([str(exe), str(out)], check=True)
    trace = load_trace(out)
    events = resolve(trace)
    seqs = collections.Counter(e.seq for e in events if e.name == "submit")
    assert len(seqs) == 4 and set(seqs.values()) == {1000}
    slices = slices_by_track(events)
    for track, ss in slices.items():
        encodes = [s for s in ss if s[0] == "encode"]
        assert len(encodes) == 1000 and all(s[3] == 1 for s in encodes)  # nested in submit
    fps = [e.counter for e in events if e.type == TYPE_COUNTER]
    assert len(fps) == 4000 and set(fps) == {59.9}
    names = {d.thread.thread_name for d in descriptors(trace).values() if d.HasField("thread")}
    assert names == {"cpp_worker"}


MIXED_LIB = r"""
    #include <thread>
    #include <vector>
    #include <vperfetto/vperfetto.hpp>
    static vp_session* g_session = nullptr;
    extern "C" int native_work(int threads, int n) {
      std::vector<std::thread> ts;
      for (int t = 0; t < threads; t++)
        ts.emplace_back([n] { for (int i = 0; i < n; i++) { VPERFETTO_SCOPE("native", "cpp_slice"); } });
      for (auto& t : ts) t.join();
      return vperfetto::is_tracing() ? 1 : 0;
    }
    extern "C" int native_start(const char* path) {
      vp_config* c = vp_config_new();
      vp_config_set_output(c, path, nullptr);
      int rc = vp_session_start(c, &g_session, nullptr);
      vp_config_free(c);
      return rc;
    }
    extern "C" int native_stop() {
      int rc = vp_session_stop(g_session, nullptr);
      vp_session_free(g_session);
      g_session = nullptr;
      return rc;
    }
"""


@needs_cc
def test_mixed_process_python_starts_session(tmp_path):
    lib = ctypes.CDLL(str(build(tmp_path, "mixed", MIXED_LIB, shared=True)))
    out = tmp_path / "mixed.pftrace"
    with vperfetto.Session(out):
        with vperfetto.slice("python_slice"):
            assert lib.native_work(3, 100) == 1
        t = threading.Thread(target=lambda: [vperfetto.instant("py_thread") for _ in range(5)])
        t.start()
        t.join()
    events = resolve(load_trace(out))
    cpp = [e for e in events if e.name == "cpp_slice"]
    assert len(cpp) == 300 and len({e.seq for e in cpp}) == 3
    py = [e for e in events if e.name in ("python_slice", "py_thread")]
    assert len(py) == 6 and not ({e.seq for e in py} & {e.seq for e in cpp})


@needs_cc
def test_mixed_process_cpp_starts_session(tmp_path):
    lib = ctypes.CDLL(str(build(tmp_path, "mixed2", MIXED_LIB, shared=True)))
    out = tmp_path / "mixed2.pftrace"
    assert not vperfetto.is_tracing()
    assert lib.native_start(str(out).encode()) == 0
    try:
        assert vperfetto.is_tracing()
        with pytest.raises(vperfetto.TracingStateError):
            vperfetto.Session(tmp_path / "other.pftrace").start()
        vperfetto.instant("from_python")
        lib.native_work(1, 10)
    finally:
        assert lib.native_stop() == 0
    assert not vperfetto.is_tracing()
    names = collections.Counter(e.name for e in resolve(load_trace(out)))
    assert names["from_python"] == 1 and names["cpp_slice"] == 10


@needs_cc
@pytest.mark.skipif(not shutil.which("cmake"), reason="needs cmake")
def test_cmake_consumer_project(tmp_path):
    src = tmp_path / "proj"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(textwrap.dedent("""
        cmake_minimum_required(VERSION 3.18)
        project(consumer CXX)
        find_package(vperfetto 0.1 REQUIRED)
        add_executable(app app.cpp)
        target_link_libraries(app PRIVATE vperfetto::vperfetto)
    """))
    (src / "app.cpp").write_text(textwrap.dedent(r"""
        #include <vperfetto/vperfetto.hpp>
        int main(int, char** argv) {
          vp_config* c = vp_config_new();
          vp_config_set_output(c, argv[1], nullptr);
          vp_session* s = nullptr;
          if (vp_session_start(c, &s, nullptr) != VP_OK) return 1;
          { VPERFETTO_SCOPE("cmake", "consumer"); }
          vp_session_free(s);  // stops and writes
          vp_config_free(c);
          return 0;
        }
    """))
    build_dir = tmp_path / "build"
    cmake_dir = flag("--cmake-dir")[0]
    for cmd in (["cmake", "-S", str(src), "-B", str(build_dir), f"-DCMAKE_PREFIX_PATH={cmake_dir}"],
                ["cmake", "--build", str(build_dir)]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
    out = tmp_path / "cmake.pftrace"
    subprocess.run([str(build_dir / "app"), str(out)], check=True)
    assert [e.name for e in resolve(load_trace(out))] == ["consumer", None]


@needs_cc
@pytest.mark.skipif(not shutil.which("pkg-config"), reason="needs pkg-config")
def test_pkg_config(tmp_path):
    env = dict(os.environ, PKG_CONFIG_PATH=flag("--pkgconfig-dir")[0])
    p = subprocess.run(["pkg-config", "--cflags", "--libs", "vperfetto"], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    src = tmp_path / "pc.cpp"
    src.write_text("#include <vperfetto/vperfetto.hpp>\nint main() { return vperfetto::is_tracing(); }\n")
    exe = tmp_path / "pc"
    subprocess.run([CXX, str(src), "-o", str(exe), *p.stdout.split()], check=True)
    assert subprocess.run([str(exe)]).returncode == 0


def test_symbols_hidden_except_api():
    lib = os.path.join(flag("--libs")[0][2:], "libvperfetto.so")
    nm = shutil.which("nm")
    if not nm:
        pytest.skip("needs nm")
    out = subprocess.run([nm, "-D", "--defined-only", lib], capture_output=True, text=True).stdout
    names = [line.split()[-1] for line in out.splitlines() if line.split()[-2] in ("T", "W", "D", "B")]
    assert names and all(n.startswith("vp_") for n in names), [n for n in names if not n.startswith("vp_")]


@needs_cc
@pytest.mark.skipif(not shutil.which("cmake"), reason="needs cmake")
def test_minimal_tracing_only_build(tmp_path):
    """The VPERFETTO_MINIMAL library traces, refuses to merge, and is smaller."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    build_dir = tmp_path / "min"
    for cmd in (["cmake", "-S", root, "-B", str(build_dir), "-DVPERFETTO_PYTHON=OFF",
                 "-DVPERFETTO_MINIMAL=ON", "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build_dir), "-j2"]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "warning:" not in p.stdout + p.stderr, p.stdout + p.stderr  # warnings are on
    src = tmp_path / "m.c"
    src.write_text(textwrap.dedent(r"""
        #include <stdio.h>
        #include <vperfetto/vperfetto.h>
        int main(int argc, char** argv) {
          vp_error err;
          vp_config* c = vp_config_new();
          vp_session* s = NULL;
          char* report = NULL;
          vp_merge_options* m = vp_merge_options_new();
          if (argc != 2) return 9;
          vp_config_set_output(c, argv[1], &err);
          if (vp_session_start(c, &s, &err) != VP_OK) return 1;
          vp_begin(vp_category("min"), vp_intern("tiny", 4));
          vp_end();
          if (vp_session_stop(s, &err) != VP_OK) return 2;
          vp_merge_set_host(m, "h", &err);
          vp_merge_add_guest(m, "g", "g", &err);
          vp_merge_set_output(m, "o", &err);
          if (vp_merge_run(m, &report, &err) != VP_E_UNSUPPORTED) return 3;
          printf("%s\n", err.message);
          vp_merge_options_free(m);
          vp_session_free(s);
          vp_config_free(c);
          return 0;
        }
    """))
    exe = tmp_path / "m"
    inc = os.path.join(root, "cpp", "include")
    subprocess.run([CC, "-std=c99", "-Wall", "-Werror", str(src), f"-I{inc}", f"-L{build_dir}",
                    f"-Wl,-rpath,{build_dir}", "-lvperfetto", "-o", str(exe)], check=True)
    out = tmp_path / "min.pftrace"
    p = subprocess.run([str(exe), str(out)], capture_output=True, text=True)
    assert p.returncode == 0 and "tracing-only" in p.stdout, (p.returncode, p.stdout)
    assert [e.name for e in resolve(load_trace(out))] == ["tiny", None]
    full = os.path.join(flag("--libs")[0][2:], "libvperfetto.so")
    assert os.path.getsize(build_dir / "libvperfetto.so") < os.path.getsize(full)
