"""A small, independent reference executor for the ops calib/ exports (tests only).

Integer forms of arithmetic.md (§6.1 image_in, §3.4 encode, §5.2–5.3 conv2d,
§6.3 add, §6.6 relu, §6.8 pixel_shuffle, §6.2 image_out) in numpy int64, with
the convolution's Σ w·G formed by an exact float64 torch conv (every partial
sum is an integer far below 2^53). Both realizations compute
``I = m_w·unit_m·Σ w·G + B`` when no accumulator can overflow (§5.3), which the
tests assert from the export metadata. It exists to check calib's export
against the specification independently of intsim/ and golden/.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from calib.export_codebook import encode_stream
from intsim.overflow import apply_overflow
from intsim.rounding import round_shift


def _store(I, n, art, where):
    x = round_shift(I, n, art.numerics.rounding)
    x, _ = apply_overflow(x, art.numerics.stream_bits, art.numerics.overflow, where)
    return x


def run_reference(art, image: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``art`` on a uint8 H×W×3 image; return every tensor (int64 / uint8, H×W×C)."""
    env: dict[str, np.ndarray] = {art.inputs[0]: np.asarray(image)}
    rnd = art.numerics.rounding
    for op in art.ops:
        xs = [env[t] for t in op.inputs]
        out_t = art.tensors[op.outputs[0]]
        if op.op == "image_in":
            m, o = art.array(op, "mult"), art.array(op, "offset")
            I = xs[0].astype(np.int64) * m + o
            y = _store(I, op.attrs["exp"] - out_t.frac, art, op.name)
        elif op.op == "encode":
            y, _ = encode_stream(out_t.codebook, xs[0], rnd)
        elif op.op == "conv2d":
            cb = art.tensors[op.inputs[0]].codebook
            _, _, grid = cb.code_table()
            G = torch.from_numpy(grid[xs[0]].astype(np.float64)).permute(2, 0, 1)[None]
            w = torch.from_numpy(art.array(op, "weight").astype(np.float64)).permute(0, 3, 1, 2)
            a = op.attrs
            acc = F.conv2d(G, w, None, a["stride"], a["padding"], a["dilation"], a["groups"])[0]
            acc = acc.permute(1, 2, 0).numpy()
            assert np.all(np.abs(acc) < 2.0 ** 53) and np.all(acc == np.round(acc))
            M = art.array(op, "w_mant").astype(np.int64) * cb.unit_m
            I = acc.astype(np.int64) * M + art.array(op, "bias")
            y = _store(I, a["w_exp"] + cb.unit_e - out_t.frac, art, op.name)
        elif op.op == "relu":
            y = np.maximum(xs[0], 0)
        elif op.op == "add":
            fa, fb = (art.tensors[t].frac for t in op.inputs)
            fo = out_t.frac
            Fm = max(fa, fb, fo)
            I = (xs[0] << (Fm - fa)) + (xs[1] << (Fm - fb))
            y = _store(I, Fm - fo, art, op.name)
        elif op.op == "pixel_shuffle":
            r = op.attrs["factor"]
            h, w, c = xs[0].shape
            y = xs[0].reshape(h, w, c // (r * r), r, r).transpose(0, 3, 1, 4, 2).reshape(h * r, w * r, c // (r * r))
        elif op.op == "image_out":
            fi = art.tensors[op.inputs[0]].frac
            m, o = art.array(op, "mult"), art.array(op, "offset")
            I = xs[0] * m + o * (1 << fi)
            y = np.clip(round_shift(I, fi + op.attrs["exp"], rnd), 0, 255).astype(np.uint8)
        else:
            raise NotImplementedError(op.op)
        env[op.outputs[0]] = y
    return env
