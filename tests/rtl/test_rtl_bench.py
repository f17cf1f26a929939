"""The reference RTL (rtl/*.sv) cosimulated with cocotb + Icarus Verilog against intsim (docs/rtl.md):
every conv and encode layer of the test model bit-exact (split and grid), synthetic layers in every
rounding mode × saturate/wrap with ties, maximal accumulators and breakpoint edges, and planted RTL
bugs that `intsim compare` names. `make rtl-test` (and .ci/run) installs Icarus and cocotb."""
from __future__ import annotations

import numpy as np
import pytest

from intsim.artifact import load_artifact, save_artifact
from intsim.encoder import encode
from intsim.layer_cases import config_svh
from intsim.ops.conv import conv2d, conv_transpose2d
from intsim.rounding import RoundingMode
from rtl.bench import cosim
from tests.artifact_factory import make_random_artifact
from tests.intsim.test_verify import engine_golden
from tests.rtl import edge_cases

try:
    cosim.check_tools()
    MISSING = None
except cosim.SimulatorMissing as e:
    MISSING = str(e)
needs_sim = pytest.mark.skipif(MISSING is not None, reason=f"{MISSING} (make rtl-test installs it)")
CROP = (8, 8)


def test_config_svh_is_current():
    assert (cosim.RTL / "tb" / "config_fields.svh").read_text() == config_svh()


def test_rtl_rounding_modes_fit_isim_round():
    # isim_round.sv takes the RoundingMode value on a 2-bit input: every mode the RTL declares is a
    # RoundingMode member whose value fits it, named in the RTL's own comment
    sv = (cosim.RTL / "isim_round.sv").read_text()
    for m in cosim.RTL_ROUNDINGS:
        v = int(RoundingMode.parse(m))
        assert 0 <= v < 4 and f"{v} {m}" in sv


def test_rtl_paths_refuse_a_mode_the_rtl_lacks(tmp_path, monkeypatch):
    # without the simulator: the refusal comes before the tools are needed
    monkeypatch.setattr(cosim, "RTL_ROUNDINGS", ("half_up", "half_away", "half_even"))
    save_artifact(make_random_artifact(0, rounding="floor"), tmp_path / "m.intsim")
    with pytest.raises(ValueError, match=r"rounding mode 'floor' is not implemented by the reference RTL"):
        cosim.run_cosim(tmp_path / "m.intsim", tmp_path / "g", tmp_path / "out")
    case, _ = edge_cases.encoder_edges("floor")
    with pytest.raises(ValueError, match=r"layer case enc_edges_floor_split: rounding mode 'floor'"):
        cosim.run_cases([case], tmp_path / "cases")


def test_rtl_refuses_half_zero_artifact(tmp_path):
    # a §2 mode the RTL lacks: one error naming it, no simulation with a truncated mode number
    save_artifact(make_random_artifact(0, rounding="half_zero"), tmp_path / "m.intsim")
    with pytest.raises(ValueError, match=r"rounding mode 'half_zero' is not implemented by the reference RTL"):
        cosim.run_cosim(tmp_path / "m.intsim", tmp_path / "g", tmp_path / "out")
    assert cosim.main([str(tmp_path / "m.intsim"), str(tmp_path / "g"), "-o", str(tmp_path / "o2")]) == 2


@pytest.fixture(scope="module", params=["split", "grid"])
def model(request, tmp_path_factory):
    """The repo's test model (tests/artifact_factory.py: every op, incl. stride, dilation, groups, int16
    weights and a transposed conv) on one 8×8 crop, with an engine golden."""
    d = tmp_path_factory.mktemp(f"rtl_{request.param}")
    save_artifact(make_random_artifact(0, realization=request.param), d / "m.intsim")
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (*CROP, 3), dtype=np.uint8)
    engine_golden(load_artifact(d / "m.intsim"), d / "g", [("crop.png", img)])
    return d


@needs_sim
def test_every_layer_of_the_test_model_is_bit_exact(model, tmp_path):
    art = load_artifact(model / "m.intsim")
    r = cosim.run_cosim(model / "m.intsim", model / "g", tmp_path / "cos")
    layers = [op for op in art.ops if op.op in ("conv2d", "conv_transpose2d", "encode")]
    assert r.report.ok, r.report.format()
    assert r.event_mismatches == [] and r.events_compared == 3 * 16  # §7 counters of every layer
    assert r.report.compared_tensors == len(layers) == r.jobs == 16
    assert {t["op"] for t in r.report.tensors} == {op.name for op in layers}
    assert sum(t["compared"] for t in r.report.tensors) == r.outputs > 10000  # every output of every layer


@needs_sim
def test_synthetic_modes_ties_and_edges(tmp_path):
    cases = edge_cases.all_cases()
    # the edges are really there: ties of both signs, stream and accumulator overflows, encoder saturations
    convs = [st for c, st in cases if c.op.startswith("conv_ties")]
    assert len(convs) == 4 * len(cosim.RTL_ROUNDINGS) and all(st["ties"] > 0 and st["negative_ties"] > 0 and st["stream_overflow"] > 0
                                    for st in convs)
    assert all(st["acc_overflow"] > 0 for c, st in cases if c.op.startswith("conv_maxacc"))
    assert all(st["ties"] > 0 for c, st in cases if c.op.endswith("_pow2"))
    modes = {(c.config["rounding"], c.config["overflow"]) for c, _ in cases if c.op_type == "conv2d"}
    assert modes == {(int(RoundingMode.parse(m)), p) for m in cosim.RTL_ROUNDINGS for p in (1, 2)}
    got = cosim.run_cases([c for c, _ in cases], tmp_path / "syn")
    for (case, st), (g, events) in zip(cases, got):
        assert events == st["events"], (case.op, events, st["events"])  # overflow and saturation counts (§7)
        exp = case.arrays["expected"]
        bad = np.flatnonzero(exp.reshape(-1) != g.reshape(-1))
        assert bad.size == 0, f"{case.op}: {bad.size} mismatches, first at {bad[0]}: " \
                              f"expected {exp.reshape(-1)[bad[0]]}, got {g.reshape(-1)[bad[0]]}"


def _floor_first_mismatch(art, golden):
    """Where an RTL whose half_up rounds down (PLANT_BUG_FLOOR) must first differ: each layer fed the
    golden's input and recomputed by intsim with floor rounding, in graph order."""
    from dataclasses import replace

    floor = replace(art.numerics, rounding="floor")
    for op in art.ops:
        if op.op not in ("conv2d", "conv_transpose2d", "encode"):
            continue
        x, want = golden.tensor(0, op.inputs[0]), golden.tensor(0, op.outputs[0])
        if op.op == "encode":
            got = encode(x, art.tensors[op.outputs[0]].codebook, "floor")[0]
        else:
            a = op.attrs
            kw = dict(w_exp=a["w_exp"], f_out=art.tensors[op.outputs[0]].frac, stride=a.get("stride", (1, 1)),
                      padding=a.get("padding", (0, 0)), numerics=floor, path="reference")
            if op.op == "conv2d":
                kw |= dict(dilation=a.get("dilation", (1, 1)), groups=a.get("groups", 1))
                f = conv2d
            else:
                kw |= dict(output_padding=a.get("output_padding", (0, 0)))
                f = conv_transpose2d
            got = f(x, art.tensors[op.inputs[0]].codebook, art.array(op, "weight"), art.array(op, "w_mant"),
                    art.array(op, "bias"), **kw)[0]
        diff = np.flatnonzero(want.reshape(-1).astype(np.int64) != got.reshape(-1))
        if diff.size:
            idx = [int(v) for v in np.unravel_index(int(diff[0]), want.shape)]
            return {"op": op.name, "tensor": op.outputs[0], "index": idx, "expected": int(want.reshape(-1)[diff[0]]),
                    "got": int(got.reshape(-1)[diff[0]])}
    return None


@needs_sim
def test_planted_floor_bug_is_named_by_compare(model, tmp_path, capsys):
    from intsim.golden_dir import read_golden_dir
    from intsim_cli.main import main

    art = load_artifact(model / "m.intsim")
    assert art.numerics.rounding == "half_up"
    want = _floor_first_mismatch(art, read_golden_dir(model / "g"))
    assert want is not None
    r = cosim.run_cosim(model / "m.intsim", model / "g", tmp_path / "bug", defines={"PLANT_BUG_FLOOR": 1})
    assert not r.report.ok
    assert r.report.first == {"input": 0, **want}
    # the command line names the same layer, tensor and index from the bug's dumps, and exits 1
    assert main(["compare", str(model / "g"), str(tmp_path / "bug" / "dumps")]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert f"op {want['op']} tensor {want['tensor']} index {tuple(want['index'])}" in line


@needs_sim
def test_planted_threshold_bug_is_caught_at_the_breakpoints(tmp_path):
    case, _ = edge_cases.encoder_edges("half_up")
    got = cosim.run_cases([case], tmp_path / "thr", defines={"PLANT_BUG_THRESHOLD": 1})[0][0].reshape(-1)
    x = case.arrays["input"].reshape(-1)
    bad = set(np.flatnonzero(got != case.arrays["expected"].reshape(-1)).tolist())
    at_u = {i for i, v in enumerate(x) if v in (case.config["thr0"], case.config["thr1"])}
    assert at_u and bad == at_u  # exactly the inputs equal to a threshold go to the next segment


@needs_sim
@pytest.mark.parametrize("unit", ["round", "overflow"])
def test_blocks_match_intsim_value_by_value(unit, tmp_path):
    cosim.run_unit(unit, tmp_path)


@needs_sim
def test_unit_bench_catches_the_planted_floor(tmp_path):
    with pytest.raises(RuntimeError, match="failed"):
        cosim.run_unit("round", tmp_path, defines={"PLANT_BUG_FLOOR": 1})


@needs_sim
def test_requantizer_alone_on_exported_accumulators(model, tmp_path):
    """Requant cases: each conv's exported accumulators, multipliers, bias and shift through
    isim_requant alone reproduce the golden output (the requantizer isolated from the MAC)."""
    r = cosim.run_cosim(model / "m.intsim", model / "g", tmp_path / "rq", requant_only=True)
    assert r.report.ok, r.report.format()
    assert r.report.compared_tensors == 8 and all(t["op"] != "encode" for t in r.report.tensors)


def _imdn_inputs():
    """IMDN ×4 W4A4 (the default calibration) and Set5 baby ×4 LR, or why they are absent."""
    import os
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    art = Path(os.environ.get("INTSIM_RTL_IMDN", repo / "results" / "quality" / "imdn_4_w4a4_default.intsim"))
    root = Path(os.environ.get("INTSIM_DATA_ROOT", "").strip() or repo.parent / "shared")
    lr = root / "data" / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"
    if not art.is_file():
        return None, f"no IMDN x4 W4A4 artifact at {art} (calibrate it, or set INTSIM_RTL_IMDN)"
    if not lr.is_file():
        return None, f"needs the data root ({lr} is absent; set INTSIM_DATA_ROOT)"
    return (art, lr), None


@needs_sim
def test_imdn_x4_every_conv_layer_on_a_set5_crop(tmp_path):
    """With the data root: every conv and encode layer of IMDN ×4 W4A4 on an 8×8 crop of Set5 baby,
    one output row and every 8th channel of each layer (docs/rtl.md has the full-row run)."""
    found, why = _imdn_inputs()
    if found is None:
        pytest.skip(why)
    from PIL import Image

    art_path, lr = found
    with Image.open(lr) as im:
        crop = np.asarray(im.convert("RGB"), dtype=np.uint8)[64:72, 64:72].copy()
    art = load_artifact(art_path)
    engine_golden(art, tmp_path / "g", [("babyx4_crop64.png", crop)])
    r = cosim.run_cosim(art_path, tmp_path / "g", tmp_path / "cos", region=cosim.Region(rows=1, channel_step=8))
    convs = [op.name for op in art.ops if op.op in ("conv2d", "conv_transpose2d")]
    assert r.report.ok, r.report.format()
    assert len(convs) == 46 and set(convs) <= {t["op"] for t in r.report.tensors}
