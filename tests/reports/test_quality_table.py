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


def test_fill_golden_scores_the_rows_own_artifact_and_refuses_another(tmp_path, monkeypatch):
    """--fill-golden: golden on a finished row's artifact, checked by the sha256 the row recorded."""
    import json

    import calib.evaluate
    from intsim.artifact import file_sha256
    from reports.quality_table import fill_golden, row_id

    row = _row("W6A6", TODAY)
    row["datasets"]["Set5"]["intsim"]["sha256"] = ["a", "b"]
    row["datasets"]["Set5"]["golden_equals_intsim"] = None
    art = tmp_path / f"{row_id(row['row'])}.intsim"
    art.write_bytes(b"an artifact")
    row["artifact_sha256"] = file_sha256(art)
    path = tmp_path / f"{row_id(row['row'])}.json"
    path.write_text(json.dumps(row))
    calls = []

    def fake_eval(artifact, datasets, engine="intsim", progress=True):
        calls.append((artifact, tuple(datasets), engine))
        return {"datasets": {"Set5": {"psnr": 32.0, "ssim": 0.9, "images": [
            {"psnr": 32.0, "sr_sha256": "a"}, {"psnr": 32.0, "sr_sha256": "c"}]}}}

    monkeypatch.setattr(calib.evaluate, "run_eval", fake_eval)
    art.write_bytes(b"another artifact")  # recalibrated since: refused, the row is left as it was
    assert "not filled" in fill_golden(path, tmp_path) and not calls
    assert "golden" not in json.loads(path.read_text())["datasets"]["Set5"]
    art.write_bytes(b"an artifact")
    assert fill_golden(path, tmp_path).endswith("Set5 False")  # the second image differs
    assert calls == [(str(art), ("Set5",), "golden")]
    d = json.loads(path.read_text())["datasets"]["Set5"]
    assert d["golden"]["sha256"] == ["a", "c"] and d["golden_equals_intsim"] is False
    assert "already checked" in fill_golden(path, tmp_path) and len(calls) == 1


def test_row_files_leave_out_baselines_and_an_artifacts_pareto_front(tmp_path):
    from reports.quality_table import row_files

    for name in ("fsrcnn_4_w4a4_default.json", "baselines.json", "fsrcnn_4_w4a4_default_budget_x.json",
                 "fsrcnn_4_w4a4_default_budget_x.intsim.pareto.json"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in row_files(tmp_path)] == ["fsrcnn_4_w4a4_default.json",
                                                     "fsrcnn_4_w4a4_default_budget_x.json"]
