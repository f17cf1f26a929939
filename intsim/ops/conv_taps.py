"""Tap geometry of one conv call: which input row/column each tap reads (arithmetic.md §5.1, §5.5).

Everything here depends only on the input size and the conv's attributes, never
on the data, so :func:`conv2d_taps` and :func:`conv_transpose2d_taps` memoize it
per shape: an engine run repeats the same few shapes dozens of times (IMDN ×4:
46 convs, 3 geometries), and rebuilding the tables, their inverse and the int8
path's affine offsets was about a quarter of a millisecond of Python per conv.

The arrays of a :class:`ConvTaps` are shared between calls: read them, never
write them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from intsim.kernels import conv as K
from intsim.kernels import gemm as KG


@dataclass(frozen=True)
class ConvTaps:
    """The tap tables of one conv call and what the paths derive from them.

    ``iy_of`` int64[Ho, kh], ``ix_of`` int64[Wo, kw]: the input row / column tap
    ``k`` of output ``o`` reads (−1: padding). ``uy`` int64[H], ``ux`` int64[W]:
    how many (output, tap) pairs read each input row / column (the MAC counts of
    §7). ``inv_x`` int64[W, kw]: the output column whose tap ``k`` reads input
    column ``i`` (−1: none), None when not injective (no sparse pass).
    ``y_off``/``x_off``: ``off`` with ``iy_of[o, k] = o·s + k·d + off`` inside the
    input (a strided conv2d's tables; the int8 path's plane origin), None when the
    tables are not of that form (the transposed conv). ``pairs``: ``Σuy·Σux``, the
    (output pixel, tap) pairs that read an input pixel (one segment's MAC count per channel).
    """

    iy_of: np.ndarray
    ix_of: np.ndarray
    uy: np.ndarray
    ux: np.ndarray
    inv_x: np.ndarray | None
    y_off: int | None
    x_off: int | None
    pairs: int = 0


def affine_offset(tab: np.ndarray, stride: int, dil: int, n_in: int) -> int | None:
    """``off`` with ``tab[o, k] = o·stride + k·dil + off`` (−1 outside ``[0, n_in)``), or None."""
    valid = np.argwhere(tab >= 0)
    if valid.size:
        o, k = (int(v) for v in valid[0])
        off = int(tab[o, k]) - o * stride - k * dil
    else:
        off = n_in  # every tap is padding: any offset that puts them all past the input
    e = (np.arange(tab.shape[0])[:, None] * stride + np.arange(tab.shape[1])[None, :] * dil + off)
    return off if np.array_equal(np.where((e >= 0) & (e < n_in), e, -1), tab) else None


def conv_taps(iy_of: np.ndarray, ix_of: np.ndarray, in_hw: tuple[int, int],
              geometry: tuple[int, int, int, int] | None) -> ConvTaps:
    """:class:`ConvTaps` of given tap tables over an input of ``in_hw`` (H, W); ``geometry``
    ``(stride_y, stride_x, dilation_y, dilation_x)`` of a conv2d, None for the transposed conv."""
    h, w = int(in_hw[0]), int(in_hw[1])
    y_off = x_off = None
    if geometry is not None:
        sh, sw, dh, dw = geometry
        y_off = affine_offset(iy_of, sh, dh, h)
        x_off = affine_offset(ix_of, sw, dw, w)
    uy, ux = K.tap_usage(iy_of, h), K.tap_usage(ix_of, w)
    return ConvTaps(iy_of, ix_of, uy, ux, KG.inverse_taps(ix_of, w), y_off, x_off, int(uy.sum()) * int(ux.sum()))


@functools.lru_cache(maxsize=256)
def conv2d_taps(h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int,
                dw: int) -> ConvTaps:
    """:class:`ConvTaps` of a conv2d (§5.1) on an H×W input; memoized per shape."""
    return conv_taps(K.conv2d_tap_table(h, kh, sh, ph, dh), K.conv2d_tap_table(w, kw, sw, pw, dw), (h, w),
                     (sh, sw, dh, dw))


@functools.lru_cache(maxsize=256)
def conv_transpose2d_taps(h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, oph: int,
                          opw: int) -> ConvTaps:
    """:class:`ConvTaps` of a transposed conv, gather form (§5.5); memoized per shape."""
    return conv_taps(K.conv_transpose2d_tap_table(h, kh, sh, ph, oph),
                     K.conv_transpose2d_tap_table(w, kw, sw, pw, opw), (h, w), None)
