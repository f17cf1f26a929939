"""Constant subgraphs of an ONNX graph, evaluated with numpy at import (calib/onnx_import.py).

``torch.onnx.export`` writes some attributes as small computations on constants rather than as
constants: a conv with ``padding_mode='reflect'`` becomes ``Pad(x, pads)`` where ``pads`` is
``Cast(Reshape(Transpose(Slice(Reshape(Concat(c, ConstantOfShape(c)))))))`` of int64 constants — and with
``do_constant_folding=False`` every such chain stays in the graph. The importer needs those values
(pad widths, clip bounds, scales) as numbers, so a node whose inputs are all constants and whose op is
one of :data:`FOLDABLE` is evaluated here, exactly (integer and float arrays as ONNX defines the op),
and never becomes part of the rebuilt torch graph.
"""
from __future__ import annotations

import numpy as np

__all__ = ["FOLDABLE", "fold_constant"]

FOLDABLE = ("ConstantOfShape", "Concat", "Reshape", "Slice", "Transpose", "Cast", "Unsqueeze", "Squeeze",
            "Identity", "Gather")


def _axes(node_attrs: dict, inputs: list, k: int) -> list[int] | None:
    """Axes from input ``k`` (opset ≥ 13) or the ``axes`` attribute (older opsets)."""
    if len(inputs) > k and inputs[k] is not None:
        return [int(v) for v in inputs[k].reshape(-1)]
    return [int(v) for v in node_attrs["axes"]] if "axes" in node_attrs else None


def _reshape(x: np.ndarray, shape: np.ndarray, allowzero: int) -> np.ndarray:
    s = [int(v) for v in shape.reshape(-1)]
    if not allowzero:  # 0 copies the input's size of that axis (ONNX Reshape)
        s = [x.shape[i] if v == 0 else v for i, v in enumerate(s)]
    return x.reshape(s)


def _slice(x: np.ndarray, inputs: list) -> np.ndarray:
    starts, ends = (inputs[1].reshape(-1).tolist(), inputs[2].reshape(-1).tolist())
    axes = inputs[3].reshape(-1).tolist() if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
    steps = inputs[4].reshape(-1).tolist() if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    idx = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        n = x.shape[a]
        # ONNX clamps out-of-range starts/ends (INT64_MAX = "to the end", INT64_MIN = "before the start");
        # Python slices clamp alike once the sentinels are brought into range
        s, e = max(min(int(s), n), -n - 1), max(min(int(e), n), -n - 1)
        idx[a] = slice(s, None if (st < 0 and e < -n) else e, int(st))
    return x[tuple(idx)]


def fold_constant(op: str, attrs: dict, inputs: list) -> np.ndarray:
    """The output of ONNX op ``op`` on constant ``inputs`` (numpy arrays; ``None`` for an omitted optional
    input) with attributes ``attrs``. Only ops in :data:`FOLDABLE`; a ``ValueError`` for anything else."""
    x = inputs[0] if inputs else None
    if op == "ConstantOfShape":
        fill = attrs.get("value")
        from onnx import numpy_helper

        v = numpy_helper.to_array(fill).reshape(-1) if fill is not None else np.zeros(1, np.float32)
        return np.full([int(d) for d in x.reshape(-1)], v[0], dtype=v.dtype)
    if op == "Concat":
        return np.concatenate(inputs, axis=int(attrs["axis"]))
    if op == "Reshape":
        return _reshape(x, inputs[1], int(attrs.get("allowzero", 0)))
    if op == "Slice":
        return _slice(x, inputs)
    if op == "Transpose":
        return np.transpose(x, attrs.get("perm"))
    if op == "Cast":
        from onnx import helper

        return x.astype(helper.tensor_dtype_to_np_dtype(int(attrs["to"])))
    if op == "Unsqueeze":
        out = x
        for a in sorted(d % (x.ndim + len(_axes(attrs, inputs, 1))) for d in _axes(attrs, inputs, 1)):
            out = np.expand_dims(out, a)
        return out
    if op == "Squeeze":
        ax = _axes(attrs, inputs, 1)
        return np.squeeze(x, axis=None if ax is None else tuple(ax))
    if op == "Identity":
        return x
    if op == "Gather":
        return np.take(x, inputs[1], axis=int(attrs.get("axis", 0)))
    raise ValueError(f"no constant evaluation of ONNX op {op}")
