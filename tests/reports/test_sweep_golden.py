"""reports.sweep_golden: golden's per-cell image choice from a cost estimate, the [golden] budget of
SWEEP.toml, and how the results page shows the choice."""
from __future__ import annotations

import pytest

from intsim.cost._toml import ConfigError
from reports.results_page import markdown
from reports.sweep_golden import GoldenBudget, ImageCost, conv_macs, conv_macs_by_op, coverage_text, plan_golden
from tests.artifact_factory import make_random_artifact
from tests.reports.test_results_page import _cell

COSTS = [ImageCost("a", 10.0, 500.0), ImageCost("b", 80.0, 900.0), ImageCost("c", 20.0, 5000.0),
         ImageCost("d", 30.0, 100.0), ImageCost("e", 5.0, 100.0)]


def test_no_budget_checks_every_image():
    plan = plan_golden(COSTS, GoldenBudget())
    assert plan["mode"] == "all" and plan["images"] == list("abcde") and plan["skipped"] == []
    assert plan["reason"] is None and plan["gmac_all"] == plan["gmac_checked"] == 145.0 and plan["budget"] == {}
    assert coverage_text(plan) == "every image" == coverage_text(None)  # None: a cell from before plans


def test_each_limit_leaves_out_its_images_and_says_why():
    plan = plan_golden(COSTS, GoldenBudget(max_gmac_per_image=50, max_mib_per_image=4096, max_gmac_per_cell=40))
    # b: 80 GMAC > 50; c: 5000 MiB > 4096; d: 10 + 30 = 40 fits; e: 40 + 5 > 40
    assert plan["mode"] == "some" and plan["images"] == ["a", "d"] and plan["skipped"] == ["b", "c", "e"]
    assert plan["gmac_checked"] == 40.0 and plan["gmac_all"] == 145.0
    assert plan["reason"] == ("1 image(s) over 50 GMAC per image; 1 image(s) golden's memory estimate over "
                              "4096 MiB per image; 1 image(s) the cell's golden total would pass 40 GMAC")
    assert plan["budget"] == {"max_gmac_per_image": 50, "max_mib_per_image": 4096, "max_gmac_per_cell": 40}
    assert coverage_text(plan).startswith("2 of 5 images (1 image(s) over 50 GMAC")


def test_datasets_listed_always_ignore_the_gmac_limits_not_the_memory_one():
    budget = GoldenBudget(max_gmac_per_image=1, max_gmac_per_cell=1, always=("Set5", "Set14"))
    plan = plan_golden(COSTS, budget, "Set14")
    assert plan["mode"] == "all" and plan["images"] == list("abcde") and plan["budget"] == {"always": ["Set5", "Set14"]}
    assert plan_golden(COSTS, budget, "Urban100")["mode"] == "none"
    plan = plan_golden(COSTS, GoldenBudget(max_gmac_per_image=1, max_mib_per_image=4096, always=("Set5",)), "Set5")
    assert plan["images"] == ["a", "b", "d", "e"] and plan["skipped"] == ["c"]  # c: 5000 MiB
    assert plan["reason"] == "1 image(s) golden's memory estimate over 4096 MiB per image"
    assert plan["budget"] == {"max_mib_per_image": 4096, "always": ["Set5"]}


def test_nothing_affordable_is_none_with_the_reason():
    plan = plan_golden(COSTS, GoldenBudget(max_gmac_per_image=1))
    assert plan["mode"] == "none" and plan["images"] == [] and plan["reason"] == "5 image(s) over 1 GMAC per image"
    assert coverage_text(plan) == "no image of 5 (5 image(s) over 1 GMAC per image)"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conv_macs_by_op(seed):
    """Every conv kind of the random artifact (stride, dilation, groups): the estimate equals intsim's cost
    model's geometry-only count, at two input sizes. The transposed conv (stride 2, 3×3) is counted as the
    scatter golden's torch computes (every input pixel × kernel tap), not the cost model's gather bound
    (⌈k/s⌉² taps per output pixel)."""
    from intsim.cost import estimate_cost, load_accelerator
    from intsim.footprint import tensor_shapes

    art = make_random_artifact(seed)
    for h, w in ((8, 8), (13, 21)):
        ref = estimate_cost(art, None, load_accelerator("edge_npu"), "fp32", image_hw=(h, w))["layers"]
        ref = {l["name"]: l["macs_geometric"] for l in ref if l.get("kind") == "conv"}
        ours = conv_macs_by_op(art, h, w)
        assert set(ours) == set(ref) and conv_macs(art, h, w) == sum(ours.values())
        (t,) = [op for op in art.ops if op.op == "conv_transpose2d"]
        for name, n in ours.items():
            if name != t.name:
                assert n == ref[name] > 0, name
        hi, wi = tensor_shapes(art, h, w)[t.inputs[0]]
        ci, co = art.tensors[t.inputs[0]].channels, art.tensors[t.outputs[0]].channels
        kh, kw = t.attrs["kernel"]
        assert ours[t.name] == hi * wi * ci * co * kh * kw


def test_golden_section_of_sweep_toml(tmp_path):
    from reports.sweep import load_sweep

    base = '[sweep]\nout="o"\nmodels=["imdn:4"]\nbits=["W8A8"]\nmethods=["minmax"]\ndatasets=["Set5"]\n'
    p = tmp_path / "s.toml"
    p.write_text(base)
    assert load_sweep(p).golden == GoldenBudget() and GoldenBudget().unlimited()
    p.write_text(base + "[golden]\nmax_gmac_per_image = 60\nmax_gmac_per_cell = 0\n")
    assert load_sweep(p).golden == GoldenBudget(max_gmac_per_image=60.0)  # 0 = no limit
    p.write_text(base + '[golden]\nalways = ["Set5", "B100"]\n')
    assert load_sweep(p).golden == GoldenBudget(always=("Set5", "B100"))
    for bad, msg in (("max_gmac_per_image = -1", "must be ≥ 0"), ("max_gmacs = 3", "unknown key 'max_gmacs'"),
                     ('max_mib_per_image = "4G"', "must be a number"),
                     ('always = ["DIV2K"]', "always: 'DIV2K' is not one of")):
        p.write_text(base + f"[golden]\n{bad}\n")
        with pytest.raises(ConfigError, match=msg):
            load_sweep(p)


def test_page_shows_golden_coverage_per_row_and_lists_partial_cells():
    full = _cell("minmax", "Set5", 25.7)
    part = _cell("minmax", "Set14", 24.0)
    part["intsim"]["n"] = 14
    part["golden_plan"] = plan_golden([ImageCost(str(i), 10.0 * i, 1.0) for i in range(14)],
                                      GoldenBudget(max_gmac_per_cell=100))
    none = _cell("oaq", "Set5", 29.0, "released")
    none["golden_plan"] = plan_golden([ImageCost(str(i), 99.0, 1.0) for i in range(5)], GoldenBudget(max_gmac_per_image=1))
    none["golden_equals_intsim"] = None
    md = markdown([full, part, none], [], [])
    assert part["golden_plan"]["images"] == ["0", "1", "2", "3", "4"]  # 0+10+20+30+40 = 100 GMAC
    row = next(l for l in md.splitlines() if l.startswith("| MinMax |"))
    assert "| yes on 10/19 images |" in row  # Set5 all 5, Set14 5 of 14
    assert "| not checked (0/5 images) |" in next(l for l in md.splitlines() if l.startswith("| full method"))
    assert "## Golden checked on part of the images" in md
    assert ("| imdn_x4_W4A4_minmax_None_Set14 | 5 of 14 images (9 image(s) the cell's golden total would pass "
            "100 GMAC) | yes |") in md
    assert "| imdn_x4_W4A4_oaq_released_Set5 | no image of 5 (5 image(s) over 1 GMAC per image) | – |" in md
    bad = _cell("minmax", "Set5", 25.7)
    bad["golden_equals_intsim"] = False
    assert "| **NO** |" in markdown([bad], [], [])
