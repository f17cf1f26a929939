"""Fuzz the accelerator-config parser: ``load_accelerator(path)`` (and the loaded config's
``to_json()``/``energy_model()``) may only raise ``ConfigError`` naming the file.

Strategies: generated TOML documents over the real sections and keys with random
types and values (huge/negative/zero/NaN/inf numbers, strings with odd characters,
arrays, inline tables, dates, paths for ``[energy] table``); the same for a beside-the-file
energy table; byte mutations of the packaged files; random text.
"""
from __future__ import annotations

import json
import math
import tomllib
from functools import cache
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from intsim.cost import load_accelerator
from intsim.cost._toml import ConfigError
from tests.fuzz.common import (
    INTERESTING_INTS,
    check,
    fuzz_settings,
    mutated_bytes,
    nest_depth,
    scratch,
)

TARGET = "accel"
_COST = Path(__file__).resolve().parents[2] / "intsim" / "cost"


@cache
def seed_files() -> list[bytes]:
    return [p.read_bytes() for p in sorted((_COST / "accelerators").glob("*.toml"))]


@cache
def energy_bytes() -> bytes:
    return (_COST / "energy_45nm.toml").read_bytes()


@cache
def seed_docs() -> list[dict]:
    return [tomllib.loads(b.decode()) for b in seed_files()]


@cache
def energy_doc() -> dict:
    return tomllib.loads(energy_bytes().decode())


def _all_keys(docs) -> dict[str, list[str]]:
    keys: dict[str, set[str]] = {}
    for d in docs:
        for s, t in d.items():
            keys.setdefault(s, set()).update(t if isinstance(t, dict) else ())
    return {s: sorted(k) for s, k in keys.items()}


ACCEL_KEYS = {"accelerator": ["name", "description", "clock_mhz", "realization"],
              "array": ["rows", "cols", "dataflow", "vector_lanes"],
              "buffers": ["ifmap_kb", "filter_kb", "ofmap_kb", "double_buffered"],
              "dram": ["bytes_per_cycle", "gb_per_s"],
              "datapath": ["weight_bits", "activation_bits", "accumulator_bits", "mac_energy_width"],
              "energy": ["table", "process_nm", "voltage_v", "scale", "dram_scale"]}
STRINGS = ["os", "ws", "is", "split", "grid", "artifact", "used", "native", "energy_45nm.toml", "pJ",
           "../energy_45nm.toml", "/dev/null", "/proc/self/status", ".", "", "\u0000", "accelerators",
           "nonexistent.toml", "x" * 300, "a\nb", "é", "edge_npu"]

# A TOML value: (python value, TOML text)
_floats = st.sampled_from([0.0, -0.0, 1e-320, 1e-300, 1e-160, 1e160, 1e300, 1.7e308, 0.5, 1.0, 28.0, 0.9,
                           800.0]) | st.floats(allow_nan=True, allow_infinity=True)
_ints = st.sampled_from(INTERESTING_INTS) | st.integers(-5, 70) | st.integers()
_strs = st.sampled_from(STRINGS) | st.text(max_size=10)


def _fmt_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x) if ("e" in repr(x) or "." in repr(x)) else repr(x) + ".0"


def _fmt_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


scalar_toml = (st.booleans().map(lambda b: "true" if b else "false") | _ints.map(str) | _floats.map(_fmt_float)
               | _strs.map(_fmt_str) | st.sampled_from(["1979-05-27", "1979-05-27T07:32:00Z", "07:32:00",
                                                       "0x7fffffffffffffff", "0o777", "0b101", "1_000", "+inf"]))
deep_toml = st.builds(lambda n, b: "[" * n + "]" * n if b else "{b = " * n + "1" + "}" * n, nest_depth, st.booleans())
_toml_tree = st.recursive(scalar_toml, lambda c: st.lists(c, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
                          | st.dictionaries(st.sampled_from(["a", "rows", "b"]), c, max_size=2).map(
                              lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"), max_leaves=4)
toml_value = st.integers(0, 11).flatmap(lambda i: deep_toml if i == 0 else _toml_tree)  # deep: 1 in 12


def _seed_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _fmt_float(v)
    return _fmt_str(str(v))


@st.composite
def generated_doc(draw, base: dict, keys: dict[str, list[str]]) -> str:
    """A TOML document over the real sections/keys: a seed's values with 0-3 keys given
    random values, dropped or added; sometimes shuffled/duplicated/unknown sections."""
    pairs = [(s, k) for s in keys for k in keys[s]]
    edits = {}
    for _ in range(draw(st.integers(0, 3))):
        edits[draw(st.sampled_from(pairs))] = draw(st.sampled_from(["value", "value", "value", "drop"]))
    sections = list(keys)
    if draw(st.integers(0, 5)) == 0:
        sections = draw(st.lists(st.sampled_from(sections + ["extra", "Array"]), max_size=8))
    lines = []
    for s in sections:
        lines.append(f"[{s}]")
        for k in keys.get(s, ["k"]):
            e = edits.get((s, k))
            if e == "drop":
                continue
            if e == "value":
                lines.append(f"{k} = {draw(toml_value)}")
            elif s in base and k in base[s]:
                lines.append(f"{k} = {_seed_value(base[s][k])}")
        if draw(st.integers(0, 9)) == 0:
            lines.append(f"{draw(st.sampled_from(['unknown', 'Rows', 'rows ', 'gb_per_s']))!s} = {draw(toml_value)}")
    return "\n".join(lines) + "\n"


@st.composite
def cases(draw):
    kind = draw(st.sampled_from(["generated", "generated", "generated", "energy", "table", "bytes", "text"]))
    energy = None
    if kind == "table":  # a seed with [energy] table = an odd reference
        ref = draw(st.sampled_from(STRINGS + ["accelerators/edge_npu.toml", "x" * 300, "a/" * 2100]) | st.text(max_size=20))
        text = seed_files()[0].replace(b'table = "energy_45nm.toml"', f"table = {_fmt_str(ref)}".encode())
    elif kind in ("generated", "energy"):
        base = draw(st.sampled_from(seed_docs()))
        text = draw(generated_doc(base, ACCEL_KEYS)).encode()
        if kind == "energy":  # a generated energy table beside the file
            energy = draw(generated_doc(energy_doc(), _all_keys([energy_doc()]))).encode()
    elif kind == "bytes":
        text = draw(mutated_bytes(seed_files))
        if draw(st.booleans()):
            energy = draw(mutated_bytes(lambda: [energy_bytes()]))
    else:
        text = draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    return text, energy, kind


def run_case(text: bytes, energy: bytes | None, kind: str) -> None:
    with scratch() as d:
        p = d / "accel.toml"
        p.write_bytes(text)
        if energy is not None:
            (d / "energy_45nm.toml").write_bytes(energy)

        def target():
            cfg = load_accelerator(p)
            json.dumps(cfg.to_json(), allow_nan=True)
            cfg.energy_model()

        # the message names the accelerator file, or the energy table it refers to
        check(TARGET, target, ConfigError, (str(d), str(_COST), "/proc/self/status", "/dev/null"), f"{kind}: accel={text[:1500]!r} energy={(energy or b'')[:600]!r}")


_EDGE = (_COST / "accelerators" / "edge_npu.toml").read_bytes()


@fuzz_settings()
@given(case=cases())
# found by fuzzing: (V/V_ref)**2 overflowed in logic_scale -> OverflowError from to_json()
@example(case=(_EDGE.replace(b"voltage_v = 0.9", b"voltage_v = 1e300"), None, "regression"))
@example(case=(_EDGE.replace(b"process_nm = 28.0", b"process_nm = 1e300").replace(b"voltage_v = 0.9", b"voltage_v = 1e160"),
               None, "regression"))
# found by fuzzing: Path.is_file() raised OSError (ENAMETOOLONG) for a long [energy] table name
@example(case=(_EDGE.replace(b'table = "energy_45nm.toml"', b'table = "' + b"x" * 300 + b'"'), None, "regression"))
# found by fuzzing: tomllib raised RecursionError (not ConfigError) on deeply nested arrays/inline tables
@example(case=(b"a = " + b"[" * 100000 + b"]" * 100000, None, "regression: deep array"))
@example(case=(_EDGE, b"x = " + b"{b = " * 5000 + b"1" + b"}" * 5000, "regression: deep energy table"))
def test_fuzz_accel(case):
    run_case(*case)
