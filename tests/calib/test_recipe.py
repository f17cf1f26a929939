"""calib.recipe: one set of defaults for the CLI, the Python API and the demo."""
from __future__ import annotations

import inspect

import pytest

from calib.recipe import DEFAULT_METHOD, resolve_recipe


def test_default_is_the_best_measured_recipe():
    r = resolve_recipe()
    assert r.method == DEFAULT_METHOD == "recon"
    assert r.recon is not None and r.recon.iters > 0 and r.per_channel and r.bp_init == "search"
    assert "learned rounding" in r.describe()


def test_paper_methods_keep_the_paper_recipe():
    r = resolve_recipe("oaq")
    assert (r.method, r.n_images, r.patch, r.batch_size, r.bp_init, r.per_channel, r.recon) == \
        ("oaq", 100, 96, 2, "percentile", False, None)


def test_overrides_and_errors():
    r = resolve_recipe("recon", n_images=3, patch=20, recon={"iters": 7}, seed=4)
    assert (r.n_images, r.patch, r.recon.iters, r.recon.seed) == (3, 20, 7, 4)
    with pytest.raises(ValueError, match="unknown calibration method"):
        resolve_recipe("nope")


def test_cli_and_api_leave_defaults_to_the_recipe():
    """Neither entry point hard-codes a method, patch count or patch size of its own."""
    from calib.cli_calibrate import calibrate_run
    from intsim_cli import build_parser

    sig = inspect.signature(calibrate_run).parameters
    for k in ("method", "n_images", "patch", "batch_size", "bp_init", "per_channel"):
        assert sig[k].default is None, k
    a = build_parser().parse_args(["calibrate", "--model", "imdn", "--scale", "4", "--bits", "W4A4", "-o", "x"])
    assert (a.method, a.n_images, a.patch, a.bp_init, a.per_channel) == (None, None, None, None, None)


def test_stress_is_a_recipe_setting_with_a_cli_flag():
    from intsim_cli import UsageError, build_parser

    assert resolve_recipe("recon", stress=0.0).stress is None
    r = resolve_recipe("recon", stress=0.25)
    assert r.stress.fraction == 0.25 and "25% colour/contrast-stressed" in r.describe()
    assert r.to_json()["stress"]["fraction"] == 0.25
    assert resolve_recipe("oaq").stress is None  # the paper's recipe is unchanged
    p = build_parser()
    assert p.parse_args(["calibrate", "--model", "imdn", "--scale", "4", "--bits", "W4A4", "-o", "x",
                         "--stress", "0.5"]).stress == 0.5
    for bad in ("1.5", "nan", "x"):
        with pytest.raises(UsageError, match="--stress"):
            p.parse_args(["calibrate", "--model", "imdn", "--scale", "4", "--bits", "W4A4", "-o", "x", "--stress", bad])


def test_fisher_weighted_loss_below_six_weight_bits_only():
    """Chosen on held-out SunHays80 (docs/calibration.md, seventh round): it pays at 4 bits, not at 6."""
    assert resolve_recipe(weight_bits=4).recon.weighting == "fisher"
    assert "Fisher-weighted" in resolve_recipe(weight_bits=4).describe()
    for bits in (6, 8, None):
        r = resolve_recipe(weight_bits=bits)
        assert r.recon.weighting == "none" and "Fisher" not in r.describe()
    assert resolve_recipe(weight_bits=4, recon={"weighting": "none"}).recon.weighting == "none"
    assert resolve_recipe(weight_bits=8, recon={"weighting": "fisher"}).recon.weighting == "fisher"
    assert resolve_recipe("oaq", weight_bits=4).recon is None
    # what earlier artifacts recorded is unchanged at 6 and 8 bits
    assert "weighting" not in resolve_recipe(weight_bits=8).to_json()["recon"]


def test_equalization_is_an_option_off_by_default():
    """Measured on held-out SunHays80 (docs/calibration.md, tenth round): not in the default."""
    from intsim_cli import UsageError, build_parser

    for bits in (4, 6, 8):
        r = resolve_recipe(weight_bits=bits)
        assert r.equalize is None and "equalize" not in r.to_json() and "equalized" not in r.describe()
    r = resolve_recipe(weight_bits=4, equalize=1.0)
    assert r.to_json()["equalize"] == 1.0 and "cross-layer equalized (α 1)" in r.describe()
    assert "cross-layer equalized (α 0.5)" in resolve_recipe("oaq", equalize=0.5).describe()
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        resolve_recipe(equalize=1.5)
    p = build_parser()
    assert p.parse_args(["calibrate", "--model", "fsrcnn", "--scale", "4", "--bits", "W4A4", "-o", "x",
                         "--equalize", "1"]).equalize == 1.0
    with pytest.raises(UsageError, match="--equalize"):
        p.parse_args(["calibrate", "--model", "fsrcnn", "--scale", "4", "--bits", "W4A4", "-o", "x", "--equalize", "2"])
