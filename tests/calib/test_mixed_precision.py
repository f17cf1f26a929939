"""calib.mixed_precision: budgets, the exact allocation, policy files, and measurement on a tiny model."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from calib.mixed_precision import Budget, LayerTable, allocate, measure, parse_budget, read_policy
from tests.calib._tiny import tiny_images, tiny_model

torch.set_num_threads(1)


def test_parse_budget():
    assert parse_budget("energy=0.5x") == Budget("energy", 0.5, True, 8)
    assert parse_budget("energy=0.5") == Budget("energy", 0.5, True, 8)
    assert parse_budget("latency=1.25xW4A4") == Budget("latency", 1.25, True, 4)
    assert parse_budget("energy=3uJ") == Budget("energy", 3e6, False)
    assert parse_budget("latency=4ms") == Budget("latency", 4e-3, False)
    assert parse_budget("storage=2kB") == Budget("storage", 16000.0, False)
    for bad in ("power=1x", "energy=", "energy=-1x", "energy=1xW4A8", "energy=3parsecs", "latency=1uJ"):
        with pytest.raises(ValueError):
            parse_budget(bad)


def _table(seed=0, nl=5, bits=(3, 4, 6, 8)):
    rng = np.random.default_rng(seed)
    sens = np.sort(rng.uniform(0, 1, (nl, len(bits))), axis=1)[:, ::-1].copy()  # fewer bits: more error
    cost = np.sort(rng.uniform(1, 10, (nl, len(bits))), axis=1)  # more bits: more cost
    fixed = {m: np.full(len(bits), 5.0) for m in ("energy", "latency", "storage")}
    return LayerTable([f"l{i}" for i in range(nl)], bits, sens,
                      {m: cost for m in ("energy", "latency", "storage")}, fixed)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rel", [0.3, 0.5, 0.7, 1.0])
def test_allocation_is_the_exact_optimum(seed, rel):
    t = _table(seed)
    budget = Budget("energy", rel, True, 8)
    limit = t.budget_value(budget)
    best = None
    for combo in itertools.product(range(len(t.bits)), repeat=len(t.layers)):
        c = sum(t.cost["energy"][i, j] for i, j in enumerate(combo)) + 5.0
        s = sum(t.sensitivity[i, j] for i, j in enumerate(combo))
        if c <= limit + 1e-9 and (best is None or s < best - 1e-12):
            best = s
    if best is None:
        with pytest.raises(ValueError, match="infeasible"):
            allocate(t, budget)
        return
    a = allocate(t, budget)
    assert a["cost"] <= limit + 1e-6
    assert a["sensitivity"] == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_full_budget_gives_the_widest_bits():
    t = _table()
    a = allocate(t, Budget("energy", 1.0, True, 8))
    assert set(a["bits"].values()) == {8}


def test_read_policy(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[bits]\n"a" = 4\n"b" = [8, 6]\n')
    assert read_policy(p, ["a", "b"]) == {"a": (4, 4), "b": (8, 6)}
    for text, msg in (('[bits]\n"z" = 4\n', "unknown layer"), ('[bits]\n"a" = 1\n', "2..16"),
                      ("[other]\nx = 1\n", "exactly one"), ("[bits\n", "not valid TOML")):
        p.write_text(text)
        with pytest.raises(ValueError, match=msg):
            read_policy(p, ["a", "b"])
    with pytest.raises(ValueError, match="does not exist"):
        read_policy(tmp_path / "missing.toml")


def test_measure_on_a_tiny_model():
    from calib.graph import capture

    net = tiny_model()
    g = capture(net, rgb_range=1.0)
    t = measure(net, g, tiny_images(4, 12), 1.0, bits=(3, 8), n_sens=2, n_cost=1)
    assert t.layers == ["body.0.c1", "body.0.c2", "body.1.c1", "body.1.c2"]
    assert (t.sensitivity[:, 0] >= t.sensitivity[:, 1]).all()  # 3 bits hurt more than 8
    for m in ("energy", "storage"):
        assert (t.cost[m][:, 0] < t.cost[m][:, 1]).all(), m  # and cost less
    a = allocate(t, Budget("energy", 1.0, True, 3))
    assert set(a["bits"].values()) == {3}
    mixed = t.compose({"body.0.c1": 3, "body.0.c2": 8, "body.1.c1": 8, "body.1.c2": 3})
    assert mixed.layers["body.0.c1"].bits_w == 3 and mixed.layers["body.0.c2"].bits_w == 8
