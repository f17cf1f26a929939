"""The test session drops numba kernel caches made from other sources (tests/conftest.py)."""
from tests.conftest import drop_stale_kernel_caches, sources_digest


def _tree(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "rounding.py").write_text("A = 1\n")
    (pkg / "__pycache__" / "conv.f-1.py311.nbi").write_bytes(b"index")
    (pkg / "__pycache__" / "conv.f-1.py311.1.nbc").write_bytes(b"code")
    return pkg, pkg / "__pycache__" / "stamp"


def test_first_session_drops_unstamped_caches(tmp_path):
    pkg, stamp = _tree(tmp_path)
    assert drop_stale_kernel_caches(pkg, stamp) == 2
    assert not list(pkg.rglob("*.nb?")) and stamp.read_text() == sources_digest(pkg)


def test_unchanged_sources_keep_caches_and_an_edit_elsewhere_drops_them(tmp_path):
    pkg, stamp = _tree(tmp_path)
    drop_stale_kernel_caches(pkg, stamp)
    (pkg / "__pycache__" / "conv.f-1.py311.nbi").write_bytes(b"index")
    assert drop_stale_kernel_caches(pkg, stamp) == 0  # same sources: the cache is kept
    (pkg / "rounding.py").write_text("A = 2\n")  # another file than the kernel's own
    assert drop_stale_kernel_caches(pkg, stamp) == 1
    assert not list(pkg.rglob("*.nbi"))
