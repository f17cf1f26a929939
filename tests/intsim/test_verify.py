"""verify(): engine vs stored golden tensors (docs/arithmetic.md).

The first tests are torch-free: the golden set is written from an engine run
and then altered. The last ones (skipped without torch) write the golden set
with golden/ (torch float64 fake-quant) and require exact agreement.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from intsim.artifact import (
    Artifact,
    Codebook,
    EncoderStage,
    Numerics,
    OpSpec,
    Segment,
    TensorSpec,
    array_sha256,
)
from intsim.engine import run
from intsim.golden_dir import (
    GoldenError,
    read_golden_dir,
    storage_dtypes,
    tensor_ops_of,
)
from intsim.golden_stream import write_golden_dir
from intsim.rounding import RoundingMode
from intsim.verification import verify

KEYS = ("acc_overflow", "stream_overflow", "saturations")


def codebook(grid_bits=12) -> Codebook:
    """Signed two-region codebook on a stream of frac 8 (u = 2^-8 = one stream unit), bp = 2."""
    segs = (Segment(-512, 96, -8, -1), Segment(0, 73, -7, 7), Segment(512, 96, 1, 8))
    enc = (EncoderStage(-512, 10923, 20), EncoderStage(0, 14364, 20), EncoderStage(512, 10923, 20))
    return Codebook(1, 8, segs, (-513, 512), enc, grid_bits=grid_bits, allocation="released", bits=4)


def sigmoid_lut(k_lut, f_o, imin, imax):
    import math

    return np.array([math.floor(2**f_o / (1 + math.exp(-i / 2**k_lut)) + 0.5) for i in range(imin, imax + 1)],
                    np.int32)


def make_artifact(numerics: Numerics, seed=0) -> Artifact:
    """A small graph touching every op type of docs/artifact.md."""
    rng = np.random.default_rng(seed)
    cb = codebook()

    def S(n, c, f=8):
        return TensorSpec(n, "stream", c, frac=f)

    def Cd(n, c):
        return TensorSpec(n, "codes", c, codebook=cb)

    tensors = [TensorSpec("img", "image", 3), S("x0", 3), Cd("c0", 3), S("x1", 8), S("x2", 8), Cd("c1", 8),
               S("x3", 8), S("x4", 8, 7), S("x5", 16), S("x6", 10), S("x7", 6), S("g0", 10), S("g1", 10, 12),
               S("s0", 10), S("x8", 10), S("x9", 10), Cd("c2", 10), S("x10", 12), S("x11", 12), S("x12", 3),
               S("x13", 6), S("x14", 6), TensorSpec("out", "image", 3)]
    arrays = {}

    def conv_arrays(name, co, kh, kw, ci):
        w = rng.integers(-5, 6, size=(co, kh, kw, ci)).astype(np.int8)
        w[0] = 5  # one all-positive channel: large accumulators when acc_bits is small
        arrays[f"{name}.w"] = w
        arrays[f"{name}.m"] = rng.integers(1, 9, size=co).astype(np.int64)
        arrays[f"{name}.b"] = rng.integers(-3000, 3000, size=co).astype(np.int64)
        return {"weight": f"{name}.w", "w_mant": f"{name}.m", "bias": f"{name}.b"}

    arrays.update({"in.m": np.full(3, 16, np.int64), "in.o": np.full(3, -2048, np.int64),
                   "out.m": np.full(3, 255, np.int64), "out.o": np.full(3, 128 * 16, np.int64),
                   "pr.m": rng.integers(1000, 90000, size=10).astype(np.int64),
                   "sg.lut": sigmoid_lut(4, 12, -128, 127)})
    ops = [
        OpSpec("in", "image_in", ("img",), ("x0",), {"exp": 8}, {"mult": "in.m", "offset": "in.o"}),
        OpSpec("enc0", "encode", ("x0",), ("c0",)),
        OpSpec("conv0", "conv2d", ("c0",), ("x1",), {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1],
                                                     "dilation": [1, 1], "groups": 1, "w_exp": 8},
               conv_arrays("conv0", 8, 3, 3, 3)),
        OpSpec("act", "leaky_relu", ("x1",), ("x2",), {"mult": 3277, "shift": 16}),
        OpSpec("enc1", "encode", ("x2",), ("c1",)),
        OpSpec("conv1", "conv2d", ("c1",), ("x3",), {"kernel": [3, 3], "stride": [1, 1], "padding": [2, 2],
                                                     "dilation": [2, 2], "groups": 2, "w_exp": 9},
               conv_arrays("conv1", 8, 3, 3, 4)),
        OpSpec("res", "add", ("x3", "x1"), ("x4",)),
        OpSpec("cat", "concat", ("x4", "x2"), ("x5",)),
        OpSpec("spl", "split", ("x5",), ("x6", "x7"), {"sizes": [10, 6]}),
        OpSpec("mp", "mean_pool", ("x6",), ("g0",), {"shift": 16}),
        OpSpec("sg", "lut", ("g0",), ("g1",), {"fn": "sigmoid", "lut_exp": 4, "imin": -128, "imax": 127}, {"lut": "sg.lut"}),
        OpSpec("sp", "std_pool", ("x6",), ("s0",), {"shift": 16, "pre_shift": 2}),
        OpSpec("mul", "mul", ("x6", "g1"), ("x8",)),
        OpSpec("pr", "prelu", ("x8",), ("x9",), {"shift": 16}, {"mult": "pr.m"}),
        OpSpec("enc2", "encode", ("x9",), ("c2",)),
        OpSpec("up", "conv_transpose2d", ("c2",), ("x10",), {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1],
                                                            "output_padding": [1, 1], "w_exp": 8},
               conv_arrays("up", 12, 3, 3, 10)),
        OpSpec("bil", "upsample_bilinear", ("x10",), ("x11",), {"factor": 3, "mult": 7282, "shift": 18}),
        OpSpec("shuf", "pixel_shuffle", ("x11",), ("x12",), {"factor": 2}),
        OpSpec("nn", "upsample_nearest", ("x7",), ("x13",), {"factor": 2}),
        OpSpec("rl", "relu", ("x13",), ("x14",)),
        OpSpec("out", "image_out", ("x12",), ("out",), {"exp": 4}, {"mult": "out.m", "offset": "out.o"}),
    ]
    art = Artifact(model={"name": "verify-test"}, numerics=numerics, inputs=("img",), outputs=("out", "s0", "x14"),
                   tensors={t.name: t for t in tensors}, ops=ops, arrays=arrays)
    art.sha256 = array_sha256(np.frombuffer(json.dumps(art.graph_json(), sort_keys=True).encode(), np.uint8))
    return art


def images(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"img{k}.png", rng.integers(0, 256, size=(5 + k, 6, 3), dtype=np.uint8)) for k in range(n)]


def engine_golden(art, path, inputs, alter=None):
    """Write a golden dir from engine runs (torch-free); ``alter(k, tensors, events)`` may edit it."""
    tensors, events = [], []
    for k, (_, img) in enumerate(inputs):
        res = run(art, img, keep_tensors=True)
        t = {name: res.tensors[name] for name in tensor_ops_of(art)}
        e = {name: {key: c[key] for key in KEYS} for name, c in res.counters["ops"].items()}
        if alter:
            alter(k, t, e)
        tensors.append(t)
        events.append(e)
    write_golden_dir(path, art.sha256, inputs, tensors, events, "engine (test)", tensor_ops_of(art),
                     dtypes=storage_dtypes(art))
    return read_golden_dir(path)


def test_verify_ok(tmp_path):
    art = make_artifact(Numerics())
    inputs = images()
    g = engine_golden(art, tmp_path / "g", inputs)
    rep = verify(art, g)
    assert rep.ok and rep.mismatches == 0 and rep.event_mismatches == 0
    assert rep.compared_tensors == 2 * len(art.tensors)
    assert rep.compared_events == 2 * len(art.ops) * 3
    assert rep.format().startswith("OK")
    assert rep.first is None
    json.dumps(rep.to_json())


def test_other_artifact_refused(tmp_path):
    art = make_artifact(Numerics())
    g = engine_golden(art, tmp_path / "g", images(1))
    other = make_artifact(Numerics(), seed=1)
    with pytest.raises(GoldenError, match="golden was made from another artifact"):
        verify(other, g)


def test_tensor_mismatch_reported(tmp_path):
    art = make_artifact(Numerics())
    inputs = images()

    def alter(k, t, e):
        if k == 1:
            t["x3"] = t["x3"].copy()
            t["x3"][2, 4, 7] += 1
            t["x3"][3, 0, 1] -= 5
            t["x9"] = t["x9"].copy()
            t["x9"][0, 0, 0] += 1

    g = engine_golden(art, tmp_path / "g", inputs, alter)
    rep = verify(art, g)
    assert not rep.ok
    assert rep.mismatches == 3 and rep.mismatched_tensors == 2 and rep.event_mismatches == 0
    got = int(run(art, inputs[1][1]).tensors["x3"][2, 4, 7])
    assert rep.first == {"kind": "tensor", "input": 1, "source": "img1.png", "op": "conv1", "tensor": "x3",
                         "index": (2, 4, 7), "expected": got + 1, "got": got}
    assert rep.format() == f"MISMATCH input 1 (img1.png) op conv1 tensor x3 index (2, 4, 7): expected {got + 1}, got {got}"
    j = rep.to_json()
    assert j["first"]["index"] == [2, 4, 7] and j["ok"] is False
    assert [m["tensor"] for m in j["mismatched"]] == ["x3", "x9"]
    json.dumps(j)
    assert "differing element" in rep.format(verbose=True)


def test_event_mismatch_reported(tmp_path):
    art = make_artifact(Numerics())

    def alter(k, t, e):
        e["enc1"]["saturations"] += 2

    g = engine_golden(art, tmp_path / "g", images(1), alter)
    rep = verify(art, g)
    assert not rep.ok and rep.mismatches == 0 and rep.event_mismatches == 1
    assert rep.first["kind"] == "event" and rep.first["op"] == "enc1" and rep.first["counter"] == "saturations"
    assert rep.first["expected"] == rep.first["got"] + 2
    assert rep.format().startswith("MISMATCH input 0 (img0.png) op enc1 counter saturations: expected ")


def test_first_mismatch_in_graph_order(tmp_path):
    art = make_artifact(Numerics())

    def alter(k, t, e):
        t["x14"] = t["x14"] + 1  # late op
        e["conv0"]["acc_overflow"] += 1  # earlier op's events come first

    rep = verify(art, engine_golden(art, tmp_path / "g", images(1), alter))
    assert rep.first["op"] == "conv0" and rep.first["kind"] == "event"


def test_shape_mismatch_and_unknown_tensor(tmp_path):
    art = make_artifact(Numerics())

    def alter(k, t, e):
        t["g0"] = np.zeros((1, 1, 10, 1), np.int64)

    rep = verify(art, engine_golden(art, tmp_path / "g", images(1), alter))
    assert not rep.ok and rep.first["tensor"] == "g0" and rep.first["index"] is None
    assert "shape" in rep.format()

    inputs = images(1)
    tensors = [{n: run(art, inputs[0][1]).tensors[n] for n in ("x0",)}]
    tensors[0]["ghost"] = np.zeros((1, 1, 1), np.int64)
    write_golden_dir(tmp_path / "g2", art.sha256, inputs, tensors, [{}], "p", {"x0": "in", "ghost": "nowhere"})
    with pytest.raises(GoldenError, match="'ghost'.*not in the artifact graph"):
        verify(art, read_golden_dir(tmp_path / "g2"))


# --------------------------------------------------------------------------
# golden/ (torch float64) against the integer engine: the product's core guarantee

NUMERICS = [
    Numerics(),
    Numerics(realization="grid", rounding="half_even", overflow="wrap", acc_bits=16),
    Numerics(rounding="half_away", overflow="saturate", acc_bits=8, stream_bits=16),
    Numerics(rounding="floor", overflow="wrap", acc_bits=9, stream_bits=12),
    Numerics(realization="grid", rounding="half_up", overflow="saturate", acc_bits=14, stream_bits=11),
]


@pytest.mark.parametrize("numerics", NUMERICS, ids=lambda n: f"{n.realization}-{n.rounding}-{n.overflow}-"
                                                            f"a{n.acc_bits}-s{n.stream_bits}")
def test_golden_and_engine_agree(tmp_path, numerics):
    pytest.importorskip("torch")
    from golden.writer import write_golden

    art = make_artifact(numerics, seed=2)
    inputs = images(2, seed=3)
    write_golden(None, inputs, tmp_path / "g", progress=False, art=art)
    g = read_golden_dir(tmp_path / "g")
    rep = verify(art, g)
    assert rep.ok, rep.format(verbose=True)
    assert rep.compared_tensors == 2 * len(art.tensors)
    if numerics.acc_bits < 32:  # the configurations above make some conv accumulate in order and overflow
        total = sum(g.events_for(k)[op]["acc_overflow"] for k in range(2) for op in ("conv0", "conv1", "up"))
        assert total > 0
    if numerics.stream_bits <= 12:
        assert sum(g.events_for(k)[op.name]["stream_overflow"] for k in range(2) for op in art.ops) > 0


@pytest.mark.parametrize("rounding", RoundingMode.names())
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_golden_and_engine_agree_on_pool_edges(tmp_path, rounding, overflow):
    """Full-scale ±2^(B−1) streams: the mean and the std (·2^p) can leave the stream range."""
    pytest.importorskip("torch")
    from golden.writer import write_golden

    tensors = [TensorSpec("img", "image", 2), TensorSpec("x", "stream", 2, frac=0),
               TensorSpec("m", "stream", 2, frac=0), TensorSpec("s", "stream", 2, frac=0)]
    ops = [OpSpec("in", "image_in", ("img",), ("x",), {"exp": 0}, {"mult": "in.m", "offset": "in.o"}),
           OpSpec("mp", "mean_pool", ("x",), ("m",), {"shift": 3}),
           OpSpec("sp", "std_pool", ("x",), ("s",), {"shift": 16, "pre_shift": 1})]
    art = Artifact(model={}, numerics=Numerics(rounding=rounding, overflow=overflow, stream_bits=8),
                   inputs=("img",), outputs=("m", "s"), tensors={t.name: t for t in tensors}, ops=ops,
                   arrays={"in.m": np.array([1, 1]), "in.o": np.array([-128, -128])})
    art.sha256 = "cd" * 32
    img = np.zeros((2, 3, 2), np.uint8)
    img[:, :, 0] = [[0, 255, 255], [255, 255, 255]]  # mean 85.3 with shift 3 → M_N rounds up
    img[:, :, 1] = [[0, 255, 0], [255, 0, 255]]
    write_golden(None, [("edge", img), ("flat", np.full((3, 3, 2), 255, np.uint8))], tmp_path / "g",
                 progress=False, art=art)
    g = read_golden_dir(tmp_path / "g")
    rep = verify(art, g)
    assert rep.ok, rep.format(verbose=True)


@pytest.mark.parametrize("gut", ["no_inputs", "no_output_tensor", "no_events", "one_op_events"])
def test_incomplete_golden_never_passes(tmp_path, gut):
    """A golden that compares nothing (or less than the whole graph) is refused, never OK."""
    art = make_artifact(Numerics())
    out_name = art.outputs[0]
    first_op = art.ops[0].name

    def alter(k, t, e):
        if gut == "no_output_tensor":
            t.pop(out_name)
        elif gut == "no_events":
            e.clear()
        elif gut == "one_op_events":
            e.pop(first_op)

    inputs = [] if gut == "no_inputs" else images()
    g = engine_golden(art, tmp_path / "g", inputs, alter=alter)
    with pytest.raises(GoldenError, match="no inputs|lacks|no event counters"):
        verify(art, g)


def test_manifest_with_duplicate_keys_refused(tmp_path):
    from intsim.golden_dir import read_golden_dir

    art = make_artifact(Numerics())
    engine_golden(art, tmp_path / "g", images(1))
    m = tmp_path / "g" / "manifest.json"
    text = m.read_text()
    m.write_text(text.replace('"format":', '"format": "x", "format":', 1))
    with pytest.raises(GoldenError, match="duplicate key 'format'"):
        read_golden_dir(tmp_path / "g")


@pytest.mark.parametrize("extra", ["notes.txt", "vectors/in0/000_x.hex", "tensors/0/readme.md"])
def test_golden_never_deletes_foreign_files(tmp_path, extra):
    """Writing a golden over an old one replaces it only when it holds nothing but a golden's own files."""
    art = make_artifact(Numerics())
    engine_golden(art, tmp_path / "g", images(1))
    f = tmp_path / "g" / extra
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text("the user's own file")
    with pytest.raises(GoldenError, match="not one of the golden's own files"):
        engine_golden(art, tmp_path / "g", images(1))
    assert f.read_text() == "the user's own file"
    f.unlink()
    if extra.startswith("vectors/"):
        import shutil

        shutil.rmtree(tmp_path / "g" / "vectors")
    engine_golden(art, tmp_path / "g", images(2))  # a pure golden is still replaced
