"""reports/cost_plots.py: stacked per-layer energy bars and the Pareto helper."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from intsim.cost import estimate_cost, load_accelerator  # noqa: E402
from reports.cost_plots import (  # noqa: E402
    energy_shares,
    layer_energy_table,
    pareto_front,
    pareto_points,
    plot_energy_overview,
    plot_layer_energy,
    plot_pareto,
    vector_op_groups,
)


@pytest.fixture(scope="module")
def costs():
    from intsim.engine import run
    from tests.artifact_factory import make_random_artifact

    art = make_random_artifact(seed=5)
    img = np.random.default_rng(1).integers(0, 256, (10, 9, 3), dtype=np.uint8)
    counters = [run(art, img, keep_tensors=False).counters]
    acc = load_accelerator("edge_npu")
    return [estimate_cost(art, counters, acc, s) for s in ("artifact", "fp32", "W8A8", "W4A4")]


def test_layer_energy_table_sums_to_total(costs):
    c = costs[0]
    labels, data = layer_energy_table(c, unit=1.0)
    n_conv = sum(l["kind"] == "conv" for l in c["layers"])
    groups = [g for g in vector_op_groups(c, unit=1.0) if g["total"] > 0]
    assert "other ops" not in labels
    assert labels[n_conv:] == [f"{g['group']} ×{g['ops']}" for g in groups]
    total = sum(sum(v) for v in data.values())
    assert total == pytest.approx(c["totals"]["energy_pj"]["total"])
    labels_all, _ = layer_energy_table(c, include_vector=True)
    assert len(labels_all) == len(c["layers"])


def test_plots_write_files(costs, tmp_path):
    p = tmp_path / "bars.png"
    plot_layer_energy(costs[0], p)
    assert p.stat().st_size > 1000
    pts = pareto_points(costs, [27.1, 28.0, 27.9, 26.0])
    q = tmp_path / "pareto.svg"
    plot_pareto(pts, q, x="energy")
    assert q.read_text().startswith("<?xml")
    plot_pareto(pts, tmp_path / "lat.png", x="latency_per_mpix")
    with pytest.raises(ValueError):
        plot_pareto(pts, x="area")
    with pytest.raises(ValueError):
        pareto_points(costs, [1.0])


def test_pareto_front():
    pts = [{"label": "a", "energy": 1.0, "psnr": 26.0}, {"label": "b", "energy": 2.0, "psnr": 27.0},
           {"label": "c", "energy": 3.0, "psnr": 26.5}, {"label": "d", "energy": 4.0, "psnr": 28.0},
           {"label": "e", "energy": 1.0, "psnr": 25.0}]
    assert [p["label"] for p in pareto_front(pts)] == ["a", "b", "d"]


def test_vector_ops_and_dram_are_broken_down(costs):
    """No single "other ops" bar: encode, add, concat, pools, mul and split each get their own
    group, with their DRAM traffic, and the groups plus the conv layers add up to the total."""
    c = costs[0]
    groups = {g["group"]: g for g in vector_op_groups(c, unit=1.0)}
    assert {"encode", "add", "concat", "pools", "mul", "split"} <= set(groups)
    assert groups["encode"]["ops"] == sum(l["op"] == "encode" for l in c["layers"])
    assert groups["pools"]["ops"] == sum(l["op"] in ("mean_pool", "std_pool") for l in c["layers"])
    for g in groups.values():
        assert g["dram"] == pytest.approx(g["energy"]["dram"]) and g["dram"] <= g["total"] + 1e-9
    conv = sum(l["energy_pj"]["total"] for l in c["layers"] if l["kind"] == "conv")
    assert conv + sum(g["total"] for g in groups.values()) == pytest.approx(c["totals"]["energy_pj"]["total"])
    shares = energy_shares(c)
    assert sum(f for _, _, f in shares) == pytest.approx(1.0)
    assert [r[1] for r in shares] == sorted((r[1] for r in shares), reverse=True)


def test_energy_overview_bars_start_at_zero(costs):
    fig = plot_energy_overview(costs[0])
    bars, shares = fig.axes[:2]
    assert bars.get_ylim()[0] == 0.0 and shares.get_xlim()[0] == 0.0
    assert "µJ" in bars.get_ylabel() and "µJ" in shares.get_xlabel()
    assert any(t.get_text().startswith("encode ×") for t in bars.get_xticklabels())
    assert any("%" in t.get_text() for t in shares.texts)
