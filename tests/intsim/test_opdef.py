"""The op registry (intsim/ops/opdef.py): one definition per op type, read by validation, shape
inference (tiling, footprint, cost), the cost classes and bounds; defaults stated once."""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from intsim import band_plan, bounds, engine, footprint, golden_selection, op_dispatch, tiling, validate
from intsim.artifact import ALLOWED_DTYPES, OpSpec
from intsim.cost import context as cost_context
from intsim.cost.shapes import infer_shapes
from intsim.ops.conv_params import ConvParams
from intsim.ops.opdef import COST_CLASSES, OPS, AttrSpec, OpDef, ops_where, ops_with_geometry
from tests.artifact_factory import make_random_artifact

REPO = Path(__file__).resolve().parents[2]
ATTR_TYPES = {"int", "shift", "pos", "pair+", "pair0", "sizes", "pad_mode", "lut_fn"}
KINDS = {"image", "stream", "codes"}


@pytest.mark.parametrize("name", list(OPS))
def test_every_op_has_a_complete_definition(name):
    d = OPS[name]
    assert isinstance(d, OpDef) and d.name == name
    assert d.inputs and d.outputs
    for k in d.inputs + d.outputs:
        assert k.rstrip("*") in KINDS, k
    for a, spec in d.attrs.items():
        assert isinstance(spec, AttrSpec) and spec.type in ATTR_TYPES, (a, spec)
    for role, dtypes in d.roles.items():
        assert dtypes and set(dtypes) <= set(ALLOWED_DTYPES), (role, dtypes)
    assert d.cost in COST_CLASSES
    assert d.geometry.kind in ("same", "conv", "conv_transpose", "upsample", "pad", "global")


def test_registry_covers_the_engine_kernels_and_validation():
    """One op set: the registry, the engine's dispatch table and what the loader accepts."""
    assert set(OPS) == set(op_dispatch.OPS)
    assert validate.KNOWN_OPS == tuple(OPS)
    # the random factory artifact uses every op type (tests/artifact_factory.py)
    assert {op.op for op in make_random_artifact(0).ops} == set(OPS)


def test_derived_op_classes():
    """The classes other modules read are the registry's (spot checks against the spec)."""
    assert bounds.SAME_FRAC_OPS == ops_where(same_frac=True)
    # ops with their own channel rule (§5.1, §5.5, §6.4, §6.6, §6.8, §6.14); every other keeps channels
    assert set(OPS) - ops_where(keeps_channels=True) == {"conv2d", "conv_transpose2d", "concat", "split",
                                                         "pixel_shuffle", "mul"}
    assert {"relu", "split", "mean_pool", "upsample_bicubic"} <= bounds.SAME_FRAC_OPS
    assert not {"conv2d", "add", "encode", "lut"} & bounds.SAME_FRAC_OPS
    assert set(cost_context.CONV_OPS) == {"conv2d", "conv_transpose2d"}
    assert cost_context.VIEW_OPS == {"concat"} and cost_context.BINARY_FUSABLE == {"add", "mul"}
    assert cost_context.RESCALE_OPS == {"encode", "image_in", "image_out"}
    # band_plan and golden_selection keep their own tables (light modules golden imports): they must agree
    assert band_plan.GLOBAL_OPS == ops_with_geometry("global") == {"mean_pool", "std_pool"}
    assert set(golden_selection.CONV_OPS) == ops_where(cost="gemm")
    assert tiling.ROW_LOCAL_OPS == ops_with_geometry("same")
    # every op is exactly one of: row-local, conv, upsample, pad, global
    classes = [tiling.ROW_LOCAL_OPS, tiling.CONV_OPS, ops_with_geometry("upsample"), ops_with_geometry("pad"),
               band_plan.GLOBAL_OPS]
    assert sum(len(c) for c in classes) == len(OPS) and set().union(*classes) == set(OPS)


def test_attr_defaults_and_required():
    ct, c2 = OPS["conv_transpose2d"], OPS["conv2d"]
    op = OpSpec("t", "conv_transpose2d", ("x",), ("y",), {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1],
                                                           "output_padding": [1, 1], "w_exp": 0}, {})
    assert ct.attr(op, "groups") == 1 and ct.attr(op, "dilation") == (1, 1)
    assert ct.optional_attrs == {"groups": "pos", "dilation": "pair+"}
    assert list(c2.required_attrs) == ["kernel", "stride", "padding", "dilation", "groups", "w_exp"]
    assert c2.attr({"kernel": 3}, "stride") == (1, 1) and c2.attr({"kernel": 3}, "kernel") == (3, 3)
    with pytest.raises(KeyError):
        c2.attr({}, "kernel")
    with pytest.raises(KeyError):
        OPS["leaky_relu"].attr({}, "mult")
    # ConvParams reads the same defaults (stated once, in the registry)
    assert ConvParams.of({"kernel": [1, 3]}) == ConvParams((1, 3), (1, 1), (0, 0), (1, 1), 1, (0, 0))


@pytest.mark.parametrize("seed,hw", [(0, (7, 9)), (3, (12, 5)), (5, (1, 1)), (8, (10, 16))])
def test_shape_functions_match_the_engine(seed, hw):
    """infer_heights (tiling, footprint) and infer_shapes (cost) give every tensor's engine shape."""
    art = make_random_artifact(seed)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    res = engine.run(art, image)
    heights = tiling.infer_heights(art, *hw)
    shapes = infer_shapes(art, hw)
    assert set(heights) == set(res.tensors) == set(shapes)
    for t, x in res.tensors.items():
        got = np.asarray(x).shape
        assert heights[t] == got[:2], (t, heights[t], got)
        assert shapes[t] == (got[0], got[1], art.tensors[t].channels), t


def _one_attrs(name: str, rng: np.random.Generator) -> dict:
    """Random geometry attributes for the size functions of ``name`` (validated ranges)."""
    if name == "conv2d":
        return {"kernel": rng.integers(1, 6, 2).tolist(), "stride": rng.integers(1, 4, 2).tolist(),
                "padding": rng.integers(0, 4, 2).tolist(), "dilation": rng.integers(1, 4, 2).tolist(), "groups": 1}
    if name == "conv_transpose2d":
        s = rng.integers(1, 4, 2)
        return {"kernel": rng.integers(1, 6, 2).tolist(), "stride": s.tolist(), "padding": rng.integers(0, 3, 2).tolist(),
                "output_padding": [int(rng.integers(0, x)) for x in s]}
    if name == "pad":
        return {"padding": rng.integers(0, 4, 2).tolist(), "mode": "replicate"}
    return {"factor": int(rng.integers(1, 5)), "tap_bits": 8, "mult": 1, "shift": 0, "sizes": [1], "lo": 0, "hi": 0,
            "exp": 0, "lut_exp": 0, "imin": 0, "imax": 0, "pre_shift": 0}


@pytest.mark.parametrize("name", [n for n in OPS if not OPS[n].is_global])
def test_min_input_inverts_out_size(name):
    """``min_input(m)`` is the smallest input size whose output has ≥ m pixels (footprint's inverse),
    and ``out_size`` is non-decreasing (checked by brute force over small sizes)."""
    d, rng = OPS[name], np.random.default_rng(sum(map(ord, name)))
    sizes = np.arange(-8, 400, dtype=np.int64)  # every output size below 30 is reached in this range
    for _ in range(25):
        a = _one_attrs(name, rng)
        for ax in range(2):
            out = d.out_size(a, sizes, ax)
            assert np.all(np.diff(out) >= 0)
            for m in range(1, 30):
                x = d.min_input(a, m, ax)
                assert out[-1] >= m
                first = int(sizes[np.argmax(out >= m)])
                assert max(x, 1) == max(first, 1), (name, a, ax, m, x, first)
                assert d.out_size(a, max(x, 1), ax) >= m


def test_receptive_field_from_the_registry():
    """The receptive field of a chain of convs and upsampling: ext + (k−1)·d·jump per conv, jump/r per
    upsample (footprint.receptive_field reads OpDef.receptive)."""
    assert OPS["conv2d"].receptive({"kernel": [3, 5], "stride": [2, 1], "dilation": [1, 2], "padding": [0, 0]},
                                   Fraction(1), Fraction(1), 1) == (Fraction(9), Fraction(1))
    assert OPS["upsample_bicubic"].receptive({"factor": 2}, Fraction(4), Fraction(2), 0) == (Fraction(10), Fraction(1))
    assert OPS["relu"].receptive({}, Fraction(3), Fraction(1, 2), 0) == (Fraction(3), Fraction(1, 2))
    rf = footprint.receptive_field(make_random_artifact(0, ops="minimal"))
    assert (rf.rows, rf.cols) == (3, 3)


#: attribute names that have a default in the registry: reading them elsewhere with ``.get(name, …)``
#: would state the default a second time
_DEFAULTED = sorted({a for d in OPS.values() for a, s in d.attrs.items() if s.has_default})
_GET = re.compile(r"""\.get\(\s*["'](%s)["']""" % "|".join(_DEFAULTED))


def test_attribute_defaults_are_stated_once():
    """No module of intsim but the registry reads a defaulted attribute with ``.get("stride", …)``-style
    defaults (ConvParams.of and OpDef.attr are the accessors)."""
    assert {"stride", "padding", "dilation", "groups", "output_padding"} <= set(_DEFAULTED)
    found = []
    for path in sorted((REPO / "intsim").rglob("*.py")):
        if path == REPO / "intsim" / "ops" / "opdef.py":
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _GET.search(line):
                found.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert found == [], "\n".join(found)
