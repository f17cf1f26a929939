"""Input-size facts of an artifact's graph: receptive field, smallest runnable size, memory estimates.

Pure functions of the graph and an input size (no pixels are touched). Sizes
are in pixels of the graph's input image, memory in bytes.

* :func:`receptive_field` — the *local* receptive field ``(rows, cols)`` of the
  graph output: how many input pixels one output pixel can read through the
  spatial ops (kernel, stride, dilation, transposed stride, upsampling), over
  every path. Global pools (``mean_pool``, ``std_pool``) read the whole image by
  design and are not counted (zero padding never enters them).
* :func:`size_problem` — ``None`` when the graph can run on an ``h × w`` image,
  else the reason: some op's output would be empty (e.g. an unpadded conv on a
  too-small image), or an element-wise op would combine tensors of different
  sizes (e.g. a stride-2 path re-joining a skip path on an odd size).
* :func:`min_input_size` — the smallest ``(h, w)`` on which every tensor is non-empty (exact, one
  backward pass); :func:`smallest_fitting_size` — the nearest size at or above one that the graph runs on.
* :func:`untiled_peak_bytes` — the peak memory of :func:`intsim.engine.run`
  (``keep_tensors=False``): the largest sum of tensors live at once (uint8
  images, int64 streams and codes, as the engine holds them) plus
  ``WORKSPACE`` int64 output-sized temporaries of the running op.
* :func:`tiled_peak_bytes` — the same for :func:`intsim.tiling.run_tiled` in
  bands of ``tile_rows`` rows: the input image, the graph outputs, every
  materialized tensor (compact storage, see :mod:`intsim.tiling`) and the line
  buffers (band plus halo rows of each streamed tensor, int64).
* :func:`verify_peak_bytes` — ``verify``: the engine's untiled working set (tensors are compared as
  they are produced, none kept) plus one comparison of the largest tensor.
* :func:`golden_bytes` — golden (torch float64) in bands of rows: the tensors
  the band plan materializes, float64 line buffers, and its conv blocks (golden
  writes each kept tensor to disk as it is produced).

Estimates are deliberately conservative (an upper bound up to allocator noise),
not exact: they decide between an untiled run, a tiled run and a refusal.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from intsim.artifact import Artifact
from intsim.ops.conv_params import ConvParams
from intsim.ops.opdef import OPS, ops_with_geometry
from intsim.tiling import axis_out_size, infer_heights, plan, store_dtype

GLOBAL_OPS = ops_with_geometry("global")
CONV_OPS = ops_with_geometry("conv") | ops_with_geometry("conv_transpose")
JOIN_OPS = frozenset({"add", "mul", "concat"})  # element-wise / channel ops whose spatial inputs must agree
MIB = 1 << 20
WORKSPACE = 4  # int64 output-sized temporaries of one op (requantize, resampling), measured with tracemalloc


def _global_tensors(art: Artifact) -> set[str]:
    """Tensors that do not depend on position (outputs of global pools and ops on them only)."""
    glob: set[str] = set()
    for op in art.ops:
        if op.op in GLOBAL_OPS or (op.inputs and all(t in glob for t in op.inputs)):
            glob.update(op.outputs)
    return glob


@dataclass(frozen=True)
class ReceptiveField:
    """Local receptive field of the graph output, in input pixels (rows, cols); ``None`` for a global output."""

    rows: int | None
    cols: int | None


def receptive_field(art: Artifact) -> ReceptiveField:
    """Receptive field of ``art.outputs[0]`` over all paths (see the module docstring)."""
    # per tensor and axis: (extent in input pixels, jump = input pixels per step of this tensor)
    rf: dict[str, list[tuple[Fraction, Fraction]]] = {art.inputs[0]: [(Fraction(1), Fraction(1))] * 2}
    glob = _global_tensors(art)
    for op in art.ops:
        ins = [rf[t] for t in op.inputs if t in rf and t not in glob]
        if op.op in GLOBAL_OPS or not ins:
            continue
        out = []
        for ax in range(2):
            ext = max(i[ax][0] for i in ins)
            jump = max(i[ax][1] for i in ins)
            out.append(OPS[op.op].receptive(op, ext, jump, ax))  # the op registry's receptive field
        for t in op.outputs:
            rf[t] = out
    o = art.outputs[0]
    if o not in rf or o in glob:
        return ReceptiveField(None, None)
    return ReceptiveField(math.ceil(rf[o][0][0]), math.ceil(rf[o][1][0]))


def tensor_shapes(art: Artifact, h: int, w: int) -> dict[str, tuple[int, int]]:
    """``tensor → (H, W)`` for an ``h × w`` input image (pixels; global tensors are 1×1)."""
    return infer_heights(art, h, w)


def _first_problem(art: Artifact, h: int, w: int):
    """``(op, kind, sizes)`` of the first op that cannot run on ``h × w``, or ``None``."""
    hw = tensor_shapes(art, h, w)
    glob = _global_tensors(art)
    for op in art.ops:
        for t in op.outputs:
            if t not in glob and (hw[t][0] < 1 or hw[t][1] < 1):
                return op, "empty", None
        if op.op in JOIN_OPS:
            sizes = sorted({hw[t] for t in op.inputs if t not in glob})
            if len(sizes) > 1:
                return op, "mismatch", sizes[:2]
    return None


def size_problem(art: Artifact, h: int, w: int) -> str | None:
    """Why the graph cannot run on an ``h × w`` image, or ``None`` when it can."""
    found = _first_problem(art, h, w)
    if found is None:
        return None
    op, kind, sizes = found
    if kind == "empty":
        mh, mw = min_input_size(art)
        fits = smallest_fitting_size(art, mh, mw)
        then = ""
        if fits is None:
            then = "; no size up to that plus 4096 fits every join of the graph"
        elif fits != (mh, mw):
            then = f"; the smallest size that runs is {fits[1]}×{fits[0]}"
        return (f"image {w}×{h} (W×H) is too small for this network: op {op.name!r} ({op.op}) would "
                f"produce an empty output; it needs at least {mw}×{mh} pixels{then}")
    (ah, aw), (bh, bw) = sizes
    fits = smallest_fitting_size(art, h, w)
    hint = "" if fits is None else f"; the nearest larger size that runs is {fits[1]}×{fits[0]}"
    return (f"image {w}×{h} (W×H) does not fit this network: op {op.name!r} ({op.op}) combines "
            f"tensors of {aw}×{ah} and {bw}×{bh}{hint}")


def _min_axis(art: Artifact, ax: int) -> int:
    """Smallest input size along ``ax`` for which every spatial tensor is non-empty, computed directly.

    Backward over the graph: ``need[t]`` is the smallest size of tensor ``t`` that keeps ``t`` and
    everything computed from it non-empty; an op's output size is a non-decreasing function of its
    first input's size (:func:`intsim.tiling.axis_out_size`, which also derives the other inputs'
    sizes from that one), so each op's requirement inverts in closed form
    (:meth:`intsim.ops.opdef.OpDef.min_input`). One pass, O(ops)."""
    glob = _global_tensors(art)
    need = {t: 1 for t in art.tensors if t not in glob}
    for op in reversed(art.ops):
        src = op.inputs[0]
        if op.op in GLOBAL_OPS or src in glob:
            continue
        m = max(need.get(t, 1) for t in op.outputs)
        x = OPS[op.op].min_input(op, m, ax)  # the inverse of the op registry's size function
        need[src] = max(need.get(src, 1), x, 1)
    return need[art.inputs[0]]


def min_input_size(art: Artifact) -> tuple[int, int]:
    """Smallest ``(h, w)`` for which every spatial tensor is non-empty (each axis independently; exact,
    O(ops): see :func:`_min_axis`)."""
    return _min_axis(art, 0), _min_axis(art, 1)


#: how many sizes above a given one :func:`smallest_fitting_size` tries per axis
FIT_WINDOW = 4096


def _first_fitting(art: Artifact, start: int, ax: int) -> int | None:
    """Smallest size ``>= start`` along ``ax`` on which every spatial tensor is non-empty and every join
    (add, mul, concat) combines inputs of one size, among ``start … start + FIT_WINDOW − 1``.

    All candidates at once (int64 arrays, one numpy operation per op: O(ops), not O(ops × candidates)
    Python steps). Sizes past 2^40 count as not fitting (no image runs there; it keeps int64 exact)."""
    cap = 1 << 40
    glob = _global_tensors(art)
    n = np.arange(start, start + FIT_WINDOW, dtype=np.int64)
    ok = np.ones(n.shape, dtype=bool)
    size = {art.inputs[0]: n}
    for op in art.ops:
        if op.op in JOIN_OPS:
            spatial = [size[t] for t in op.inputs if t not in glob]
            for other in spatial[1:]:
                ok &= other == spatial[0]
        out = np.minimum(axis_out_size(op, size[op.inputs[0]], ax), cap)
        for t in op.outputs:
            size[t] = out
            if t not in glob:
                ok &= (out >= 1) & (out < cap)
    hits = np.flatnonzero(ok)
    return int(n[hits[0]]) if hits.size else None


def smallest_fitting_size(art: Artifact, h: int, w: int) -> tuple[int, int] | None:
    """The smallest ``(h', w')`` with ``h' >= h`` and ``w' >= w`` that the graph runs on, or ``None`` when
    none lies within :data:`FIT_WINDOW` of ``(h, w)``. The axes are independent (every size formula acts
    on one axis), so the per-axis minima are also the pair nearest to ``(h, w)`` and of least area."""
    fh, fw = _first_fitting(art, h, 0), _first_fitting(art, w, 1)
    return None if fh is None or fw is None else (fh, fw)


def _engine_bytes(art: Artifact, t: str) -> int:
    return 1 if art.tensors[t].kind == "image" else 8


def untiled_peak_bytes(art: Artifact, h: int, w: int) -> int:
    """Estimated peak bytes of ``engine.run(art, image, keep_tensors=False)`` on an ``h × w`` image."""
    hw = tensor_shapes(art, h, w)

    def size(t: str) -> int:
        return max(hw[t][0], 0) * max(hw[t][1], 0) * art.tensors[t].channels * _engine_bytes(art, t)

    uses: dict[str, int] = {}
    for op in art.ops:
        for t in op.inputs:
            uses[t] = uses.get(t, 0) + 1
    live = {art.inputs[0]: size(art.inputs[0])}
    peak = sum(live.values())
    outputs = set(art.outputs)
    for op in art.ops:
        produced = {t: size(t) for t in op.outputs}
        work = WORKSPACE * max((max(hw[t][0], 0) * max(hw[t][1], 0) * art.tensors[t].channels * 8
                                for t in op.outputs), default=0)
        peak = max(peak, sum(live.values()) + sum(produced.values()) + work)
        live.update(produced)
        for t in op.inputs:
            uses[t] -= 1
            if uses[t] == 0 and t not in outputs:
                live.pop(t, None)
    return int(peak)


def tiled_peak_bytes(art: Artifact, h: int, w: int, tile_rows: int) -> int:
    """Estimated peak bytes of ``run_tiled(art, image, tile_rows)`` on an ``h × w`` image."""
    hw = tensor_shapes(art, h, w)
    P = plan(art)
    # rows kept for the next band: the largest kernel reach, dilation included
    halo = 2 + max([(p.kernel[0] - 1) * p.dilation[0]
                    for p in (ConvParams.of(op.attrs) for op in art.ops if op.op in CONV_OPS)]
                   + [2])
    total = h * w * art.tensors[art.inputs[0]].channels
    for t, (th, tw) in hw.items():
        if P.is_global.get(t, False) or t == art.inputs[0]:
            continue
        c = art.tensors[t].channels
        if t in P.materialize:
            total += th * tw * c * store_dtype(art, t).itemsize
            if t in art.outputs:
                total += th * tw * c * _engine_bytes(art, t)  # the engine-dtype copy returned
        else:
            band = min(th, math.ceil(tile_rows * th / max(h, 1)) + halo)
            total += band * tw * c * 8 * 2  # the line buffer and the op's band output
    return int(total)


def verify_peak_bytes(art: Artifact, h: int, w: int) -> int:
    """Estimated peak bytes of ``verify`` on one ``h × w`` golden input: ``engine.run`` with an observer
    (:func:`untiled_peak_bytes`: nothing kept beyond the engine's working set), plus comparing the largest
    tensor: the golden array and two int64 copies (8 bytes each) and a bool mask."""
    hw = tensor_shapes(art, h, w)
    biggest = max((max(v[0], 0) * max(v[1], 0) * art.tensors[t].channels for t, v in hw.items()), default=0)
    return int(untiled_peak_bytes(art, h, w) + (3 * 8 + 1) * biggest)


def golden_bytes(art: Artifact, h: int, w: int, band_rows: int) -> int:
    """Estimated peak bytes of golden (torch float64, :mod:`golden.bands`) on an ``h × w`` image in bands
    of ``band_rows`` rows: the tensors the band plan materializes (storage integers), and per streamed
    tensor its band plus halo rows in float64 three times (line buffer, the op's output, temporaries),
    plus two conv blocks (a band's im2col, at most :data:`GOLDEN_CONV_BLOCK`). Kept tensors go to disk as produced."""
    hw = tensor_shapes(art, h, w)
    P = plan(art)
    halo = 2 + max([(p.kernel[0] - 1) * p.dilation[0]
                    for p in (ConvParams.of(op.attrs) for op in art.ops if op.op in CONV_OPS)] + [2])
    total = h * w * art.tensors[art.inputs[0]].channels
    block = 0
    for op in art.ops:
        if op.op in CONV_OPS and not P.is_global.get(op.outputs[0], False):
            (th, tw), taps = hw[op.outputs[0]], int(op.attrs["kernel"][0]) * int(op.attrs["kernel"][1])
            rows = min(max(th, 0), math.ceil(band_rows * th / max(h, 1)) + halo)
            block = max(block, rows * max(tw, 0) * taps * art.tensors[op.inputs[0]].channels * 8)
    total += 2 * min(block, GOLDEN_CONV_BLOCK)
    for t, (th, tw) in hw.items():
        if P.is_global.get(t, False) or t == art.inputs[0]:
            continue
        c = art.tensors[t].channels
        if t in P.materialize:
            total += max(th, 0) * max(tw, 0) * c * store_dtype(art, t).itemsize
        else:
            band = min(max(th, 0), math.ceil(band_rows * th / max(h, 1)) + halo)
            total += band * max(tw, 0) * c * 8 * 3
    return int(total)


#: bytes of one im2col / shifted-GEMM block of golden's convolution (golden.ops.conv.COLS_BYTES)
GOLDEN_CONV_BLOCK = 48 << 20


def default_budget_bytes() -> int:
    """Half of the available memory (``MemAvailable`` of /proc/meminfo; 4 GiB when unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def mib(n: int) -> str:
    """``n`` bytes as a short figure: KiB below 1 MiB, else MiB."""
    if n < MIB:
        return f"{n / 1024:.1f} KiB"
    return f"{n / MIB:.1f} MiB" if n < 100 * MIB else f"{n / MIB:.0f} MiB"
