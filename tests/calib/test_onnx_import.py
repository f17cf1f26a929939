"""ONNX in (calib/onnx_import.py): an exported graph rebuilds to the same float function and the same
captured graph as the torch model; ``intsim calibrate --model x.onnx`` on IMDN ×4 gives the torch path's
integer arrays and graph (sha256 for sha256) and verifies bit-exactly; unsupported nodes get one line.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from calib.data_root import available, data_root

pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parents[2]


def _export(net: nn.Module, path: Path, size: int = 16) -> Path:
    """``torch.onnx.export`` as docs/own_model.md tells users to run it: H and W dynamic (a global mean
    divides by H·W, which must stay symbolic)."""
    x = torch.rand(1, 3, size, size)
    torch.onnx.export(net.eval(), (x,), str(path), dynamo=False, opset_version=17, input_names=["lr"],
                      output_names=["sr"], dynamic_axes={"lr": {2: "h", 3: "w"}, "sr": {2: "H", 3: "W"}})
    return path


def _espcn(scale: int):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import espcn_like
    finally:
        sys.path.remove(str(REPO / "examples"))
    torch.manual_seed(3)
    return espcn_like.build(scale).eval()


def _graph_key(g) -> list:
    """The lowered ops; the module path only of convs (the weights' owner): ``F.relu`` and ``nn.ReLU`` lower
    alike, and ONNX makes every activation a module."""
    return [(n.name, n.op, n.inputs, n.outputs, n.attrs, n.channels, n.module if n.op.startswith("conv") else None,
             n.extra_outputs) for n in g.nodes]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_rebuild_is_the_same_function_and_graph(tmp_path):
    from calib.graph import capture
    from calib.onnx_import import load_onnx

    net = _espcn(3)
    gm = load_onnx(_export(net, tmp_path / "espcn.onnx"))
    x = torch.rand(2, 3, 11, 13)  # another size than exported: the graph is size-generic
    with torch.no_grad():
        assert torch.equal(gm(x), net(x))
    assert _graph_key(capture(gm, rgb_range=1.0, in_channels=3)) == _graph_key(capture(net, rgb_range=1.0,
                                                                                       in_channels=3))


class _WithAbs(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return torch.abs(self.head(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_unsupported_onnx_node_is_one_line_naming_it(tmp_path):
    from calib.onnx_import import OnnxImportError, load_onnx

    p = _export(_WithAbs(), tmp_path / "abs.onnx")
    with pytest.raises(OnnxImportError) as e:
        load_onnx(p)
    msg = str(e.value)
    assert "\n" not in msg and "ONNX node '/Abs'" in msg and "(op Abs)" in msg and "abs.onnx" in msg
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a protobuf at all \x00\xff")
    with pytest.raises(OnnxImportError, match="not a readable ONNX model"):
        load_onnx(bad)


def _cli(*argv) -> tuple[int, str]:
    import subprocess

    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
           "INTSIM_DATA_ROOT": str(data_root())}
    r = subprocess.run([sys.executable, "-m", "intsim_cli", *argv], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=900)
    return r.returncode, r.stderr


def _integer_part(art) -> dict:
    """Everything the engine executes: graph JSON without the free-form metadata's provenance, arrays by
    sha256 (artifact.md). The model's name is the one thing that must differ (zoo name vs .onnx path)."""
    g = art.graph_json()
    g["model"] = {k: v for k, v in g["model"].items() if k not in ("name", "weights")}
    meta = dict(g["metadata"])
    meta.pop("source")
    g["metadata"] = meta
    return json.loads(json.dumps(g, sort_keys=True, default=str))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_imdn_x4_from_onnx_equals_the_torch_path_and_verifies(tmp_path):
    ck = "weights/imdn/IMDN_x4.pth"
    for rel in (ck, "data/SunHays80", "data/Set5/LR_bicubic/X4"):
        if not available(rel):
            pytest.skip(f"{rel} not present under the data root {data_root()} (set INTSIM_DATA_ROOT)")
    from calib.datasets import read_rgb
    from calib.models.zoo import get_model
    from golden.writer import write_golden
    from intsim.artifact import load_artifact
    from intsim.golden_dir import read_golden_dir
    from intsim.verification import verify

    onnx_path = _export(get_model("imdn").load(data_root() / ck, 4), tmp_path / "imdn_x4.onnx", size=32)
    common = ("--scale", "4", "--bits", "W4A4", "--method", "minmax", "--n-images", "4", "--patch", "24")
    rc, err = _cli("calibrate", "--model", "imdn", "--weights", str(data_root() / ck), *common,
                   "-o", str(tmp_path / "torch.intsim"))
    assert rc == 0, err
    rc, err = _cli("calibrate", "--model", str(onnx_path), *common, "-o", str(tmp_path / "onnx.intsim"))
    assert rc == 0, err
    a, b = load_artifact(tmp_path / "torch.intsim"), load_artifact(tmp_path / "onnx.intsim")
    assert _integer_part(a) == _integer_part(b)
    sha = lambda art: hashlib.sha256(json.dumps({n: v["sha256"] for n, v in art.graph_json()["arrays"].items()},
                                                sort_keys=True).encode()).hexdigest()
    assert sha(a) == sha(b) and len(a.arrays) > 40
    assert b.metadata["source"]["kind"] == "onnx" and b.metadata["source"]["source_sha256"] == hashlib.sha256(
        onnx_path.read_bytes()).hexdigest()

    lr = read_rgb(data_root() / "data/Set5/LR_bicubic/X4/babyx4.png")[40:64, 40:64]
    gdir = write_golden(tmp_path / "onnx.intsim", [("baby_crop", np.ascontiguousarray(lr))], tmp_path / "golden",
                        progress=False, art=b)
    rep = verify(b, read_golden_dir(gdir))
    assert rep.ok and rep.mismatches == 0 and rep.event_mismatches == 0 and rep.compared_tensors > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx_artifact_rebuilds_its_float_model_and_refuses_a_changed_file(tmp_path):
    """``calib.quantize('x.onnx', …)``: the artifact records the file's sha256; eval's FP model is rebuilt from
    it (same state dict as exported), and a rewritten file is refused in one line."""
    import calib
    from calib.evaluate import FloatModel, RebuildError

    net = _espcn(2)
    p = _export(net, tmp_path / "espcn_x2.onnx")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(3)]
    art = calib.quantize(str(p), imgs, scale=2, bits="W8A8", method="minmax", n_images=3, patch=16, holdout=False)
    src = art.metadata["source"]
    assert src["kind"] == "onnx" and src["source_file"] == str(p.resolve()) and art.model["weights"] == p.name
    lr = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    x = torch.from_numpy(lr.transpose(2, 0, 1).copy())[None].float() / 255
    with torch.no_grad():
        want = (net(x)[0].double().numpy().transpose(1, 2, 0) * 255)
    from calib.metrics import to_uint8

    assert np.array_equal(FloatModel(art)(lr), to_uint8(want))  # the rebuilt float model is the exported one
    other = _espcn(2)  # same architecture, other weights, exported over the recorded file
    with torch.no_grad():
        other.head.weight.add_(1.0)
    _export(other, p)
    with pytest.raises(RebuildError, match="changed since the artifact was exported") as e:
        FloatModel(art)
    assert "\n" not in str(e.value)
