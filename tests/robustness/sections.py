"""The parts of docs/robustness.md that are not the case table: durability, fuzzing, policies.

Kept here (not in the .md) so the page as a whole stays generated; the fuzzing table is read
from benchmarks/results/fuzz.json, written by ``python -m tests.fuzz.run``.
"""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FUZZ_JSON = REPO / "benchmarks" / "results" / "fuzz.json"
RSS_JSON = REPO / "benchmarks" / "results" / "refusal_rss.json"

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
     "the second fsync, after each rename): each PNG is its old bytes or the complete new image, and both are "
     "old until the first rename"),
]

DURABILITY = """
## Durability

Every output (artifacts, golden folders, PNGs, counters/cost/report JSON, HTML
reports, plots, finetuning state, checkpoints) is written through
`intsim.artifact.atomic_write_bytes` (several files at once: `intsim.outputs.Staged`):
a temp file in the same folder, fsync, rename (`os.replace`), so a reader sees the
old file or the complete new one; published files and folders get the mode the
umask gives (temp files are created private).
A golden folder is written whole under a temp name, fsynced file by file and
folder by folder, and swapped with the old folder in one step by
`renameat2(RENAME_EXCHANGE)` (glibc; where the file system refuses it, the old
rename-old / rename-new sequence is used, and a kill between the two renames is
recovered by the next writer). Commands compute everything before writing
anything, so a refused input never leaves a partial result; output locations are
checked before the work, and the files of one command (`run`'s images and
counters, `export-vectors`' files) are renamed into place only once all are
written, so a full disk leaves no file, temp file or new folder behind.

A SIGKILL can leave a hidden temp file (`.<name>.*.tmp`) or folder beside the
output; it is never read. A golden temp folder is named with its writer's process
id and host (`.<name>.<pid>-<host>.*.tmp`), and the next `intsim golden` to the
same path removes those whose process is gone (a golden can be hundreds of MB);
a concurrent writer's folder, and anything named otherwise, is left alone.

The kill tests (`tests/test_durability.py`) run the real command in a
subprocess through `tests/kill_points.py`, which makes the process SIGKILL
itself at the n-th occurrence of a chosen point (no timing guesses):

| test | kill points and what is found |
|---|---|
{rows}
"""

FUZZ_HEAD = """
## Fuzzing

Property-based fuzz targets (hypothesis) in `tests/fuzz/`, one per reader (artifact, golden
folder, image, accelerator TOML, HDF5 weights); the only exception each may raise is its
documented one-line error (`ArtifactError`, `GoldenError`, `ImageError`, `ConfigError`,
`CheckpointError`), every case has a time limit (a hang fails) and may not raise the process's
peak RSS by more than 1 GiB. CI runs them at a small derandomized budget
(`INTSIM_FUZZ_EXAMPLES`); the full run is `make fuzz` (`python -m tests.fuzz.run --examples
10000`), under a 2 GiB address-space limit (RLIMIT_AS: a read beyond the caps fails as a
counted MemoryError).
"""


# What fuzzing found, and the fix (each has a regression @example in its tests/fuzz module).
FUZZ_FINDINGS = [
    ("graph.json nested 100000 deep (`[[[[…`)", "`load_artifact` raised RecursionError",
     "ArtifactError: graph.json is nested too deeply to parse"),
    ("golden manifest.json nested 100000 deep", "`read_golden_dir` raised RecursionError",
     "GoldenError; `is_golden_dir` answers False"),
    ("accelerator TOML or energy table nested 100000 deep", "RecursionError", "ConfigError: not valid TOML "
     "(nested too deeply to parse); the counters JSON of `intsim cost --counters` got the same guard"),
    ("zip header claiming 'zip file version 13.4' (atheris)", "NotImplementedError escaped the archive open",
     "ArtifactError: not a readable artifact archive"),
    ("manifest file path with a 256-character component or over 4096 characters",
     "`Path.is_file()` raised OSError (file name too long)", "GoldenError: listed in manifest.json but missing"),
    ("`[energy] table` name of 300 characters", "OSError (file name too long)",
     "ConfigError: energy table … not found"),
    ("`voltage_v = 1e300` (or `process_nm = 1e300` with `voltage_v = 1e160`)",
     "the file loaded, then `to_json()` raised OverflowError", "ConfigError: the energy factor must be finite and > 0"),
    ("`gb_per_s = 1e300` at `clock_mhz = 1e-300`", "refused, but naming the derived key `bytes_per_cycle`",
     "ConfigError naming gb_per_s and clock_mhz"),
    ("PNG cut inside its IHDR chunk (26 bytes or fewer)", "the PNG size check raised struct.error",
     "ImageError: not a readable image (Truncated File Read)"),
    ("HDF5 file with a mutated superblock offset", "h5py raised ValueError (\"cannot fit 'int' into an "
     "offset-sized integer\") from `h5py.File`", "CheckpointError: not a readable HDF5 file"),
]


def _fuzz_table() -> str:
    if not FUZZ_JSON.is_file():
        return "\n(no full fuzzing run recorded yet: run `python -m tests.fuzz.run --examples 10000`)\n"
    data = json.loads(FUZZ_JSON.read_text(encoding="utf-8"))
    lines = [f"\nLast full run (benchmarks/results/fuzz.json): `{data.get('command')}`, {data.get('date')}, "
             f"random seeds, a case running past {data.get('hang_limit_s')} s counts as a hang.\n",
             f"Address-space limit {data.get('address_space_limit_mib', '—')} MiB; largest peak RSS recorded "
             f"{data.get('peak_rss_mib', '—')} MiB (each row: the fuzzing process's peak after that target, "
             "cumulative within its run).\n",
             "| target | engine | cases | failures | wall time (s) | slowest case (s) | peak RSS (MiB) |",
             "|---|---|---|---|---|---|---|"]
    reruns = {(r.get("command"), r.get("date")) for r in data.get("hypothesis", [])
              if r.get("command") not in (None, data.get("command"))}
    for cmd, date in sorted(reruns, key=str):
        names = ", ".join(r["target"] for r in data["hypothesis"] if r.get("command") == cmd)
        lines.insert(1, f"Rows {names}: re-run {date} with `{cmd}` after the fixes of what the full run found "
                        "(below).\n")
    for r in data.get("hypothesis", []):
        lines.append(f"| {r['target']} | hypothesis | {r['cases']} | {r['failures']} | {r['wall_s']:.1f} | "
                     f"{r['max_case_s']:.2f} | {r.get('peak_rss_mib_after', '—')} |")
    for r in data.get("atheris", []):
        lines.append(f"| {r['target']} | atheris | {r['runs']} | {0 if r['ok'] else 'see JSON'} | "
                     f"{r['wall_s']:.1f} | | |")
    lines += ["\nFound by fuzzing and fixed:\n", "| input | symptom | now |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in FUZZ_FINDINGS]
    return "\n".join(lines) + "\n"


RSS_HEAD = """
## Peak memory of the refusals

Each resource refusal above (bombs, huge or endless files, FIFOs, data outside the file, memory
budgets, absurd graphs) run as a fresh `python -m intsim_cli` process, its peak RSS read from the
child's `ru_maxrss` (`os.wait4`; imports included). `tests/robustness/test_refusal_rss.py` checks
every case exits 2 with one line at or below 500 MB; `python -m tests.robustness.refusal_rss`
writes the table below (benchmarks/results/refusal_rss.json).
"""


def _rss_table() -> str:
    if not RSS_JSON.is_file():
        return "\n(no measurement recorded yet: run `python -m tests.robustness.refusal_rss`)\n"
    data = json.loads(RSS_JSON.read_text(encoding="utf-8"))
    rows = data["rows"]
    lines = [f"\nMeasured {data['date']} (Python {data['python']}): the largest refusal peaks at "
             f"{max(r['peak_rss_mib'] for r in rows[1:]):.0f} MiB (limit {data['limit_mib']} MiB).\n",
             "| case | exit | peak RSS (MiB) | wall time (s) |", "|---|---|---|---|"]
    def name(case: str) -> str:
        return case if case.startswith("(") else f"`test_case[{case}]`"

    lines += [f"| {name(r['case'])} | {r['exit']} | {r['peak_rss_mib']:.0f} | {r['wall_s']:.1f} |" for r in rows]
    return "\n".join(lines) + "\n"


def extra_sections() -> str:
    rows = "\n".join(f"| `{name}` | {what} |" for name, what in DURABILITY_TESTS)
    return DURABILITY.replace("{rows}", rows) + FUZZ_HEAD + _fuzz_table() + RSS_HEAD + _rss_table()
