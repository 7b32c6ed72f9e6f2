"""Structured, safe annotations: nested dicts and lists, every value type, values
that cannot be written as they are, decoded with the official schema."""

from __future__ import annotations

import threading

import pytest

import vperfetto
from vperfetto import _args
from conftest import TYPE_BEGIN, TYPE_INSTANT, load_trace, resolve


class Weird:
    def __repr__(self):
        raise RuntimeError("no repr for you")


class Long:
    def __repr__(self):
        return "x" * 5000


class IntLike:
    def __index__(self):
        return 42


def _events(path, type_=TYPE_INSTANT):
    return {e.name: e for e in resolve(load_trace(path)) if e.type == type_}


def test_nested_dicts_and_lists(trace_path):
    with vperfetto.Session(trace_path):
        vperfetto.instant("nested", args={"d": {"a": 1, "b": [1, 2.5], "c": {"x": "y"}},
                                          "t": (True, None, "s"), "e": {}, "l": []})
    ev = _events(trace_path)["nested"]
    assert ev.args == {"d": {"a": 1, "b": [1, 2.5], "c": {"x": "y"}},
                       "t": [True, "None", "s"], "e": "{}", "l": "[]"}


def test_values_that_do_not_fit_never_raise(trace_path):
    big = 2 ** 70
    with vperfetto.Session(trace_path):
        vperfetto.begin("odd", args={"big": big, "neg": -big, "u64": 2 ** 64 - 1, "weird": Weird(),
                                     "long": Long(), "b": b"\x00\xff", "idx": IntLike(),
                                     3: "int key", None: "none key", ("t",): "tuple key"})
        vperfetto.end()
        vperfetto.instant("not a mapping", args=[1, 2])
    ev = _events(trace_path, TYPE_BEGIN)["odd"]
    a = ev.args
    assert a["big"] == str(big) and a["neg"] == str(-big)
    assert a["u64"] == 2 ** 64 - 1
    assert a["weird"] == "<Weird object: repr() raised RuntimeError>"
    assert len(a["long"]) == _args.MAX_REPR and a["long"].endswith("\u2026")
    assert a["b"] == repr(b"\x00\xff")
    assert a["idx"] == 42
    assert a["3"] == "int key" and a["None"] == "none key" and a["('t',)"] == "tuple key"
    assert _events(trace_path)["not a mapping"].args == {"args": [1, 2]}


def test_depth_and_width_are_bounded(trace_path):
    deep = cur = {}
    for _ in range(20):
        cur["n"] = {}
        cur = cur["n"]
    cur["leaf"] = 1
    selfref = [1]
    selfref.append(selfref)
    wide = list(range(1000))
    with vperfetto.Session(trace_path):
        vperfetto.instant("bounded", args={"deep": deep, "self": selfref, "wide": wide,
                                           "wided": {str(i): i for i in range(300)}})
    a = _events(trace_path)["bounded"].args
    d = a["deep"]
    for _ in range(_args.MAX_DEPTH - 1):
        d = d["n"]
    assert isinstance(d["n"], str) and d["n"].startswith("{'n':")  # the level past the limit: a repr
    assert a["self"][0] == 1 and a["self"][1][0] == 1
    assert a["wide"][:_args.MAX_ITEMS] == list(range(_args.MAX_ITEMS))
    assert a["wide"][-1] == f"{1000 - _args.MAX_ITEMS} more" and len(a["wide"]) == _args.MAX_ITEMS + 1
    assert a["wided"]["\u2026"] == f"{300 - _args.MAX_ITEMS} more"


def test_bad_name_or_category_type_says_which(trace_path):
    with vperfetto.Session(trace_path):
        with pytest.raises(TypeError, match="name"):
            vperfetto.begin(12)
        with pytest.raises(TypeError, match="category"):
            vperfetto.instant("x", category=3, args={"a": 1})
        with pytest.raises(TypeError, match="name"):
            vperfetto.instant(None, args={"a": 1})


def test_every_arg_type_nested_across_resets_on_threads(trace_path):
    # Small ring: chunks wrap and every chunk starts with a reset, so the
    # annotation names must be re-interned; four threads write at once.
    value = {"i": -5, "u": 2 ** 63 + 1, "f": 0.5, "b": False, "s": "str", "l": [1, "two", [3.0]],
             "d": {"k": {"deeper": [True]}}}

    def work(k):
        for i in range(3000):
            vperfetto.instant("many", args={"n": i, "k": k, "v": value})

    with vperfetto.Session(trace_path, buffer_kb=64, mode="ring") as s:
        ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    evs = [e for e in resolve(load_trace(trace_path)) if e.name == "many"]
    assert s.stats["chunks_overwritten"] > 0 and len(evs) > 100
    for e in evs:
        assert e.args["v"] == value
