"""The size rule of the style guide: functions under ~120 lines, modules under ~600, in the packages.

Counted in physical lines (a function from its ``def`` line, decorators excluded, to its last line,
docstring and comments included; a nested function counts in its parent too). The limits are the
rule's numbers and the tree meets them; a function or module that outgrows them fails here, named
with its size, to be split into named helpers (one module per concept) rather than the limit raised.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("intsim", "calib", "golden", "reports")
MAX_FUNCTION_LINES = 120
MAX_MODULE_LINES = 600


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def long_functions(path: Path, limit: int, root: Path = ROOT) -> list[str]:
    """``path:line name (n lines)`` (``path`` relative to ``root``) of every function or method of ``path``
    longer than ``limit`` lines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_packages_are_found():
    # guards the two tests below against passing on an empty walk
    found = {p.relative_to(ROOT).parts[0] for p in _sources()}
    assert found == set(PACKAGES), found


def test_no_function_over_the_limit():
    offenders = [f for p in _sources() for f in long_functions(p, MAX_FUNCTION_LINES)]
    assert offenders == [], f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(offenders)


def test_no_module_over_the_limit():
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in _sources()}
    offenders = [f"{p.relative_to(ROOT)} ({n} lines)" for p, n in sorted(sizes.items()) if n > MAX_MODULE_LINES]
    assert offenders == [], f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(offenders)


@pytest.mark.parametrize("body_lines,flagged", [(3, False), (200, True)])
def test_scan_flags_a_long_function(tmp_path, body_lines, flagged):
    """The scan itself: a function of ``body_lines + 1`` lines is flagged exactly when over the limit."""
    (tmp_path / "pkg").mkdir()
    src = tmp_path / "pkg" / "m.py"
    src.write_text("def f():\n" + "    x = 1\n" * body_lines, encoding="utf-8")
    got = long_functions(src, MAX_FUNCTION_LINES, tmp_path)
    assert bool(got) == flagged and (not got or got[0] == f"pkg/m.py:1 f ({body_lines + 1} lines)")
