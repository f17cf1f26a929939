"""cocotb tests of single RTL blocks against intsim's own arithmetic, value by value (docs/rtl.md):
``isim_round`` (§2) and ``isim_overflow`` (§4) at the edges the layer benches cannot reach — shifts 0,
1, 31, 52 and 62, |I| up to 2^62, ties at every shift, widths 8–48 bits around their range ends.
The simulator's Python runs intsim's numpy implementations for the expected values."""
from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import Timer

from intsim.overflow import apply_overflow
from intsim.rounding import RoundingMode, round_shift
from rtl.bench.cosim import RTL_ROUNDINGS

SHIFTS = (0, 1, 2, 3, 31, 52, 62)


def _round_inputs(n: int) -> list[int]:
    top = (1 << 62) - 1
    vals = {0, 1, -1, 2, -2, 3, -3, top, -top, -(1 << 62), (1 << 53) - 1, -(1 << 53) + 1}
    if n:
        h = 1 << (n - 1)
        for k in (0, 1, 2, 3, -1, -2, -3, 1000, -1001):
            base = k << n
            vals |= {base + h, base + h - 1, base + h + 1, base - h}
    rng = np.random.default_rng(n)
    vals |= {int(v) for v in rng.integers(-(1 << 62), 1 << 62, 24)}
    return sorted(v for v in vals if -(1 << 62) <= v <= top)


@cocotb.test()
async def round_matches_intsim(dut):
    """isim_round equals intsim.rounding.round_shift in every mode it implements at every tested shift."""
    if os.environ.get("INTSIM_RTL_UNIT") != "round":
        return
    checked = 0
    for mode in map(RoundingMode.parse, RTL_ROUNDINGS):
        dut.mode.value = int(mode)
        for n in SHIFTS:
            dut.n.value = n
            xs = _round_inputs(n)
            want = round_shift(np.array(xs, dtype=np.int64), n, mode)
            for x, w in zip(xs, want):
                dut.i.value = x
                await Timer(1, unit="ns")
                got = dut.q.value.to_signed()
                assert got == int(w), f"R({x}, {n}) {mode.spec_name}: rtl {got}, intsim {int(w)}"
                checked += 1
    dut._log.info("isim_round: %d values checked", checked)


@cocotb.test()
async def overflow_matches_intsim(dut):
    """isim_overflow equals intsim.overflow.apply_overflow (values and events) for saturate and wrap."""
    if os.environ.get("INTSIM_RTL_UNIT") != "overflow":
        return
    checked = 0
    for bits in (8, 12, 16, 24, 32, 40, 48):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        xs = [0, 1, -1, lo, hi, lo - 1, hi + 1, 2 * lo, 2 * hi + 1, 2 * hi + 2, 40000, -32769, 3 * hi, 5 * lo,
              (1 << 62) - 1, -(1 << 62)]
        dut.bits.value = bits
        for policy in ("saturate", "wrap"):
            dut.wrap.value = int(policy == "wrap")
            for x in xs:
                w, ev = apply_overflow(np.array([x], dtype=np.int64), bits, policy, "unit")
                dut.v.value = x
                await Timer(1, unit="ns")
                got, got_ev = dut.o.value.to_signed(), int(dut.event_o.value)
                assert (got, got_ev) == (int(w[0]), ev), f"{policy} {x} at {bits} bits: rtl {(got, got_ev)}, " \
                                                          f"intsim {(int(w[0]), ev)}"
                checked += 1
    dut._log.info("isim_overflow: %d values checked", checked)
