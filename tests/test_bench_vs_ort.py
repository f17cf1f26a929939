"""The ONNX Runtime contenders of benchmarks/bench_vs_ort.py: every conv quantized, ratios per round.

Needs the optional ``bench`` extra (onnx, onnxruntime) and torch; skips without them.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from benchmarks import bench_vs_ort as B  # noqa: E402
from benchmarks import ort_contenders as O  # noqa: E402


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 12, 3, padding=1), torch.nn.PixelShuffle(2)).eval()


def test_qdq_model_runs_every_conv_as_qlinearconv(tmp_path):
    net = _net()
    fp32, int8 = tmp_path / "m_fp32.onnx", tmp_path / "m_int8.onnx"
    O._export_fp32(net, fp32, 3)
    rng = np.random.default_rng(0)
    patches = [rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8) for _ in range(4)]
    O._quantize_int8(fp32, int8, patches, 1 / 255)
    assert O.qlinearconv_count(int8) == (2, 0)
    img = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    feed = O.ort_input(img, 1 / 255)
    y32 = O.session(fp32, 1).run(None, feed)[0]
    y8 = O.session(int8, 1).run(None, feed)[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(feed["x"])).numpy()
    assert y32.shape == y8.shape == (1, 3, 40, 48)
    np.testing.assert_allclose(y32, ref, rtol=1e-4, atol=1e-4)
    # int8 is an approximation: close to the float output relative to its range, not equal
    assert np.abs(y8 - ref).max() < 0.1 * np.abs(ref).max()
    assert not np.array_equal(y8, y32)


def test_ratios_are_medians_of_per_round_ratios():
    times = {"a": {"wall": [1.0, 2.0, 9.0], "cpu": [1.0, 1.0, 1.0]},
             "b": {"wall": [1.0, 1.0, 1.0], "cpu": [2.0, 2.0, 2.0]}}
    r = B.ratios(times, "a", "b")
    assert r["wall"] == 2.0  # median of 1, 2, 9 (the median of the times would be 2.0 / 1.0 too; see next)
    assert r["cpu"] == 0.5
    times["b"]["wall"] = [1.0, 4.0, 1.0]  # a slow round for both: its ratio stays 0.5
    assert B.ratios(times, "a", "b")["wall"] == 1.0  # per-round ratios 1, 0.5, 9
