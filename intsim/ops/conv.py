"""``conv2d`` and ``conv_transpose2d`` over codes (arithmetic.md §5).

The wrappers check shapes, build the per-code tables and per-accumulator
multipliers of the realization (§5.3), decide the accumulation path (§5.4),
run :func:`intsim.kernels.conv.conv_kernel` and raise
:class:`~intsim.overflow.EngineOverflowError` for the ``error`` policy.

Accumulator layout (the same as :mod:`intsim.bounds`): split, per segment ``s``
in order, ``P_s`` then ``Q_s`` when ``origin_s ≠ 0``; grid, a single ``A``.
The engine takes the ordered/unordered decision from
:func:`intsim.bounds.conv_can_overflow` (the load-time analysis);
:func:`conv_can_overflow` here is the same test on bare arrays, for direct calls.

How an op call is executed (the path policy, the per-artifact constants) is
:mod:`intsim.ops.conv_paths`; the fast forms are :mod:`intsim.ops.conv_fast`; the
accumulator model both share is :mod:`intsim.ops.conv_accumulators`.
"""
from __future__ import annotations

import numpy as np

from intsim.artifact_model import Codebook, Numerics
from intsim.kernels import conv as K
from intsim.ops.conv_accumulators import (  # the op's accumulator model, re-exported (__all__)
    accumulator_layout,
    accumulator_names,
    accumulator_worst,
    conv_can_overflow,
)
from intsim.ops.conv_paths import KN2ROW_MAX_CO, ConvConstants, conv_constants, run_conv
from intsim.ops.conv_taps import conv2d_taps, conv_taps, conv_transpose2d_taps

__all__ = ["accumulator_layout", "accumulator_names", "accumulator_worst", "conv_can_overflow", "conv2d",
           "conv2d_output_hw", "conv_rows", "conv_transpose2d"]


def _pair(v, what: str) -> tuple[int, int]:
    if type(v) is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int:
        return v  # the engine's ConvParams pairs: the usual call, without np.ndim (~1 µs each, 3 per conv)
    if np.ndim(v) == 0:
        return int(v), int(v)
    v = [int(x) for x in v]
    if len(v) != 2:
        raise ValueError(f"{what} must be an int or a pair, got {v}")
    return v[0], v[1]


# uint8: codes the engine holds compact between its own ops (Codebook.held_code_dtype)
_CODE_DTYPES = (np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64))


def _check_codes(codes: np.ndarray, codebook: Codebook, name: str, in_range: bool = False) -> np.ndarray:
    # Codes stay in their (narrow) dtype: the kernels index with them, a copy to int64 costs a pass.
    # in_range: the caller's own encoder made them (§3.4 gives codes in [0, N) by construction), so the
    # range pass is skipped: on a large input it is a full read of the codes from memory.
    c = np.asarray(codes)
    if c.dtype not in _CODE_DTYPES:
        c = c.astype(np.int64)
    c = np.ascontiguousarray(c)
    if c.ndim != 3:
        raise ValueError(f"{name}: codes must be H×W×C, got shape {c.shape}")
    if not in_range and c.size and (int(c.min()) < 0 or int(c.max()) >= codebook.num_codes):
        raise ValueError(f"{name}: codes outside [0, {codebook.num_codes})")
    return c


def conv2d_output_hw(hw: tuple, kernel, stride, padding, dilation) -> tuple[int, int] | None:
    """``(Ho, Wo)`` of a conv2d (§5.1) on an ``hw`` input, or None for a geometry :func:`conv2d`
    refuses (it then says why)."""
    try:
        kh, kw = _pair(kernel, "kernel")
        sh, sw = _pair(stride, "stride")
        ph, pw = _pair(padding, "padding")
        dh, dw = _pair(dilation, "dilation")
    except ValueError:
        return None
    if min(sh, sw, dh, dw, kh, kw) < 1 or min(ph, pw) < 0:
        return None
    ho, wo = K.conv2d_output_size(hw[0], kh, sh, ph, dh), K.conv2d_output_size(hw[1], kw, sw, pw, dw)
    return (ho, wo) if ho >= 0 and wo >= 0 else None


def conv2d(codes: np.ndarray, codebook: Codebook, weight: np.ndarray, w_mant: np.ndarray, bias: np.ndarray, *,
           w_exp: int, f_out: int, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
           numerics: Numerics = Numerics(), name: str = "conv2d",
           ordered: bool | None = None, path: str | None = None,
           worst: dict | None = None, constants: ConvConstants | None = None,
           codes_in_range: bool = False, rows_sink=None) -> tuple[np.ndarray, dict]:
    """2-D convolution of codes (arithmetic.md §5.1–§5.4).

    codes int16/int32/int64[H, W, Ci] (flat codes of ``codebook``); weight int[Co, kh, kw, Ci/g]
    (OHWI); w_mant int64[Co] (m_w); bias int64[Co] (units 2^-(w_exp+unit_e));
    ``w_exp`` = k_w; ``f_out`` the output stream frac. ``ordered``: None decides
    by the worst case of §5.4; True/False forces a path (tests; forcing False on
    an op that can overflow gives int64 sums without the policy). ``path``:
    ``auto``/``reference``/``gemm32``/``gemm64``/``int8`` (None: ``$INTSIM_CONV_PATH``,
    default auto; see the module docstring). ``worst``: ``{accumulator name: W_j}``
    from :func:`intsim.bounds.conv_accumulators` (None: computed here, same numbers).
    ``constants``: :func:`conv_constants` of these weights, codebook and numerics
    (then ``ordered`` and ``worst`` are taken from it); None computes them.
    ``codes_in_range``: the codes are the output of an encoder of ``codebook`` (the engine's),
    so they lie in ``[0, N)`` and are not range-checked; otherwise a code outside is refused.
    ``rows_sink``: on the int8 path, called with every few finished output rows as
    ``rows_sink(oy0, oy1, rows)`` from the thread that made them (a consumer fused with
    the conv reads them while they are in cache), and the stream is then not stored: None
    is returned in its place; the other paths do not call it.
    Returns (int64[Ho, Wo, Co] stream or None, events with macs, acc_overflow,
    stream_overflow, saturations, ordered).
    """
    c = _check_codes(codes, codebook, name, codes_in_range)
    w = np.asarray(weight)
    groups = int(groups)
    if w.ndim != 4:
        raise ValueError(f"{name}: weight must be [Co, kh, kw, Ci/g], got shape {w.shape}")
    co_n, kh, kw, cig = w.shape
    if groups < 1 or co_n % groups or cig * groups != c.shape[2]:
        raise ValueError(f"{name}: channels inconsistent: input {c.shape[2]}, weight {w.shape}, groups {groups}")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if min(sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"{name}: stride/dilation must be >= 1 and padding >= 0")
    taps = conv2d_taps(c.shape[0], c.shape[1], kh, kw, sh, sw, ph, pw, dh, dw)
    # kn2row (one GEMM over all taps, then tap sums) for narrow stride-1 outputs, where the
    # im2col GEMM would have too few columns to run well.
    kn2row = groups == 1 and (sh, sw) == (1, 1) and co_n <= KN2ROW_MAX_CO
    if constants is None:
        constants = conv_constants(w, w_mant, codebook, numerics, groups=groups, ordered=ordered, worst=worst,
                                   name=name)
    return run_conv(c, codebook, constants, bias, groups, taps, w_exp, f_out, numerics, name, path, kn2row,
                (sh, sw, dh, dw), rows_sink)


def conv_transpose2d(codes: np.ndarray, codebook: Codebook, weight: np.ndarray, w_mant: np.ndarray,
                     bias: np.ndarray, *, w_exp: int, f_out: int, stride=(1, 1), padding=(0, 0),
                     output_padding=(0, 0), numerics: Numerics = Numerics(), name: str = "conv_transpose2d",
                     ordered: bool | None = None, path: str | None = None,
                     worst: dict | None = None, constants: ConvConstants | None = None,
                     codes_in_range: bool = False) -> tuple[np.ndarray, dict]:
    """Transposed convolution, gather form (arithmetic.md §5.5; groups 1, dilation 1).

    weight int[Co, kh, kw, Ci] (torch's [Ci, Co, kh, kw] transposed, not
    flipped); other arguments and the result as :func:`conv2d`.
    """
    c = _check_codes(codes, codebook, name, codes_in_range)
    w = np.asarray(weight)
    if w.ndim != 4 or w.shape[3] != c.shape[2]:
        raise ValueError(f"{name}: weight must be [Co, kh, kw, Ci={c.shape[2]}], got shape {w.shape}")
    _, kh, kw, _ = w.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    oph, opw = _pair(output_padding, "output_padding")
    if min(sh, sw) < 1 or min(ph, pw, oph, opw) < 0:
        raise ValueError(f"{name}: stride must be >= 1, padding and output_padding >= 0")
    if oph >= sh or opw >= sw:
        raise ValueError(f"{name}: output_padding {(oph, opw)} must be smaller than stride {(sh, sw)}")
    taps = conv_transpose2d_taps(c.shape[0], c.shape[1], kh, kw, sh, sw, ph, pw, oph, opw)
    # kn2row: the gather form's patch matrix is mostly padding taps; kn2row multiplies each input once.
    if constants is None:
        constants = conv_constants(w, w_mant, codebook, numerics, transposed=True, ordered=ordered, worst=worst,
                                   name=name)
    return run_conv(c, codebook, constants, bias, 1, taps, w_exp, f_out, numerics, name, path, True)


def conv_rows(codes_win: np.ndarray, win_y0: int, in_h: int, out_y0: int, out_y1: int, codebook: Codebook,
              weight: np.ndarray, w_mant: np.ndarray, bias: np.ndarray, *, w_exp: int, f_out: int,
              transposed: bool = False, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1,
              output_padding=(0, 0), numerics: Numerics = Numerics(), name: str = "conv2d",
              ordered: bool | None = None, path: str | None = None,
              worst: dict | None = None, constants: ConvConstants | None = None) -> tuple[np.ndarray, dict]:
    """Output rows ``[out_y0, out_y1)`` of :func:`conv2d` (or :func:`conv_transpose2d`) of an input
    of height ``in_h``, given only the input rows ``[win_y0, win_y0 + codes_win.shape[0])`` (full width).

    The window must hold every row those outputs read. The result and the events
    (MACs of those output rows, their overflow events) are exactly the untiled
    op's restricted to these rows: the same tap tables, sliced. Used by
    :mod:`intsim.tiling`.
    """
    c = _check_codes(codes_win, codebook, name)
    w = np.asarray(weight)
    if w.ndim != 4:
        raise ValueError(f"{name}: weight must be [Co, kh, kw, Ci/g], got shape {w.shape}")
    co_n, kh, kw, _ = w.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    if transposed:
        oph, opw = _pair(output_padding, "output_padding")
        iy_full = K.conv_transpose2d_tap_table(int(in_h), kh, sh, ph, oph)
        ix_of = K.conv_transpose2d_tap_table(c.shape[1], kw, sw, pw, opw)
        groups, kn2row, geometry = 1, True, None
    else:
        dh, dw = _pair(dilation, "dilation")
        iy_full = K.conv2d_tap_table(int(in_h), kh, sh, ph, dh)
        ix_of = K.conv2d_tap_table(c.shape[1], kw, sw, pw, dw)
        kn2row = int(groups) == 1 and (sh, sw) == (1, 1) and co_n <= KN2ROW_MAX_CO
        geometry = (sh, sw, dh, dw)
    if not 0 <= out_y0 <= out_y1 <= iy_full.shape[0]:
        raise ValueError(f"{name}: output rows [{out_y0}, {out_y1}) outside [0, {iy_full.shape[0]})")
    iy = iy_full[out_y0:out_y1]
    valid = iy >= 0
    if valid.any() and (int(iy[valid].min()) < win_y0 or int(iy[valid].max()) >= win_y0 + c.shape[0]):
        raise ValueError(f"{name}: input window rows [{win_y0}, {win_y0 + c.shape[0]}) do not cover the rows "
                         f"output rows [{out_y0}, {out_y1}) read")
    iy_of = np.where(valid, iy - int(win_y0), -1).astype(np.int64)
    if constants is None:
        constants = conv_constants(w, w_mant, codebook, numerics, groups=int(groups), transposed=transposed,
                                   ordered=ordered, worst=worst, name=name)
    return run_conv(c, codebook, constants, bias, int(groups), conv_taps(iy_of, ix_of, c.shape[:2], geometry), w_exp,
                f_out, numerics, name, path, kn2row, geometry)
