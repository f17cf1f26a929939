"""Bit-reproducible calibration across thread counts.

torch's float reductions (convolutions, sums) change their summation order
with the number of intra-op threads, so the same calibration run with
``OMP_NUM_THREADS=1`` and with 2 threads ended in different codebook steps
and encoder multipliers — and a golden made on one machine failed on another.
Calibration therefore runs on a fixed number of threads (:data:`CALIB_THREADS`),
scoped: the caller's setting is restored afterwards. One thread is also the
fastest here: block reconstruction is dominated by small element-wise ops
(measured 0.13 s/step with 1 thread against 0.45 s with 2 on a busy 2-core box).
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["CALIB_THREADS", "fixed_threads"]

#: intra-op threads of every calibration (artifact bytes must not depend on the machine's setting)
CALIB_THREADS = 1


@contextlib.contextmanager
def fixed_threads(n: int = CALIB_THREADS):
    """Run the body with ``n`` torch intra-op threads, then restore the caller's count."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
