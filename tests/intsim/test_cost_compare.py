"""The comparison rows of the cost model (intsim/cost/model.py, intsim/cost/layer_policy.py): every
row is the scheme it names, whatever widths the artifact runs at, and fp32 on an integer array is
never faster than int8."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from intsim.artifact import Artifact, Numerics, save_artifact
from intsim_cli import EXIT_BAD_INPUT, EXIT_OK, main
from intsim.cost import compare_schemes, estimate_cost, load_accelerator
from intsim.cost.layer_policy import conv_roles, uniform_layer_bits
from intsim.engine import run
from intsim.validate import validate_artifact
from tests.artifact_factory import _Builder, _calibration_image


def uniform_artifact(bits: int = 8, metadata: dict | None = None) -> Artifact:
    """image → head conv → body conv → upsampler conv → pixel_shuffle → tail conv → image, every
    codebook and weight at ``bits`` (a W8A8 artifact by default)."""
    rng = np.random.default_rng(5)
    B = _Builder(rng, Numerics(realization="split"), _calibration_image(rng))
    x = B.image_in("head.image_in", "input")
    c = B.encode("head.enc", x, "uniform", bits)
    s = B.conv("head.conv", c, 8, wbits=bits)
    c = B.encode("body.enc", B.relu("body.relu", s), "relu2r", bits)
    s = B.conv("body.conv", c, 8, wbits=bits)
    c = B.encode("up.enc", B.relu("up.relu", s), "relu2r", bits)
    s = B.pixel_shuffle("up.shuffle", B.conv("up.conv", c, 12, wbits=bits), 2)
    c = B.encode("tail.enc", s, "signed2r", bits)
    B.image_out("tail.image_out", B.conv("tail.conv", c, 3, wbits=bits))
    art = Artifact(model={"name": f"w{bits}a{bits}"}, numerics=B.nx, inputs=("input",), outputs=("output",),
                   tensors=dict(B.tensors), ops=list(B.ops), arrays=dict(B.arrays), metadata=metadata or {})
    validate_artifact(art, "uniform_artifact")
    return art


@pytest.fixture(scope="module")
def w8a8_runs():
    art = uniform_artifact(8)
    im = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return art, [run(art, im, keep_tensors=False).counters]


def test_roles_from_the_graph_and_from_calibration_metadata():
    art = uniform_artifact(8)
    assert conv_roles(art) == {"head.conv": "head", "body.conv": "body", "up.conv": "upsampler",
                               "tail.conv": "tail"}
    # calib.export records each conv's role and the policy: those win over the graph's guess
    meta = {"layers": {n: {"role": "body"} for n in ("head.conv", "body.conv", "up.conv", "tail.conv")},
            "calibration": {"policy": {"high_roles": ["tail"], "high_bits": 6}}}
    tagged = uniform_artifact(8, meta)
    assert set(conv_roles(tagged).values()) == {"body"}
    meta["layers"]["tail.conv"]["role"] = "tail"
    bits = uniform_layer_bits(uniform_artifact(8, meta), 4, 4, "follow")
    assert bits == {"head.conv": (4, 4), "body.conv": (4, 4), "up.conv": (4, 4), "tail.conv": (6, 6)}


def test_uniform_bits_follow_the_scheme_not_the_artifact():
    art = uniform_artifact(8)
    follow = uniform_layer_bits(art, 4, 4, "follow")
    assert follow == {"head.conv": (8, 8), "body.conv": (4, 4), "up.conv": (8, 8), "tail.conv": (8, 8)}
    assert set(uniform_layer_bits(art, 4, 4, "all").values()) == {(4, 4)}
    # a wider scheme is not narrowed on the kept layers (max(high_bits, b), as calib's policy)
    assert set(uniform_layer_bits(art, 12, 12, "follow").values()) == {(12, 12)}
    with pytest.raises(ValueError, match="uniform_policy"):
        uniform_layer_bits(art, 4, 4, "some")


def test_w8a8_artifact_rows_are_the_schemes_they_name(w8a8_runs):
    art, counters = w8a8_runs
    by = {r["scheme"]: r for r in compare_schemes(art, counters, load_accelerator("edge_npu"))}
    assert by["W4A4"]["energy_uj"] < by["W8A8"]["energy_uj"] < by["fp32"]["energy_uj"]
    assert by["W4A4"]["conv_input_bits"] == [4, 8] and by["W8A8"]["conv_input_bits"] == [8]
    assert by["W4A4"]["weight_storage_kib"] < by["W8A8"]["weight_storage_kib"]
    every = {r["scheme"]: r for r in compare_schemes(art, counters, load_accelerator("edge_npu"),
                                                     uniform_policy="all")}
    assert every["W4A4"]["conv_input_bits"] == [4]
    assert every["W4A4"]["energy_uj"] < by["W4A4"]["energy_uj"]


@pytest.mark.parametrize("native", [(4, 4), (4, 8), (8, 8), (8, 16)])
def test_fp32_is_never_faster_than_int8(w8a8_runs, native):
    art, counters = w8a8_runs
    acc = replace(load_accelerator("edge_npu"), weight_bits=native[0], activation_bits=native[1])
    cost = {s: estimate_cost(art, counters, acc, s, uniform_policy="all") for s in ("fp32", "W8A8")}
    assert cost["fp32"]["totals"]["latency_s"] > cost["W8A8"]["totals"]["latency_s"]
    conv = next(l for l in cost["fp32"]["layers"] if l["kind"] == "conv")
    # the 24-bit significand products split over the native multipliers
    assert conv["multiplier"]["passes"] == -(-24 // native[0]) * -(-24 // native[1])


def test_cli_compare_rows_and_uniform_policy(w8a8_runs, tmp_path, capsys):
    art, counters = w8a8_runs
    path = tmp_path / "w8a8.intsim"
    sha = save_artifact(art, path)
    cfile = tmp_path / "c.json"
    cfile.write_text(json.dumps({"artifact_sha256": sha, "images": [{"counters": c} for c in counters]}))
    assert main(["cost", str(path), "--counters", str(cfile), "--compare", "--json"]) == EXIT_OK
    res = json.loads(capsys.readouterr().out)
    by = {r["scheme"]: r for r in res["compare"]}
    assert by["W4A4"]["energy_uj"] < by["W8A8"]["energy_uj"] < by["fp32"]["energy_uj"]
    assert res["uniform_policy"] == "follow" and by["W4A4"]["conv_input_bits"] == [4, 8]
    assert main(["cost", str(path), "--counters", str(cfile), "--compare", "--json",
                 "--uniform-policy", "all"]) == EXIT_OK
    res = json.loads(capsys.readouterr().out)
    assert {r["scheme"]: r for r in res["compare"]}["W4A4"]["conv_input_bits"] == [4]
    assert main(["cost", str(path), "--counters", str(cfile), "--compare"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "head/upsampler/tail" in out and "fp32" in out and "passes" in out
    assert main(["cost", str(path), "--counters", str(cfile), "--uniform-policy", "most"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("intsim: error: ") and "--uniform-policy" in err and len(err.strip().splitlines()) == 1


def test_roles_recorded_under_an_earlier_rule_are_reported():
    from intsim.cost.layer_policy import roles_unlike_the_rule

    roles = {"head.conv": "head", "body.conv": "body", "up.conv": "upsampler", "tail.conv": "tail"}
    assert roles_unlike_the_rule(uniform_artifact(8, {"layers": {n: {"role": r} for n, r in roles.items()}})) == {}
    assert roles_unlike_the_rule(uniform_artifact(8)) == {}  # nothing recorded: nothing to compare
    roles["up.conv"] = "body"  # as the rule before 2026-12-07 saw CARN-M's conv → ReLU → shuffle
    old = uniform_artifact(8, {"layers": {n: {"role": r} for n, r in roles.items()}})
    assert roles_unlike_the_rule(old) == {"up.conv": ("body", "upsampler")}
