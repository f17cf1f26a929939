"""intsim == golden on the real two-region artifacts of the default calibration, on every fast path.

The artifacts ``results/quality/imdn_4_{w4a4,w8a8}_default.intsim`` (written by the quality
sweep; git-ignored, so this skips where they are absent; ``INTSIM_QUALITY_DIR`` points
elsewhere) hold what the speed work targets: about 1–14 % of activations in the outer
region, so the int8 conv runs with sparse tails and with the tails as extra dense planes.
Each case runs the golden executor (torch float64) and the engine twice: keeping every
tensor (ops one by one) and lean (the fused producer → slope → split → encode groups, as
the CLI runs it), with the sparse threshold at its default, at 0 (every tail a dense
plane: several planes per tile) and at 1 (every tail sparse). Rounding and overflow
policy are swapped in (they change no stored integer; both executors follow them), so
every mode meets the real codebooks. Zero tolerance: every tensor and every event count.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from golden.executor import run_golden  # noqa: E402
from intsim import engine  # noqa: E402
from intsim.artifact import load_artifact  # noqa: E402
from intsim.images import read_image  # noqa: E402
from intsim.ops import conv_fast  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QDIR = Path(os.environ.get("INTSIM_QUALITY_DIR", ROOT / "results" / "quality"))
DATA = Path(os.environ.get("INTSIM_DATA_ROOT", ROOT.parent / "shared"))
BABY = DATA / "data" / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"

SPARSE_DEFAULT, INT8_DEFAULT = conv_fast.SPARSE_FRACTION, conv_fast.INT8_SPARSE_FRACTION
MODES = [("half_up", "saturate"), ("half_even", "wrap"), ("half_away", "saturate"), ("floor", "wrap")]


def _artifact(bits: str, rounding: str, overflow: str):
    p = QDIR / f"imdn_4_{bits}_default.intsim"
    if not p.is_file():
        pytest.skip(f"no default-calibration artifact {p} (written by the quality sweep)")
    if not BABY.is_file():
        pytest.skip(f"no Set5 image {BABY} (data root)")
    art = load_artifact(p)
    art.numerics = dataclasses.replace(art.numerics, rounding=rounding, overflow=overflow)
    art.derived.clear()
    return art


@pytest.mark.slow
@pytest.mark.parametrize("bits", ["w4a4", "w8a8"])
@pytest.mark.parametrize("rounding,overflow", MODES)
def test_engine_equals_golden_on_default_artifacts(monkeypatch, bits, rounding, overflow):
    art = _artifact(bits, rounding, overflow)
    img = np.ascontiguousarray(read_image(BABY, 3).pixels[40:88, 40:88])  # 48×48: the banded kernels run
    gold = run_golden(art, img)
    for frac in (None, 0.0, 0.02, 1.0):  # None: the defaults
        monkeypatch.setattr(conv_fast, "SPARSE_FRACTION", SPARSE_DEFAULT if frac is None else frac)
        monkeypatch.setattr(conv_fast, "INT8_SPARSE_FRACTION", INT8_DEFAULT if frac is None else frac)
        full = engine.run(art, img, keep_tensors=True)
        for name, ref in gold.tensors.items():
            np.testing.assert_array_equal(full.tensors[name], ref, err_msg=f"{name} (sparse fraction {frac})")
        lean = engine.run(art, img, keep_tensors=False)
        for name in art.outputs:
            np.testing.assert_array_equal(lean.tensors[name], gold.tensors[name])
        for run in (full, lean):
            for op, ev in gold.events.items():
                got = {k: run.counters["ops"][op][k] for k in ev}
                assert got == ev, f"{op} events (sparse fraction {frac})"
