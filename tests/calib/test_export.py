"""Calibrate a small EDSR on real LR images and export it (calib/calibrate.py, calib/export.py).

Data: two images of ``<data root>/data/Set5/LR_bicubic/X4`` (data root =
$INTSIM_DATA_ROOT or <repo>/../shared); every test here skips with the reason
when the folder is absent.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from calib.calibrate import LayerPolicy, calibrate_minmax, load_calibration_images, psnr
from calib.data_root import data_root
from calib.export import ExportError, export_artifact, stream_frac
from calib.export_codebook import check_codebook, encode_stream
from calib.export_fixedpoint import ENC_MULT_BITS
from calib.graph import UnsupportedOpError, capture
from calib.models.edsr import DIV2K_RGB_MEAN, EDSR
from calib.quant.fakequant import build_fakequant_model
from intsim.artifact import load_artifact, save_artifact
from tests.calib.artifact_ref import run_reference
from tests.op_harness import assert_network_bit_exact

LR_X4 = data_root() / "data" / "Set5" / "LR_bicubic" / "X4"
needs_data = pytest.mark.skipif(not LR_X4.is_dir(), reason=f"Set5 LR X4 images not found at {LR_X4} "
                                                           f"(set INTSIM_DATA_ROOT to the shared data folder)")
BITS = [(4, 4), (8, 8)]
REALIZATIONS = ["split", "grid"]


def sqnr_db(ref: torch.Tensor, x: torch.Tensor) -> float:
    ref, x = ref.double(), x.double()
    return 10 * math.log10(float((ref ** 2).mean()) / float(((ref - x) ** 2).mean()))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EDSR(4, n_resblocks=2, n_feats=16).eval()


@pytest.fixture(scope="module")
def images():
    if not LR_X4.is_dir():
        pytest.skip(f"Set5 LR X4 images not found at {LR_X4}")
    return load_calibration_images(LR_X4, 2, 48, 4, seed=0)


@pytest.fixture(scope="module")
def calibs(net, images):
    return {b: calibrate_minmax(net, images, *b) for b in BITS}


@pytest.fixture(scope="module")
def arts(net, calibs):
    return {(b, r): export_artifact(net, calibs[b], realization=r, model_meta={"name": "edsr_tiny"})
            for b in BITS for r in REALIZATIONS}


def _uint8(img: torch.Tensor) -> np.ndarray:
    return img.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------
# data


@needs_data
def test_calibration_images_are_deterministic():
    a = load_calibration_images(LR_X4, 3, 32, 4, seed=1)
    b = load_calibration_images(LR_X4, 3, 32, 4, seed=1)
    c = load_calibration_images(LR_X4, 3, 32, 4, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert all(x.shape == (3, 32, 32) and x.dtype == torch.float32 for x in a)
    assert 0 <= float(min(x.min() for x in a)) and float(max(x.max() for x in a)) <= 255
    # More patches than images: the folder is cycled.
    assert len(load_calibration_images(LR_X4, 7, 16, 4, seed=0)) == 7


def test_hr_folder_is_downsampled_with_matlab_bicubic():
    hr = data_root() / "data" / "Set5" / "HR"
    if not hr.is_dir() or not LR_X4.is_dir():
        pytest.skip(f"Set5 HR/LR not found under {data_root()}")
    # Whole images (patch=None): the LR made from HR equals the official LR file byte for byte.
    from calib.datasets import list_images, read_rgb

    ours = load_calibration_images(hr, 5, None, 4, seed=0)
    official = {tuple(read_rgb(p).shape[:2]): read_rgb(p) for p in list_images(LR_X4)}
    for t in ours:
        lr = _uint8(t)
        assert np.array_equal(lr, official[lr.shape[:2]])


def test_bad_calibration_input(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_calibration_images(tmp_path / "nope", 2, 16, 4, 0)
    with pytest.raises(ValueError, match="no images"):
        load_calibration_images(tmp_path, 2, 16, 4, 0)


# --------------------------------------------------------------------------
# calibration


@needs_data
def test_layer_policy_and_calibrated_ranges(calibs):
    cr = calibs[(4, 4)]
    bits = {n: (l.bits_w, l.bits_a) for n, l in cr.layers.items()}
    assert bits["head.0"] == bits["tail.0.0"] == bits["tail.0.2"] == bits["tail.1"] == (8, 8)
    assert {bits[n] for n in cr.layers if n.startswith("body")} == {(4, 4)}
    assert not cr.layers["body.0.body.2"].act.signed  # post-ReLU input: one-sided
    assert cr.layers["body.0.body.0"].act.signed
    head = cr.layers["head.0"].act  # sub_mean output: pixel − 255·mean
    assert -255 * max(DIV2K_RGB_MEAN) - 1 <= head.l < 0 < head.bp <= head.u <= 255
    assert cr.stream_absmax["image_in.out"] <= 255 * (1 - min(DIV2K_RGB_MEAN)) + 1e-3
    assert set(cr.stream_absmax) >= {"head.0.out", "body.0.add.out", "tail.0.1.out", "tail.1.out"}
    # Policy variants.
    all_b = LayerPolicy.parse("all")
    assert all_b.bits("head.0", "head", 4, 4) == (4, 4)
    assert LayerPolicy(overrides={"tail.1": (6, 6)}).bits("tail.1", "tail", 4, 4) == (6, 6)


@needs_data
def test_fakequant_model_close_to_float(net, calibs, images):
    """The float32 fake-quant model (unsnapped) against the float model: residual SQNR and output PSNR."""
    x = images[0][None]
    shift = net.add_mean.bias.view(1, 3, 1, 1)
    with torch.no_grad():
        ref = net(x)
        for b, min_sqnr in (((8, 8), 30.0), ((4, 4), 12.0)):
            out = build_fakequant_model(net, calibs[b])(x)
            assert sqnr_db(ref - shift, out - shift) > min_sqnr, b
            assert psnr(ref.clamp(0, 255).round(), out.clamp(0, 255).round()) > 35.0


def test_unsupported_model_refused_at_calibration():
    class Sig(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return torch.exp(self.c(x))

    with pytest.raises(UnsupportedOpError, match="exp"):
        calibrate_minmax(Sig(), [torch.rand(3, 8, 8)], 4, 4)


# --------------------------------------------------------------------------
# export


@needs_data
@pytest.mark.parametrize("b", BITS)
@pytest.mark.parametrize("r", REALIZATIONS)
def test_encoders_agree_with_codebooks(arts, b, r):
    """Encoding the snapped decoded value of every code (its stream integer, rounded down and up) returns that code."""
    from intsim.encoder import encode as intsim_encode

    art = arts[(b, r)]
    n = 0
    for op in art.ops:
        if op.op != "encode":
            continue
        cb = art.tensors[op.outputs[0]].codebook
        f_in = art.tensors[op.inputs[0]].frac
        assert check_codebook(cb, f_in, art.numerics.rounding) == []
        _, _, grid = cb.code_table()
        scale = Fraction(cb.unit_m) * Fraction(2) ** (f_in - cb.unit_e)
        for fn in (math.floor, math.ceil):
            X = np.array([fn(int(g) * scale) for g in grid], dtype=np.int64)
            codes, sats, _ = intsim_encode(X, cb, art.numerics.rounding)  # the engine's encoder agrees
            assert np.array_equal(codes, np.arange(cb.num_codes)) and sats == 0
            assert np.array_equal(encode_stream(cb, X, art.numerics.rounding)[0], codes)
        # Encoder multipliers as documented: E has ENC_MULT_BITS bits.
        assert all(2 ** (ENC_MULT_BITS - 1) <= e.mult <= 2 ** ENC_MULT_BITS and 0 <= e.shift <= 62 for e in cb.encoder)
        n += 1
    assert n == 9


@needs_data
@pytest.mark.parametrize("b", BITS)
@pytest.mark.parametrize("r", REALIZATIONS)
def test_artifact_valid_and_within_limits(arts, b, r):
    from intsim import bounds
    from intsim.validate import validate_artifact

    art = arts[(b, r)]
    validate_artifact(art)
    nx = art.numerics
    assert (nx.realization, nx.rounding, nx.overflow, nx.acc_bits, nx.stream_bits, nx.mult_bits) == \
        (r, "half_up", "saturate", 32, 24, 31)
    for op in art.ops:
        if op.op != "conv2d":
            continue
        cb = art.tensors[op.inputs[0]].codebook
        n = op.attrs["w_exp"] + cb.unit_e - art.tensors[op.outputs[0]].frac
        assert 0 <= n <= 62, op.name
        m_w = art.array(op, "w_mant")
        assert m_w.min() >= 1 and m_w.max() < 2 ** nx.mult_bits
        # Every rescale multiplier M_j = m_w·unit_m·(d_s | e_s | 1) fits mult_bits (§5.3) ...
        for acc in bounds.conv_accumulators(art, op):
            assert int(np.abs(acc.multiplier).max()) < 2 ** nx.mult_bits, (op.name, acc.name)
            assert acc.bits <= nx.acc_bits, (op.name, acc.name)  # no layer needs the ordered path here
        assert art.array(op, "weight").dtype == (np.int8 if art.metadata["layers"][op.name]["bits_w"] <= 8 else np.int16)
        if r == "split":
            assert cb.unit_m == 1 and cb.grid_bits is None
            assert 2 ** 7 <= min(s.step for s in cb.segments) <= 2 ** 16  # smallest step has 8–16 bits
        else:
            assert cb.grid_bits == min(16, art.metadata["layers"][op.name]["bits_a"] + 6)
            assert all(s.step >= 1 for s in cb.segments)
    # ... and every integer intermediate stays below 2^52 (one bit of margin under §9's 2^53).
    assert max(bounds.op_envelopes(art).values()) < 2 ** 52


@needs_data
def test_stream_fracs_follow_the_rule(arts, calibs):
    art = arts[((8, 8), "split")]
    absmax = calibs[(8, 8)].stream_absmax
    for t in ("image_in.out", "body.0.add.out", "add.out", "head.0.out"):
        assert art.tensors[t].frac == stream_frac(absmax[t], 24) == 22 - math.ceil(math.log2(1.25 * absmax[t]))
    # relu / pixel_shuffle keep their input frac (§6.6, §6.8).
    assert art.tensors["body.0.body.1.out"].frac == art.tensors["body.0.body.0.out"].frac
    assert art.tensors["tail.0.1.out"].frac == art.tensors["tail.0.0.out"].frac


@needs_data
def test_image_ops_fold_mean_shifts(arts):
    art = arts[((4, 4), "split")]
    op_in, op_out = art.ops[0], art.ops[-1]
    assert (op_in.op, op_out.op) == ("image_in", "image_out")
    f = art.tensors["image_in.out"].frac
    e = op_in.attrs["exp"]
    m, o = art.array(op_in, "mult"), art.array(op_in, "offset")
    assert np.all(m == 2 ** e)  # a = 1 for rgb_range 255
    for P in (0, 17, 255):
        x = (P * m + o) * 2.0 ** -e
        assert np.allclose(x, P - 255 * np.array(DIV2K_RGB_MEAN), atol=2.0 ** -f)
    assert e - f >= 0 and art.tensors["tail.1.out"].frac + op_out.attrs["exp"] >= 0
    mo, oo = art.array(op_out, "mult"), art.array(op_out, "offset")
    assert np.allclose(oo / mo, 255 * np.array(DIV2K_RGB_MEAN), atol=1e-5)


@needs_data
def test_metadata_records_real_params_and_snap_errors(arts, calibs):
    for (b, r), art in arts.items():
        assert art.model["bits"] == f"W{b[0]}A{b[1]}" and art.model["name"] == "edsr_tiny" and art.model["scale"] == 4
        cb = art.model["code_bits"]
        assert cb["head.0"] == 9 and cb["tail.1"] == 9  # 8-bit released: b + 1
        assert cb["body.0.body.0"] == b[1] + 1
        for name, lm in art.metadata["layers"].items():
            act = calibs[b].layers[name].act
            assert (lm["act"]["l"], lm["act"]["u"], lm["act"]["bp"]) == (act.l, act.u, act.bp)
            snap = lm["snap"]
            assert len(snap["step_rel_err"]) == len(lm["act"]["segments"])
            limit = 1e-2 if r == "split" else 0.5
            assert max(snap["step_rel_err"]) < limit and snap["weight_scale_rel_err_max"] < 1e-2
            assert art.tensors[f"{name}.codes"].codebook.code_bits == lm["code_bits"]
    import json

    json.dumps(arts[((4, 4), "grid")].graph_json(), allow_nan=False)  # strictly JSON-serialisable


@needs_data
@pytest.mark.parametrize("b", BITS)
@pytest.mark.parametrize("r", REALIZATIONS)
def test_snapped_artifact_close_to_fakequant_and_float(net, calibs, arts, images, b, r):
    """Reference execution of the snapped integer artifact vs the float model and the unsnapped fake-quant model."""
    art = arts[(b, r)]
    img = _uint8(images[0])
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None]
    shift = net.add_mean.bias.view(1, 3, 1, 1)
    with torch.no_grad():
        ref = net(x)
        fq = build_fakequant_model(net, calibs[b])(x)
    env = run_reference(art, img)
    t = art.tensors["tail.1.out"]
    tail = torch.from_numpy(env["tail.1.out"] * 2.0 ** -t.frac).permute(2, 0, 1)[None]
    min_fp = 30.0 if b == (8, 8) else 12.0
    assert sqnr_db(ref - shift, tail) > min_fp
    assert sqnr_db(fq - shift, tail) > (20.0 if r == "grid" else 25.0)  # the cost of snapping is small
    out = torch.from_numpy(env["output"].astype(np.float64)).permute(2, 0, 1)[None]
    assert psnr(ref.clamp(0, 255).round(), out) > 35.0


@needs_data
@pytest.mark.parametrize("b", BITS)
@pytest.mark.parametrize("r", REALIZATIONS)
def test_engine_runs_the_artifact(net, arts, images, b, r):
    """intsim.engine.run equals the reference execution on every tensor; the output is close to the float model."""
    try:
        from intsim.engine import run
    except ImportError as e:
        pytest.skip(f"intsim.engine not available: {e}")
    art = arts[(b, r)]
    img = _uint8(images[1])
    res = run(art, img)
    env = run_reference(art, img)
    for name, v in env.items():
        assert np.array_equal(np.asarray(res.tensors[name]).astype(np.int64), v.astype(np.int64)), name
    assert res.counters["totals"]["acc_overflow"] == 0 and res.counters["totals"]["stream_overflow"] == 0
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None]
    with torch.no_grad():
        ref = net(x).clamp(0, 255).round()
    out = torch.from_numpy(res.tensors["output"].astype(np.float64)).permute(2, 0, 1)[None]
    assert psnr(ref, out) > (40.0 if b == (8, 8) else 35.0)


@needs_data
def test_calibration_and_export_are_deterministic(net, images, arts):
    again = export_artifact(net, calibrate_minmax(net, images, 4, 4), realization="grid",
                            model_meta={"name": "edsr_tiny"})
    ref = arts[((4, 4), "grid")]
    assert again.graph_json() == ref.graph_json()


@needs_data
def test_save_and_load_round_trip(arts, tmp_path):
    art = arts[((4, 4), "split")]
    p = tmp_path / "edsr.intsim"
    digest = save_artifact(art, p)
    back = load_artifact(p)
    assert back.sha256 == digest
    assert [o.name for o in back.ops] == [o.name for o in art.ops]
    assert back.tensors["body.0.body.0.codes"].codebook == art.tensors["body.0.body.0.codes"].codebook
    assert all(np.array_equal(back.arrays[k], v) for k, v in art.arrays.items())


@needs_data
def test_other_numerics_and_options(net, calibs, images):
    cr = calibs[(4, 4)]
    from intsim.validate import validate_artifact

    for kw in ({"rounding": "floor"}, {"rounding": "half_even", "overflow": "wrap"}, {"stream_bits": 16},
               {"mult_bits": 16}, {"realization": "grid", "grid_bits": 12, "mult_bits": 12}, {"acc_bits": 24},
               {"stream_bits": 40}):
        art = export_artifact(net, cr, **kw)
        validate_artifact(art)
        for op in art.ops:
            if op.op == "encode":
                cb = art.tensors[op.outputs[0]].codebook
                assert check_codebook(cb, art.tensors[op.inputs[0]].frac, art.numerics.rounding) == [], kw
    # Per-channel weights and a folded constant factor (EDSR with res_scale 0.1).
    torch.manual_seed(1)
    net01 = EDSR(2, n_resblocks=2, n_feats=8, res_scale=0.1).eval()
    cr01 = calibrate_minmax(net01, images, 8, 8, {"per_channel_weights": True})
    art = export_artifact(net01, cr01)
    validate_artifact(art)
    assert art.metadata["layers"]["body.0.body.2"]["post_scale"] == pytest.approx(0.1)
    img = _uint8(images[0][:, :24, :24])
    x = torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None]
    with torch.no_grad():
        ref = net01(x).clamp(0, 255).round()
    out = torch.from_numpy(run_reference(art, img)["output"].astype(np.float64)).permute(2, 0, 1)[None]
    assert psnr(ref, out) > 40.0
    with pytest.raises(ValueError, match="realization"):
        export_artifact(net, cr, realization="lut")
    with pytest.raises(ValueError, match="grid_bits"):
        export_artifact(net, cr, realization="grid", grid_bits=20)
    with pytest.raises(ValueError, match="rounding"):
        export_artifact(net, cr, rounding="stochastic")
    with pytest.raises(ExportError, match="layer 'head.0'.*multiplier"):
        export_artifact(net, cr, mult_bits=8)


@pytest.mark.parametrize("realization,bits", [("split", (8, 8)), ("grid", (4, 4))])
def test_all_ops_toy_model_golden_equals_intsim(realization, bits):
    """Every op beyond EDSR's (see tests/calib/test_graph.py::_AllOps) exports and runs bit-exactly."""
    import numpy as np

    from tests.calib.test_graph import _AllOps

    torch.manual_seed(0)
    m = _AllOps().eval()
    g = capture(m, rgb_range=1.0)
    cal = calibrate_minmax(m, [torch.rand(3, 12, 12) for _ in range(3)], *bits, graph=g)
    art = export_artifact(m, cal, realization=realization, model_meta={"name": "toy", "scale": 2})
    img = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    res = assert_network_bit_exact(art, img)
    assert res.tensors["output"].shape == (18, 22, 3)
