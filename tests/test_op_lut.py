"""The generic ``lut`` op (sigmoid, tanh, silu, gelu, mish): docs/arithmetic.md §6.13, §6.17.

* every table entry against an independent 120-digit oracle (mpmath, a torch dependency) and the
  exact rational index rule against ``fractions.Fraction``;
* golden == intsim, bit for bit, on real-size streams for every function in every rounding mode
  and overflow policy; an artifact holding the legacy ``sigmoid`` op loads as the ``lut`` op with ``fn = "sigmoid"``, same bits;
* capture lowers every spelling; a net with Tanh, SiLU and GELU, and one with Mish, calibrate and run
  bit-exactly.
"""
from __future__ import annotations

import functools
import json
import zipfile
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

from calib.export_ops import export_lut
from intsim.artifact import ArtifactError, Numerics
from intsim.lut import LUT_FUNCTIONS, build_lut, entry, lut_function, lut_index
from intsim.validate import parse_graph
from tests.exact_reference import round_rational
from tests.op_harness import MODES, POLICIES, assert_same, one_op, stream_tensor, assert_network_bit_exact

FNS = tuple(LUT_FUNCTIONS)
mpmath = pytest.importorskip("mpmath")


def oracle(fn: str, m: int, k: int, f: int) -> int:
    """round_half_up(φ(m·2^-k)·2^f) with mpmath at 120 digits (independent of intsim.lut's decimal code)."""
    with mpmath.workdps(120):
        x = mpmath.mpf(m) / mpmath.mpf(2) ** k
        v = {"sigmoid": lambda: 1 / (1 + mpmath.exp(-x)), "tanh": lambda: mpmath.tanh(x),
             "silu": lambda: x / (1 + mpmath.exp(-x)), "gelu": lambda: x * mpmath.ncdf(x),
             "mish": lambda: x * mpmath.tanh(mpmath.log1p(mpmath.exp(x)))}[fn]()
        t = v * mpmath.mpf(2) ** f + mpmath.mpf(1) / 2
        fl = int(mpmath.floor(t))
        if m != 0 and not (abs(t - fl) > mpmath.mpf(10) ** -90 and abs(t - fl - 1) > mpmath.mpf(10) ** -90):
            # within 1e-90 of a rounding boundary: only silu/gelu/mish far right of 0, where φ(x) = x − ε
            # with 0 < ε < 1e-90 (x·σ(x), x·Φ(x), x·tanh(softplus x) < x for x > 0); if x·2^f + ½ is an
            # integer N the value lies just below it and rounds to N − 1 (decided exactly, not by more digits)
            assert fn in ("silu", "gelu", "mish") and m > 0, (fn, m, k, f)
            n = Fraction(m, 1) * Fraction(2) ** (f - k) + Fraction(1, 2)
            assert n.denominator == 1, (fn, m, k, f)
            return int(n) - 1
        return fl


@pytest.mark.parametrize("fn", FNS)
def test_table_equals_120_digit_oracle(fn):
    for k, f, lo, hi in ((4, 15, -200, 200), (0, 26, -20, 20), (7, 12, -1500, 1500), (-2, 3, -40, 40)):
        table = build_lut(fn, lo, hi, k, f)
        assert table.dtype == np.int32
        ms = list(range(lo, hi + 1, max(1, (hi - lo) // 300))) + [lo, hi, 0, 1, -1]
        for m in ms:
            assert int(table[m - lo]) == oracle(fn, m, k, f), (fn, m, k, f)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(FNS), st.integers(-(1 << 14), 1 << 14), st.integers(-3, 12), st.integers(0, 30))
@example("gelu", 4624, 5, 0)  # gelu(144.5) = 144.5 − 1e-4500: the oracle decides the near-tie exactly
def test_entry_random_against_oracle(fn, m, k, f):
    assert entry(lut_function(fn), m, k, f) == oracle(fn, m, k, f)


@pytest.mark.parametrize("fn", FNS)
def test_tail_rule_is_exact_across_the_threshold(fn):
    """Entries just inside and beyond |x| = tail (the asymptote rule) agree with the oracle,
    including inputs whose asymptote x·2^f is a tie (silu, gelu, mish: value just below it)."""
    tail = lut_function(fn).tail
    for k, f in ((4, 30), (8, 3), (20, 0), (1, 20)):
        for m in ((tail << k) - 1, tail << k, (tail << k) + 1, (tail << k) + 3, ((tail + 7) << k) + 1):
            for s in (1, -1):
                assert entry(lut_function(fn), s * m, k, f) == oracle(fn, s * m, k, f), (fn, s * m, k, f)
    # a tie approached from below: x = 100.5·2^0... x·2^f + ½ an integer ⇒ one less than the asymptote's rounding
    if fn in ("silu", "gelu", "mish"):
        assert entry(lut_function(fn), 201, 1, 0) == 100  # φ(100.5) = 100.5 − tiny → 100


def test_build_lut_refusals():
    with pytest.raises(ValueError, match="unknown LUT function 'relu'"):
        build_lut("relu", 0, 3, 0, 4)
    with pytest.raises(ValueError, match="more than 60 above"):
        build_lut("silu", 0, 3, 70, 4)
    with pytest.raises(ValueError, match="do not fit int32"):
        build_lut("silu", (1 << 20) - 4, (1 << 20), 0, 15)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(1 << 23), (1 << 23) - 1), min_size=1, max_size=20), st.integers(-4, 20),
       st.integers(-4, 24), st.sampled_from(MODES))
def test_index_rule_equals_exact_rationals(xs, f_in, k, mode):
    imin, imax = -(1 << 10), (1 << 10) - 1
    i, sats = lut_index(np.array(xs, dtype=np.int64), f_in, k, imin, imax, mode)
    want = [round_rational(Fraction(x) * Fraction(2) ** (k - f_in), mode) for x in xs]
    assert i.tolist() == [min(max(w, imin), imax) for w in want]
    assert sats == sum(1 for w in want if not imin <= w <= imax)


@functools.lru_cache(maxsize=None)
def _exported(fn: str, absmax: float, f_in: int) -> dict:
    return export_lut(fn, absmax, f_in, Numerics())  # the table depends on stream_bits only


@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("rounding", MODES)
@pytest.mark.parametrize("overflow", POLICIES)
def test_golden_equals_intsim_real_size(fn, rounding, overflow):
    f_in = 18
    r = _exported(fn, 6.0, f_in)  # the exporter's table for a stream with max|x| = 6 (range ±8)
    rng = np.random.default_rng(abs(hash((fn, rounding, overflow))) % 2**32)
    X = stream_tensor(rng, (96, 128, 16), 24, scale_bits=f_in + 4)  # ±16: half the inputs beyond the range
    art = one_op("lut", 16, f_in, r["f_o"], attrs={"fn": fn, "lut_exp": r["lut_exp"], "imin": r["imin"],
                                                    "imax": r["imax"]}, arrays={"lut": r["lut"]},
                 rounding=rounding, overflow=overflow)
    out = assert_same(art, X)
    assert out.events["saturations"] > 0  # the index clamp is exercised
    # the integers track the float function (table step 2^-9 over ±8, output grid 2^-f_o)
    ref = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": F.silu, "gelu": F.gelu, "mish": F.mish}[fn](
        torch.from_numpy(np.clip(X, r["imin"] * 2 ** (f_in - r["lut_exp"]), r["imax"] * 2 ** (f_in - r["lut_exp"]))
                         .astype(np.float64) * 2.0 ** -f_in)).numpy()
    assert float(np.abs(out.out * 2.0 ** -r["f_o"] - ref).max()) < 2 ** -r["lut_exp"] * 1.2


def _as_legacy_sigmoid(graph: dict, name: str) -> dict:
    """``graph`` (graph.json) with op ``name`` (a ``lut`` with ``fn = "sigmoid"``) written as the legacy
    ``sigmoid`` op: same attributes but ``fn``, same table."""
    g = json.loads(json.dumps(graph))
    (op,) = [o for o in g["ops"] if o["name"] == name]
    assert op["op"] == "lut" and op["attrs"].pop("fn") == "sigmoid"
    op["op"] = "sigmoid"
    return g


@pytest.mark.parametrize("rounding", MODES)
def test_legacy_sigmoid_op_is_read_as_lut_sigmoid(rounding):
    """graph.json's legacy ``sigmoid`` op parses as ``lut`` with ``fn = "sigmoid"`` and the same attributes
    and table; intsim and golden give the same bits as for the ``lut`` op written directly."""
    from tests.op_harness import run_golden, run_intsim, validate_one_op

    r = _exported("sigmoid", 3.0, 16)
    X = stream_tensor(np.random.default_rng(5), (64, 64, 8), 24, scale_bits=20)
    attrs = {"lut_exp": r["lut_exp"], "imin": r["imin"], "imax": r["imax"]}
    new = one_op("lut", 8, 16, r["f_o"], attrs={"fn": "sigmoid", **attrs}, arrays={"lut": r["lut"]},
                 rounding=rounding)
    legacy_graph = _as_legacy_sigmoid(new.graph_json(), "op")
    assert legacy_graph["ops"][0]["op"] == "sigmoid" and "fn" not in legacy_graph["ops"][0]["attrs"]
    read = parse_graph(legacy_graph, dict(new.arrays), "legacy")
    validate_one_op(read)
    assert read.ops == new.ops and read.ops[0].attrs == {"fn": "sigmoid", **attrs}
    a = assert_same(read, X)  # intsim == golden on the alias
    for run in (run_intsim, run_golden):
        b = run(new, X)
        assert np.array_equal(a.out, b.out) and a.events == b.events


def test_legacy_sigmoid_artifact_file_loads_and_runs_bit_identically(tmp_path):
    """A whole artifact file whose sigmoid gate is the legacy op loads (arrays and their hashes untouched),
    holds the ``lut`` op in its place, runs to the same bits in every tensor and event, and is written back
    as ``lut``."""
    from intsim import engine
    from intsim.artifact import GRAPH_MEMBER, load_artifact, save_artifact
    from tests.artifact_factory import make_random_artifact

    art = make_random_artifact(3)
    save_artifact(art, tmp_path / "new.intsim")
    legacy = tmp_path / "legacy.intsim"
    with zipfile.ZipFile(tmp_path / "new.intsim") as src, zipfile.ZipFile(legacy, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == GRAPH_MEMBER:
                data = json.dumps(_as_legacy_sigmoid(json.loads(data), "att.sigmoid")).encode()
            dst.writestr(info, data)
    a, b = load_artifact(tmp_path / "new.intsim"), load_artifact(legacy)
    assert a.sha256 != b.sha256 and a.ops == b.ops and b.graph_json() == a.graph_json()
    img = np.random.default_rng(0).integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    ra, rb = engine.run(a, img), engine.run(b, img)
    assert ra.tensors.keys() == rb.tensors.keys() and ra.counters == rb.counters
    for k in ra.tensors:
        assert np.array_equal(ra.tensors[k], rb.tensors[k]) and ra.tensors[k].dtype == rb.tensors[k].dtype, k
    save_artifact(b, tmp_path / "rewritten.intsim")
    with zipfile.ZipFile(tmp_path / "rewritten.intsim") as z:
        ops = {o["name"]: o for o in json.loads(z.read(GRAPH_MEMBER))["ops"]}
    assert ops["att.sigmoid"]["op"] == "lut" and ops["att.sigmoid"]["attrs"]["fn"] == "sigmoid"


def test_legacy_sigmoid_refusals():
    """The alias lives in the loader only: an in-memory ``sigmoid`` op is an unknown op, and a legacy op that
    carries ``fn`` is refused as before (it never had one) instead of choosing another function."""
    r = _exported("sigmoid", 3.0, 16)
    attrs = {"lut_exp": r["lut_exp"], "imin": r["imin"], "imax": r["imax"]}
    with pytest.raises(ArtifactError, match="unknown op 'sigmoid'"):
        one_op("sigmoid", 8, 16, r["f_o"], attrs=attrs, arrays={"lut": r["lut"]})
    new = one_op("lut", 8, 16, r["f_o"], attrs={"fn": "sigmoid", **attrs}, arrays={"lut": r["lut"]})
    g = _as_legacy_sigmoid(new.graph_json(), "op")
    g["ops"][0]["attrs"]["fn"] = "tanh"
    with pytest.raises(ArtifactError, match=r"^legacy: op 'op' \(sigmoid\): unknown attribute 'fn' "
                                            r"\(allowed: lut_exp, imin, imax\)$"):
        parse_graph(g, dict(new.arrays), "legacy")


def test_validate_refuses_unknown_function():
    with pytest.raises(ArtifactError, match=r"attribute 'fn' must be one of 'sigmoid', 'tanh', 'silu', 'gelu', 'mish', "
                                            r"got 'swish' \(§6.17\)"):
        one_op("lut", 2, 8, 8, attrs={"fn": "swish", "lut_exp": 0, "imin": 0, "imax": 1},
               arrays={"lut": np.zeros(2, np.int32)})
    with pytest.raises(ArtifactError, match="missing required attribute 'fn'"):
        one_op("lut", 2, 8, 8, attrs={"lut_exp": 0, "imin": 0, "imax": 1}, arrays={"lut": np.zeros(2, np.int32)})


class _ActNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.act, self.silu, self.gelu = nn.Tanh(), nn.SiLU(), nn.GELU()
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 12, 3, padding=1)

    def forward(self, x):
        h = self.silu(self.head(x))
        h = self.gelu(self.body(h)) + torch.tanh(h) + F.silu(h) + F.gelu(h) + self.act(h) + h.sigmoid()
        return F.pixel_shuffle(self.tail(h), 2)


def test_capture_lowers_every_spelling():
    from calib.graph import capture

    g = capture(_ActNet().eval(), rgb_range=1.0)
    got = [(n.name, n.attrs["fn"]) for n in g.nodes if n.op == "lut"]
    assert got == [("silu", "silu"), ("gelu", "gelu"), ("tanh", "tanh"), ("silu_1", "silu"),
                   ("gelu_1", "gelu"), ("act", "tanh"), ("sigmoid", "sigmoid")]


class _GeluTanh(nn.Module):
    def forward(self, x):
        return F.gelu(x, approximate="tanh")


def test_gelu_tanh_approximation_refused_naming_the_node():
    from calib.graph import UnsupportedOpError, capture

    with pytest.raises(UnsupportedOpError, match=r"at fx node 'gelu' in the model's top-level forward; "
                                                 r"File .*test_op_lut.py.*approximate='tanh'"):
        capture(_GeluTanh().eval(), rgb_range=1.0)


@pytest.mark.parametrize("rounding,overflow", [("half_away", "wrap"), ("half_even", "error")])
def test_activation_net_calibrates_exports_and_is_bit_exact(rounding, overflow):
    from calib.calibrate import calibrate_minmax
    from calib.export import export_artifact
    from calib.graph import capture

    torch.manual_seed(0)
    m = _ActNet().eval()
    g = capture(m, rgb_range=1.0)
    cal = calibrate_minmax(m, [torch.rand(3, 16, 16) for _ in range(3)], 8, 8, graph=g)
    art = export_artifact(m, cal, rounding=rounding, overflow=overflow, model_meta={"name": "actnet", "scale": 2})
    assert sorted(op.attrs["fn"] for op in art.ops if op.op == "lut") == \
        ["gelu", "gelu", "sigmoid", "silu", "silu", "tanh", "tanh"]
    img = np.random.default_rng(3).integers(0, 256, (36, 40, 3), dtype=np.uint8)
    res = assert_network_bit_exact(art, img)
    x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    with torch.no_grad():
        ref = (m(x)[0] * 255).clamp(0, 255).round().numpy().transpose(1, 2, 0)
    assert float(np.abs(res.tensors["output"] - ref).mean()) < 2.0


def test_mish_at_zero_and_its_minimum():
    # φ(0) = 0·tanh(ln 2) = 0 exactly (the m = 0 rule); the minimum −0.3088… at x ≈ −1.19 is inside bound(R)
    f = lut_function("mish")
    assert entry(f, 0, 5, 20) == 0 == oracle("mish", 0, 5, 20)
    table = build_lut("mish", -64, 0, 5, 20)  # x in [−2, 0] step 1/32
    assert int(table.min()) == oracle("mish", -38, 5, 20) and -0.3089 < table.min() * 2.0 ** -20 < -0.3088
    assert f.bound(0.5) >= 0.3089 and f.bound(7.0) == 7.0


class _MishNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.mish = nn.Mish()
        self.tail = nn.Conv2d(8, 12, 3, padding=1)

    def forward(self, x):
        h = self.mish(self.head(x))
        return F.pixel_shuffle(self.tail(F.mish(h) + h), 2)


@pytest.mark.parametrize("rounding,overflow", [("half_zero", "wrap"), ("half_up", "saturate")])
def test_mish_net_captures_calibrates_exports_and_is_bit_exact(rounding, overflow):
    from calib.calibrate import calibrate_minmax
    from calib.export import export_artifact
    from calib.graph import capture

    torch.manual_seed(1)
    m = _MishNet().eval()
    g = capture(m, rgb_range=1.0)
    assert [(n.name, n.attrs["fn"]) for n in g.nodes if n.op == "lut"] == [("mish", "mish"), ("mish_1", "mish")]
    cal = calibrate_minmax(m, [torch.rand(3, 16, 16) for _ in range(3)], 8, 8, graph=g)
    art = export_artifact(m, cal, rounding=rounding, overflow=overflow, model_meta={"name": "mishnet", "scale": 2})
    luts = [op for op in art.ops if op.op == "lut"]
    assert [op.attrs["fn"] for op in luts] == ["mish", "mish"]
    for op in luts:  # the exported tables are the exact entries
        a = op.attrs
        want = [oracle("mish", j, a["lut_exp"], art.tensors[op.outputs[0]].frac)
                for j in range(a["imin"], a["imax"] + 1, 97)]
        assert art.array(op, "lut")[::97].tolist() == want
    img = np.random.default_rng(4).integers(0, 256, (30, 34, 3), dtype=np.uint8)
    res = assert_network_bit_exact(art, img)
    x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    with torch.no_grad():
        ref = (m(x)[0] * 255).clamp(0, 255).round().numpy().transpose(1, 2, 0)
    assert float(np.abs(res.tensors["output"] - ref).mean()) < 2.0
