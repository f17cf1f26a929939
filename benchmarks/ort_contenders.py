"""ONNX Runtime contenders for the engine benchmark: the float model as ONNX (fp32) and its static int8 QDQ form.

What a user would pick to run a quantized CNN fast on a CPU: ONNX Runtime with a
static QDQ model, per-channel int8 weights, uint8 activations (U8S8), MinMax
calibration on Set5 LR patches, every conv a ``QLinearConv`` after ORT's graph
optimizations. Needs the optional ``bench`` extra (``onnx``, ``onnxruntime``);
the engine never imports this module.

:func:`ort_models` exports once and caches the two ``.onnx`` files beside the
benchmark's artifacts; :func:`session` opens one with a given thread count;
:func:`qlinearconv_count` counts the ``QLinearConv`` nodes in the optimized graph
ORT actually runs (written by ``optimized_model_filepath``), so the benchmark can
say that every conv was quantized.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class OrtModels:
    """Paths of the fp32 and int8 QDQ ONNX files of one model × scale, and its float input factor
    (network input = uint8 pixel × ``in_scale``, NCHW float32)."""

    fp32: Path
    int8: Path
    in_scale: float


@contextlib.contextmanager
def _plain_sqrt():
    """IMDN's std pool uses a custom autograd sqrt (same forward values as ``pow(0.5)``) that the
    ONNX exporter cannot trace; export with the plain op."""
    try:
        import calib.models.imdn as imdn
    except ImportError:
        yield
        return
    orig = imdn._Sqrt.apply
    imdn._Sqrt.apply = staticmethod(lambda v: v.pow(0.5))
    try:
        yield
    finally:
        imdn._Sqrt.apply = orig


def _export_fp32(net, path: Path, channels: int) -> None:
    import torch

    x = torch.rand(1, channels, 32, 32)
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), _plain_sqrt():
        torch.onnx.export(net, (x,), str(tmp), input_names=["x"], output_names=["y"], opset_version=17,
                          dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}}, dynamo=False)
    tmp.replace(path)


class _PatchReader:
    """Calibration batches for ORT's static quantizer: LR patches (uint8 × ``in_scale``, NCHW)."""

    def __init__(self, patches: list[np.ndarray], in_scale: float):
        self._it = iter([{"x": (p.astype(np.float32) * np.float32(in_scale)).transpose(2, 0, 1)[None].copy()}
                         for p in patches])

    def get_next(self):
        return next(self._it, None)


def calibration_patches(lr_dir: Path, n: int = 8, patch: int = 48, seed: int = 0) -> list[np.ndarray]:
    """``n`` random ``patch``² crops (uint8 H×W×3) of the Set5 LR images in ``lr_dir``."""
    from intsim.images import read_image

    rng = np.random.default_rng(seed)
    imgs = [read_image(p, 3).pixels for p in sorted(Path(lr_dir).glob("*.png"))]
    out = []
    for i in range(n):
        im = imgs[i % len(imgs)]
        y = int(rng.integers(0, im.shape[0] - patch + 1))
        x = int(rng.integers(0, im.shape[1] - patch + 1))
        out.append(np.ascontiguousarray(im[y:y + patch, x:x + patch]))
    return out


def _quantize_int8(fp32: Path, int8: Path, patches: list[np.ndarray], in_scale: float) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = fp32.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    tmp = int8.with_suffix(".tmp.onnx")
    quantize_static(str(pre), str(tmp), _PatchReader(patches, in_scale), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    tmp.replace(int8)
    pre.unlink(missing_ok=True)


def ort_models(out_dir: Path, model: str, scale: int, net, in_scale: float, lr_dir: Path) -> OrtModels:
    """Export (once) ``net`` (torch, eval) as fp32 ONNX and quantize it to int8 QDQ; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / f"{model}_x{scale}_fp32.onnx"
    int8 = out_dir / f"{model}_x{scale}_int8_qdq.onnx"
    if not fp32.is_file():
        _export_fp32(net, fp32, 3)
    if not int8.is_file():
        _quantize_int8(fp32, int8, calibration_patches(lr_dir), in_scale)
    return OrtModels(fp32, int8, in_scale)


def session(path: Path, threads: int, optimized_out: Path | None = None):
    """An ORT CPU session of ``path`` with ``threads`` intra-op threads (one inter-op thread,
    sequential execution, all graph optimizations); ``optimized_out``: where ORT writes the
    graph it runs."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_out is not None:
        so.optimized_model_filepath = str(optimized_out)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def qlinearconv_count(path: Path, threads: int = 1) -> tuple[int, int]:
    """``(QLinearConv nodes, Conv nodes)`` of the graph ORT runs for the int8 model ``path``."""
    import onnx

    opt = path.with_suffix(".optimized.onnx")
    session(path, threads, opt)
    g = onnx.load(str(opt)).graph
    opt.unlink(missing_ok=True)
    ops = [n.op_type for n in g.node]
    return ops.count("QLinearConv"), ops.count("Conv") + ops.count("FusedConv")


def ort_input(img: np.ndarray, in_scale: float) -> dict:
    """The ORT feed of a uint8 H×W×3 image (the conversion is the contender's own work, timed with it)."""
    return {"x": (img.astype(np.float32) * np.float32(in_scale)).transpose(2, 0, 1)[None].copy()}
