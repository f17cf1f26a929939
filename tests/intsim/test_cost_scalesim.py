"""ORACLE: the cost model's compute cycles against SCALE-Sim (PyPI ``scalesim``).

For uniform int8 conv layers with the shapes of EDSR-baseline and IMDN, on the same
array size and dataflow, ``estimate_cost(...)["layers"][i]["cycles"]["compute"]`` must
agree with SCALE-Sim's per-layer "Total Cycles" (COMPUTE_REPORT.csv) within 10 %.
SCALE-Sim runs in a temporary directory, in this process, in bandwidth-estimation
(CALC) mode so that its cycle count is the compute cycles (no stalls), with traces off.

Layer shapes use small LR feature maps (8×8; the tail on the ×2 map, 16×16) to keep
SCALE-Sim's cycle-level memory simulation (≈ 0.1 ms per simulated cycle) within the
test budget; the model is analytical in the shapes, and fold counts > 1 in every
mapped dimension are exercised. Identical shapes (IMDN's fea_conv / c1 equal EDSR's
head / body) are simulated once. Three array configurations cover the three
dataflows and both orientations of a non-square array.

Compatibility note: SCALE-Sim 3.0.0 calls ``int(max(list_of_1_element_arrays))``,
which current NumPy 2 releases reject ("only 0-dimensional arrays can be converted to
Python scalars"; NumPy 1.25 deprecated it). The test installs a module-level ``max``
in SCALE-Sim's memory modules that returns a Python scalar for 1-element arrays (same
value, nothing else changed).
"""
from __future__ import annotations

import builtins
import contextlib
import io

import numpy as np
import pytest

from intsim.artifact import (
    Artifact,
    Codebook,
    EncoderStage,
    Numerics,
    OpSpec,
    Segment,
    TensorSpec,
)
from intsim.cost import accelerator_from_dict, estimate_cost

scalesim_pkg = pytest.importorskip("scalesim", reason="SCALE-Sim oracle needs `pip install scalesim` (dev extra)")

TOLERANCE = 0.10

# (name, H, W, k, Ci, Co): 'same' padding for k = 3, none for k = 1
EDSR_LAYERS = [
    ("edsr.head 3->64 3x3", 8, 8, 3, 3, 64),
    ("edsr.body 64->64 3x3", 8, 8, 3, 64, 64),
    ("edsr.upsampler 64->256 3x3", 8, 8, 3, 64, 256),
    ("edsr.tail 64->3 3x3", 16, 16, 3, 64, 3),
]
IMDN_LAYERS = [
    ("imdn.fea_conv 3->64 3x3", 8, 8, 3, 3, 64),
    ("imdn.c1 64->64 3x3", 8, 8, 3, 64, 64),
    ("imdn.c2 48->64 3x3", 8, 8, 3, 48, 64),
    ("imdn.c4 48->16 3x3", 8, 8, 3, 48, 16),
    ("imdn.c5 64->64 1x1", 8, 8, 1, 64, 64),
    ("imdn.cca.down 64->4 1x1 on 1x1", 1, 1, 1, 64, 4),
    ("imdn.cca.up 4->64 1x1 on 1x1", 1, 1, 1, 4, 64),
    ("imdn.c 384->64 1x1", 8, 8, 1, 384, 64),
    ("imdn.upsampler 64->48 3x3", 8, 8, 3, 64, 48),
]
LAYERS = EDSR_LAYERS + IMDN_LAYERS

# (dataflow, rows, cols)
CONFIGS = [("os", 32, 32), ("ws", 16, 32), ("is", 32, 16)]

SCALESIM_CFG = """[general]
run_name = oracle

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 256
FilterSramSzkB: 256
OfmapSramSzkB: 128
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: {dataflow}
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def _scalar_max(*args, **kwargs):
    r = builtins.max(*args, **kwargs)
    if isinstance(r, np.ndarray) and r.size == 1:
        return r.reshape(()).item()
    return r


@pytest.fixture
def scalesim_numpy2(monkeypatch):
    """Make SCALE-Sim 3.0.0's memory model run on NumPy 2 (see module docstring)."""
    import scalesim.memory.double_buffered_scratchpad_mem as m1
    import scalesim.memory.read_buffer as m2
    import scalesim.memory.read_buffer_estimate_bw as m3
    import scalesim.memory.write_buffer as m4

    for m in (m1, m2, m3, m4):
        monkeypatch.setattr(m, "max", _scalar_max, raising=False)
    from scalesim.scale_sim import scalesim

    return scalesim


def run_scalesim(scalesim_cls, tmp_path, dataflow: str, rows: int, cols: int, layers) -> list[int]:
    """Per-layer 'Total Cycles' of SCALE-Sim for ``layers`` (conv topology, padding made explicit)."""
    cfg = tmp_path / "oracle.cfg"
    topo = tmp_path / "topology.csv"
    layout = tmp_path / "layout.csv"
    cfg.write_text(SCALESIM_CFG.format(rows=rows, cols=cols, dataflow=dataflow))
    lines = ["Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"]
    for i, (_, H, W, k, ci, co) in enumerate(layers):
        p = k // 2
        lines.append(f"L{i}, {H + 2 * p}, {W + 2 * p}, {k}, {k}, {ci}, {co}, 1,")
    topo.write_text("\n".join(lines) + "\n")
    layout.write_text("Layer name,\n")
    out = tmp_path / "out"
    with contextlib.redirect_stdout(io.StringIO()):
        sim = scalesim_cls(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo),
                           layout=str(layout))
        sim.run_scale(top_path=str(out))
    report = (out / "oracle" / "COMPUTE_REPORT.csv").read_text().strip().splitlines()
    cycles = []
    for line in report[1:]:
        cells = [c.strip() for c in line.split(",")]
        cycles.append(int(cells[2]))  # "Total Cycles" (compute, excluding the DRAM prefetch)
    assert len(cycles) == len(layers)
    return cycles


def one_conv_artifact(Ci: int, Co: int, k: int) -> Artifact:
    """codes(Ci) → conv2d k×k ('same') → stream(Co): a bare layer for the cost model."""
    cb = Codebook(unit_m=1, unit_e=8, segments=(Segment(0, 1, -128, 127),), thresholds=(),
                  encoder=(EncoderStage(0, 1, 0),), allocation="uniform", bits=8)
    T = {"x": TensorSpec("x", "codes", Ci, codebook=cb), "y": TensorSpec("y", "stream", Co, frac=8)}
    p = k // 2
    op = OpSpec("conv", "conv2d", ("x",), ("y",),
                {"kernel": [k, k], "stride": [1, 1], "padding": [p, p], "dilation": [1, 1], "groups": 1,
                 "w_exp": 8},
                {"weight": "w", "w_mant": "m", "bias": "b"})
    arrays = {"w": np.ones((Co, k, k, Ci), dtype=np.int8), "m": np.ones(Co, dtype=np.int64),
              "b": np.zeros(Co, dtype=np.int64)}
    return Artifact(model={"name": "layer"}, numerics=Numerics(), inputs=("x",), outputs=("y",), tensors=T,
                    ops=[op], arrays=arrays)


def accel_for(dataflow: str, rows: int, cols: int):
    return accelerator_from_dict({
        "accelerator": {"name": f"oracle-{dataflow}-{rows}x{cols}", "clock_mhz": 1000.0, "realization": "artifact"},
        "array": {"rows": rows, "cols": cols, "dataflow": dataflow},
        "buffers": {"ifmap_kb": 256, "filter_kb": 256, "ofmap_kb": 128},
        "dram": {"bytes_per_cycle": 10.0},
        "datapath": {"weight_bits": 8, "activation_bits": 8, "accumulator_bits": 32},
    }, where="oracle")


def model_cycles(dataflow: str, rows: int, cols: int, layers) -> list[int]:
    acc = accel_for(dataflow, rows, cols)
    out = []
    for _, H, W, k, ci, co in layers:
        cost = estimate_cost(one_conv_artifact(ci, co, k), None, acc, "W8A8", image_hw=(H, W), uniform_policy="all")
        (layer,) = cost["layers"]
        assert layer["multiplier"]["physical"] == [8, 8] and layer["multiplier"]["passes"] == 1
        out.append(layer["cycles"]["compute"])
    return out


@pytest.mark.parametrize("dataflow,rows,cols", CONFIGS, ids=[f"{d}-{r}x{c}" for d, r, c in CONFIGS])
def test_compute_cycles_match_scalesim(scalesim_numpy2, tmp_path, dataflow, rows, cols, capsys):
    shapes = list(dict.fromkeys(tuple(l[1:]) for l in LAYERS))  # simulate each distinct shape once
    sim = dict(zip(shapes, run_scalesim(scalesim_numpy2, tmp_path, dataflow, rows, cols,
                                        [("", *s) for s in shapes])))
    ref = [sim[tuple(l[1:])] for l in LAYERS]
    ours = model_cycles(dataflow, rows, cols, LAYERS)
    table = [f"SCALE-Sim {scalesim_pkg.__name__} oracle, dataflow={dataflow}, array {rows}x{cols}, "
             f"CALC bandwidth mode, SRAM 256/256/128 KB",
             f"{'layer':34s} {'scalesim':>9s} {'model':>9s} {'dev %':>8s}"]
    worst = 0.0
    for (name, *_), r, m in zip(LAYERS, ref, ours):
        dev = (m - r) / r
        worst = max(worst, abs(dev))
        table.append(f"{name:34s} {r:9d} {m:9d} {100 * dev:8.3f}")
    table.append(f"worst |deviation| = {100 * worst:.3f} %")
    with capsys.disabled():
        print("\n" + "\n".join(table))
    bad = [(n, r, m) for (n, *_), r, m in zip(LAYERS, ref, ours) if abs(m - r) > TOLERANCE * r]
    assert not bad, f"layers off by more than {TOLERANCE:.0%} from SCALE-Sim: {bad}"
