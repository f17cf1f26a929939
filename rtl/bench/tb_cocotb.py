"""cocotb test of rtl/tb/tb_layer.sv: waits for the bench to finish its job list and checks that every
job ran. The tap loops run inside the simulator (a Python callback per tap would make a real layer
take minutes); the results are judged afterwards by ``intsim compare`` on the dumps (rtl/bench/cosim.py)."""
from __future__ import annotations

import os

import cocotb
from cocotb.triggers import RisingEdge, Timer


@cocotb.test()
async def run_layer_jobs(dut):
    """Every job of +jobs=FILE is run and dumped."""
    expected = int(os.environ["INTSIM_RTL_JOBS"])
    if not int(dut.done.value):
        await RisingEdge(dut.done)
    await Timer(1, unit="ns")
    assert int(dut.jobs_done.value) == expected, f"bench ran {int(dut.jobs_done.value)} of {expected} jobs"
    dut._log.info("intsim rtl bench: %d job(s), %d MAC step(s)", expected, int(dut.taps.value))
