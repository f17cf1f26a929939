"""Reference line for the engine benchmark: the register-only ``vpdpbusd`` rate of one core.

A numba function whose loop body is ``CHAINS`` independent ``vpdpbusd`` (AVX-512
VNNI, 64 uint8×int8 products into 16 int32 lanes each) on accumulators held in
vector registers, operands loaded once before the loop: no memory traffic, no
dependency stalls (24 chains cover the instruction's latency × throughput). Its
rate in int8 MAC/s is the ceiling any int8 conv on this core can approach;
the benchmark reports each contender's conv MAC rate as a share of it.
Single thread; returns None where the CPU lacks AVX-512 VNNI.
"""
from __future__ import annotations

import time

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

CHAINS = 24
MACS_PER_INSTR = 64
_I32 = ir.IntType(32)
_V16 = ir.VectorType(_I32, 16)
_V64B = ir.VectorType(ir.IntType(8), 64)


@intrinsic
def _vnni_loop(typingctx, a, b, n, out):
    """``out[0:16] = Σ_chains Σ_n vpdpbusd(a, b)`` with ``CHAINS`` register accumulators."""
    sig = types.void(a, b, n, out)

    def codegen(context, builder, signature, args):
        from numba.core import cgutils

        a_v, b_v, n_v, o_v = args
        A = context.make_array(signature.args[0])(context, builder, a_v)
        B = context.make_array(signature.args[1])(context, builder, b_v)
        O = context.make_array(signature.args[3])(context, builder, o_v)
        mod = builder.module
        try:
            dot = mod.get_global("llvm.x86.avx512.vpdpbusd.512")
        except KeyError:
            dot = ir.Function(mod, ir.FunctionType(_V16, [_V16, _V64B, _V64B]), "llvm.x86.avx512.vpdpbusd.512")
        av = builder.load(builder.bitcast(A.data, _V64B.as_pointer()), align=1)
        bv = builder.load(builder.bitcast(B.data, _V64B.as_pointer()), align=1)
        accs = [cgutils.alloca_once_value(builder, ir.Constant(_V16, None)) for _ in range(CHAINS)]
        with cgutils.for_range(builder, n_v):
            for acc in accs:
                builder.store(builder.call(dot, [builder.load(acc), av, bv]), acc)
        total = builder.load(accs[0])
        for acc in accs[1:]:
            total = builder.add(total, builder.load(acc))
        builder.store(total, builder.bitcast(O.data, _V16.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _run(a, b, n, out):
    _vnni_loop(a, b, n, out)


def vnni_peak_gmacs(iters: int = 2_000_000, rounds: int = 9) -> float | None:
    """Best of ``rounds`` rates (GMAC/s) of the register-only loop on one thread, in CPU time
    (``process_time``: on a shared machine the time the loop waited for the core is not its
    own); None without VNNI."""
    from intsim.kernels import int8dot

    if not int8dot.available():
        return None
    a = np.ones(64, dtype=np.uint8)
    b = np.ones(64, dtype=np.int8)
    out = np.zeros(16, dtype=np.int32)
    _run(a, b, 10, out)
    best = 0.0
    for _ in range(rounds):
        t0 = time.process_time()
        _run(a, b, iters, out)
        dt = time.process_time() - t0
        best = max(best, iters * CHAINS * MACS_PER_INSTR / dt / 1e9)
    return best


if __name__ == "__main__":
    print(f"register-only vpdpbusd loop, 1 thread: {vnni_peak_gmacs():.1f} GMAC/s")
