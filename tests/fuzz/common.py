"""Shared machinery of the fuzz targets (issue 7): budget, settings, contract check, mutators.

Every target is a reader with a documented clean error type. A case passes when the
reader returns, or raises exactly that type with a one-line message naming the file.
Anything else (another exception, a multi-line or anonymous message, a case running
longer than ``HANG_S`` seconds, or one raising the process's peak memory by more than
``MEM_LIMIT``) is a failure.

Budget: ``INTSIM_FUZZ_EXAMPLES`` (default :data:`CI_EXAMPLES`) examples per target,
derandomized (reproducible CI) unless ``INTSIM_FUZZ_RANDOM=1``. With
``INTSIM_FUZZ_RECORD=1`` (the runner, ``python -m tests.fuzz.run``) failures are
recorded instead of raised, so one run counts all of them.
"""
from __future__ import annotations

import copy
import json
import os
import resource
import shutil
import signal
import tempfile
import time
import traceback
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CI_EXAMPLES = 200
EXAMPLES = int(os.environ.get("INTSIM_FUZZ_EXAMPLES", CI_EXAMPLES))
RANDOM = os.environ.get("INTSIM_FUZZ_RANDOM") == "1"
RECORD = os.environ.get("INTSIM_FUZZ_RECORD") == "1"
HANG_S = 10.0  # a single case running this long is a hang (issue 18: none over 10 s)
DEADLINE_S = 5.0  # hypothesis per-example deadline (generous for slow 2-core CI)
MAX_BYTES = 1 << 16  # generated files are at most 64 KiB: reads of them are bounded
MEM_LIMIT = 1 << 30  # growth of the process's peak RSS (bytes) one case may cause

STATS: dict[str, dict] = {}  # target -> {"cases", "failures", "max_case_s", "examples": [...]}


def fuzz_settings(**kw):
    return settings(
        max_examples=EXAMPLES,
        deadline=None if RECORD else timedelta(seconds=DEADLINE_S),
        derandomize=not RANDOM,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
        **kw,
    )


class Hang(BaseException):
    """Raised by the alarm when a case runs past HANG_S (a BaseException: no reader may swallow it)."""


@contextmanager
def _alarm(seconds: float):
    def handler(signum, frame):
        raise Hang(f"case ran longer than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def scratch():
    d = Path(tempfile.mkdtemp(prefix="intsim-fuzz-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _outcome(st_: dict, key: str) -> None:
    if os.environ.get("INTSIM_FUZZ_TRACE") == "1":
        st_["outcomes"][key] = st_["outcomes"].get(key, 0) + 1


def check(target: str, fn, error_type: type, names, describe: str = "") -> None:
    """Run ``fn()`` under the contract; record or raise a failure.

    ``names``: the string the error message must contain (or a tuple of alternatives).
    """
    st_ = STATS.setdefault(target, {"cases": 0, "failures": 0, "max_case_s": 0.0, "examples": [], "outcomes": {}})
    st_["cases"] += 1
    problem = None
    rss0 = _peak_rss()
    t0 = time.perf_counter()
    try:
        with _alarm(HANG_S):
            fn()
        _outcome(st_, "accepted")
    except Hang as e:
        problem = f"hang: {e}"
    except error_type as e:
        msg = str(e)
        _outcome(st_, msg.replace(names if isinstance(names, str) else names[0], "", 1)[:48])
        if "\n" in msg or "\r" in msg:
            problem = f"{type(e).__name__} message is not one line: {msg[:300]!r}"
        elif not any(n in msg for n in ((names,) if isinstance(names, str) else names)):
            problem = f"{type(e).__name__} message does not name {names!r}: {msg[:300]!r}"
    except Exception as e:  # noqa: BLE001 - the point: anything else is a bug
        tb = traceback.extract_tb(e.__traceback__)
        at = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
        problem = f"uncaught {type(e).__name__} at {at}: {str(e)[:300]}"
    dt = time.perf_counter() - t0
    st_["max_case_s"] = max(st_["max_case_s"], dt)
    if problem is None and _peak_rss() - rss0 > MEM_LIMIT:
        problem = f"peak memory grew by {(_peak_rss() - rss0) >> 20} MiB > {MEM_LIMIT >> 20} MiB (unbounded read?)"
    if problem is None:
        return
    if RECORD:
        st_["failures"] += 1
        if len(st_["examples"]) < 20:
            st_["examples"].append({"problem": problem, "input": describe[:500]})
        return
    raise AssertionError(f"{target}: {problem}\ninput: {describe[:2000]}")


# --------------------------------------------------------------------------
# byte-level mutations

_INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff\xff\xff\xff\xff\xff\x7f",
                b"9999999999", b"-1", b"NaN", b"\n", b"'", b'"', b"{", b"[", b"\\"]


@st.composite
def mutated_bytes(draw, seeds, max_ops: int = 6) -> bytes:
    """Bit flips, byte sets, truncations, insertions, deletions, splices of a seed.

    ``seeds``: a list of byte strings, or a function returning one (short repr).
    """
    if callable(seeds):
        seeds = seeds()
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["flip", "set", "trunc", "insert", "delete", "splice", "interesting"]))
        n = len(data)
        pos = draw(st.integers(0, n))
        if op == "flip" and n:
            pos = min(pos, n - 1)
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and n:
            data[min(pos, n - 1)] = draw(st.integers(0, 255))
        elif op == "trunc":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            a = draw(st.integers(0, len(other)))
            data[pos:pos + draw(st.integers(0, 64))] = other[a:a + draw(st.integers(1, 256))]
        elif op == "interesting":
            v = draw(st.sampled_from(_INTERESTING))
            data[pos:pos + len(v)] = v
    return bytes(data[:MAX_BYTES])


random_bytes = st.binary(max_size=4096)


# --------------------------------------------------------------------------
# JSON mutations (structure-aware)

INTERESTING_INTS = [0, 1, -1, 2, 3, 4, 7, 8, 15, 16, 24, 31, 32, 40, 48, 53, 62, 63, 64, 65, 127, 128, 255,
                    256, 1023, 65535, 65536, 2**24, 2**31 - 1, 2**31, 2**32, 2**53, 2**53 + 1, 2**62,
                    2**63 - 1, 2**63, 2**64, 10**30, 10**400, -2**31, -2**62, -2**63, -2**63 - 1, -10**30]
ints = st.sampled_from(INTERESTING_INTS) | st.integers() | st.integers(-300, 300)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.5, 1.0, -0.0, 1e308, 1e-320])


ODD_STRINGS = ["x" * 300, "inputs/" + "a" * 300, "tensors/0/" + "b" * 300 + ".npy", "tensors/" + "a/" * 2100 + "x",
               "\x00", "inputs/\x00.npy", "arrays/\x00", "é/ü", "/", ".", ".."]


def json_values(words: list[str] | None = None):
    strs = st.text(max_size=8) | st.sampled_from(ODD_STRINGS)
    if words:
        strs = strs | st.sampled_from(words)
    scalars = st.none() | st.booleans() | ints | floats | strs
    return st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(strs, c, max_size=4),
                        max_leaves=8)


def json_paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from json_paths(v, prefix + (i,))


def json_words(obj) -> list[str]:
    """Every string key and value of ``obj`` (to splice known names into mutations)."""
    out: set[str] = set()
    for p in json_paths(obj):
        for k in p:
            if isinstance(k, str):
                out.add(k)
        v = _get(obj, p)
        if isinstance(v, str):
            out.add(v)
    return sorted(out)


def _get(obj, path):
    for k in path:
        obj = obj[k]
    return obj


@st.composite
def mutated_json(draw, doc, words: list[str], max_ops: int = 4):
    """Replace, delete, insert or tweak values at random paths of a deep copy of ``doc``."""
    doc = copy.deepcopy(doc)
    values = json_values(words)
    for _ in range(draw(st.integers(1, max_ops))):
        paths = list(json_paths(doc))
        path = draw(st.sampled_from(paths))
        cur = _get(doc, path)
        action = draw(st.sampled_from(["replace", "replace", "tweak", "tweak", "delete", "insert"]))
        new = cur
        if action == "replace":
            new = draw(values)
        elif action == "tweak":
            if isinstance(cur, bool):
                new = not cur
            elif isinstance(cur, int):
                new = draw(st.sampled_from([cur + 1, cur - 1, -cur, cur * 2, cur * 1000, cur + 2**32,
                                            cur - 2**62, 0, float(cur) if abs(cur) < 2**1000 else 0.5])) if draw(st.booleans()) else draw(ints)
            elif isinstance(cur, float):
                new = draw(floats)
            elif isinstance(cur, str):
                new = draw(st.sampled_from(words)) if draw(st.booleans()) else cur + draw(st.text(max_size=3))
            elif isinstance(cur, list) and cur:
                i = draw(st.integers(0, len(cur) - 1))
                kind = draw(st.sampled_from(["dup", "drop", "reverse", "empty"]))
                new = (cur[:i] + [cur[i]] + cur[i:] if kind == "dup" else cur[:i] + cur[i + 1:] if kind == "drop"
                       else cur[::-1] if kind == "reverse" else [])
            elif isinstance(cur, dict) and cur:
                k = draw(st.sampled_from(sorted(cur)))
                new = dict(cur)
                new[draw(st.sampled_from(words))] = new.pop(k)  # rename a key
        elif action == "delete" and path:
            parent = _get(doc, path[:-1])
            del parent[path[-1]]
            continue
        elif action == "insert":
            if isinstance(cur, dict):
                cur[draw(st.sampled_from(words) | st.text(max_size=6))] = draw(values)
                continue
            if isinstance(cur, list):
                cur.insert(draw(st.integers(0, len(cur))), draw(values))
                continue
            new = draw(values)
        if not path:
            doc = new
        else:
            _get(doc, path[:-1])[path[-1]] = new
    return doc


# Deep nesting (recursive parsers): depths around the interpreter's recursion limit and far beyond.
nest_depth = st.sampled_from([2, 500, 990, 1000, 1100, 5000, 100000]) | st.integers(1, 3000)


@st.composite
def deep_json(draw) -> str:
    n = draw(nest_depth)
    return "[" * n + "]" * n if draw(st.booleans()) else '{"a": ' * n + "1" + "}" * n


@st.composite
def with_deep_value(draw, doc) -> bytes:
    """``doc`` as JSON text with the value at one random path replaced by deep nesting."""
    doc = copy.deepcopy(doc)
    path = draw(st.sampled_from([p for p in json_paths(doc) if p]))
    _get(doc, path[:-1])[path[-1]] = "__DEEP__"
    return dumps(doc).replace(b'"__DEEP__"', draw(deep_json()).encode(), 1)


def dumps(doc) -> bytes:
    return json.dumps(doc, indent=None, allow_nan=True).encode("utf-8")


def read_golden_fully(path) -> None:
    """Read a golden folder the way ``verify`` does: the manifest, then every input and tensor."""
    from intsim.golden_dir import read_golden_dir

    gs = read_golden_dir(path)
    for k in range(len(gs)):
        gs.input_image(k)
        for name in gs.tensor_names(k):
            gs.tensor(k, name)
