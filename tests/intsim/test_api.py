"""The public API of ``import intsim`` (issue 20): ``load_artifact``, ``run``, ``verify`` and
``__version__`` resolve on first use, ``intsim.verify`` is the function even once the verification
module is imported, ``import intsim`` loads nothing heavy, and ``run``/``verify`` do what
``intsim run``/``intsim verify`` do (torch-free: the golden is written from engine runs)."""
from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import intsim
from intsim.artifact import save_artifact
from intsim.engine import run as engine_run
from intsim.footprint import untiled_peak_bytes
from intsim.golden_dir import GoldenError, read_golden_dir
from intsim.images import ImageError, write_png
from tests.artifact_factory import make_random_artifact
from tests.intsim.test_verify import engine_golden

REPO = Path(__file__).resolve().parents[2]
API = ("load_artifact", "run", "verify")


def _fresh(code: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter (nothing of this test session imported), from the repository root."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_import_intsim_loads_nothing_heavy():
    res = _fresh("""
        import sys
        before = set(sys.modules)
        import intsim
        print(sorted(m for m in set(sys.modules) - before))
        """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "['intsim']"  # no numpy, numba, importlib.metadata, engine or api


def test_names_resolve_to_the_functions_and_verify_survives_the_submodule_import():
    res = _fresh("""
        import sys
        import intsim
        import intsim.verification  # a submodule import sets a package attribute: it must not be 'verify'
        import intsim.api, intsim.artifact
        assert intsim.verify is intsim.api.verify and callable(intsim.verify), intsim.verify
        assert intsim.run is intsim.api.run and intsim.load_artifact is intsim.artifact.load_artifact
        assert isinstance(intsim.__version__, str) and intsim.__version__
        print("torch" in sys.modules)
        """)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"  # the engine API never imports torch


def test_dir_and_all_list_the_api():
    assert set(API) | {"__version__"} <= set(dir(intsim))
    assert sorted(intsim.__all__) == sorted([*API, "__version__"])
    assert all(callable(getattr(intsim, n)) for n in API)


@pytest.mark.parametrize("name", ["no_such_name", "quantize", "Verify"])
def test_unknown_attribute_raises(name):
    with pytest.raises(AttributeError, match=f"module 'intsim' has no attribute '{name}'"):
        getattr(intsim, name)
    assert not hasattr(intsim, name)


@pytest.fixture
def saved(tmp_path):
    """A random valid artifact written to a file (so that it has a sha256), and its path."""
    path = tmp_path / "a.intsim"
    save_artifact(make_random_artifact(seed=2), path)
    return intsim.load_artifact(path), path


def test_run_returns_the_engine_output(saved, tmp_path):
    art, path = saved
    img = np.random.default_rng(0).integers(0, 256, (13, 11, 3), dtype=np.uint8)
    want = engine_run(art, img).tensors[art.outputs[0]]
    got = intsim.run(path, img)
    assert got.dtype == np.uint8 and got.shape == want.shape and got.shape[2] == 3
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(intsim.run(art, img), want)  # an Artifact as well as a path
    write_png(tmp_path / "in.png", img)
    np.testing.assert_array_equal(intsim.run(art, tmp_path / "in.png"), want)  # a file as well as an array


def test_run_over_the_budget_runs_in_bands_bit_exact(saved, caplog):
    art, _ = saved
    img = np.random.default_rng(1).integers(0, 256, (64, 40, 3), dtype=np.uint8)
    mb = (untiled_peak_bytes(art, 64, 40) - 1) / (1 << 20)  # just too little for an untiled run
    with caplog.at_level(logging.INFO, logger="intsim"):
        got = intsim.run(art, img, max_memory_mb=mb)
    assert any("running in bands of" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(got, engine_run(art, img).tensors[art.outputs[0]])
    with pytest.raises(ImageError, match="memory budget"):
        intsim.run(art, img, max_memory_mb=1e-4)


@pytest.mark.parametrize("image,needle", [
    (np.zeros((8, 8, 3), np.float32), "must be uint8"),
    (np.zeros((8, 8), np.uint8), "must be H×W×C"),
    (np.zeros((8, 8, 1), np.uint8), "needs 3"),
])
def test_run_refuses_an_unusable_array(saved, image, needle):
    with pytest.raises(ValueError, match=needle):
        intsim.run(saved[0], image)


def test_run_and_verify_refuse_what_is_not_an_artifact(saved):
    with pytest.raises(TypeError, match="artifact must be"):
        intsim.run(object(), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(TypeError, match="golden must be"):
        intsim.verify(saved[0], 3)


def test_verify_a_golden_folder_or_set(saved, tmp_path):
    art, path = saved
    rng = np.random.default_rng(3)
    inputs = [(f"img{k}.png", rng.integers(0, 256, (9 + k, 10, 3), dtype=np.uint8)) for k in range(2)]
    engine_golden(art, tmp_path / "g", inputs)
    rep = intsim.verify(path, tmp_path / "g")
    assert rep.ok and rep.inputs == 2 and rep.compared_tensors == 2 * len(art.tensors), rep
    assert str(rep).startswith("OK: 2 input(s)")
    assert intsim.verify(art, read_golden_dir(tmp_path / "g")).to_json() == rep.to_json()


def test_verify_reports_a_mismatch_and_respects_the_budget(saved, tmp_path):
    art, _ = saved
    img = np.random.default_rng(4).integers(0, 256, (9, 10, 3), dtype=np.uint8)

    def alter(k, t, e):
        t[art.outputs[0]] = t[art.outputs[0]].copy()
        t[art.outputs[0]][0, 0, 0] ^= 1

    engine_golden(art, tmp_path / "g", [("img.png", img)], alter)
    rep = intsim.verify(art, tmp_path / "g")
    assert not rep.ok and rep.mismatches == 1 and rep.first["tensor"] == art.outputs[0]
    with pytest.raises(GoldenError, match="above the memory budget"):
        intsim.verify(art, tmp_path / "g", max_memory_mb=1e-4)
