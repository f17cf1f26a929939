"""Peak memory of the resource refusals (issue 18: each must stay at or below 500 MB).

Each case of :data:`RESOURCE_CASES` (rows of the robustness table: decompression bombs, huge or
endless files, FIFOs, external HDF5 storage, memory budgets, absurd graphs) is built in a scratch
folder and run as a fresh process (``python -m tests.robustness.refusal_rss --child OUT ARGV…``, which runs
``intsim_cli.main(ARGV)`` and then records its own ``VmHWM``, the peak RSS of the process image since
exec, from /proc/self/status: imports count, the parent does not — a forked child's ``ru_maxrss``
would start at the parent's size). ``python -m
tests.robustness.refusal_rss`` writes ``benchmarks/results/refusal_rss.json``, which
docs/robustness.md shows (sections.py); ``test_refusal_rss.py`` checks the bound on every case.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.robustness.cases import ALL_CASES

REPO = Path(__file__).resolve().parents[2]
RSS_JSON = REPO / "benchmarks" / "results" / "refusal_rss.json"
LIMIT_MIB = 500

RESOURCE_CASES = (
    # decompression bombs and declared sizes
    "artifact-array-bomb", "checkpoint-zip-record-bomb", "checkpoint-hdf5-oversized-dataset",
    "image-decompression-bomb", "golden-padded-tensor", "config-accel-huge-integer", "config-counters-huge-integer",
    # huge or endless files, hangs
    "image-sparse-3gib", "image-png-trailing-data", "checkpoint-oversized-file", "checkpoint-device",
    "checkpoint-fifo", "config-accel-dev-zero", "config-accel-fifo", "config-accel-too-large", "config-counters-fifo",
    "config-sweep-fifo", "state-recon-fifo",
    # data or links outside the file
    "checkpoint-hdf5-external-storage", "checkpoint-hdf5-external-fifo", "checkpoint-hdf5-virtual-dataset",
    "checkpoint-hdf5-external-link",
    # memory budgets
    "image-too-large-refused", "image-too-large-golden", "image-too-large-cost-refused", "golden-verify-huge-input",
    # absurd graphs and records
    "artifact-too-many-ops", "artifact-too-many-tensors", "artifact-needs-6003-columns",
    "artifact-odd-size-3000-relus", "report-cost-too-many-layers",
)


def cases():
    by_id = {c.id: c for c in ALL_CASES}
    return [by_id[i] for i in RESOURCE_CASES]


def runnable(case) -> str | None:
    """Why ``case`` cannot run here (``None``: it can)."""
    if "torch" in case.needs and importlib.util.find_spec("torch") is None:
        return "needs torch"
    return None


def _vm_hwm_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))


def _run_child(out: str, argv: list[str]) -> int:
    """In the child: run the command in-process, then record this process's peak RSS (KiB) in ``out``."""
    from intsim_cli import main as intsim_main

    try:
        code = intsim_main(argv)
    finally:
        Path(out).write_text(str(_vm_hwm_kib()))
    return code


def _child(argv: list[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    hwm = cwd / ".vmhwm"
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tests.robustness.refusal_rss", "--child", str(hwm), *argv], cwd=cwd,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       check=False)
    err = p.stderr.decode("utf-8", "replace")
    return {"exit": p.returncode, "peak_rss_mib": round(int(hwm.read_text()) / 1024, 1),
            "wall_s": round(time.perf_counter() - t0, 2),
            "stderr_lines": [ln for ln in err.splitlines() if ln.strip()]}


def measure(case) -> dict:
    """Build ``case`` in a scratch folder and run it in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="intsim-rss-") as d:
        folder = Path(d)
        setup = case.build(folder)
        r = _child([str(a) for a in setup.argv], folder)
    return {"case": case.id, "title": case.title, **r}


def baseline() -> dict:
    """The same process doing nothing but start: ``intsim --version``."""
    with tempfile.TemporaryDirectory(prefix="intsim-rss-") as d:
        return {"case": "(intsim --version)", **_child(["--version"], Path(d))}


def main() -> int:
    rows = [baseline()]
    for case in cases():
        why = runnable(case)
        if why:
            print(f"{case.id}: skipped ({why})", flush=True)
            continue
        rows.append(measure(case))
        r = rows[-1]
        print(f"{r['case']:40s} exit {r['exit']}  {r['peak_rss_mib']:7.1f} MiB  {r['wall_s']:6.2f} s", flush=True)
    doc = {"command": "python -m tests.robustness.refusal_rss", "limit_mib": LIMIT_MIB,
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
           "rows": rows}
    from intsim.artifact import atomic_write_bytes

    atomic_write_bytes(RSS_JSON, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    print(f"wrote {RSS_JSON}")
    worst = max(r["peak_rss_mib"] for r in rows[1:])
    return 0 if worst <= LIMIT_MIB and all(r["exit"] == 2 for r in rows[1:]) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.exit(_run_child(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
