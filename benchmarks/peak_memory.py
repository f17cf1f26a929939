"""Peak memory of one engine run at 512×512 (issue 24's ≤ 0.8 GB target), each number a fresh process.

Per artifact and allocator (``INTSIM_MALLOC=keep``: how the ``intsim`` command runs the engine,
intsim/allocator.py; ``system``: a library caller's default), a child process loads the artifact, runs
``intsim.engine.run(…, keep_tensors=False)`` once on Set5 ``baby`` HR cropped to 512×512 (1 thread:
``OMP_NUM_THREADS=NUMBA_NUM_THREADS=INTSIM_THREADS=1``) and reports ``VmHWM`` of ``/proc/self/status``
(MiB = kB / 1024), the run's CPU time and the sha256 of its output, so two checkouts can be compared
for the same integers. A warm-up child per checkout and artifact fills numba's cache first (a cold
cache would compile inside the measured run). Rounds interleave the checkouts (A B, B A, …).

Run::

    python -m benchmarks.peak_memory ART.intsim [ART2.intsim …] [--before /path/to/old/checkout] \\
        [--rounds 2] [--out benchmarks/results/peak_memory]

``--before``: a second checkout (its own engine; the artifacts are the same files); the table then
gives before → after. Results: ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOCATORS = ("keep", "system")
MIB_PER_GB = 1e9 / 2 ** 20  # the target's 0.8 GB (decimal) is 762.9 MiB

CHILD = r"""
import hashlib, json, sys, time
import numpy as np
from intsim.artifact import load_artifact
from intsim.images import read_image
from intsim import engine
art = load_artifact(sys.argv[1])
img = np.ascontiguousarray(read_image(sys.argv[2], 3).pixels[:512, :512])
c0 = time.process_time()
res = engine.run(art, img, keep_tensors=False)
cpu = time.process_time() - c0
out = res.tensors[art.outputs[0]]
with open("/proc/self/status") as f:
    hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
print("PEAK_JSON " + json.dumps({"peak_mib": hwm, "cpu_s": cpu, "shape": list(img.shape),
                                 "sha256": hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest()}))
"""


def child(root: Path, artifact: Path, image: Path, allocator: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root), INTSIM_MALLOC=allocator, OMP_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", INTSIM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", CHILD, str(artifact), str(image)], cwd=root, env=env,
                       capture_output=True, text=True, timeout=1800)
    for line in p.stdout.splitlines():
        if line.startswith("PEAK_JSON "):
            return json.loads(line[len("PEAK_JSON "):])
    raise RuntimeError(f"child failed (rc {p.returncode}) for {artifact} in {root}: {p.stderr[-1500:]}")


def measure(sides: dict[str, Path], artifacts: list[Path], image: Path, rounds: int) -> list[dict]:
    """Per artifact, allocator and side: every round's peak MiB, CPU s and output hash."""
    rows = []
    for art in artifacts:
        for root in sides.values():
            child(root, art, image, "system")  # warm-up: numba's cache for this checkout
        for alloc in ALLOCATORS:
            row = {"artifact": art.name, "allocator": alloc, **{s: [] for s in sides}}
            names = list(sides)
            for r in range(rounds):
                for s in (names if r % 2 == 0 else names[::-1]):
                    row[s].append(child(sides[s], art, image, alloc))
                    print(f"  {art.name} {alloc} {s}: {row[s][-1]['peak_mib']:.0f} MiB", flush=True)
            rows.append(row)
    return rows


def markdown(result: dict) -> str:
    sides = result["sides"]
    head = " → ".join(sides)
    L = ["# Peak memory of one run at 512×512 (issue 24)", "",
         f"Machine: {result['machine']}. Command: `{result['command']}`.", "",
         "Fresh process per number, 1 thread, Set5 `baby` HR cropped to 512×512, `VmHWM` in MiB (the issue's "
         f"0.8 GB is {0.8 * MIB_PER_GB:.0f} MiB); the largest of the rounds. `keep` is how the `intsim` command "
         "runs the engine. Same output hash on every side and round: "
         f"**{'yes' if result['same_outputs'] else 'NO'}**.", "",
         f"| artifact | allocator | peak MiB ({head}) | CPU s of the run ({head}) | ≤ 0.8 GB |",
         "|---|---|---|---|---|"]
    for row in result["rows"]:
        peaks = [max(m["peak_mib"] for m in row[s]) for s in sides]
        cpus = [sorted(m["cpu_s"] for m in row[s])[len(row[s]) // 2] for s in sides]
        ok = "yes" if peaks[-1] <= 0.8 * MIB_PER_GB else "no"
        L.append(f"| {row['artifact']} | {row['allocator']} | {' → '.join(f'{p:.0f}' for p in peaks)} | "
                 f"{' → '.join(f'{c:.2f}' for c in cpus)} | {ok} |")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--before", type=Path, default=None, help="a second checkout to compare against")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--image", type=Path, default=None, help="default: <data root>/Set5/HR/baby.png")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "peak_memory")
    args = ap.parse_args(argv)
    image = args.image
    if image is None:
        from calib.data_root import data_root

        image = data_root() / "data" / "Set5" / "HR" / "baby.png"
    missing = [p for p in [*args.artifacts, image] if not p.is_file()]
    if missing:
        print(f"peak_memory: {missing[0]} not found", file=sys.stderr)
        return 2
    sides = ({"before": args.before.resolve()} if args.before else {}) | {"after": ROOT}
    rows = measure(sides, [p.resolve() for p in args.artifacts], image.resolve(), max(1, args.rounds))
    hashes = {(row["artifact"], m["sha256"]) for row in rows for s in sides for m in row[s]}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
              "command": "python -m benchmarks.peak_memory " + " ".join(sys.argv[1:] if argv is None else argv),
              "sides": list(sides), "same_outputs": len(hashes) == len(args.artifacts), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
