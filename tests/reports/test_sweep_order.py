"""reports.sweep_order on the committed protocol: the page's most informative rows are computed first."""
from __future__ import annotations

from pathlib import Path

from reports.sweep import load_sweep
from reports.sweep_order import HEADLINE_METHODS, order_cells, order_configs, priority

PROTOCOL = Path(__file__).resolve().parents[2] / "sweeps" / "protocol_all_checkpoints.toml"


def _headline(c) -> bool:
    return (c.config.bits in ("W4A4", "W6A6") and c.dataset in ("Set5", "Set14")
            and c.config.method in HEADLINE_METHODS and c.config.allocation in (None, "released"))


def test_protocol_headline_cells_come_first():
    s = load_sweep(PROTOCOL)
    order = order_cells(s.cells)
    assert sorted(c.id for c in order) == sorted(c.id for c in s.cells)  # a permutation
    models = {(c.config.model, c.config.scale) for c in s.cells}
    n_head = len(models) * 2 * 3 * 2  # model × scale, W4A4/W6A6, recon/oaq/minmax, Set5/Set14
    assert n_head == 156 and all(map(_headline, order[:n_head])) and not any(map(_headline, order[n_head:]))
    # the first row of every model × scale lands before any second method: fsrcnn ×4 first (listed first)
    assert [c.id for c in order[:2]] == ["fsrcnn_x4_w4a4_recon_set5", "fsrcnn_x4_w4a4_recon_set14"]
    first_oaq = next(i for i, c in enumerate(order) if c.config.method == "oaq")
    assert {(c.config.model, c.config.scale) for c in order[:first_oaq]} == models
    # then the other methods on Set5/Set14, then B100, then Urban100, all before any W8A8
    low = [c for c in order if c.config.bits != "W8A8"]
    assert order[:len(low)] == low
    tail = [c.dataset for c in low[n_head:]]
    assert tail == sorted(tail, key=lambda d: {"Set5": 0, "Set14": 0, "B100": 1, "Urban100": 2}[d])
    # every configuration's Set5 and Set14 cells are adjacent (one calibration feeds both)
    for i, c in enumerate(order[:n_head:2]):
        assert order[2 * i + 1].config == c.config and (c.dataset, order[2 * i + 1].dataset) == ("Set5", "Set14")
    assert order_configs(s.cells)[0] == order[0].config


def test_budgeted_oaq_and_odd_bits_rank_after_the_headline():
    s = load_sweep(PROTOCOL)
    by = {c.id: c for c in s.cells}
    assert priority(by["imdn_x4_w4a4_oaq_released_set5"]) < priority(by["imdn_x4_w4a4_oaq_budgeted_set5"])
    assert priority(by["imdn_x4_w4a4_oaq_budgeted_set5"]) < priority(by["imdn_x4_w4a4_oaq_released_b100"])
    assert priority(by["rdn_idealo_x2_w6a6_minmax_urban100"]) < priority(by["fsrcnn_x4_w8a8_recon_set5"])
