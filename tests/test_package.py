"""The shape of the source tree: no import cycles in the package, small files,
the viewer's assets shipped beside the code that inlines them."""

from __future__ import annotations

import ast
import importlib
import importlib.resources
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "vperfetto"
MAX_LINES = 600
COMPILED = ("_vperfetto_cffi", "_vperfetto_fast", "_vperfetto_profile")   # CMakeLists.txt builds them
# Over the limit and being split by whoever owns them (not this test's to
# hide: the list may only shrink). The last three grew past it on main
# (the parallel merge, crash-safe buffers) and came in with its merge.
TOO_LONG_FOR_NOW = {
    "cpp/src/inspect/checker.cc", "cpp/src/merge/merge.cc", "cpp/src/merge/rewrite.cc",
    "cpp/src/merge/scan.cc", "perfetto-sdk/src/recover.cc", "perfetto-sdk/src/session.cc",
}


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` (its imports are those of __main__) or
    ``if TYPE_CHECKING:`` (never imported at run time)."""
    if not isinstance(node, ast.If):
        return False
    t = node.test
    if isinstance(t, ast.Name) and t.id == "TYPE_CHECKING":
        return True
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in t.comparators))


def import_graph() -> dict:
    """module -> the package's modules it imports (at the top or in a
    function: a cycle through a function-level import is a cycle too)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    compiled = {f"vperfetto.{n}" for n in COMPILED}   # leaves: they import nothing of ours
    graph = {}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        base = mod if is_pkg else mod.rpartition(".")[0]
        deps = set()

        def visit(node):
            for child in ast.iter_child_nodes(node):
                if _is_main_guard(child):
                    continue
                if isinstance(child, ast.Import):
                    deps.update(a.name for a in child.names)
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        pkg = base
                        for _ in range(child.level - 1):
                            pkg = pkg.rpartition(".")[0]
                        target = f"{pkg}.{child.module}" if child.module else pkg
                    else:
                        target = child.module or ""
                    for a in child.names:   # `from . import x`: the submodule x, if it is one
                        sub = f"{target}.{a.name}"
                        deps.add(sub if sub in files or sub in compiled else target)
                visit(child)

        visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[mod] = {d for d in deps if (d in files or d in compiled) and d != mod}
    graph.update({c: set() for c in compiled})
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    g = import_graph()
    assert "vperfetto.timeline.model" in g["vperfetto.timeline"]   # the graph is real
    assert "vperfetto._merge_api" in g["vperfetto.archive"]
    assert "vperfetto._vperfetto_profile" in g["vperfetto.profiler"]
    assert cycles(g) == []


def test_source_files_are_small():
    sources = [p for d in ("python", "cpp", "perfetto-sdk", "tests", "fuzz", "benchmarks", "scripts")
               for p in (ROOT / d).rglob("*") if p.suffix in (".py", ".cc", ".h", ".c", ".js", ".css")]
    assert len(sources) > 50
    long = {str(p.relative_to(ROOT)): n for p in sources
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert set(long) <= TOO_LONG_FOR_NOW, long


def test_the_viewer_ships_as_files():
    from vperfetto import timeline

    files = importlib.resources.files("vperfetto.timeline")
    js = files.joinpath("viewer.js").read_text(encoding="utf-8")
    css = files.joinpath("viewer.css").read_text(encoding="utf-8")
    assert "use strict" in js and "#vp-tooltip" in css
    page = timeline.render_html({"path": "t", "start_ns": 0, "end_ns": 1, "tracks": []})
    assert js in page and css in page


@pytest.mark.parametrize("name", COMPILED)
def test_compiled_modules_have_stubs(name):
    stub = (PACKAGE / f"{name}.pyi").read_text(encoding="utf-8")
    assert (PACKAGE / "py.typed").is_file()
    mod = importlib.import_module(f"vperfetto.{name}")
    # every function the stub declares is in the module (and the other way round
    # for the hand-written extensions; cffi's lib is the C header's)
    declared = (set(re.findall(r"^def (\w+)", stub, re.M)) | set(re.findall(r"^class (\w+)", stub, re.M))
                | set(re.findall(r"^(\w+): ", stub, re.M)))  # callable objects
    public = {n for n in dir(mod) if not n.startswith("__")}
    if name == "_vperfetto_cffi":
        assert declared <= {"ffi", "lib"} <= public
    else:
        assert declared == public


def _mypy(*args: str) -> tuple:
    api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install mypy)")
    out, err, status = api.run(["--strict", "--config-file", str(ROOT / "pyproject.toml"),
                                "--cache-dir", "/dev/null", *args])
    return out + err, status


def test_mypy_strict_on_the_package_and_on_user_code():
    # the package from its sources; a user's program against the installed package
    for args in ([str(PACKAGE)], [str(ROOT / "tests" / "typing" / "user_code.py")]):
        out, status = _mypy(*args)
        assert status == 0, out


def test_mypy_strict_rejects_wrong_calls_of_the_public_api():
    # each line marked `# error: CODE` is reported with that code, and nothing else is
    path = ROOT / "tests" / "typing" / "misuse.py"
    want = {(i, m.group(1)) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if (m := re.search(r"# error: ([\w-]+)$", line))}
    assert len(want) >= 8
    out, status = _mypy(str(path))
    got = {(int(m.group(1)), m.group(2))
           for m in re.finditer(r"misuse\.py:(\d+): error: .*\[([\w-]+)\]$", out, re.M)}
    assert status == 1 and got == want, out
