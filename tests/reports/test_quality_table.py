"""reports.quality_table: a row made with an earlier recipe than its spec resolves to today is marked."""
from __future__ import annotations

from calib.recipe import resolve_recipe
from reports.quality_table import markdown

TODAY = resolve_recipe(None).describe()
EARLIER = TODAY.replace(" (unclipped at ≥6 bits)", "")  # the recipe line before wide_weight_bits
OAQ = resolve_recipe("oaq").describe()


def _row(bits: str, recipe: str, method: str = "default") -> dict:
    return {"row": f"imdn:4:{bits}:{method}", "model": "imdn", "scale": 4, "bits": bits,
            "method": "recon" if method == "default" else method, "recipe": recipe, "code_bits": {"c": 9},
            "calib_seconds": 1.0, "holdout": None, "mixed_precision": None,
            "datasets": {"Set5": {"intsim": {"psnr": 32.0}, "golden_equals_intsim": True}}}


def _labels(rows):
    md = markdown(rows, {"imdn:4": {"Set5": {"fp": 32.2, "bicubic": 28.4}}}, "cmd")
    return [line.split(" | ")[2] for line in md.splitlines() if line.startswith("| imdn")], md


def test_rows_of_an_earlier_recipe_are_marked_and_explained():
    assert EARLIER != TODAY
    labels, md = _labels([_row("W8A8", EARLIER), _row("W6A6", TODAY), _row("W4A4", EARLIER)])
    assert labels == ["default = recon †", "default = recon", "default = recon †"]  # sorted W4A4, W6A6, W8A8
    assert "† made with an earlier recipe" in md


def test_no_mark_and_no_footnote_when_every_row_is_current():
    labels, md = _labels([_row("W8A8", TODAY), _row("W4A4", OAQ, "oaq"), _row("W6A6", TODAY, "recon")])
    assert labels == ["oaq", "recon", "default = recon"]
    assert "†" not in md


def test_an_explicit_method_row_of_another_recipe_is_marked_too():
    labels, _ = _labels([_row("W6A6", EARLIER, "recon"), _row("W4A4", TODAY, "oaq")])
    assert labels == ["oaq †", "recon †"]


def test_a_row_whose_artifact_records_an_earlier_layer_policy_is_marked(tmp_path):
    from intsim.artifact import save_artifact
    from reports.quality_table import row_id
    from tests.intsim.test_cost_compare import uniform_artifact

    roles = {"head.conv": "head", "body.conv": "body", "up.conv": "body", "tail.conv": "tail"}
    old, new = _row("W6A6", TODAY), _row("W8A8", TODAY)
    save_artifact(uniform_artifact(8, {"layers": {n: {"role": r} for n, r in roles.items()}}),
                  tmp_path / f"{row_id(old['row'])}.intsim")
    roles["up.conv"] = "upsampler"
    save_artifact(uniform_artifact(8, {"layers": {n: {"role": r} for n, r in roles.items()}}),
                  tmp_path / f"{row_id(new['row'])}.intsim")
    md = markdown([old, new], {"imdn:4": {"Set5": {"fp": 32.2, "bicubic": 28.4}}}, "cmd", tmp_path)
    labels = [line.split(" | ")[2] for line in md.splitlines() if line.startswith("| imdn")]
    assert labels == ["default = recon ‡", "default = recon"]
    assert "‡ calibrated under an earlier layer policy" in md
