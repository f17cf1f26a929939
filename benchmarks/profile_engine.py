"""Where the engine's time goes: cProfile of one run, single-threaded so every kernel is attributed.

``python -m benchmarks.profile_engine ARTIFACT [--scale 4] [--top 25]`` runs
``intsim.engine.run`` once to warm up, then once under cProfile with
``INTSIM_THREADS=1`` (the banded kernels then run in the calling thread, so
numba kernels and BLAS calls appear as their own entries; numpy's matmul is a
C call inside the band function and shows as that function's own time).
Prints the top functions by own time and a summary by kernel family.

``--per-conv``: instead, each conv's int8 tile kernel (``int8dot.conv_rows``) alone: its
calls are recorded during one run, then each is re-run (median of 7 CPU times, ms) as is
and with its sparse tail list emptied (the difference is the tail pass; those outputs are
wrong and discarded), with its plane count and listed tail elements.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

os.environ.setdefault("INTSIM_THREADS", "1")
os.environ.setdefault("INTSIM_MALLOC", "keep")  # as the intsim command runs the engine (intsim/allocator.py)

FAMILIES = {
    "GEMM (numpy matmul, inside the band closures)": ("conv.py:band",),
    "int8 implicit GEMM + fused rescale (with the sparse tails' taps)": ("int8dot.py:conv_rows",),
    "int8 offset planes": ("int8dot.py:offset_plane",),
    "im2col": ("gemm.py:im2col",),
    "sparse tail pass (listing; taps on the GEMM paths)": ("gemm.py:sparse_taps", "gemm.py:sparse_fill"),
    "rescale (finish / kn2row sums)": ("gemm.py:finish_rows", "gemm.py:kn2row_rows", "gemm.py:add_scaled_rows"),
    "MAC counts + segment census": ("gemm.py:segment_counts",),
    "value planes": ("gemm.py:value_plane",),
    "encoder kernel": ("encode.py:encode_rows",),
    "pixel shuffle kernel": ("resample.py:pixel_shuffle_rows",),
    "reference conv kernel": ("conv.py:conv_kernel",),
    "stream kernels (add/concat/mul requantize, split copy, leaky/prelu)": (
        "elementwise.py:requantize_rows", "elementwise.py:copy_channels_rows", "elementwise.py:slope_rows"),
    "stream kernels with their consumer's encoder fused (codes and histogram)": (
        "elementwise.py:slope_encode_rows", "elementwise.py:requantize_encode_rows"),
    "pooling kernels (mean/std sums)": ("pooling.py:sum_rows", "pooling.py:deviation_rows"),
    "image_out kernel": ("image.py:image_out_rows",),
    "numpy element-wise ops (add, relu, requantize, ...)": ("elementwise.py", "rounding.py", "overflow.py",
                                                          "image.py", "{method 'astype'", "{built-in method numpy"),
    "load-time bounds per conv": ("bounds.py",),
}


def _median_ms(fn, n: int = 7) -> float:
    ts = []
    for _ in range(n):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return 1e3 * sorted(ts)[n // 2]


def per_conv(art, img) -> None:
    """Print each int8 conv call's kernel time with and without its sparse tail pass."""
    import numpy as np

    from intsim import engine
    from intsim.kernels import int8dot as KI

    calls = []
    orig = KI.conv_rows

    def record(*a):
        calls.append(a)
        return orig(*a)

    engine.run(art, img, keep_tensors=False)
    KI.conv_rows = record
    try:
        engine.run(art, img, keep_tensors=False)
    finally:
        KI.conv_rows = orig
    names = [op.name for op in art.ops if op.op == "conv2d"]
    if len(calls) != len(names):
        print(f"{len(calls)} int8 conv calls for {len(names)} conv2d ops (some ran on another path): "
              "names below are positional guesses", file=sys.stderr)
    sparse_at = 19  # conv_rows' sparse tuple; its first entry is the row pointer of the tail list
    tot = tot_nt = 0.0
    print(f"{'conv':24} {'planes':>6} {'tail elements':>13} {'ms':>7} {'no tails':>9}")
    for name, a in zip(names, calls):
        a = list(a)
        full = _median_ms(lambda: orig(*a))
        b = list(a)
        b[sparse_at] = (np.zeros(0, np.int64),) + tuple(a[sparse_at][1:])
        nt = _median_ms(lambda: orig(*b))
        tot, tot_nt = tot + full, tot_nt + nt
        print(f"{name:24} {a[3].shape[0]:6d} {a[sparse_at][1].shape[0]:13d} {full:7.2f} {nt:9.2f}")
    print(f"{'all':24} {'':6} {'':13} {tot:7.1f} {tot_nt:9.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("artifact")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--image", default=None, help="default: Set5 baby LR ×scale")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--per-conv", action="store_true", help="each int8 conv kernel alone, with and without tails")
    args = ap.parse_args(argv)
    from benchmarks.bench_engine import SET5_LR
    from intsim import engine
    from intsim.artifact import load_artifact
    from intsim.images import read_image

    art = load_artifact(args.artifact)
    img = read_image(args.image or SET5_LR / f"X{args.scale}" / f"babyx{args.scale}.png", 3).pixels
    if args.per_conv:
        per_conv(art, img)
        return 0
    engine.run(art, img, keep_tensors=False)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    engine.run(art, img, keep_tensors=False)
    prof.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(prof)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.top)
    print(buf.getvalue())
    fam = {k: 0.0 for k in FAMILIES}
    other = 0.0
    for (fn, line, name), (cc, nc, tt, ct, callers) in st.stats.items():
        key = f"{os.path.basename(fn)}:{name}" if fn != "~" else name
        for fam_name, pats in FAMILIES.items():
            if any(p in key for p in pats):
                fam[fam_name] += tt
                break
        else:
            other += tt
    total = sum(fam.values()) + other
    print(f"single-threaded run: {wall:.2f} s wall (profiled)")
    for k, v in sorted(fam.items(), key=lambda kv: -kv[1]):
        print(f"  {k:55} {v:7.3f} s  {v / total:6.1%}")
    print(f"  {'other (Python, dispatch, allocation)':55} {other:7.3f} s  {other / total:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
