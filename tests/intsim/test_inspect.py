"""``intsim.inspect``: the JSON description and the fixed-width table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from intsim import bounds
from intsim.inspect import describe, format_inspect
from tests.artifact_factory import make_random_artifact, save_and_reload


@pytest.fixture(scope="module")
def art():
    return make_random_artifact(3, realization="split", acc_bits=16)


def _plain_json(v) -> bool:
    """Only JSON types (no numpy scalars, tuples or sets)."""
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain_json(x) for k, x in v.items())
    if isinstance(v, list):
        return all(_plain_json(x) for x in v)
    return v is None or isinstance(v, (str, int, float, bool))


def test_describe_is_plain_json(art):
    d = describe(art)
    assert _plain_json(d)
    assert json.loads(json.dumps(d)) == d
    assert d["numerics"] == art.numerics.to_json()
    assert d["model"]["seed"] == 3
    assert [o["name"] for o in d["ops"]] == [o.name for o in art.ops]


def test_describe_conv_details(art):
    d = describe(art)
    convs = [o for o in d["ops"] if o["op"] in ("conv2d", "conv_transpose2d")]
    assert len(convs) == sum(o.op in ("conv2d", "conv_transpose2d") for o in art.ops)
    ops = {o.name: o for o in art.ops}
    for c in convs:
        op = ops[c["name"]]
        accs = bounds.conv_accumulators(art, op)
        assert [a["name"] for a in c["accumulators"]] == [a.name for a in accs]
        assert [a["bits"] for a in c["accumulators"]] == [a.bits for a in accs]
        assert c["ordered"] == bounds.conv_can_overflow(art, op)
        assert c["ordered"] == any(not a["fits"] for a in c["accumulators"])
        assert c["worst_bits"] == max(a.bits for a in accs)
        cb = art.tensors[op.inputs[0]].codebook
        assert c["codes"]["num_codes"] == cb.num_codes
        assert c["codes"]["code_bits"] == cb.code_bits
        assert c["codes"]["nominal_bits"] == cb.bits
        assert c["codes"]["allocation"] == cb.allocation
        assert len(c["codes"]["segments"]) == len(cb.segments)
        assert c["realization"] == "split"
        assert c["kernel"] == list(op.attrs["kernel"])
        w = art.arrays[op.arrays["weight"]]
        assert c["weight"]["params"] == w.size
        assert c["weight"]["bits"] <= w.dtype.itemsize * 8
        assert c["inputs"][0]["kind"] == "codes" and c["outputs"][0]["kind"] == "stream"
    by_name = {c["name"]: c for c in convs}
    assert by_name["body.conv2"]["groups"] == 2
    assert by_name["up.down"]["stride"] == [2, 2]
    assert by_name["body.conv1"]["dilation"] == [2, 2]
    # acc_bits = 16 makes at least one conv ordered
    assert d["totals"]["ordered_convs"] >= 1


def test_describe_totals(art):
    d = describe(art)
    t = d["totals"]
    convs = [o for o in art.ops if o.op in ("conv2d", "conv_transpose2d")]
    weights = sum(art.arrays[o.arrays["weight"]].size for o in convs)
    biases = sum(art.arrays[o.arrays["bias"]].size for o in convs)
    assert (t["weights"], t["biases"], t["params"]) == (weights, biases, weights + biases)
    assert t["weight_storage_bits"] == sum(art.arrays[o.arrays["weight"]].nbytes * 8 for o in convs)
    assert t["weight_bits"] <= t["weight_storage_bits"]
    assert t["ops"] == len(art.ops) and t["conv_ops"] == len(convs)
    env = bounds.op_envelopes(art)
    assert t["max_envelope_bits"] == max(bounds.worst_case_bits(v) for v in env.values())
    assert t["max_envelope_bits"] <= 54  # < 2^53 (§9)


def test_weight_bits_of_layer():
    from intsim.inspect import _weight_bits

    assert _weight_bits(np.array([-8, 7], np.int8)) == 4
    assert _weight_bits(np.array([-9, 7], np.int8)) == 5
    assert _weight_bits(np.array([8], np.int8)) == 5
    assert _weight_bits(np.array([0], np.int8)) == 1
    assert _weight_bits(np.array([-32768], np.int16)) == 16


def test_describe_encode_and_grid():
    art = make_random_artifact(1, realization="grid")
    d = describe(art)
    enc = [o for o in d["ops"] if o["op"] == "encode"]
    assert enc and all(o["codes"]["realization"] == "grid" for o in enc)
    for o in enc:
        cb = art.tensors[o["outputs"][0]["name"]].codebook
        assert o["codes"]["grid_bits"] == cb.grid_bits
        assert o["codes"]["grid_value_bits"] <= cb.grid_bits
    conv = next(o for o in d["ops"] if o["op"] == "conv2d")
    assert [a["name"] for a in conv["accumulators"]] == ["A"]


def test_describe_reloaded_has_sha(tmp_path, art):
    re = save_and_reload(art, tmp_path)
    d = describe(re)
    assert d["sha256"] == re.sha256 and len(d["sha256"]) == 64
    assert describe(art)["sha256"] is None


def test_format_inspect(art):
    d = describe(art)
    text = format_inspect(d)
    assert isinstance(text, str)
    lines = text.splitlines()
    assert lines[0].startswith("model: ")
    assert any(line.startswith("numerics: rounding=half_up") for line in lines)
    for o in art.ops:
        assert any(o.name in line and o.op in line for line in lines), o.name
    assert "totals:" in text and "ordered" in text
    # fixed width: every op row has the op column at the same offset
    header = next(line for line in lines if line.startswith("#"))
    col = header.index("op ")
    rows = [line for line in lines if line[:1].isdigit()]
    assert len(rows) == len(art.ops)
    assert all(r[col:].split()[0] in {o.op for o in art.ops} for r in rows)
    assert format_inspect(d) == text  # deterministic


def test_format_inspect_from_json_round_trip(art):
    d = json.loads(json.dumps(describe(art)))
    assert format_inspect(d) == format_inspect(describe(art))
