"""The engine must import and run without torch (docs/arithmetic.md)."""
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A meta-path finder that makes every torch import fail, as on a machine without torch.
BLOCK_TORCH = textwrap.dedent(
    """
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked for this test")
            return None
    sys.meta_path.insert(0, _NoTorch())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )


def test_blocker_really_blocks_torch():
    res = _run("import torch")
    assert res.returncode != 0 and "blocked" in res.stderr


def test_every_intsim_module_imports_without_torch():
    res = _run(
        """
        import importlib, pkgutil, intsim
        names = [m.name for m in pkgutil.walk_packages(intsim.__path__, "intsim.")]
        assert len(names) >= 10, names
        for n in names:
            importlib.import_module(n)
        assert "torch" not in sys.modules
        print(len(names))
        """
    )
    assert res.returncode == 0, res.stderr


def test_engine_runs_an_artifact_without_torch(tmp_path):
    """Build, save, load and run a random artifact with torch unimportable."""
    res = _run(
        f"""
        sys.path.insert(0, {str(REPO)!r})
        import numpy as np
        from tests.artifact_factory import make_random_artifact
        from intsim.artifact import save_artifact, load_artifact
        from intsim.engine import run
        art = make_random_artifact(seed=3)
        save_artifact(art, {str(tmp_path / 'a.intsim')!r})
        art = load_artifact({str(tmp_path / 'a.intsim')!r})
        img = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
        out = run(art, img).tensors[art.outputs[0]]
        assert out.dtype == np.uint8 and out.ndim == 3
        assert "torch" not in sys.modules
        print("ok", out.shape)
        """
    )
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout
