"""reports.quality_table: a recon row made before today's recipe is marked, not passed off as today's."""
from __future__ import annotations

from reports.quality_table import markdown

TODAY = ("recon: two-region init (bp search, ranges searched up to the extremes at ≥6 bits), per-channel weights "
         "(unclipped at ≥6 bits), block reconstruction with learned rounding (300 steps/unit, batch 4, QDrop 0.5) "
         "on 256 patches of 48×48")
EARLIER = TODAY.replace(" (unclipped at ≥6 bits)", "")


def _row(bits: str, recipe: str, method_given: bool = False) -> dict:
    return {"row": f"imdn:4:{bits}:{'recon' if method_given else 'default'}", "model": "imdn", "scale": 4,
            "bits": bits, "method": "recon", "recipe": recipe, "code_bits": {"c": 9}, "calib_seconds": 1.0,
            "holdout": None, "mixed_precision": None,
            "datasets": {"Set5": {"intsim": {"psnr": 32.0}, "golden_equals_intsim": True}}}


def _labels(rows):
    md = markdown(rows, {"imdn:4": {"Set5": {"fp": 32.2, "bicubic": 28.4}}}, "cmd")
    return [line.split(" | ")[2] for line in md.splitlines() if line.startswith("| imdn")], md


def test_rows_of_an_earlier_default_recipe_are_marked_and_explained():
    labels, md = _labels([_row("W8A8", EARLIER), _row("W6A6", TODAY), _row("W4A4", EARLIER)])
    assert labels == ["default = recon", "default = recon", "default = recon †"]  # sorted W4A4, W6A6, W8A8
    assert "† made with the recon recipe before" in md


def test_no_mark_and_no_footnote_when_every_row_is_current():
    labels, md = _labels([_row("W8A8", TODAY), _row("W4A4", EARLIER), _row("W6A6", TODAY, method_given=True)])
    assert labels == ["default = recon", "recon", "default = recon"]
    assert "†" not in md


def test_an_explicit_recon_row_of_the_earlier_recipe_is_marked_too():
    labels, _ = _labels([_row("W6A6", EARLIER, method_given=True)])
    assert labels == ["recon †"]
