"""Yosys cell counts of the reference datapath (docs/rtl.md, "Synthesis"): the split and grid MACs and
the encoder at 4- and 8-bit activations, beside the cost model's per-product energy for the same choice.

Each block is wrapped with the layer-independent settings tied to constants (accumulator width 32 bits
in a 33-bit register so saturation logic stays, saturate policy, 3 segments) and synthesised with
Yosys' generic ``synth`` (no technology library: cells are Yosys' internal gates and flip-flops, so the
counts compare the two realizations, they are not an area in µm²). Run::

    python -m rtl.synth.synth [-o benchmarks/results/rtl_synth.json]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RTL = Path(__file__).resolve().parents[1]
ACC_BITS = 32
GRID_BITS = {4: 10, 8: 16}  # the grid LUT width assumed per activation width (arithmetic.md §8: 6–16)


def _wrappers(b: int) -> str:
    cw, qw, gw, aw = b + 1, b + 1, GRID_BITS[b], ACC_BITS + 1
    return f"""
module split_b{b} (input logic clk, clear, en, input logic signed [{b - 1}:0] w, input logic [{cw - 1}:0] code,
    input logic [{cw - 1}:0] base1, base2, input logic signed [{qw - 1}:0] qmin0, qmin1, qmin2,
    input logic [2:0] has_offset, output logic signed [{aw - 1}:0] p0, p1, p2, q0, q1, q2);
  logic [31:0] ev;
  isim_mac_split #(.W_W({b}), .CODE_W({cw}), .Q_W({qw}), .ACC_W({aw})) u (.clk, .clear, .en, .w, .code,
    .n_seg(2'd3), .base1, .base2, .qmin0, .qmin1, .qmin2, .has_offset, .acc_bits(7'd{ACC_BITS}), .wrap(1'b0),
    .p0, .p1, .p2, .q0, .q1, .q2, .events(ev));
endmodule
module grid_b{b} (input logic clk, lut_we, input logic [{cw - 1}:0] lut_addr, input logic signed [{gw - 1}:0] lut_data,
    input logic clear, en, input logic signed [{b - 1}:0] w, input logic [{cw - 1}:0] code,
    output logic signed [{aw - 1}:0] a);
  logic [31:0] ev;
  isim_mac_grid #(.W_W({b}), .CODE_W({cw}), .G_W({gw}), .LUT_N({1 << cw}), .ACC_W({aw})) u (.clk, .lut_we,
    .lut_addr, .lut_data, .clear, .en, .w, .code, .acc_bits(7'd{ACC_BITS}), .wrap(1'b0), .a, .events(ev));
endmodule
module encoder_b{b} (input logic signed [39:0] x, thr0, thr1, center0, center1, center2,
    input logic signed [39:0] mult0, mult1, mult2, input logic [5:0] shift0, shift1, shift2,
    input logic signed [39:0] qmin0, qmin1, qmin2, qmax0, qmax1, qmax2, base0, base1, base2,
    output logic [{cw - 1}:0] code, output logic saturated);
  isim_encoder #(.W(40), .CODE_W({cw})) u (.x, .n_seg(2'd3), .thr0, .thr1, .center0, .center1, .center2,
    .mult0, .mult1, .mult2, .shift0, .shift1, .shift2, .qmin0, .qmin1, .qmin2, .qmax0, .qmax1, .qmax2,
    .base0, .base1, .base2, .mode(2'd0), .code, .saturated);
endmodule
"""


def synth_cells(top: str, wrappers: Path) -> dict:
    """Yosys ``synth -top top; stat``: total cells and the count per cell type."""
    srcs = " ".join(str(RTL / f) for f in ("isim_round.sv", "isim_overflow.sv", "isim_encoder.sv",
                                            "isim_mac_split.sv", "isim_mac_grid.sv"))
    script = f"read_verilog -sv {srcs} {wrappers}; synth -flatten -top {top}; stat"
    r = subprocess.run(["yosys", "-q", "-p", script + "; tee -o /dev/stdout stat"], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"yosys failed on {top}: {r.stderr.strip().splitlines()[-1] if r.stderr else r.stdout[-500:]}")
    text = r.stdout
    total = int(re.findall(r"Number of cells:\s+(\d+)", text)[-1])
    block = text.rsplit("Number of cells:", 1)[1]
    kinds = {m.group(1): int(m.group(2)) for m in re.finditer(r"^\s+(\$_\w+_)\s+(\d+)", block, re.M)}
    ff = sum(v for k, v in kinds.items() if "DFF" in k or "SDFF" in k or "DLATCH" in k)
    return {"cells": total, "flip_flops": ff, "by_type": kinds}


def cost_model_energy(b: int) -> dict:
    """The cost model's energy of one product (intsim/cost/model.py): split ``w × index`` multiply and
    accumulate (+ the offset add into Q_s in a tail segment); grid ``w × grid_bits`` multiply, accumulate
    and a LUT read of the code."""
    from intsim.cost.energy import EnergyModel, load_energy_table

    em = EnergyModel(load_energy_table())
    split_dense = em.mult(b, b + 1) + em.add(ACC_BITS)
    split_tail = split_dense + em.add(ACC_BITS)
    grid = em.mult(b, GRID_BITS[b]) + em.add(ACC_BITS) + em.lut_read(1 << (b + 1), GRID_BITS[b])
    return {"split_dense_pj": split_dense, "split_tail_pj": split_tail, "grid_pj": grid,
            "grid_over_split_dense": grid / split_dense}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rtl.synth.synth", description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", default=None)
    a = p.parse_args(argv)
    if shutil.which("yosys") is None:
        print("rtl synth: error: yosys is not installed (apt-get install -y yosys)", file=sys.stderr)
        return 2
    out = {"tool": subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip(),
           "acc_bits": ACC_BITS, "grid_bits": GRID_BITS, "blocks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for b in (4, 8):
            w = Path(tmp) / f"wrap{b}.sv"
            w.write_text(_wrappers(b))
            for kind in ("split", "grid", "encoder"):
                out["blocks"][f"{kind}_b{b}"] = synth_cells(f"{kind}_b{b}", w)
            s, g = out["blocks"][f"split_b{b}"]["cells"], out["blocks"][f"grid_b{b}"]["cells"]
            out[f"b{b}"] = {"grid_over_split_cells": g / s, "cost_model": cost_model_energy(b)}
    text = json.dumps(out, indent=1)
    if a.output:
        Path(a.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
