"""The package layering (pyproject.toml, [tool.importlinter]): ``lint-imports`` keeps every contract.

A broken contract fails here with import-linter's report, which names the importing line.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "lint-imports not found: pip install import-linter (the dev extra)"
    # this tree's packages, not an installed copy elsewhere; no cache folder left in the tree
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout, r.stdout


def _module_cycles(graph, modules) -> list[set[str]]:
    """The strongly connected components (size > 1) of the direct-import graph on ``modules``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the packages are a few hundred modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in modules:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles_among_modules():
    """No module-level import cycle (lazy imports inside functions count) in intsim or calib.
    engine <-> tiling, calib.finetune <-> calib.methods <-> reconstruct, calib.graph <-> calib.batchnorm and
    intsim.artifact <-> intsim.validate (with validate_schema/_numerics/_ops and bounds) were cycles once; the
    last was broken by moving the data model into intsim.artifact_model, which validation and bounds read and
    intsim.artifact (load and save, which validate) re-exports. This fails if any cycle comes back."""
    import grimp

    # imports under TYPE_CHECKING are annotations only, never executed: not a cycle
    graph = grimp.build_graph("intsim", "calib", cache_dir=None, exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if m.split(".")[0] in ("intsim", "calib")}
    cycles = _module_cycles(graph, modules)
    assert cycles == [], cycles
