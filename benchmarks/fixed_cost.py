"""The engine's fixed cost per image, A/B between two source trees (docs/speed.md, issue 24).

``python -m benchmarks.fixed_cost ARTIFACT... [--base TREE] [--rounds 5] [--image PNG]``

Per round and artifact, each tree (this checkout, and ``--base``, e.g. an exported older commit)
runs in a fresh process, one after the other (interleaved): ``intsim.engine.run(art, crop,
keep_tensors=False)`` on the image's top-left 16×16 crop, median CPU time (``process_time``) of
31 runs after one warm-up, and on the whole image (128×128 for Set5 ``baby`` LR ×4), median of 3.
The fixed cost is the 16×16 time minus the 128² time scaled by the pixel ratio (the arithmetic
share): an upper bound on the Python dispatch per image. One thread (``INTSIM_THREADS=1``,
``OMP_NUM_THREADS=1``, ``NUMBA_NUM_THREADS=1``). Prints the per-round numbers and the medians (ms).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("INTSIM_DATA_ROOT", ROOT.parent / "shared"))

CHILD = r"""
import json, sys, time
from intsim.artifact import load_artifact
from intsim.images import read_image
from intsim import engine
art = load_artifact(sys.argv[1])
img = read_image(sys.argv[2], 3).pixels
def median(x, n):
    engine.run(art, x, keep_tensors=False)
    ts = []
    for _ in range(n):
        t0 = time.process_time(); engine.run(art, x, keep_tensors=False); ts.append(time.process_time() - t0)
    return sorted(ts)[n // 2]
small = img[:16, :16].copy()
print("FIXED_JSON " + json.dumps({"small_s": median(small, 31), "full_s": median(img, 3),
                                  "pixels": int(img.shape[0] * img.shape[1])}))
"""


def child(tree: Path, artifact: Path, image: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree), INTSIM_THREADS="1", OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", CHILD, str(artifact), str(image)], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=900)
    for line in p.stdout.splitlines():
        if line.startswith("FIXED_JSON "):
            r = json.loads(line[len("FIXED_JSON "):])
            r["fixed_s"] = r["small_s"] - r["full_s"] * 256 / r["pixels"]
            return r
    raise RuntimeError(f"child in {tree} failed (rc {p.returncode}): {p.stderr[-1500:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--base", type=Path, help="another source tree to compare with (runs first in each round)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--image", type=Path, default=DATA / "data" / "Set5" / "LR_bicubic" / "X4" / "babyx4.png")
    a = ap.parse_args(argv)
    missing = [p for p in [*a.artifacts, a.image] if not p.is_file()]
    if missing:
        print(f"fixed_cost: no such file {missing[0]}", file=sys.stderr)
        return 2
    trees = ([("base", a.base)] if a.base else []) + [("this", ROOT)]
    runs: dict = {(t, art.name): [] for t, _ in trees for art in a.artifacts}
    for r in range(a.rounds):
        for art in a.artifacts:
            for label, tree in trees:
                res = child(tree, art, a.image)
                runs[(label, art.name)].append(res)
                print(f"round {r + 1} {art.name} {label}: 16x16 {res['small_s'] * 1e3:.2f} ms, "
                      f"full {res['full_s'] * 1e3:.1f} ms, fixed {res['fixed_s'] * 1e3:.2f} ms", flush=True)
    for (label, name), rs in runs.items():
        med = {k: statistics.median(x[k] for x in rs) * 1e3 for k in ("small_s", "full_s", "fixed_s")}
        print(f"median {name} {label}: 16x16 {med['small_s']:.2f} ms, full {med['full_s']:.1f} ms, "
              f"fixed {med['fixed_s']:.2f} ms (fixed range {min(x['fixed_s'] for x in rs) * 1e3:.2f}–"
              f"{max(x['fixed_s'] for x in rs) * 1e3:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
