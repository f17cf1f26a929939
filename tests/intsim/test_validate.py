"""Loader checks of docs/artifact.md: every refusal is an ``ArtifactError`` naming the problem.

Graph-level defects are made by mutating the ``graph.json`` dict of a valid
factory artifact and re-parsing it with ``artifact_from_json`` (parse_graph +
validate_artifact); archive-level defects by rewriting the zip file by hand.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from intsim.artifact import (
    Artifact,
    ArtifactError,
    Numerics,
    Segment,
    artifact_from_json,
    load_artifact,
    npy_bytes,
    save_artifact,
)
from intsim.validate import parse_graph, validate_artifact
from tests.artifact_factory import make_codebook, make_random_artifact, save_and_reload

BASE = make_random_artifact(0)
BASE_GRID = make_random_artifact(1, realization="grid")
C = BASE.tensors["head.conv.out"].channels  # inner channel count of BASE


def graph(art: Artifact = BASE) -> dict:
    return copy.deepcopy(art.graph_json())


def arrays(art: Artifact = BASE) -> dict:
    return {k: v.copy() for k, v in art.arrays.items()}


def op_of(g: dict, name: str) -> dict:
    return next(o for o in g["ops"] if o["name"] == name)


def put(g: dict, arrs: dict, name: str, a: np.ndarray) -> None:
    """Replace an array and its graph.json declaration consistently."""
    arrs[name] = a
    g["arrays"][name] = {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": "0" * 64}


def refused(g: dict, fragment: str, arrs: dict | None = None) -> str:
    with pytest.raises(ArtifactError) as ei:
        artifact_from_json(g, arrays() if arrs is None else arrs, "T")
    msg = str(ei.value)
    assert msg.startswith("T: "), msg
    assert fragment in msg, msg
    return msg


# --------------------------------------------------------------------------
# valid artifacts


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("realization", ["split", "grid"])
def test_factory_artifacts_are_valid(seed, realization):
    art = make_random_artifact(seed, realization=realization)
    validate_artifact(art)
    again = artifact_from_json(graph(art), arrays(art), "re")
    assert again.graph_json() == art.graph_json()


@pytest.mark.parametrize("numerics", [
    dict(rounding="half_even", overflow="wrap", acc_bits=16, stream_bits=16),
    dict(rounding="floor", overflow="error", acc_bits=48, stream_bits=40),
    dict(rounding="half_away", overflow="saturate", acc_bits=8, stream_bits=12, mult_bits=24),
])
def test_factory_numerics_variants_are_valid(numerics):
    validate_artifact(make_random_artifact(5, **numerics))


def test_factory_is_deterministic_and_covers_every_op():
    from intsim.validate import KNOWN_OPS

    a, b = make_random_artifact(11), make_random_artifact(11)
    assert a.graph_json() == b.graph_json()
    assert {o.op for o in a.ops} == set(KNOWN_OPS)
    assert make_random_artifact(12).graph_json() != a.graph_json()


def test_save_and_reload_round_trip(tmp_path):
    art = save_and_reload(BASE_GRID, tmp_path)
    assert art.graph_json() == BASE_GRID.graph_json()
    assert art.sha256 == hashlib.sha256((tmp_path / "artifact.intsim").read_bytes()).hexdigest()
    for k, v in BASE_GRID.arrays.items():
        assert art.arrays[k].dtype == v.dtype and np.array_equal(art.arrays[k], v)


def test_minimal_factory_artifact():
    art = make_random_artifact(3, ops="minimal")
    assert [o.op for o in art.ops] == ["image_in", "encode", "conv2d", "image_out"]


@pytest.mark.parametrize("kind,bits", [("uniform", 8), ("uniform", 2), ("signed2r", 2), ("signed2r", 4),
                                       ("relu2r", 3), ("relu2r", 5)])
@pytest.mark.parametrize("realization", ["split", "grid"])
def test_make_codebook_valid_and_released(kind, bits, realization):
    cb = make_codebook(kind, bits, 16, realization, bp=1.0, lo=-4.2, hi=6.0, grid_bits=10)
    expect_n = {"uniform": 1 << bits, "signed2r": (1 << (bits + 1)) - 1, "relu2r": 3 << (bits - 1)}[kind]
    assert cb.num_codes == expect_n  # §3.3 released allocation
    if realization == "grid":
        assert all(abs(g) < 512 for g in cb.code_table()[2])
    # a one-tensor artifact around the codebook validates
    art = make_random_artifact(0, realization=realization, ops="minimal")
    t = art.tensors["head.enc.codes"]
    art.tensors["head.enc.codes"] = dataclasses.replace(t, codebook=cb)
    art.arrays["head.conv.w_mant"][:] = 1  # keep m_w·unit_m·d_s within mult_bits for the new codebook
    validate_artifact(art)


def test_make_codebook_matches_spec_example():
    # arithmetic.md §3.3/§3.4: b = 4, bp = 1, l = −4.2, u_r = 6, u = 2^-16, f_in = 16
    cb = make_codebook("signed2r", 4, 16, "split", bp=1.0, lo=-4.2, hi=6.0)
    assert [(s.origin, s.step, s.qmin, s.qmax) for s in cb.segments] == [
        (-65536, 26214, -8, -1), (0, 9362, -7, 7), (65536, 40960, 1, 8)]
    assert cb.thresholds == (-65537, 65536)
    assert (cb.encoder[1].mult, cb.encoder[1].shift) == (57346, 29)
    assert (cb.encoder[2].center, cb.encoder[2].mult, cb.encoder[2].shift) == (65536, 52429, 31)


# --------------------------------------------------------------------------
# schema: top level, numerics


def _set(path, value):
    def f(g, a):
        d = g
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return f


def _del(path):
    def f(g, a):
        d = g
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return f


SCHEMA_CASES = [
    ("rounding", _set(["numerics", "rounding"], "nearest"), "numerics.rounding 'nearest' is not one of"),
    ("realization", _set(["numerics", "realization"], "lut"), "numerics.realization 'lut'"),
    ("overflow", _set(["numerics", "overflow"], "clamp"), "numerics.overflow 'clamp'"),
    ("acc_lo", _set(["numerics", "acc_bits"], 7), "acc_bits (§8) = 7 is out of range [8, 48]"),
    ("acc_hi", _set(["numerics", "acc_bits"], 49), "acc_bits (§8) = 49 is out of range [8, 48]"),
    ("stream_lo", _set(["numerics", "stream_bits"], 7), "stream_bits (§8) = 7 is out of range [8, 40]"),
    ("stream_hi", _set(["numerics", "stream_bits"], 41), "stream_bits (§8) = 41 is out of range [8, 40]"),
    ("mult_lo", _set(["numerics", "mult_bits"], 7), "mult_bits (§2.1) = 7 is out of range [8, 31]"),
    ("mult_hi", _set(["numerics", "mult_bits"], 32), "mult_bits (§2.1) = 32 is out of range [8, 31]"),
    ("acc_bool", _set(["numerics", "acc_bits"], True), "numerics.acc_bits must be an integer, got bool"),
    ("acc_float", _set(["numerics", "acc_bits"], 32.0), "numerics.acc_bits must be an integer, got float"),
    ("numerics_missing", _del(["numerics", "mult_bits"]), "numerics: missing required key 'mult_bits'"),
    ("numerics_unknown", _set(["numerics", "guard_bits"], 2), "numerics: unknown key 'guard_bits'"),
    ("top_unknown", _set(["extra"], 1), "graph.json: unknown key 'extra'"),
    ("top_missing", _del(["ops"]), "graph.json: missing required key 'ops'"),
    ("version", _set(["version"], 2), "unsupported schema version 2"),
    ("version_bool", _set(["version"], True), "unsupported schema version True"),
    ("format", _set(["format"], "onnx"), "format is 'onnx'"),
    ("inputs_type", _set(["inputs"], "input"), "inputs must be a list"),
    ("model_type", _set(["model"], []), "model must be a JSON object"),
    # tensors
    ("image_frac", _set(["tensors", "input", "frac"], 3), "tensor 'input': unknown key 'frac'"),
    ("kind", _set(["tensors", "body.relu.out", "kind"], "blob"), "tensor 'body.relu.out': unknown kind 'blob'"),
    ("kind_missing", _del(["tensors", "body.relu.out", "kind"]), "tensor 'body.relu.out': missing required key 'kind'"),
    ("channels0", _set(["tensors", "body.relu.out", "channels"], 0), "tensor 'body.relu.out'.channels = 0 is out of range"),
    ("image_ch", _set(["tensors", "input", "channels"], 2), "image with 2 channels, must be 3 (RGB) or 1 (Y)"),
    ("frac_missing", _del(["tensors", "body.relu.out", "frac"]), "missing required key 'frac'"),
    ("frac_float", _set(["tensors", "body.relu.out", "frac"], 1.5), ".frac must be an integer, got float"),
    ("frac_range", _set(["tensors", "body.relu.out", "frac"], 200), ".frac (§1.2) = 200 is out of range"),
    ("codebook_missing", _del(["tensors", "head.enc.codes", "codebook"]), "missing required key 'codebook'"),
    ("channels_bool", _set(["tensors", "body.relu.out", "channels"], False), "must be an integer, got bool"),
]


@pytest.mark.parametrize("mutate,fragment", [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_schema_refused(mutate, fragment):
    g, a = graph(), arrays()
    mutate(g, a)
    refused(g, fragment, a)


# --------------------------------------------------------------------------
# codebooks (§3)

CB3 = ["tensors", "body.enc2.codes", "codebook"]  # signed two-region, 3 segments
CB1 = ["tensors", "head.enc.codes", "codebook"]  # uniform, 1 segment


def _cb(g, path=CB3):
    d = g
    for k in path:
        d = d[k]
    return d


def _cbm(fn, path=CB3):
    return lambda g, a: fn(_cb(g, path))


def _four_segments(cb):
    last = cb["segments"][-1]
    top = last["origin"] + last["step"] * last["qmax"]
    cb["segments"].append({"origin": top + 10, "step": 1, "qmin": 1, "qmax": 2})
    cb["thresholds"].append(cb["thresholds"][-1] + 10**6)
    cb["encoder"].append(dict(cb["encoder"][-1]))


def _not_increasing(cb):
    s1 = cb["segments"][1]
    cb["segments"][2]["origin"] = s1["origin"] + s1["step"] * s1["qmax"] - cb["segments"][2]["step"] * cb["segments"][2]["qmin"]


CODEBOOK_CASES = [
    ("unknown_key", _cbm(lambda c: c.update(zero_point=0)), "codebook: unknown key 'zero_point'"),
    ("missing_key", _cbm(lambda c: c.pop("encoder")), "codebook: missing required key 'encoder'"),
    ("seg_unknown", _cbm(lambda c: c["segments"][0].update(scale=1)), "segments[0]: unknown key 'scale'"),
    ("seg_float", _cbm(lambda c: c["segments"][0].update(origin=1.0)), "segments[0].origin must be an integer, got float"),
    ("four_segments", _cbm(_four_segments), "4 segments, must be 1 to 3"),
    ("no_segments", _cbm(lambda c: c.update(segments=[], thresholds=[], encoder=[])), "0 segments, must be 1 to 3"),
    ("qmin_gt_qmax", _cbm(lambda c: c["segments"][1].update(qmin=5, qmax=4)), "empty index range qmin 5 > qmax 4"),
    ("step0", _cbm(lambda c: c["segments"][1].update(step=0)), "step 0 must be ≥ 1"),
    ("unit_m0", _cbm(lambda c: c.update(unit_m=0)), "unit_m (u = unit_m·2^-unit_e, §3.1) = 0 is out of range"),
    ("not_increasing", _cbm(_not_increasing), "segments 1 and 2 are not strictly increasing"),
    ("thr_count", _cbm(lambda c: c["thresholds"].pop()), "1 thresholds for 3 segments, need 2"),
    ("thr_order", _cbm(lambda c: c.update(thresholds=c["thresholds"][::-1])), "thresholds not strictly ascending"),
    ("thr_equal", _cbm(lambda c: c.update(thresholds=[5, 5])), "thresholds not strictly ascending"),
    ("enc_count", _cbm(lambda c: c["encoder"].pop()), "2 encoder stages for 3 segments"),
    ("enc_mult0", _cbm(lambda c: c["encoder"][0].update(mult=0)), "encoder[0].mult (E_s ≥ 1"),
    ("enc_mult_big", _cbm(lambda c: c["encoder"][0].update(mult=1 << 31)), "= 2147483648 is out of range [1, 2147483647]"),
    ("enc_shift", _cbm(lambda c: c["encoder"][2].update(shift=63)), "encoder[2].shift (k_s, §3.4) = 63 is out of range [0, 62]"),
    ("enc_shift_neg", _cbm(lambda c: c["encoder"][2].update(shift=-1)), "encoder[2].shift (k_s, §3.4) = -1"),
    ("grid_bits_range", _cbm(lambda c: c.update(grid_bits=20)), "grid_bits (§8) = 20 is out of range [6, 16]"),
    ("too_many_codes", _cbm(lambda c: c["segments"][0].update(qmin=-(1 << 24), qmax=1 << 24), CB1),
     "codes exceed the limit"),
    ("int64_range", _cbm(lambda c: c["segments"][0].update(step=1 << 60, qmin=-16, qmax=15), CB1),
     "does not fit int64"),
    ("huge_int", _cbm(lambda c: c["segments"][0].update(origin=1 << 70), CB1), "is out of range"),
    ("allocation_type", _cbm(lambda c: c.update(allocation=3)), "allocation must be a string"),
    ("codes_exceed_bits", _cbm(lambda c: c.update(bits=1)), "7 codes need 3 bits, more than the 2 its declaration allows (bits = 1, "
     "allocation 'released'"),
    ("uniform_exceeds_bits", _cbm(lambda c: c["segments"][0].update(qmax=c["segments"][0]["qmax"] + 1), CB1),
     "its declaration allows"),
]


def test_declared_code_bits():
    from intsim.validate import declared_code_bits

    assert declared_code_bits("released", 4) == 5  # N = 31 codes (§3.3 example) fit 5 bits
    assert declared_code_bits("budgeted", 4) == declared_code_bits("uniform", 4) == 4


@pytest.mark.parametrize("mutate,fragment", [c[1:] for c in CODEBOOK_CASES], ids=[c[0] for c in CODEBOOK_CASES])
def test_codebook_refused(mutate, fragment):
    g, a = graph(), arrays()
    mutate(g, a)
    msg = refused(g, fragment, a)
    assert "tensor 'body.enc2.codes'" in msg or "tensor 'head.enc.codes'" in msg


def test_grid_requires_grid_bits():
    g = graph(BASE_GRID)
    name = next(n for n, t in g["tensors"].items() if t["kind"] == "codes")
    g["tensors"][name]["codebook"]["grid_bits"] = None
    refused(g, "grid_bits is required when numerics.realization is 'grid'", arrays(BASE_GRID))


def test_grid_values_must_fit_grid_bits():
    g = graph(BASE_GRID)
    g["tensors"]["head.enc.codes"]["codebook"]["grid_bits"] = 6  # uniform 8-bit codes: |G| ≥ 128 > 31
    refused(g, "does not fit grid_bits = 6 (range [-32, 31], §5.3)", arrays(BASE_GRID))


def test_grid_bits_not_checked_for_fit_in_split():
    # In the split realization G is never materialised: only the range 6–16 is checked.
    g = graph()
    g["tensors"]["head.enc.codes"]["codebook"]["grid_bits"] = 6
    artifact_from_json(g, arrays(), "T")


# --------------------------------------------------------------------------
# ops: schema, attributes, roles


def _op(name, fn):
    return lambda g, a: fn(op_of(g, name))


def _dup_name(g, a):
    op_of(g, "body.relu")["name"] = "head.conv"


OP_CASES = [
    ("unknown_op", _op("body.relu", lambda o: o.update(op="gelu")), "unknown op 'gelu' (known ops: image_in"),
    ("op_unknown_key", _op("body.relu", lambda o: o.update(comment="x")), "ops[3]: unknown key 'comment'"),
    ("op_missing_name", _op("body.relu", lambda o: o.pop("name")), "ops[3]: missing required key 'name'"),
    ("missing_attr", _op("head.conv", lambda o: o["attrs"].pop("stride")), "op 'head.conv' (conv2d): missing required attribute 'stride'"),
    ("unknown_attr", _op("head.conv", lambda o: o["attrs"].update(bias_exp=3)), "unknown attribute 'bias_exp'"),
    ("attr_bool", _op("head.conv", lambda o: o["attrs"].update(groups=True)), "attribute 'groups' must be an integer, got bool"),
    ("attr_pair_len", _op("head.conv", lambda o: o["attrs"].update(kernel=[3])), "attribute 'kernel' must be a list of 2 integers"),
    ("stride0", _op("head.conv", lambda o: o["attrs"].update(stride=[0, 1])), "attribute 'stride'[0] = 0 is out of range [1,"),
    ("padding_neg", _op("head.conv", lambda o: o["attrs"].update(padding=[-1, 0])), "attribute 'padding'[0] = -1 is out of range [0,"),
    ("shift63", _op("body.leaky", lambda o: o["attrs"].update(shift=63)), "attribute 'shift' = 63 is out of range [0, 62]"),
    ("pool_shift_neg", _op("att.mean", lambda o: o["attrs"].update(shift=-1)), "op 'att.mean' (mean_pool): attribute 'shift' = -1"),
    ("std_pre_shift", _op("att.std", lambda o: o["attrs"].update(pre_shift=70)), "attribute 'pre_shift' = 70"),
    ("sizes_empty", _op("body.split", lambda o: o["attrs"].update(sizes=[])), "attribute 'sizes' must be a non-empty list"),
    ("factor0", _op("up.shuffle", lambda o: o["attrs"].update(factor=0)), "attribute 'factor' = 0 is out of range [1,"),
    ("encode_attr", _op("head.enc", lambda o: o["attrs"].update(bits=4)), "unknown attribute 'bits' (allowed: none)"),
    ("missing_role", _op("head.conv", lambda o: o["arrays"].pop("bias")), "missing array role 'bias'"),
    ("unknown_role", _op("head.conv", lambda o: o["arrays"].update(scale="head.conv.bias")), "unknown array role 'scale'"),
    ("role_on_relu", _op("body.relu", lambda o: o["arrays"].update(mult="head.conv.bias")), "unknown array role 'mult' (allowed: none)"),
    ("missing_array", _op("head.conv", lambda o: o["arrays"].update(bias="nope")), "array role 'bias' names array 'nope', which does not exist"),
    ("dup_name", _dup_name, "op name 'head.conv' is used twice"),
    ("add_arity", _op("body.add", lambda o: o["inputs"].pop()), "op 'body.add' (add): needs exactly 2 inputs, has 1"),
    ("relu_arity", _op("body.relu", lambda o: o["outputs"].append("body.enc1.codes")), "needs exactly 1 outputs, has 2"),
    ("split_count", _op("body.split", lambda o: o["attrs"].update(sizes=[C])), "1 sizes for 2 outputs"),
    ("convT_groups", _op("tail.convT", lambda o: o["attrs"].update(groups=2)), "groups must be 1 (§5.5)"),
    ("convT_dilation", _op("tail.convT", lambda o: o["attrs"].update(dilation=[2, 2])), "dilation must be [1, 1] (§5.5)"),
    ("convT_outpad", _op("tail.convT", lambda o: o["attrs"].update(output_padding=[2, 1])),
     "output_padding[0] = 2 must be smaller than stride[0] = 2"),
    ("convT_missing", _op("tail.convT", lambda o: o["attrs"].pop("output_padding")), "missing required attribute 'output_padding'"),
    ("sigmoid_range", _op("att.sigmoid", lambda o: o["attrs"].update(imin=10, imax=9)), "imin 10 > imax 9"),
]


@pytest.mark.parametrize("mutate,fragment", [c[1:] for c in OP_CASES], ids=[c[0] for c in OP_CASES])
def test_op_refused(mutate, fragment):
    g, a = graph(), arrays()
    mutate(g, a)
    refused(g, fragment, a)


def test_convT_explicit_defaults_allowed():
    g = graph()
    op_of(g, "tail.convT")["attrs"].update(groups=1, dilation=[1, 1])
    artifact_from_json(g, arrays(), "T")


# --------------------------------------------------------------------------
# connectivity


def _swap(i, j):
    def f(g, a):
        g["ops"][i], g["ops"][j] = g["ops"][j], g["ops"][i]
    return f


def _declare(name, spec):
    return lambda g, a: g["tensors"].update({name: spec})


CONNECTIVITY_CASES = [
    ("cycle", _op("head.conv", lambda o: o.update(inputs=["body.enc1.codes"])),
     "the graph has a cycle ('head.conv' -> 'body.relu' -> 'body.enc1' -> 'head.conv')"),
    ("out_of_order", _swap(2, 3),
     "op 'body.relu' (relu): input tensor 'head.conv.out' is consumed before it is produced (by op 'head.conv'): "
     "ops must be in topological order"),
    ("produced_twice", _op("body.relu", lambda o: o.update(outputs=["head.conv.out"])),
     "tensor 'head.conv.out' is produced twice: by op 'head.conv' and by op 'body.relu'"),
    ("undeclared_input", _op("head.conv", lambda o: o.update(inputs=["ghost"])),
     "op 'head.conv' (conv2d): input tensor 'ghost' is not declared in 'tensors'"),
    ("undeclared_output", _op("body.relu", lambda o: o.update(outputs=["ghost"])),
     "output tensor 'ghost' is not declared in 'tensors'"),
    ("never_produced", lambda g, a: (g["tensors"].update(orphan={"kind": "stream", "channels": C, "frac": 20}),
                                     op_of(g, "body.add").update(inputs=["body.prelu.out", "orphan"])),
     "op 'body.add' (add): input tensor 'orphan' is neither a graph input nor produced by any op"),
    ("input_not_image", _set(["inputs"], ["input", "head.image_in.out"]),
     "graph input 'head.image_in.out' must be an image tensor, is stream"),
    ("input_undeclared", _set(["inputs"], ["nope"]), "graph input 'nope' is not a declared tensor"),
    ("no_inputs", _set(["inputs"], []), "the graph has no inputs"),
    ("no_outputs", _set(["outputs"], []), "the graph has no outputs"),
    ("dup_output", _set(["outputs"], ["output", "output"]), "a graph output is listed twice"),
    ("output_not_produced", lambda g, a: (g["tensors"].update(y={"kind": "image", "channels": 3}),
                                          g.update(outputs=["output", "y"])),
     "graph output 'y' is not produced by any op"),
    ("output_undeclared", _set(["outputs"], ["nope"]), "graph output 'nope' is not a declared tensor"),
    ("dangling_declared", _declare("unused", {"kind": "stream", "channels": 2, "frac": 3}),
     "tensor 'unused' is declared but is neither a graph input nor produced by any op"),
    ("produces_input", _op("body.relu", lambda o: o.update(outputs=["input"])),
     "output tensor 'input' is a graph input"),
]


@pytest.mark.parametrize("mutate,fragment", [c[1:] for c in CONNECTIVITY_CASES], ids=[c[0] for c in CONNECTIVITY_CASES])
def test_connectivity_refused(mutate, fragment):
    g, a = graph(), arrays()
    mutate(g, a)
    refused(g, fragment, a)


def test_intermediate_graph_output_is_allowed():
    g = graph()
    g["outputs"] = ["output", "att.sigmoid.out", "head.enc.codes"]
    artifact_from_json(g, arrays(), "T")


# --------------------------------------------------------------------------
# kinds, channels, arrays


def _tensor(name, **kw):
    return lambda g, a: g["tensors"][name].update(kw)


def _arr(name, fn):
    def f(g, a):
        put(g, a, name, fn(a[name]))
    return f


SEMANTIC_CASES = [
    # kinds
    ("conv_on_stream", _op("head.conv", lambda o: o.update(inputs=["head.image_in.out"])),
     "op 'head.conv' (conv2d): input 0 tensor 'head.image_in.out' must be codes, is stream"),
    ("relu_on_codes", _op("body.relu", lambda o: o.update(inputs=["head.enc.codes"])),
     "op 'body.relu' (relu): input 0 tensor 'head.enc.codes' must be stream, is codes"),
    ("encode_to_stream", lambda g, a: g["tensors"].update({"up.enc0.codes": {"kind": "stream", "channels": C, "frac": 20}}),
     "op 'up.enc0' (encode): output 0 tensor 'up.enc0.codes' must be codes, is stream"),
    ("image_out_to_stream", lambda g, a: g["tensors"].update({"output": {"kind": "stream", "channels": 3, "frac": 0}}),
     "op 'tail.image_out' (image_out): output 0 tensor 'output' must be image, is stream"),
    # channels
    ("conv_co", _tensor("head.conv.out", channels=C + 1),
     f"op 'head.conv' (conv2d): weight has {C} output channels"),
    ("conv_groups", _op("body.conv2", lambda o: o["attrs"].update(groups=1)),
     f"input tensor 'body.enc2.codes' has {C} channels, but groups·weight.shape[3] = 1·{C // 2}"),
    ("conv_kernel", _op("head.conv", lambda o: o["attrs"].update(kernel=[5, 5])),
     "attribute kernel [5, 5] does not match weight shape"),
    ("concat_sum", _tensor("body.concat.out", channels=C + 1), f"inputs sum to {C}"),
    ("split_sizes", _op("body.split", lambda o: o["attrs"].update(sizes=[1, C - 1])),
     f"output 0 tensor 'body.split.out0' has {C // 2} channels, sizes[0] = 1"),
    ("split_sum", _op("body.split", lambda o: o["attrs"].update(sizes=[C // 2, C])), f"sum to {C // 2 + C}"),
    ("shuffle", _op("up.shuffle", lambda o: o["attrs"].update(factor=3)),
     "input channels 12 must be output channels 3 · factor² (3²)"),
    ("relu_channels", _tensor("body.relu.out", channels=C + 1), "op 'body.relu' (relu): channel counts differ"),
    ("mul_channels", _op("att.mul", lambda o: o.update(inputs=["body.concat.out", "att.conv1.out"])),
     "op 'att.mul' (mul): channel counts differ"),
    # array shapes and dtypes
    ("prelu_shape", _arr("body.prelu.mult", lambda x: np.zeros(C + 1, np.int64)),
     f"array 'mult' ('body.prelu.mult'): shape [{C + 1}], expected [{C}]"),
    ("image_in_shape", _arr("head.image_in.mult", lambda x: x[:2]), "shape [2], expected [3]"),
    ("w_mant_shape", _arr("head.conv.w_mant", lambda x: x[:-1]), f"shape [{C - 1}], expected [{C}]"),
    ("weight_ndim", _arr("head.conv.weight", lambda x: x.reshape(x.shape[0], -1)), "must have 4 dimensions"),
    ("lut_shape", _op("att.sigmoid", lambda o: o["attrs"].update(imax=o["attrs"]["imax"] + 1)), "expected ["),
    ("weight_int32", _arr("head.conv.weight", lambda x: x.astype(np.int32)), "dtype int32, must be int8 or int16"),
    ("w_mant_int32", _arr("head.conv.w_mant", lambda x: x.astype(np.int32)), "array 'w_mant' ('head.conv.w_mant'): dtype int32, must be int64"),
    ("lut_int64", _arr("att.sigmoid.lut", lambda x: x.astype(np.int64)), "dtype int64, must be int32"),
    ("bias_uint8", _arr("head.conv.bias", lambda x: np.zeros(x.shape, np.uint8)), "dtype uint8, must be int64"),
    ("weight_float", _arr("head.conv.weight", lambda x: x.astype(np.float32)),
     "array 'head.conv.weight': dtype float32 not allowed"),
    ("weight_nan", _arr("head.conv.weight", lambda x: np.full(x.shape, np.nan)), "dtype float64 not allowed"),
    ("object_array", _arr("head.conv.bias", lambda x: x.astype(object)), "dtype object not allowed"),
    ("lut_out_of_stream", _arr("att.sigmoid.lut", lambda x: np.where(np.arange(x.size) == 0, 1 << 30, x).astype(np.int32)),
     "lut values [") ,
    # fracs: ops without rescale keep the frac
    ("relu_frac", _tensor("body.relu.out", frac=5), "output tensor 'body.relu.out' frac 5 must equal the input frac"),
    ("split_frac", _tensor("body.split.out1", frac=3), "output tensor 'body.split.out1' frac 3 must equal"),
    ("pool_frac", _tensor("att.mean.out", frac=3), "op 'att.mean' (mean_pool): output tensor 'att.mean.out' frac 3"),
    ("image_out_frac", _tensor("tail.convT.out", frac=-1), "input frac -1 must be ≥ 0"),
    # shifts in [0, 62], derived ones included
    ("conv_shift_neg", _op("head.conv", lambda o: o["attrs"].update(w_exp=-100)),
     "op 'head.conv' (conv2d): shift n = "),
    ("conv_shift_big", _op("head.conv", lambda o: o["attrs"].update(w_exp=200)),
     "is outside [0, 62] (n = w_exp + unit_e − f_o, §5.2)"),
    ("image_in_shift", _op("head.image_in", lambda o: o["attrs"].update(exp=0)), "(n = exp − f_o, §6.1)"),
    ("image_out_shift", _op("tail.image_out", lambda o: o["attrs"].update(exp=-200)), "(n = f_i + exp, §6.2)"),
    ("add_shift", _tensor("body.add.out", frac=-60), "op 'body.add' (add): shift n = 82 is outside [0, 62] (n = F − f_o, §6.3)"),
    ("mul_shift", _tensor("att.mul.out", frac=62), "op 'att.mul' (mul): shift n = "),
    ("sigmoid_right", _op("att.sigmoid", lambda o: o["attrs"].update(lut_exp=-100)), "shift right = "),
    ("sigmoid_left", _op("att.sigmoid", lambda o: o["attrs"].update(lut_exp=200)), "shift left = "),
    ("concat_shift", _tensor("body.concat.out", frac=-60), "op 'body.concat' (concat): shift n0 = "),
    # multipliers within mult_bits (§2.1)
    ("leaky_mult", _op("body.leaky", lambda o: o["attrs"].update(mult=1 << 31)),
     "op 'body.leaky' (leaky_relu): attribute mult[0] = 2147483648 is outside |M| ≤ 2147483647 (mult_bits = 31"),
    ("prelu_mult", _arr("body.prelu.mult", lambda x: np.full(x.shape, -(1 << 31), np.int64)), "op 'body.prelu' (prelu): mult[0] = -2147483648"),
    ("w_mant_big", _arr("head.conv.w_mant", lambda x: np.full(x.shape, 1 << 31, np.int64)), "w_mant[0] = 2147483648"),
    ("bilinear_mult0", _op("up.bilinear", lambda o: o["attrs"].update(mult=0)), "attribute mult[0] = 0 is outside [1,"),
    ("image_out_mult", _arr("tail.image_out.mult", lambda x: np.full(x.shape, 1 << 40, np.int64)), "op 'tail.image_out' (image_out): mult[0]"),
    ("mult_bits_8", _set(["numerics", "mult_bits"], 8), "is out of range [1, 255]"),
    ("conv_derived_mult", _arr("body.conv2.w_mant", lambda x: np.full(x.shape, (1 << 31) - 1, np.int64)),
     "op 'body.conv2' (conv2d): multiplier M_P0[0] = m_w·unit_m·d_s = "),
    # spatial
    ("mul_gate_map", _op("att.mul", lambda o: o.update(inputs=["body.concat.out", "body.concat.out"])),
     "op 'att.mul' (mul): second input 'body.concat.out' must be a 1×1 (global) tensor"),
    ("add_mixed", _op("att.add", lambda o: o.update(inputs=["att.mean.out", "body.concat.out"])),
     "op 'att.add' (add): mixes 1×1 (global) and full-size inputs"),
    # envelope (§9)
    ("conv_bias", _arr("head.conv.bias", lambda x: np.full(x.shape, 1 << 60, np.int64)),
     "op 'head.conv' (conv2d): exactness envelope exceeded: I["),
    ("mean_shift", _op("att.mean", lambda o: o["attrs"].update(shift=40)), "op 'att.mean' (mean_pool): exactness envelope exceeded"),
    ("std_pre_shift0", _op("att.std", lambda o: o["attrs"].update(pre_shift=0)), "op 'att.std' (std_pool): exactness envelope exceeded: Σ d²·M_N"),
    ("image_in_offset", _arr("head.image_in.offset", lambda x: np.full(x.shape, 1 << 55, np.int64)),
     "op 'head.image_in' (image_in): exactness envelope exceeded"),
    ("encoder_mult", _cbm(lambda c: c["encoder"][0].update(mult=(1 << 31) - 1)), "op 'body.enc2' (encode): exactness envelope exceeded: (X − C_0)·E_0"),
    ("bilinear_env", _op("up.bilinear", lambda o: o["attrs"].update(mult=(1 << 31) - 1, factor=o["attrs"]["factor"])),
     "op 'up.bilinear' (upsample_bilinear): exactness envelope exceeded"),
    ("leaky_env", _op("body.leaky", lambda o: o["attrs"].update(mult=(1 << 31) - 1)), "op 'body.leaky' (leaky_relu): exactness envelope"),
]


@pytest.mark.parametrize("mutate,fragment", [c[1:] for c in SEMANTIC_CASES], ids=[c[0] for c in SEMANTIC_CASES])
def test_semantics_refused(mutate, fragment):
    g, a = graph(), arrays()
    mutate(g, a)
    refused(g, fragment, a)


def test_envelope_with_stream_bits_40():
    # Wider streams raise every stream bound: the factory's 24-bit artifact's
    # std_pool pre_shift no longer suffices at 40 bits (§9).
    g = graph()
    g["numerics"]["stream_bits"] = 40
    refused(g, "exactness envelope exceeded")


def test_negative_slopes_and_mantissas_are_allowed():
    g, a = graph(), arrays()
    op_of(g, "body.leaky")["attrs"]["mult"] = -3
    put(g, a, "body.prelu.mult", -np.arange(C, dtype=np.int64))
    artifact_from_json(g, a, "T")


def test_conv_with_groups_not_dividing_co():
    art = make_random_artifact(0)
    op = next(o for o in art.ops if o.name == "body.conv2")
    w = art.arrays[op.arrays["weight"]]
    g = graph(art)
    op_of(g, "body.conv2")["attrs"]["groups"] = 4 if C % 4 else 5
    msg = refused(g, "op 'body.conv2' (conv2d): ")
    assert "divisible by groups" in msg or "groups·weight.shape[3]" in msg
    assert w.ndim == 4


# --------------------------------------------------------------------------
# in-memory artifacts (validate_artifact on dataclasses)


def test_in_memory_numpy_scalar_refused():
    art = make_random_artifact(0)
    bad = dataclasses.replace(art, numerics=dataclasses.replace(art.numerics, acc_bits=np.int64(32)))
    with pytest.raises(ArtifactError, match=r"numerics.acc_bits .*must be an integer, got int64"):
        validate_artifact(bad, "mem")


def test_in_memory_segment_numpy_int_refused():
    art = make_random_artifact(0)
    t = art.tensors["head.enc.codes"]
    s = t.codebook.segments[0]
    cb = dataclasses.replace(t.codebook, segments=(Segment(np.int64(s.origin), s.step, s.qmin, s.qmax),))
    art.tensors["head.enc.codes"] = dataclasses.replace(t, codebook=cb)
    with pytest.raises(ArtifactError, match=r"mem: tensor 'head.enc.codes' codebook.segments\[0\].origin must be an integer"):
        validate_artifact(art, "mem")


@pytest.mark.parametrize("name", ["../evil", "/abs", "a\\b", ""])
def test_unsafe_array_name_refused(name):
    art = make_random_artifact(0)
    old = "head.conv.bias"
    art.arrays[name] = art.arrays.pop(old)
    op = next(o for o in art.ops if o.name == "head.conv")
    op.arrays["bias"] = name
    with pytest.raises(ArtifactError, match="not a safe member name"):
        validate_artifact(art, "mem")


def test_float_array_refused_in_memory():
    art = make_random_artifact(0)
    art.arrays["head.conv.bias"] = art.arrays["head.conv.bias"].astype(np.float64)
    with pytest.raises(ArtifactError, match="dtype float64 not allowed"):
        validate_artifact(art, "mem")


def test_big_endian_array_refused_in_memory():
    art = make_random_artifact(0)
    art.arrays["head.conv.bias"] = art.arrays["head.conv.bias"].astype(">i8")
    with pytest.raises(ArtifactError, match="not allowed"):
        validate_artifact(art, "mem")


def test_save_refuses_invalid(tmp_path):
    art = make_random_artifact(0)
    art.numerics = Numerics(acc_bits=4)
    with pytest.raises(ArtifactError, match="acc_bits"):
        save_artifact(art, tmp_path / "x.intsim")
    assert not (tmp_path / "x.intsim").exists()


def test_parse_graph_arrays_must_match_declarations():
    g, a = graph(), arrays()
    a["stray"] = np.zeros(2, np.int64)
    with pytest.raises(ArtifactError, match="array 'stray' is in the archive but not declared"):
        parse_graph(g, a, "T")
    g, a = graph(), arrays()
    del a["head.conv.bias"]
    with pytest.raises(ArtifactError, match="array 'head.conv.bias' is declared in graph.json but missing"):
        parse_graph(g, a, "T")
    g, a = graph(), arrays()
    g["arrays"]["head.conv.bias"]["shape"] = [1]
    with pytest.raises(ArtifactError, match=r"shape is \[\d+\], graph.json declares \[1\]"):
        parse_graph(g, a, "T")
    g, a = graph(), arrays()
    g["arrays"]["head.conv.bias"]["extra"] = 1
    with pytest.raises(ArtifactError, match="unknown key 'extra'"):
        parse_graph(g, a, "T")


# --------------------------------------------------------------------------
# archive level (through files)


@pytest.fixture()
def saved(tmp_path) -> Path:
    p = tmp_path / "a.intsim"
    save_artifact(BASE, p)
    return p


def rewrite(src: Path, dst: Path, replace: dict[str, bytes | None] | None = None,
            add: dict[str, bytes] | None = None) -> Path:
    """Copy the zip ``src`` to ``dst``, replacing (bytes) or dropping (None) members, adding others."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename in replace:
                if replace[info.filename] is not None:
                    zout.writestr(info.filename, replace[info.filename])
            else:
                zout.writestr(info.filename, zin.read(info.filename))
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def load_refused(path: Path, fragment: str) -> str:
    with pytest.raises(ArtifactError) as ei:
        load_artifact(path)
    assert fragment in str(ei.value), str(ei.value)
    return str(ei.value)


def test_load_valid(saved):
    art = load_artifact(saved)
    assert art.graph_json() == BASE.graph_json()


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    msg = load_refused(saved, str(saved))
    assert "truncated" in msg or "corrupt" in msg or "not a readable" in msg


def test_not_a_zip(tmp_path):
    p = tmp_path / "x.intsim"
    p.write_bytes(b"hello")
    load_refused(p, "not a readable artifact archive")


def test_missing_file(tmp_path):
    load_refused(tmp_path / "nope.intsim", "no such artifact file")


def test_changed_array_bytes_with_old_hash(saved, tmp_path):
    w = BASE.arrays["head.conv.weight"].copy()
    w.flat[0] = w.flat[0] + 1 if w.flat[0] < 100 else w.flat[0] - 1
    bad = rewrite(saved, tmp_path / "b.intsim", {"arrays/head.conv.weight.npy": npy_bytes(w)})
    load_refused(bad, "array 'head.conv.weight': sha256 mismatch")


def test_changed_array_dtype_with_old_declaration(saved, tmp_path):
    w = BASE.arrays["head.conv.bias"].astype(np.int32)
    bad = rewrite(saved, tmp_path / "b.intsim", {"arrays/head.conv.bias.npy": npy_bytes(w)})
    load_refused(bad, "array 'head.conv.bias': dtype is int32, graph.json declares int64")


def test_missing_array_member(saved, tmp_path):
    bad = rewrite(saved, tmp_path / "b.intsim", {"arrays/head.conv.bias.npy": None})
    load_refused(bad, "array 'head.conv.bias' is declared in graph.json but missing from the archive")


def test_extra_array_member(saved, tmp_path):
    bad = rewrite(saved, tmp_path / "b.intsim", add={"arrays/extra.npy": npy_bytes(np.zeros(3, np.int64))})
    load_refused(bad, "array 'extra' is in the archive but not declared in graph.json")


def test_stray_member(saved, tmp_path):
    bad = rewrite(saved, tmp_path / "b.intsim", add={"README.txt": b"hi"})
    load_refused(bad, "unexpected member 'README.txt'")


def test_missing_graph(saved, tmp_path):
    bad = rewrite(saved, tmp_path / "b.intsim", {"graph.json": None})
    load_refused(bad, "missing graph.json")


def test_graph_not_json(saved, tmp_path):
    bad = rewrite(saved, tmp_path / "b.intsim", {"graph.json": b"{not json"})
    load_refused(bad, "graph.json is not valid JSON")


@pytest.mark.parametrize("name", ["../evil.npy", "arrays/../../evil.npy", "/abs/graph.json", "arrays\\x.npy"])
def test_unsafe_member_names(saved, tmp_path, name):
    bad = tmp_path / "b.intsim"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        # ZipFile.writestr sanitises nothing on write, so the hostile name is stored verbatim
        zout.writestr(zipfile.ZipInfo(name), b"x")
    with zipfile.ZipFile(bad) as z:
        assert name in z.namelist()
    load_refused(bad, "unsafe member name")


def test_duplicate_member(saved, tmp_path):
    bad = tmp_path / "b.intsim"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        with pytest.warns(UserWarning):
            zout.writestr("graph.json", zin.read("graph.json"))
    load_refused(bad, "duplicate member names")


def test_unknown_schema_version(saved, tmp_path):
    with zipfile.ZipFile(saved) as z:
        g = json.loads(z.read("graph.json"))
    g["version"] = 99
    bad = rewrite(saved, tmp_path / "b.intsim", {"graph.json": json.dumps(g).encode()})
    load_refused(bad, "unsupported schema version 99")


def test_graph_level_error_through_file(saved, tmp_path):
    with zipfile.ZipFile(saved) as z:
        g = json.loads(z.read("graph.json"))
    op_of(g, "body.relu")["op"] = "gelu"
    bad = rewrite(saved, tmp_path / "b.intsim", {"graph.json": json.dumps(g).encode()})
    msg = load_refused(bad, "op 'body.relu' (gelu): unknown op 'gelu'")
    assert msg.startswith(str(bad))


def test_code_range_not_fitting_grid_bits_through_file(tmp_path):
    p = tmp_path / "g.intsim"
    save_artifact(BASE_GRID, p)
    with zipfile.ZipFile(p) as z:
        g = json.loads(z.read("graph.json"))
    g["tensors"]["head.enc.codes"]["codebook"]["grid_bits"] = 7
    bad = rewrite(p, tmp_path / "b.intsim", {"graph.json": json.dumps(g).encode()})
    load_refused(bad, "tensor 'head.enc.codes' codebook segment 0: grid value G(0, ")


def test_cycle_through_file(saved, tmp_path):
    with zipfile.ZipFile(saved) as z:
        g = json.loads(z.read("graph.json"))
    op_of(g, "head.conv")["inputs"] = ["body.enc1.codes"]
    bad = rewrite(saved, tmp_path / "b.intsim", {"graph.json": json.dumps(g).encode()})
    load_refused(bad, "the graph has a cycle")


def test_float_npy_member_refused(saved, tmp_path):
    # A float array with NaN, declared as such (and with a correct hash): refused by dtype.
    a = np.full(4, np.nan)
    with zipfile.ZipFile(saved) as z:
        g = json.loads(z.read("graph.json"))
    g["arrays"]["head.conv.bias"] = {"dtype": "float64", "shape": [4],
                                    "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    bad = rewrite(saved, tmp_path / "b.intsim", {"graph.json": json.dumps(g).encode(),
                                                 "arrays/head.conv.bias.npy": npy_bytes(a)})
    load_refused(bad, "array 'head.conv.bias': dtype float64 not allowed")


TRIPWIRE: list[str] = []


def _tripwire_called(*args):  # pragma: no cover - must never run
    TRIPWIRE.append("unpickled!")
    return "boom"


class _Tripwire:
    """An object whose unpickling calls :func:`_tripwire_called` (records the call)."""

    def __reduce__(self):
        return (_tripwire_called, ("x",))


def test_pickled_object_array_refused_without_unpickling(saved, tmp_path):
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = _Tripwire(), _Tripwire()
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)  # the hostile member: only ever *written* here
    bad = rewrite(saved, tmp_path / "b.intsim", {"arrays/head.conv.bias.npy": buf.getvalue()})
    TRIPWIRE.clear()
    load_refused(bad, "array 'head.conv.bias': holds a pickled/object array, refused")
    assert TRIPWIRE == []


def test_corrupt_npy_member(saved, tmp_path):
    bad = rewrite(saved, tmp_path / "b.intsim", {"arrays/head.conv.bias.npy": b"\x93NUMPY garbage"})
    load_refused(bad, "array 'head.conv.bias': not a valid .npy array")


def test_corrupt_deflate_stream(saved, tmp_path):
    # Flip bytes inside a compressed member: zlib/CRC error, reported as corrupt.
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:
        info = z.getinfo("arrays/head.conv.weight.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 5, start + 25):
        data[i] ^= 0xFF
    saved.write_bytes(bytes(data))
    load_refused(saved, "corrupt")


def test_duplicate_json_keys_refused(saved, tmp_path):
    with zipfile.ZipFile(saved) as z:
        text = z.read("graph.json").decode()
    dup = text.replace('"format":', '"format": "x", "format":', 1)
    assert dup != text
    bad = rewrite(saved, tmp_path / "d.intsim", {"graph.json": dup.encode()})
    load_refused(bad, "duplicate key 'format'")


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_compression_methods_refused(saved, tmp_path, method):
    dst = tmp_path / "c.intsim"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(dst, "w", method) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    load_refused(dst, "compression method")


def test_decompression_bombs_refused_before_inflating(saved, tmp_path):
    """A member is judged by its directory entry: graph.json over the cap, an array bigger than declared."""
    import tracemalloc

    from intsim.artifact import GRAPH_MAX_BYTES

    big_graph = rewrite(saved, tmp_path / "g.intsim", {"graph.json": b" " * (GRAPH_MAX_BYTES + 1)})
    with zipfile.ZipFile(saved) as z:
        name = next(n for n in z.namelist() if n.startswith("arrays/"))
    big_array = rewrite(saved, tmp_path / "bomb_array.intsim", {name: b"\0" * (64 << 20)})
    for path, msg in ((big_graph, "inflates to"), (big_array, "more than its declared")):
        tracemalloc.start()
        load_refused(path, msg)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 16 << 20, peak  # refused without inflating the member
