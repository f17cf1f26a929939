"""Accelerator cost model (intsim/cost): config parsing, energy model, systolic model,
hand-checked costs, and counts that follow the images (synthetic and real engine runs)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

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
from intsim.cost import (
    AcceleratorConfig,
    ConfigError,
    compare_schemes,
    estimate_cost,
    load_accelerator,
    load_energy_table,
    packaged_accelerators,
    parse_scheme,
)
from intsim.cost.accel import accelerator_from_dict
from intsim.cost.energy import EnergyModel
from intsim.cost.context import range_bits, weight_bits
from intsim.cost.conv_cost import acc_terms as _acc_terms
from intsim.cost.shapes import infer_shapes
from intsim.cost.systolic import compute_cycles, map_gemm, sram_accesses

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "accelerator": {"name": "t", "clock_mhz": 500.0, "realization": "artifact"},
    "array": {"rows": 4, "cols": 4, "dataflow": "os"},
    "buffers": {"ifmap_kb": 8, "filter_kb": 8, "ofmap_kb": 8},
    "dram": {"bytes_per_cycle": 4.0},
    "datapath": {"weight_bits": 8, "activation_bits": 8, "accumulator_bits": 32},
}


def _doc(**changes) -> dict:
    d = {k: dict(v) for k, v in BASE.items()}
    for path, value in changes.items():
        sec, key = path.split("__")
        if value is _DEL:
            d[sec].pop(key, None)
        else:
            d[sec][key] = value
    return d


_DEL = object()


def _toml(d: dict) -> str:
    lines = []
    for sec, body in d.items():
        lines.append(f"[{sec}]")
        for k, v in body.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, str):
                lines.append(f'{k} = "{v}"')
            else:
                lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# accelerator files


def test_packaged_accelerators_load():
    shipped = packaged_accelerators()
    assert {"edge_npu", "mcu_tiny", "server_tpu"} <= set(shipped)
    for name in shipped:
        acc = load_accelerator(name)
        assert isinstance(acc, AcceleratorConfig)
        json.dumps(acc.to_json())
        assert acc.energy_table.name == "horowitz-isscc2014-45nm"
    edge = load_accelerator("edge_npu")
    assert (edge.rows, edge.cols, edge.dataflow) == (32, 32, "os")
    assert edge.dram_bytes_per_cycle == pytest.approx(12.8e9 / 800e6)  # 16 B/cycle
    assert edge.logic_scale == pytest.approx(28 / 45)


def test_load_by_path(tmp_path):
    p = tmp_path / "a.toml"
    p.write_text(_toml(_doc(dram__bytes_per_cycle=_DEL, dram__gb_per_s=2.0)))
    acc = load_accelerator(p)
    assert acc.dram_bytes_per_cycle == pytest.approx(2e9 / 500e6)
    assert acc.source == str(p)


BAD = [
    ("unknown section", lambda d: d.update(extra={"x": 1}), "extra"),
    ("unknown key", lambda d: d["array"].update(rowz=3), "rowz"),
    ("missing key", lambda d: d["array"].pop("rows"), "rows"),
    ("missing section", lambda d: d.pop("buffers"), "[buffers]"),
    ("negative clock", lambda d: d["accelerator"].update(clock_mhz=-5.0), "clock_mhz"),
    ("zero clock", lambda d: d["accelerator"].update(clock_mhz=0), "clock_mhz"),
    ("zero rows", lambda d: d["array"].update(rows=0), "rows"),
    ("float rows", lambda d: d["array"].update(rows=4.5), "rows"),
    ("bool as int", lambda d: d["array"].update(cols=True), "cols"),
    ("bad dataflow", lambda d: d["array"].update(dataflow="rs"), "dataflow"),
    ("bad realization", lambda d: d["accelerator"].update(realization="lut"), "realization"),
    ("zero weight bits", lambda d: d["datapath"].update(weight_bits=0), "weight_bits"),
    ("huge activation bits", lambda d: d["datapath"].update(activation_bits=40), "activation_bits"),
    ("accumulator narrower than product", lambda d: d["datapath"].update(accumulator_bits=12), "accumulator_bits"),
    ("negative buffer", lambda d: d["buffers"].update(ofmap_kb=-1), "ofmap_kb"),
    ("both bandwidths", lambda d: d["dram"].update(gb_per_s=1.0), "exactly one"),
    ("no bandwidth", lambda d: d["dram"].pop("bytes_per_cycle"), "exactly one"),
    ("string number", lambda d: d["dram"].update(bytes_per_cycle="4"), "bytes_per_cycle"),
    ("missing energy table", lambda d: d.update(energy={"table": "nope.toml"}), "table"),
    ("bad energy key", lambda d: d.update(energy={"procss_nm": 7}), "procss_nm"),
    ("bad mac energy width", lambda d: d["datapath"].update(mac_energy_width="max"), "mac_energy_width"),
]


@pytest.mark.parametrize("what,mutate,needle", BAD, ids=[b[0] for b in BAD])
def test_config_errors_name_file_and_key(tmp_path, what, mutate, needle):
    d = _doc()
    mutate(d)
    p = tmp_path / "bad_accel.toml"
    p.write_text(_toml(d))
    with pytest.raises(ValueError) as e:
        load_accelerator(p)
    msg = str(e.value)
    assert isinstance(e.value, ConfigError)
    assert str(p) in msg and needle in msg, msg


def test_config_error_invalid_toml_and_missing_file(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[array\nrows = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_accelerator(p)
    with pytest.raises(ConfigError, match="no such"):
        load_accelerator(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="packaged"):
        load_accelerator("no_such_accelerator")


def test_dataclass_validates_too():
    with pytest.raises(ConfigError, match="accumulator_bits"):
        AcceleratorConfig(name="x", clock_mhz=1.0, realization="split", rows=2, cols=2, dataflow="os",
                          ifmap_kb=1, filter_kb=1, ofmap_kb=1, dram_bytes_per_cycle=1, weight_bits=16,
                          activation_bits=16, accumulator_bits=24)
    with pytest.raises(ConfigError, match="clock_mhz"):
        AcceleratorConfig(name="x", clock_mhz=-1.0, realization="split", rows=2, cols=2, dataflow="os",
                          ifmap_kb=1, filter_kb=1, ofmap_kb=1, dram_bytes_per_cycle=1)


# --------------------------------------------------------------------------
# energy table and model


def test_energy_table_values_and_model():
    t = load_energy_table()
    assert (t.add_8b, t.add_32b, t.mult_8b, t.mult_32b) == (0.03, 0.1, 0.2, 3.1)
    assert (t.add_fp32, t.mult_fp32, t.sram_read_32b, t.dram_access_32b) == (0.9, 3.7, 5.0, 640.0)
    assert "Horowitz" in t.source and "ISSCC 2014" in t.source
    em = EnergyModel(t)
    assert em.add(8) == pytest.approx(0.03) and em.add(32) == pytest.approx(0.1)
    assert em.mult(8, 8) == pytest.approx(0.2) and em.mult(32, 32) == pytest.approx(3.1)
    assert em.mult(16, 4) == pytest.approx(em.mult(8, 8))  # a function of the width product
    assert em.mult(4, 4) < em.mult(8, 4) < em.mult(8, 8) < em.mult(16, 16)
    assert em.add(4) < em.add(8) < em.add(24) < em.add(48)
    assert em.sram_bit(8) == pytest.approx(5.0 / 32) and em.sram_bit(32) == pytest.approx(2 * 5.0 / 32)
    assert em.dram_bit() == pytest.approx(20.0)
    half = EnergyModel(t, logic_scale=0.5, dram_scale=1.0)
    assert half.mult(8, 8) == pytest.approx(0.1) and half.dram_bit() == pytest.approx(20.0)
    json.dumps(em.describe())


def test_energy_table_strict(tmp_path):
    src = (REPO / "intsim" / "cost" / "energy_45nm.toml").read_text()
    bad = tmp_path / "e.toml"
    bad.write_text(src.replace("mult_8b_pj = 0.2", "mult_8b_pj = -0.2"))
    with pytest.raises(ConfigError, match=r"\[integer\] mult_8b_pj"):
        load_energy_table(bad)
    bad.write_text(src + "\n[extra]\nx = 1\n")
    with pytest.raises(ConfigError, match="extra"):
        load_energy_table(bad)
    bad.write_text(src.replace("add_32b_pj = 0.1", "add_32b_pj = 0.1\nadd_16b_pj = 0.05"))
    with pytest.raises(ConfigError, match="add_16b_pj"):
        load_energy_table(bad)


def test_process_scaling_via_config(tmp_path):
    a = accelerator_from_dict(_doc(), where="a")
    b = accelerator_from_dict({**_doc(), "energy": {"process_nm": 22.5, "voltage_v": 0.45}}, where="b")
    assert b.logic_scale == pytest.approx(0.5 * 0.25)
    assert b.energy_model().mult(8, 8) == pytest.approx(a.energy_model().mult(8, 8) * 0.125)
    assert b.energy_model().dram_bit() == a.energy_model().dram_bit()


# --------------------------------------------------------------------------
# systolic model


def test_systolic_formulas():
    m = map_gemm(16, 36, 2, 4, 4, "os")
    assert (m.Sr, m.Sc, m.T, m.row_folds, m.col_folds) == (16, 2, 36, 4, 1)
    assert compute_cycles(m) == 4 * (36 + 4 + 4 - 2)
    assert compute_cycles(m, passes=2) == 4 * (72 + 6)
    assert sram_accesses(m) == {"ifmap_reads": 576, "filter_reads": 288, "ofmap_writes": 32,
                                "psum_writes": 0, "psum_reads": 0}
    w = map_gemm(16, 36, 2, 8, 4, "ws")
    assert (w.Sr, w.Sc, w.T, w.row_folds, w.col_folds) == (36, 2, 16, 5, 1)
    assert compute_cycles(w) == 5 * (16 + 16 + 4 - 2)
    assert sram_accesses(w)["psum_writes"] == 4 * 16 * 2
    i = map_gemm(16, 36, 2, 8, 4, "is")
    assert (i.Sr, i.Sc, i.T, i.row_folds, i.col_folds) == (36, 16, 2, 5, 4)
    assert compute_cycles(i) == 20 * (2 + 16 + 4 - 2)
    with pytest.raises(ValueError):
        map_gemm(1, 1, 1, 4, 4, "xs")


# --------------------------------------------------------------------------
# artifacts for the cost model


def uniform_cb(bits=8) -> Codebook:
    h = 1 << (bits - 1)
    return Codebook(unit_m=1, unit_e=8, segments=(Segment(0, 1, -h, h - 1),), thresholds=(),
                    encoder=(EncoderStage(0, 1, 0),), allocation="uniform", bits=bits)


def two_region_cb() -> Codebook:
    """arithmetic.md §3.3 example: released b = 4, signed, split realization, u = 2^-16."""
    return Codebook(unit_m=1, unit_e=16,
                    segments=(Segment(-65536, 26214, -8, -1), Segment(0, 9362, -7, 7), Segment(65536, 40960, 1, 8)),
                    thresholds=(-65537, 65536),
                    encoder=(EncoderStage(-65536, 81920, 31), EncoderStage(0, 57346, 29), EncoderStage(65536, 52429, 31)),
                    allocation="released", bits=4)


def one_conv(cb: Codebook, Ci=4, Co=2, k=3, seed=0, wmax=127, realization="split") -> Artifact:
    """codes(Ci) → conv k×k 'same' → stream(Co) graph output."""
    T = {"x": TensorSpec("x", "codes", Ci, codebook=cb), "y": TensorSpec("y", "stream", Co, frac=8)}
    rng = np.random.default_rng(seed)
    w = rng.integers(-wmax, wmax + 1, size=(Co, k, k, Ci)).astype(np.int8)
    w.flat[0] = wmax
    op = OpSpec("conv", "conv2d", ("x",), ("y",),
                {"kernel": [k, k], "stride": [1, 1], "padding": [k // 2, k // 2], "dilation": [1, 1], "groups": 1,
                 "w_exp": 8},
                {"weight": "w", "w_mant": "m", "bias": "b"})
    arrays = {"w": w, "m": np.full(Co, 3, dtype=np.int64), "b": np.zeros(Co, dtype=np.int64)}
    return Artifact(model={"name": "one_conv"}, numerics=Numerics(realization=realization), inputs=("x",),
                    outputs=("y",), tensors=T, ops=[op], arrays=arrays)


def small_accel(**datapath) -> AcceleratorConfig:
    d = _doc()
    d["datapath"].update(datapath)
    return accelerator_from_dict(d, where="small")


# --------------------------------------------------------------------------
# hand computation: uniform int8 on a small layer


def test_uniform_int8_energy_by_hand():
    """3×3 conv, 4 → 2 channels, 4×4 input, 'same' padding, W8A8 on a 4×4 OS array.

    Counted MACs (padding taps skipped): per axis the 4 outputs see 2, 3, 3, 2 valid
    taps = 10, so 10·10·4·2 = 800. GEMM M = 16, K = 36, N = 2: 4 row folds × 1 column
    fold, 4·(36 + 4 + 4 − 2) = 168 cycles.
    """
    art = one_conv(uniform_cb(8))
    acc = small_accel()
    by_geom = estimate_cost(art, None, acc, "W8A8", image_hw=(4, 4), uniform_policy="all")
    counters = {"ops": {"conv": {"op": "conv2d", "macs": {"all": 800}, "out_shape": [4, 4, 2]}}, "totals": {}}
    by_counts = estimate_cost(art, [counters], acc, "W8A8", uniform_policy="all")
    for cost in (by_geom, by_counts):
        (L,) = cost["layers"]
        assert L["macs_total"] == 800 and L["macs_geometric"] == 16 * 36 * 2
        assert L["cycles"]["compute"] == 168
        e = L["energy_pj"]
        # Horowitz 45 nm: int8 mult 0.2 pJ, int32 add 0.1 pJ (accelerator at 45 nm, scale 1)
        assert e["mac"] == pytest.approx(800 * 0.2)
        assert e["accumulate"] == pytest.approx(800 * 0.1)
        # rescale: per output one 31×32-bit multiply (M of mult_bits = 31) and two adds of 63 bits
        gamma = math.log(3.1 / 0.2) / math.log(16)
        e_m = 0.2 * (31 * 32 / 64) ** gamma
        e_a63 = 0.03 + (63 - 8) * (0.07 / 24)
        assert e["rescale"] == pytest.approx(32 * (e_m + 2 * e_a63))
        assert e["decode"] == 0 and e["vector"] == 0
        # DRAM: ifmap 4·4·4·8 = 512 bits; filters 72·8 + bias 2·32 + multipliers 2·31 = 702;
        # output (graph output stream) 32·24 = 768 bits; 640 pJ per 32 bits
        assert L["dram_bits"]["read"] == 512 + 702 and L["dram_bits"]["write"] == 768
        assert e["dram"] == pytest.approx((512 + 702 + 768) * 20.0)
        # SRAM (8 KB buffers: 5 pJ / 32 bits): fills 512 + 702, edge reads 576·8 + 288·8,
        # output write + write-back 2·768
        sram_bits = 512 + 702 + 576 * 8 + 288 * 8 + 2 * 768
        assert e["sram"] == pytest.approx(sram_bits * 5.0 / 32)
        assert e["total"] == pytest.approx(sum(e[c] for c in cost["categories"]))
        assert L["storage_bits"]["weights"] == 72 * 8 and L["storage_bits"]["input"] == 512
        # time: DRAM (1982 bits = 247.75 B at 4 B/cycle = 61.9 cycles) hides under compute;
        # fill = first fold's operands (4 rows × 36 ifmap + 2 × 36 filter bytes) / 4
        assert L["cycles"]["stall"] == pytest.approx((4 * 36 + 2 * 36) / 4)
        assert cost["totals"]["energy_pj"]["total"] == pytest.approx(e["total"])
        assert cost["totals"]["latency_s"] == pytest.approx(L["cycles"]["total"] / 500e6)


def test_schemes_order_and_storage():
    art = one_conv(uniform_cb(8), Ci=16, Co=16)
    acc = small_accel()
    costs = {s: estimate_cost(art, None, acc, s, image_hw=(8, 8), uniform_policy="all")
             for s in ("fp32", "W8A8", "W4A4")}
    mac = {s: c["layers"][0]["energy_pj"]["mac"] for s, c in costs.items()}
    assert mac["fp32"] > mac["W8A8"] > mac["W4A4"]
    assert mac["fp32"] == pytest.approx(costs["fp32"]["layers"][0]["macs_total"] * 3.7)
    w = {s: c["layers"][0]["storage_bits"]["weights"] for s, c in costs.items()}
    assert w["fp32"] == 4 * w["W8A8"] == 8 * w["W4A4"]
    assert costs["fp32"]["layers"][0]["energy_pj"]["rescale"] == 0
    rows = compare_schemes(art, None, acc, image_hw=(8, 8), uniform_policy="all")
    assert [r["scheme"] for r in rows] == ["fp32", "W8A8", "W4A4"]  # artifact needs counters
    assert rows[0]["energy_uj"] > rows[1]["energy_uj"] > rows[2]["energy_uj"]
    json.dumps(rows)


def test_wide_operands_take_passes():
    art = one_conv(uniform_cb(8))
    narrow = small_accel(weight_bits=4, activation_bits=4, accumulator_bits=16)
    wide = small_accel()
    a = estimate_cost(art, None, narrow, "W8A8", image_hw=(4, 4), uniform_policy="all")["layers"][0]
    b = estimate_cost(art, None, wide, "W8A8", image_hw=(4, 4), uniform_policy="all")["layers"][0]
    assert a["multiplier"]["passes"] == 4 and not a["multiplier"]["fits_native"]
    assert a["cycles"]["compute"] == 4 * (4 * 36 + 6) and b["cycles"]["compute"] == 168


def test_scheme_parsing():
    assert parse_scheme("w4a4").label == "W4A4" and parse_scheme("FP32").kind == "fp32"
    for bad in ("W1A8", "int8", "W8", ""):
        with pytest.raises(ValueError):
            parse_scheme(bad)


# --------------------------------------------------------------------------
# two-region costs follow the counters (synthetic counters)


def _split_counters(neg, dense, pos):
    return {"ops": {"conv": {"op": "conv2d", "macs": {"0": neg, "1": dense, "2": pos}, "out_shape": [4, 4, 2]}},
            "totals": {}}


def test_outlier_fraction_changes_split_cost():
    art = one_conv(two_region_cb(), wmax=7)
    acc = small_accel()
    few = _split_counters(10, 780, 10)
    many = _split_counters(100, 600, 100)
    cost = estimate_cost(art, [few, many], acc)
    (L,) = cost["layers"]
    assert L["realization"] == "split"
    assert L["per_image_macs"] == [{"0": 10, "1": 780, "2": 10}, {"0": 100, "1": 600, "2": 100}]
    assert L["macs"] == {"0": 55.0, "1": 690.0, "2": 55.0}
    assert L["accumulators"]["names"] == ["P0", "Q0", "P1", "P2", "Q2"] and L["accumulators"]["count"] == 5
    assert L["multiplier"]["per_segment"] == [{"segment": "0", "weight_bits": 4, "act_bits": 4},
                                              {"segment": "1", "weight_bits": 4, "act_bits": 4},
                                              {"segment": "2", "weight_bits": 4, "act_bits": 4}]
    # input codes are 5 bits (N = 31) although each multiplier operand is 4 bits
    assert L["storage_bits"]["input_elem_bits"] == 5 and L["storage_bits"]["input"] == 4 * 4 * 4 * 5
    e_few, e_many = (cost_one := [estimate_cost(art, [c], acc)["layers"][0] for c in (few, many)])
    # every product is one add into P_s; tail products add w into Q_s: 20 vs 200 offset adds
    assert e_few["rescale"]["offset_adds"] == 20 and e_many["rescale"]["offset_adds"] == 200
    d_acc = e_many["energy_pj"]["accumulate"] - e_few["energy_pj"]["accumulate"]
    assert d_acc == pytest.approx(180 * 0.1)
    assert e_many["energy_pj"]["total"] > e_few["energy_pj"]["total"]
    assert L["per_image_energy_pj"] == pytest.approx([x["energy_pj"]["total"] for x in cost_one])
    # geometry (cycles) does not depend on the codes
    assert e_few["cycles"]["compute"] == e_many["cycles"]["compute"] == 168


def test_segment_widths_feed_mac_energy():
    cb = Codebook(unit_m=1, unit_e=8, segments=(Segment(0, 1, 0, 15), Segment(64, 16, 1, 255)),
                  thresholds=(16,), encoder=(EncoderStage(0, 1, 0), EncoderStage(64, 1, 4)),
                  allocation="budgeted", bits=8)
    art = one_conv(cb, wmax=7)
    acc = small_accel()
    lo = estimate_cost(art, [{"ops": {"conv": {"op": "conv2d", "macs": {"0": 800, "1": 0}, "out_shape": [4, 4, 2]}}}], acc)["layers"][0]
    hi = estimate_cost(art, [{"ops": {"conv": {"op": "conv2d", "macs": {"0": 0, "1": 800}, "out_shape": [4, 4, 2]}}}], acc)["layers"][0]
    em = acc.energy_model()
    assert [s["act_bits"] for s in lo["multiplier"]["per_segment"]] == [4, 8]
    assert lo["energy_pj"]["mac"] == pytest.approx(800 * em.mult(4, 4))
    assert hi["energy_pj"]["mac"] == pytest.approx(800 * em.mult(4, 8))


def test_grid_realization_cost():
    cb = Codebook(unit_m=1, unit_e=4, segments=(Segment(-16, 4, -8, -1), Segment(0, 2, -7, 7), Segment(16, 4, 1, 8)),
                  thresholds=(-4097, 4096), encoder=(EncoderStage(-4096, 1, 10), EncoderStage(0, 1, 9),
                                                    EncoderStage(4096, 1, 10)),
                  grid_bits=7, allocation="released", bits=4)
    art = one_conv(cb, wmax=7, realization="grid")
    acc = small_accel()
    c = {"ops": {"conv": {"op": "conv2d", "macs": {"all": 800}}}}  # no out_shape: size given below
    with pytest.raises(ValueError, match="image_hw"):
        estimate_cost(art, [c], acc)
    L = estimate_cost(art, [c], acc, image_hw=(4, 4))["layers"][0]
    em = acc.energy_model()
    assert L["realization"] == "grid" and L["accumulators"]["names"] == ["A"]
    assert L["multiplier"]["physical"] == [4, 7]
    assert L["energy_pj"]["mac"] == pytest.approx(800 * em.mult(4, 7))
    assert L["energy_pj"]["accumulate"] == pytest.approx(800 * 0.1)
    assert L["rescale"]["lut_decodes"] == 576 and L["energy_pj"]["decode"] > 0
    # the same artifact on a split accelerator needs per-segment counts: none here
    split_acc = accelerator_from_dict(_doc(accelerator__realization="split"), where="s")
    with pytest.raises(ValueError, match="histogram"):
        estimate_cost(art, [c], split_acc, image_hw=(4, 4))


def test_counter_mismatches_are_refused():
    art = one_conv(two_region_cb(), wmax=7)
    acc = small_accel()
    with pytest.raises(ValueError, match="no entry for op 'conv'"):
        estimate_cost(art, [{"ops": {"other": {}}}], acc)
    with pytest.raises(ValueError, match="out_shape"):
        estimate_cost(art, [{"ops": {"conv": {"op": "conv2d", "macs": {"0": 1, "1": 1, "2": 1},
                                               "out_shape": [5, 4, 2]}}}], acc, image_hw=(4, 4))
    with pytest.raises(ValueError, match="needs engine counters"):
        estimate_cost(art, None, acc, image_hw=(4, 4))
    with pytest.raises(ValueError, match="empty"):
        estimate_cost(art, [], acc)


def test_helpers():
    assert range_bits(-7, 7) == 4 and range_bits(-8, -1) == 4 and range_bits(1, 8) == 4
    assert range_bits(0, 15) == 4 and range_bits(0, 16) == 5 and range_bits(-128, 127) == 8
    assert weight_bits(np.array([-7, 7])) == 4 and weight_bits(np.array([-128, 3])) == 8
    assert weight_bits(np.array([0, 1])) == 2


# --------------------------------------------------------------------------
# real engine runs


@pytest.fixture(scope="module")
def engine_runs():
    from intsim.engine import run
    from tests.artifact_factory import make_random_artifact

    out = {}
    rng = np.random.default_rng(7)
    smooth = np.full((12, 10, 3), 128, dtype=np.uint8)
    smooth[..., 1] = 120
    noisy = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    big = rng.integers(0, 256, (16, 14, 3), dtype=np.uint8)
    for real in ("split", "grid"):
        art = make_random_artifact(seed=3, realization=real)
        out[real] = (art, [run(art, im, keep_tensors=False).counters for im in (smooth, noisy, big)])
    return out


def test_engine_counters_drive_costs(engine_runs):
    art, counters = engine_runs["split"]
    acc = load_accelerator("edge_npu")
    cost = estimate_cost(art, counters, acc)
    text = json.dumps(cost)
    assert json.loads(text)["schema"] == "intsim-cost"
    assert cost["images"] == 3 and len(cost["per_image"]) == 3
    convs = [l for l in cost["layers"] if l["kind"] == "conv"]
    assert len(convs) == sum(op.op in ("conv2d", "conv_transpose2d") for op in art.ops)
    for l, op in zip(convs, [o for o in art.ops if o.op in ("conv2d", "conv_transpose2d")]):
        # per-image MACs per segment are exactly the engine's counters
        assert l["per_image_macs"] == [c["ops"][op.name]["macs"] for c in counters]
        cb = art.tensors[op.inputs[0]].codebook
        assert l["storage_bits"]["input_elem_bits"] == cb.code_bits
    # smooth vs noisy image of the same size: same geometry, different segment counts and energy
    smooth, noisy = cost["per_image"][0], cost["per_image"][1]
    assert smooth["cycles"]["compute"] == noisy["cycles"]["compute"]
    seg_changed = any(l["per_image_macs"][0] != l["per_image_macs"][1] for l in convs
                      if len(l["per_image_macs"][0]) > 1)
    assert seg_changed
    assert smooth["energy_pj"]["total"] != noisy["energy_pj"]["total"]
    # a bigger image: more MACs, more cycles, more energy
    big = cost["per_image"][2]
    assert big["macs"] > noisy["macs"] and big["cycles"]["total"] > noisy["cycles"]["total"]
    assert big["energy_pj"]["total"] > noisy["energy_pj"]["total"]
    for t in cost["per_image"]:
        assert t["energy_pj"]["total"] == pytest.approx(sum(t["energy_pj"][c] for c in cost["categories"]))
    tot = sum(l["per_image_energy_pj"][1] for l in cost["layers"])
    assert tot == pytest.approx(noisy["energy_pj"]["total"])
    assert cost["totals"]["energy_pj"]["total"] == pytest.approx(
        np.mean([t["energy_pj"]["total"] for t in cost["per_image"]]))


def test_shapes_match_engine(engine_runs):
    art, counters = engine_runs["split"]
    shapes = infer_shapes(art, (16, 14))
    for op in art.ops:
        assert list(shapes[op.outputs[0]]) == counters[2]["ops"][op.name]["out_shape"], op.name


def test_accumulators_match_bounds(engine_runs):
    from intsim.bounds import conv_accumulators

    for real in ("split", "grid"):
        art, _ = engine_runs[real]
        for op in art.ops:
            if op.op not in ("conv2d", "conv_transpose2d"):
                continue
            mine = _acc_terms(art, op, real)
            ref = conv_accumulators(art, op)
            assert [t["name"] for t in mine] == [b.name for b in ref]
            assert [t["worst"] for t in mine] == [b.worst_max for b in ref]
            assert [t["mult_max"] for t in mine] == [int(np.abs(b.multiplier).max()) for b in ref]


def test_grid_engine_and_cross_realization(engine_runs):
    art, counters = engine_runs["grid"]
    grid = estimate_cost(art, counters, load_accelerator("edge_npu"))
    assert grid["realization"] == "grid" and not grid["warnings"]
    assert all(list(l["macs"]) == ["all"] for l in grid["layers"] if l["kind"] == "conv")
    # grid counters costed on a split accelerator: per-segment MACs from the input code histograms
    split = estimate_cost(art, counters, load_accelerator("mcu_tiny"))
    assert split["realization"] == "split"
    assert any("estimated from the input code histograms" in w for w in split["warnings"])
    for lg, ls in zip(grid["layers"], split["layers"]):
        if lg["kind"] == "conv":
            assert ls["macs_approximate"] is True
            assert ls["macs_total"] == lg["macs_total"]


def test_comparison_table_on_engine_runs(engine_runs):
    art, counters = engine_runs["split"]
    rows = compare_schemes(art, counters, load_accelerator("edge_npu"))
    by = {r["scheme"]: r for r in rows}
    assert set(by) == {"artifact", "fp32", "W8A8", "W4A4"}
    assert by["fp32"]["energy_uj"] > by["W8A8"]["energy_uj"] > by["W4A4"]["energy_uj"]
    assert by["fp32"]["weight_storage_kib"] > by["W8A8"]["weight_storage_kib"] > by["W4A4"]["weight_storage_kib"]
    # "follow" keeps the artifact's 8-bit layers (the uniform 8-bit head) at 8 bits under W4A4
    assert 8 in by["W4A4"]["conv_input_bits"] and 4 in by["W4A4"]["conv_input_bits"]
    json.dumps(rows)


def test_cost_package_imports_neither_torch_nor_matplotlib():
    code = ("import sys, intsim.cost, intsim.cost.model, intsim.cost.accel, intsim.cost.energy; "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr


# --------------------------------------------------------------------------
# memory model: fusion, tiling, loop order


def residual_net(C=8) -> Artifact:
    """image → image_in → encode → conv1 ─┬→ relu → encode → conv2 → add → image_out
                                          └──────────────────────────↗ (skip)"""
    cb = uniform_cb(8)
    T = {"img": TensorSpec("img", "image", 3), "x0": TensorSpec("x0", "stream", 3, frac=8),
         "c0": TensorSpec("c0", "codes", 3, codebook=cb), "s1": TensorSpec("s1", "stream", C, frac=8),
         "r1": TensorSpec("r1", "stream", C, frac=8), "c1": TensorSpec("c1", "codes", C, codebook=cb),
         "s2": TensorSpec("s2", "stream", 3, frac=8), "s3": TensorSpec("s3", "stream", 3, frac=8),
         "out": TensorSpec("out", "image", 3)}
    conv = {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1, "w_exp": 8}
    ops = [
        OpSpec("in", "image_in", ("img",), ("x0",), {"exp": 8}, {"mult": "im", "offset": "io"}),
        OpSpec("enc0", "encode", ("x0",), ("c0",)),
        OpSpec("conv1", "conv2d", ("c0",), ("s1",), conv, {"weight": "w1", "w_mant": "m1", "bias": "b1"}),
        OpSpec("relu", "relu", ("s1",), ("r1",)),
        OpSpec("enc1", "encode", ("r1",), ("c1",)),
        OpSpec("conv2", "conv2d", ("c1",), ("s2",), conv, {"weight": "w2", "w_mant": "m2", "bias": "b2"}),
        OpSpec("add", "add", ("x0", "s2"), ("s3",)),
        OpSpec("outp", "image_out", ("s3",), ("out",), {"exp": 8}, {"mult": "om", "offset": "oo"}),
    ]
    rng = np.random.default_rng(0)
    arrays = {"im": np.full(3, 256, np.int64), "io": np.zeros(3, np.int64), "om": np.full(3, 256, np.int64),
              "oo": np.zeros(3, np.int64),
              "w1": rng.integers(-9, 9, (C, 3, 3, 3)).astype(np.int8), "m1": np.ones(C, np.int64),
              "b1": np.zeros(C, np.int64),
              "w2": rng.integers(-9, 9, (3, 3, 3, C)).astype(np.int8), "m2": np.ones(3, np.int64),
              "b2": np.zeros(3, np.int64)}
    return Artifact(model={"name": "residual"}, numerics=Numerics(), inputs=("img",), outputs=("out",),
                    tensors=T, ops=ops, arrays=arrays)


def test_fusion_keeps_chains_on_chip():
    art = residual_net()
    H = W = 6
    cost = estimate_cost(art, None, small_accel(), "W8A8", image_hw=(H, W), uniform_policy="all")
    L = {l["name"]: l for l in cost["layers"]}
    px = H * W
    # image in (8 b) read by image_in; x0 has two consumers (encode, add): written once (24 b)
    assert L["in"]["dram_bits"] == {"read": px * 3 * 8, "write": px * 3 * 24}
    # encode reads x0 from DRAM and writes 8-bit codes
    assert L["enc0"]["dram_bits"] == {"read": px * 3 * 24, "write": px * 3 * 8} and not L["enc0"]["fused"]
    # conv1's output s1 feeds relu only → relu → encode fused: only the codes c1 leave the chip
    assert L["conv1"]["dram_bits"]["write"] == 0
    assert L["relu"]["fused"] and L["relu"]["dram_bits"] == {"read": 0, "write": 0}
    assert L["enc1"]["fused"] and L["enc1"]["dram_bits"] == {"read": 0, "write": px * 8 * 8}
    assert L["relu"]["cycles"]["total"] == 0 and L["enc1"]["cycles"]["total"] == 0
    # conv2 → add (the residual): the add reads only the skip x0; add → image_out fused: 8-bit image out
    assert L["conv2"]["dram_bits"]["write"] == 0
    assert L["add"]["fused"] and L["add"]["dram_bits"] == {"read": px * 3 * 24, "write": 0}
    assert L["outp"]["fused"] and L["outp"]["dram_bits"] == {"read": 0, "write": px * 3 * 8}
    # the fused group's DRAM time is charged to its root (conv2)
    grp_bytes = (L["conv2"]["dram_bits"]["read"] + px * 3 * 24 + px * 3 * 8) / 8
    assert L["conv2"]["cycles"]["dram"] == pytest.approx(grp_bytes / 4.0)
    assert cost["totals"]["output_hw"] == [H, W]


def test_ws_partial_sums_tile_instead_of_spilling():
    art = one_conv(uniform_cb(8), Ci=32, Co=8)
    roomy = accelerator_from_dict(_doc(array__dataflow="ws", buffers__ofmap_kb=64), where="r")
    tight = accelerator_from_dict(_doc(array__dataflow="ws", buffers__ofmap_kb=1), where="t")
    a = estimate_cost(art, None, roomy, "W8A8", image_hw=(8, 8), uniform_policy="all")["layers"][0]
    b = estimate_cost(art, None, tight, "W8A8", image_hw=(8, 8), uniform_policy="all")["layers"][0]
    m = map_gemm(64, 288, 8, 4, 4, "ws")
    assert a["gemm"]["tiles"] == 1 and a["cycles"]["compute"] == compute_cycles(m)
    # block = M·min(N, cols)·1·32 bits = 64·4·32 = 8192 bits; usable = 0.5 KB = 4096 bits → 2 tiles
    assert b["gemm"]["tiles"] == 2
    assert b["cycles"]["compute"] == m.folds * (m.T + 2 * (2 * 4 + 4 - 2))
    assert b["sram_bits"]["filter_reads"] == 2 * a["sram_bits"]["filter_reads"]
    assert b["dram_bits"]["write"] == a["dram_bits"]["write"]  # no spill


def test_os_takes_the_cheaper_loop_order():
    art = one_conv(uniform_cb(8), Ci=16, Co=64)
    small_ifmap = accelerator_from_dict(_doc(buffers__ifmap_kb=0.5, buffers__filter_kb=64), where="a")
    lay = estimate_cost(art, None, small_ifmap, "W8A8", image_hw=(16, 16), uniform_policy="all")["layers"][0]
    # ifmap 16·16·16 B = 4 KB > 0.25 KB usable; filters 9 KB fit 32 KB: keep filters, stream ifmap once
    assert lay["gemm"]["loop_order"] == "ifmap_outer"
    assert lay["dram_bits"]["ifmap_refetch"] == 1 and lay["dram_bits"]["filter_refetch"] == 1
    both_small = accelerator_from_dict(_doc(buffers__ifmap_kb=0.5, buffers__filter_kb=0.5), where="b")
    lay = estimate_cost(art, None, both_small, "W8A8", image_hw=(16, 16), uniform_policy="all")["layers"][0]
    g = lay["gemm"]  # rf = 64 row folds, cf = 16 column folds: re-reading the ifmap 16× is cheaper
    assert (g["row_folds"], g["col_folds"]) == (64, 16)
    assert lay["gemm"]["loop_order"] == "filters_outer" and lay["dram_bits"]["ifmap_refetch"] == 16


def test_counters_file_and_command_line(engine_runs, tmp_path, capsys):
    from intsim.artifact import save_artifact
    from intsim.cost.__main__ import main
    from intsim.cost.model import load_counters

    art, counters = engine_runs["split"]
    path = tmp_path / "a.intsim"
    sha = save_artifact(art, path)
    rec = {"artifact_sha256": sha, "images": [{"source": f"{i}.png", "counters": c} for i, c in enumerate(counters)]}
    cfile = tmp_path / "counters.json"
    cfile.write_text(json.dumps(rec))
    assert load_counters(cfile, sha) == counters
    assert load_counters(counters[0]) == [counters[0]] and load_counters(counters) == counters
    with pytest.raises(ValueError, match="not of this artifact"):
        load_counters(cfile, "0" * 64)
    with pytest.raises(ValueError, match="no 'ops'"):
        load_counters([{"x": 1}])
    out = tmp_path / "cost.json"
    assert main([str(path), "--counters", str(cfile), "--accel", "edge_npu", "--compare", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "per image" in text and "W4A4" in text and "fp32" in text
    cost = json.loads(out.read_text())
    assert cost["images"] == 3 and cost["artifact_sha256"] == sha
    assert main([str(path), "--counters", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["--list"]) == 0 and "edge_npu" in capsys.readouterr().out
