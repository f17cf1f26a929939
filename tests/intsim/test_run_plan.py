"""The engine's resolved schedule (intsim.run_plan) and per-op calls (op_dispatch.conv_call): built once
per artifact and input shape, rebuilt for another shape or an edited graph, and a run through a reused
plan gives the bits of a run on a freshly built artifact (nothing cached between them)."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from intsim import op_dispatch as dispatch
from intsim import run_plan as rp
from intsim.engine import run
from tests.intsim.test_engine import build_artifact, image

ROOT = Path(__file__).resolve().parents[2]
QDIR = Path(os.environ.get("INTSIM_QUALITY_DIR", ROOT / "results" / "quality"))
DATA = Path(os.environ.get("INTSIM_DATA_ROOT", ROOT.parent / "shared"))
BABY = DATA / "data" / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"


@pytest.fixture
def builds(monkeypatch) -> list[tuple]:
    """Every build_run_plan call as ``(in_shape, fuse)``."""
    seen = []
    real = rp.build_run_plan

    def spy(art, in_shape, fuse):
        seen.append((tuple(in_shape), fuse))
        return real(art, in_shape, fuse)

    monkeypatch.setattr(rp, "build_run_plan", spy)
    return seen


def assert_same_result(a, b):
    assert set(a.tensors) == set(b.tensors)
    for t in a.tensors:
        assert a.tensors[t].dtype == b.tensors[t].dtype and np.array_equal(a.tensors[t], b.tensors[t]), t
    assert a.counters == b.counters


def test_plan_reused_for_the_same_shape_rebuilt_for_another(builds):
    art = build_artifact()
    small, large = image(h=6, w=5), image(seed=2, h=9, w=7)
    run(art, small, keep_tensors=False)
    run(art, image(seed=3, h=6, w=5), keep_tensors=False)  # other pixels, same shape: same plan
    assert builds == [((6, 5, 3), True)]
    plan = rp.run_plan(art, (6, 5, 3), True)
    assert plan is rp.run_plan(art, (6, 5, 3), True) and plan.in_shape == (6, 5, 3) and plan.fuse
    run(art, large, keep_tensors=False)
    assert builds[-1] == ((9, 7, 3), True)
    run(art, small)  # kept tensors: the unfused schedule, its own plan
    assert builds[-1] == ((6, 5, 3), False)
    n = len(builds)
    run(art, small, keep_tensors=False)
    run(art, large, keep_tensors=False)
    run(art, small)
    assert len(builds) == n  # each (shape, mode) built once
    assert rp.run_plan(art, (9, 7, 3), True) is not plan


def test_plan_follows_an_edited_op_list(builds):
    art = build_artifact()
    run(art, image(), keep_tensors=False)
    art.ops[3] = replace(art.ops[3])  # an equal op, another object: the plan must not be served stale
    run(art, image(), keep_tensors=False)
    assert len(builds) == 2
    art.ops[3] = replace(art.ops[3], op="gelu")
    with pytest.raises(ValueError, match="gelu"):
        run(art, image(), keep_tensors=False)


def test_releases_are_the_last_readers():
    art = build_artifact()
    plan = rp.run_plan(art, (6, 5, 3), True)
    last = {}
    for i, op in enumerate(art.ops):
        for t in op.inputs:
            last[t] = i
    released = [t for s in plan.steps for t in s.release]
    assert len(released) == len(set(released))
    assert set(released) == {t for t in last if t not in art.outputs}
    for i, s in enumerate(plan.steps):
        assert all(last[t] == i for t in s.release) and s.op is art.ops[i]


@pytest.mark.parametrize("keep", [True, False])
def test_reused_plan_gives_the_bits_of_a_fresh_run(keep):
    art = build_artifact()
    imgs = [image(seed=s, h=h, w=w) for s, (h, w) in enumerate([(6, 5), (9, 7), (6, 5), (9, 7), (6, 5)])]
    for img in imgs:  # interleaved shapes: every run after the second of a shape reuses its plan
        assert_same_result(run(art, img, keep_tensors=keep), run(build_artifact(), img, keep_tensors=keep))


def test_conv_call_resolved_once_and_follows_replaced_arrays():
    art = build_artifact()
    conv = next(op for op in art.ops if op.op == "conv2d")
    c = dispatch.conv_call(art, conv)
    assert dispatch.conv_call(art, conv) is c
    name = conv.arrays["bias"]
    art.arrays[name] = art.arrays[name] + 1  # a new array object: a new call, with it
    c2 = dispatch.conv_call(art, conv)
    assert c2 is not c and c2.bias is art.arrays[name]
    assert_same_result(run(art, image()), run(art, image()))


def test_conv_call_refuses_a_kernel_that_does_not_match_the_weights():
    art = build_artifact()
    i, conv = next((i, op) for i, op in enumerate(art.ops) if op.op == "conv2d")
    art.ops[i] = replace(conv, attrs={**conv.attrs, "kernel": [5, 5]})
    with pytest.raises(ValueError, match="attrs kernel"):
        run(art, image())


@pytest.mark.parametrize("bits", ["w4a4", "w8a8"])
def test_real_artifact_second_run_equals_a_fresh_load(bits):
    """On a real two-region artifact (int8 path, sparse and dense tails, fused groups): the second
    run of a shape and a run of another shape in between equal runs on freshly loaded copies."""
    from intsim.artifact import load_artifact
    from intsim.images import read_image

    path = QDIR / f"imdn_4_{bits}_default.intsim"
    if not path.is_file() or not BABY.is_file():
        pytest.skip(f"no default-calibration artifact {path} or Set5 image {BABY}")
    px = read_image(BABY, 3).pixels
    art = load_artifact(path)
    for crop in (px[:16, :16], px[40:77, 10:63], px[64:80, 64:80], px[:16, :16]):
        for keep in (False, True):
            assert_same_result(run(art, crop, keep_tensors=keep), run(load_artifact(path), crop, keep_tensors=keep))


@pytest.mark.parametrize("overflow", ["wrap", "saturate", "error"])
def test_staged_concat_drops_its_inputs_early_with_the_same_result(overflow, monkeypatch):
    """A concat fused with its encode takes each input's codes right after the op that makes it
    (run_plan module docstring): the int64 input is freed then, before the next op runs (no name of
    the engine's loop keeps it), and the output and counters are the op-by-op run's. Under 'error'
    the concat is not staged (its numpy form names an overflowing value): the input lives until it."""
    import weakref

    from intsim.numerics import Numerics
    from tests.intsim.test_engine import encode_fusion_artifact

    made, alive_at_gap, cat_codes = [], [], []
    conv, pool = dispatch.OPS["conv2d"], dispatch.OPS["mean_pool"]

    def conv_spy(art_, op, xs, **kw):
        out = conv(art_, op, xs, **kw)
        if op.name == "convA":
            made.append(weakref.ref(out[0][0]))
        if op.name == "convC":
            cat_codes.append(np.asarray(xs[0]).dtype)
        return out

    def pool_spy(art_, op, xs):  # "gap" runs right after convA
        alive_at_gap.append(made[-1]() is not None)
        return pool(art_, op, xs)

    monkeypatch.setitem(dispatch.OPS, "conv2d", conv_spy)  # before the plans take their adapters
    monkeypatch.setitem(dispatch.OPS, "mean_pool", pool_spy)
    art = encode_fusion_artifact(Numerics(rounding="half_even", overflow=overflow, stream_bits=24), False)
    img = image(seed=4, h=96, w=64)
    plan = rp.run_plan(art, img.shape, True)
    by = {s.op.name: s for s in plan.steps}
    assert [(c.name, k) for c, _, k in by["convA"].stage] == [("catE", 0)]
    assert [(c.name, k) for c, _, k in by["convM"].stage] == [("catE", 1)]
    assert by["convA"].early == (("xa", "catE"),) and by["convM"].early == (("xm", "catE"),)
    assert not any(s.stage or s.early for s in rp.run_plan(art, img.shape, False).steps)

    full = run(art, img)
    alive_at_gap.clear()
    cat_codes.clear()
    lean = run(art, img, keep_tensors=False)
    assert alive_at_gap == [overflow == "error"]
    # the staged codes are written into one array as the inputs come (no join) and held in one byte
    # each (≤ 256 codes); unstaged, the concat's encode makes them in the codebook's int16
    assert art.tensors["cC"].codebook.num_codes <= 256
    assert cat_codes == [np.dtype(np.int16) if overflow == "error" else np.dtype(np.uint8)]
    np.testing.assert_array_equal(lean.tensors["output"], full.tensors["output"])
    assert lean.counters == full.counters
    assert full.counters["ops"]["encC"]["saturations"] >= 0 and sum(full.counters["ops"]["encC"]["code_histogram"])


@pytest.mark.parametrize("stream_bits, compact", [(24, np.int32), (31, np.int32), (32, np.int64), (40, np.int64)])
def test_fused_run_holds_intermediate_streams_compact(stream_bits, compact, monkeypatch):
    """Issue 24 (peak memory): a run that keeps no intermediates holds every stream that is no graph output
    in ``numerics.stream_dtype`` (int32 below 32 stream bits) from its producer to its last reader, so
    each op reads it so; a run that keeps every tensor, and every graph output, gets int64 as before.
    The integers are the same either way."""
    from intsim.numerics import Numerics

    art = build_artifact(Numerics(stream_bits=stream_bits))
    seen: dict[str, np.dtype] = {}
    for name, adapter in list(dispatch.OPS.items()):
        def spy(a, op, xs, *rest, _adapter=adapter, **kw):
            for t, x in zip(op.inputs, xs):
                if a.tensors[t].kind == "stream":
                    seen[t] = np.asarray(x).dtype
            return _adapter(a, op, xs, *rest, **kw)
        monkeypatch.setitem(dispatch.OPS, name, spy)
    img = image(h=9, w=7)
    fused = run(art, img, keep_tensors=False)
    assert seen and all(dt == compact for dt in seen.values()), seen
    plan = rp.run_plan(art, img.shape, True)
    assert {dt for s in plan.steps for dt in s.store if dt is not None} == {np.dtype(compact)}
    seen.clear()
    kept = run(build_artifact(Numerics(stream_bits=stream_bits)), img, keep_tensors=True)
    assert seen and all(dt == np.int64 for dt in seen.values()), seen
    assert all(v.dtype == np.int64 for t, v in kept.tensors.items() if art.tensors[t].kind == "stream")
    for t in art.outputs:
        assert np.array_equal(fused.tensors[t], kept.tensors[t]) and fused.tensors[t].dtype == kept.tensors[t].dtype


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "floor"])
@pytest.mark.parametrize("overflow", ["saturate", "wrap", "error"])
@pytest.mark.parametrize("realization", ["split", "grid"])
def test_conv_rows_go_into_pixel_shuffle_and_relu_with_their_encodes(rounding, overflow, realization, monkeypatch):
    """Issue 24 (peak memory): a conv whose output only a pixel_shuffle feeding one encode reads (an
    upsampler: EDSR's ×4 tail held 1 GiB of conv output and as much shuffled at a 512² input), or only a
    relu feeding one encode (not under 'error'), hands its rows over as it makes them: neither op runs on its own, and the
    output and every counter are the op-by-op run's (the random artifact has both groups: ``up.conv →
    up.shuffle → up.enc2`` and ``att.conv1 → att.relu → att.enc2``). Codes of ≤ 256 codes are held in
    uint8 by the shuffle's encode."""
    from intsim import fusion, ops
    from intsim.artifact import Artifact
    from intsim.overflow import EngineOverflowError
    from intsim.kernels import resample as resample_kernels
    from tests.artifact_factory import make_random_artifact

    monkeypatch.setattr(ops, "KERNEL_MIN_SIZE", 0)  # the kernels and the int8 path on a small image
    monkeypatch.setattr(fusion, "SINK_MIN_SIZE", 0)  # the sinks too (by default from 2^18 output elements)
    ran: list[str] = []
    for name in ("pixel_shuffle", "relu"):
        def spy(a, op, xs, *rest, _adapter=dispatch.OPS[name], **kw):
            ran.append(op.name)
            return _adapter(a, op, xs, *rest, **kw)
        monkeypatch.setitem(dispatch.OPS, name, spy)
    sinks: list = []
    made = resample_kernels.ShuffleEncodeSink

    class Spy(made):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            sinks.append(self)

    monkeypatch.setattr(resample_kernels, "ShuffleEncodeSink", Spy)
    for seed in (3, 8):
        art: Artifact = make_random_artifact(seed, realization=realization, rounding=rounding, overflow=overflow,
                                             stream_bits=20)
        img = image(seed=seed, h=13, w=11)
        try:
            full = run(art, img)
        except EngineOverflowError as e:
            with pytest.raises(EngineOverflowError, match=str(e.args[0])[:30]):
                run(art, img, keep_tensors=False)
            continue
        ran.clear()
        sinks.clear()
        lean = run(art, img, keep_tensors=False)
        np.testing.assert_array_equal(lean.tensors["output"], full.tensors["output"])
        assert lean.counters == full.counters
        # body.relu: two readers; under 'error' the slope ops run on their own (their numpy op names a value)
        assert "up.shuffle" not in ran and ("att.relu" in ran) == (overflow == "error") and "body.relu" in ran
        assert len(sinks) == 1 and sinks[0].codes.dtype == art.tensors["up.enc2.codes"].codebook.held_code_dtype
        monkeypatch.setattr(fusion, "SINK_MIN_SIZE", 1 << 18)  # this image's convs are far below it:
        ran.clear()  # every op on its own, the same result
        small = run(art, img, keep_tensors=False)
        assert "up.shuffle" in ran and "att.relu" in ran and small.counters == full.counters
        np.testing.assert_array_equal(small.tensors["output"], full.tensors["output"])
        monkeypatch.setattr(fusion, "SINK_MIN_SIZE", 0)
