"""The parts of docs/robustness.md that are not the case table: durability, fuzzing, policies.

Kept here (not in the .md) so the page as a whole stays generated; the fuzzing table is read
from benchmarks/results/fuzz.json, written by ``python -m tests.fuzz.run``.
"""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FUZZ_JSON = REPO / "benchmarks" / "results" / "fuzz.json"

# (test in tests/test_durability.py, what it kills and what it finds)
DURABILITY_TESTS = [
    ("test_calibrate_killed_leaves_old_or_complete_new_artifact",
     "`intsim calibrate` killed half-way through writing the artifact's temp file, after its fsync "
     "(before the rename) and right after the rename: the artifact path holds the old bytes, or the "
     "complete new artifact (loads, same sha256 as an uninterrupted run)"),
    ("test_interrupted_calibration_resumes_to_the_same_artifact",
     "`intsim calibrate --method oaq --state-dir D --epochs 3` killed right after epoch 1's finetuning "
     "state is renamed into place; the rerun resumes from epoch 1 (it would die on a third state save "
     "if it restarted) and writes an artifact with the same sha256 as an uninterrupted run"),
    ("test_golden_killed_before_swap_leaves_old_golden",
     "`intsim golden` killed half-way through a tensor file, half-way through manifest.json, and just "
     "before the folder swap: the golden folder is the old one, byte for byte"),
    ("test_golden_killed_after_swap_has_new_golden_and_rerun_works",
     "killed just after the swap: the new golden reads back and `intsim verify` passes; a later run works"),
    ("test_golden_fallback_swap_killed_is_recovered_by_next_writer",
     "on file systems without `renameat2(RENAME_EXCHANGE)`: killed between rename-old and rename-new; "
     "the reader names the stranded old folder and the next writer puts it back first"),
    ("test_run_killed_leaves_each_png_old_or_new",
     "`intsim run` over two images killed at five points (mid-write of the first and second PNG, after "
     "the second fsync, after each rename): each PNG is its old bytes or the complete new image"),
]

DURABILITY = """
## Durability

Every output (artifacts, golden folders, PNGs, counters/cost/report JSON, HTML
reports, plots, finetuning state, checkpoints) is written through
`intsim.artifact.atomic_write_bytes`: a temp file in the same folder, fsync,
rename (`os.replace`), so a reader sees the old file or the complete new one.
A golden folder is written whole under a temp name, fsynced file by file and
folder by folder, and swapped with the old folder in one step by
`renameat2(RENAME_EXCHANGE)` (glibc; where the file system refuses it, the old
rename-old / rename-new sequence is used, and a kill between the two renames is
recovered by the next writer). Commands compute everything before writing
anything, so a refused input never leaves a partial result.

A SIGKILL can leave a hidden temp file (`.<name>.*.tmp`) or folder beside the
output; it is never read, and later runs do not delete what they do not own.

The kill tests (`tests/test_durability.py`) run the real command in a
subprocess through `tests/kill_points.py`, which makes the process SIGKILL
itself at the n-th occurrence of a chosen point (no timing guesses):

| test | kill points and what is found |
|---|---|
{rows}
"""

FUZZ_HEAD = """
## Fuzzing

Property-based fuzz targets (hypothesis) in `tests/fuzz/`, one per parser; the
only exception each may raise is its documented one-line error (`ArtifactError`,
`GoldenError`, `ImageError`, `ConfigError`), and every case has a time limit
(a hang fails). CI runs them at a small derandomized budget
(`INTSIM_FUZZ_EXAMPLES`); the full run is `python -m tests.fuzz.run --examples 10000`.
"""


def _fuzz_table() -> str:
    if not FUZZ_JSON.is_file():
        return "\n(no full fuzzing run recorded yet: run `python -m tests.fuzz.run --examples 10000`)\n"
    data = json.loads(FUZZ_JSON.read_text(encoding="utf-8"))
    lines = [f"\nLast full run: `{data.get('command', 'python -m tests.fuzz.run')}`"
             f"{' on ' + data['date'] if data.get('date') else ''}.\n",
             "| target | engine | cases | failures | wall time (s) |", "|---|---|---|---|---|"]
    for r in data.get("targets", []):
        lines.append(f"| {r.get('target')} | {r.get('engine', 'hypothesis')} | {r.get('cases')} | "
                     f"{r.get('failures')} | {r.get('seconds', 0):.1f} |")
    for note in data.get("notes", []):
        lines.append(f"\n{note}")
    return "\n".join(lines) + "\n"


def extra_sections() -> str:
    rows = "\n".join(f"| `{name}` | {what} |" for name, what in DURABILITY_TESTS)
    return DURABILITY.replace("{rows}", rows) + FUZZ_HEAD + _fuzz_table()
