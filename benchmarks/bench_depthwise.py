"""Depthwise 3×3 conv: the reference kernel against the fast path (intsim/kernels/gemm.py ``depthwise_rows``).

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/bench_depthwise.py [H] [C]``
(default 128×128×64, signed two-region 4-bit codes, split realization). Prints the best of three
timings per path and checks that both give the same integers and counters.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from intsim.artifact import Numerics
from intsim.ops.conv import conv2d
from tests.artifact_factory import make_codebook


def main(H: int = 128, C: int = 64) -> None:
    rng = np.random.default_rng(0)
    cb = make_codebook("signed2r", 4, 16, "split")
    n = sum(s.qmax - s.qmin + 1 for s in cb.segments)
    codes = rng.integers(0, n, (H, H, C)).astype(np.uint8)
    w = rng.integers(-127, 128, (C, 3, 3, 1)).astype(np.int8)
    m = rng.integers(1, 200, C).astype(np.int64)
    b = rng.integers(-1000, 1000, C).astype(np.int64)
    res = {}
    for path in ("reference", "auto"):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            res[path] = conv2d(codes, cb, w, m, b, w_exp=10, f_out=14, padding=(1, 1), groups=C,
                               numerics=Numerics(), path=path)
            best = min(best, time.perf_counter() - t)
        print(f"{path:9s} {best * 1000:8.1f} ms  ({H}×{H}×{C}, 3×3 depthwise)")
    same = np.array_equal(res["reference"][0], res["auto"][0]) and res["reference"][1] == res["auto"][1]
    print("identical integers and counters:", same)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
