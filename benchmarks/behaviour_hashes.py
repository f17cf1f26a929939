"""Behaviour fingerprint of one checkout (issue 20: "behaviour unchanged"), to compare two checkouts.

For every zoo model (``calib.models.zoo.MODELS``; the official checkpoint under the data root where
there is one, else random weights under ``torch.manual_seed(0)``, as ``calibrate --random-init``),
the embedded ``tiny_sr`` (its committed weights), each calibration (MinMax W8A8 and W4A4, one segment
per codebook, as tests/calib/test_zoo_export.py; dual_region W4A4, two-region codebooks) and both
realizations (``split``, ``grid``), and for :func:`tests.artifact_factory.make_random_artifact`
(every op, multi-segment codebooks) on seeds 0 and 1:

* the artifact as :func:`intsim.artifact.save_artifact` writes it (sha256 of the file's bytes);
* the golden folder as ``intsim golden`` writes it (:func:`golden.writer.write_golden`) for a fixed
  input (Set5 ``baby`` LR, a 16×16 crop at (40, 40); 10×10 for VDSR, whose input is the ×s bicubic
  upsampling; a seeded 8×8 image for the factory artifacts): sha256 of each file, and of all files
  (``relative path NUL bytes`` in sorted order), and of the tensor arrays alone (``tensors/``);
* the intsim run (:func:`intsim.engine.run`, every tensor kept): sha256 over the tensors in sorted
  name order (name, dtype, shape, C-order bytes), of the output tensor alone, and of the event
  counters (JSON, sorted keys); the same in bands of 4 rows (:func:`intsim.tiling.run_tiled`) and the
  size facts (:mod:`intsim.footprint`).

``--reuse-artifacts KEEP`` runs golden and intsim on another run's artifact files (``--keep``) instead:
the other checkout's artifacts through this checkout's loader, golden and engine.

Also the sha256 of every committed non-``.py`` file under tests/. Calibration: 2 SunHays80 LR
patches of 24×24 (seed 0). Threads: torch 1. Writes ``PREFIX.json`` and ``PREFIX.md``.

Run (once per checkout; the same interpreter)::

    cd CHECKOUT && PYTHONPATH=CHECKOUT OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python /path/to/benchmarks/behaviour_hashes.py -o /tmp/before [--only imdn,factory]

Only APIs present both before (9046ee1^) and after issue 20 are used.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def checkout_root() -> Path:
    """The checkout under test: where ``intsim`` is imported from (PYTHONPATH), not this file's (the script
    is run by path against a checkout that may predate it)."""
    import intsim

    return Path(intsim.__file__).resolve().parents[1]


ROOT = checkout_root()
REALIZATIONS = ("split", "grid")
CALIBRATIONS = ("minmax:W8A8", "minmax:W4A4", "dual_region:W4A4")
CALIB_DIR = "data/SunHays80"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def array_digest(h, name: str, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
    h.update(a.tobytes())


def folder_hashes(d: Path) -> dict:
    """sha256 of each file under ``d``, of all of them (path NUL bytes, sorted) and of ``tensors/``."""
    files = sorted(p for p in d.rglob("*") if p.is_file())
    each = {p.relative_to(d).as_posix(): sha(p.read_bytes()) for p in files}
    h_all, h_t = hashlib.sha256(), hashlib.sha256()
    for p in files:
        rel = p.relative_to(d).as_posix()
        for h in (h_all,) + ((h_t,) if rel.startswith("tensors/") else ()):
            h.update(rel.encode() + b"\0" + p.read_bytes())
    return {"all": h_all.hexdigest(), "tensors": h_t.hexdigest(), "files": each}


def intsim_hashes(art, img: np.ndarray) -> dict:
    from intsim.engine import run

    res = run(art, img)
    h = hashlib.sha256()
    for name in sorted(res.tensors):
        array_digest(h, name, res.tensors[name])
    out = hashlib.sha256()
    array_digest(out, art.outputs[0], res.tensors[art.outputs[0]])
    counters = json.dumps(res.counters, sort_keys=True, default=int)
    return {"tensors": h.hexdigest(), "output": out.hexdigest(), "counters": sha(counters.encode()),
            "n_tensors": len(res.tensors), "counters_json": json.loads(counters)}


def tiled_and_facts(art, img: np.ndarray) -> dict:
    """intsim in bands of 4 input rows (output and counters digests) and the size facts of the input
    (receptive field, smallest input, per-tensor shapes, memory estimates), which shape inference
    (moved to the op registry by issue 20) decides."""
    from dataclasses import asdict

    from intsim import footprint
    from intsim.tiling import run_tiled

    res = run_tiled(art, img, tile_rows=4)
    out = hashlib.sha256()
    array_digest(out, art.outputs[0], res.tensors[art.outputs[0]])
    h, w = img.shape[:2]
    facts = {"receptive_field": asdict(footprint.receptive_field(art)),
             "min_input_size": list(footprint.min_input_size(art)),
             "tensor_shapes": {k: list(v) for k, v in footprint.tensor_shapes(art, h, w).items()},
             "untiled_peak_bytes": footprint.untiled_peak_bytes(art, h, w),
             "tiled_peak_bytes": footprint.tiled_peak_bytes(art, h, w, 4)}
    facts_json = json.dumps(facts, sort_keys=True, default=str)
    counters = json.dumps(res.counters, sort_keys=True, default=int)
    return {"tiled_output": out.hexdigest(), "tiled_counters": sha(counters.encode()),
            "facts": sha(facts_json.encode()), "facts_json": json.loads(facts_json)}


def zip_members(path: Path) -> dict[str, str]:
    """sha256 of each member's uncompressed bytes (to tell graph.json from array changes)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        return {i.filename: sha(z.read(i)) for i in z.infolist()}


def case_hashes(art, img: np.ndarray, work: Path, reuse: Path | None) -> dict:
    """Save ``art`` (or take ``reuse``'s artifact of this case: the other checkout's file), load it
    back, golden folder and intsim run on ``img``; their digests."""
    import shutil

    from golden.writer import write_golden
    from intsim.artifact import load_artifact, save_artifact

    path = work / "artifact.intsim"
    if reuse is None:
        save_artifact(art, path)
    else:
        shutil.copyfile(reuse / work.name / "artifact.intsim", path)
    loaded = load_artifact(path)
    gdir = work / "golden"
    write_golden(path, [("input", img)], gdir, progress=False, art=loaded)
    return {"artifact": sha(path.read_bytes()), "artifact_bytes": path.stat().st_size,
            "artifact_members": zip_members(path),
            "golden_manifest": json.loads((gdir / "manifest.json").read_text()),
            "ops": sorted({o.op for o in loaded.ops}), "input_shape": list(img.shape),
            "golden": folder_hashes(gdir), "intsim": {**intsim_hashes(loaded, img), **tiled_and_facts(loaded, img)}}


# --------------------------------------------------------------------------- cases


def zoo_cases(only: set[str] | None) -> list[tuple[str, int]]:
    from calib.models.zoo import MODELS

    names = list(MODELS) + ["tiny_sr"]
    out = []
    for n in names:
        if only and n not in only:
            continue
        scales = (2,) if n == "tiny_sr" else MODELS[n].scales
        out.append((n, 4 if 4 in scales else scales[0]))
    return out


def build(name: str, scale: int):
    """(model, zoo entry or None, rgb_range, checkpoint path or None, LR crop)."""
    import torch

    from calib.cli_calibrate import build_model
    from calib.data_root import data_root
    from calib.datasets import read_rgb
    from calib.models.zoo import MODELS

    entry = MODELS.get(name)
    if name == "tiny_sr":
        from reports.demo import DEMO_WEIGHTS, register_tiny_sr

        register_tiny_sr()
        ckpt = str(DEMO_WEIGHTS)
    else:
        rel = entry.default_checkpoint(scale)
        ckpt = str(data_root() / rel) if rel and (data_root() / rel).is_file() else None
    torch.manual_seed(0)
    net, rgb_range, _ = build_model(name, scale, ckpt, 0)
    crop = 10 if entry is not None and entry.upsampled_input else 16
    lr = read_rgb(data_root() / f"data/Set5/LR_bicubic/X{scale}/babyx{scale}.png")
    return net.eval(), entry, rgb_range, ckpt, np.ascontiguousarray(lr[40:40 + crop, 40:40 + crop])


def source_meta(name: str, scale: int, ckpt: str | None) -> dict:
    """:func:`calib.export.model_source`, with a checkpoint inside the checkout (tiny_sr's committed
    weights) recorded relative to it: its absolute path names the checkout, which is not behaviour."""
    from calib.export import model_source

    src = model_source(name, scale, ckpt)
    if ckpt and Path(ckpt).resolve().is_relative_to(ROOT):
        src["checkpoint"] = Path(ckpt).resolve().relative_to(ROOT).as_posix()
    return src


def calibration_images(entry, rgb_range: float, scale: int):
    from calib.calibrate import load_calibration_images
    from calib.data_root import data_root

    imgs = load_calibration_images(data_root() / CALIB_DIR, 2, 24, scale, 0, rgb_range=rgb_range)
    if entry is not None and entry.color == "y":  # Y models calibrate on their own input
        imgs = [entry.preprocess(np.round(t.numpy().transpose(1, 2, 0) * 255 / rgb_range).astype(np.uint8),
                                 scale)[0] for t in imgs]
    return imgs


def zoo_rows(name: str, scale: int, work: Path, reuse: Path | None) -> list[dict]:
    from calib.calibrate import calibrate_minmax
    from calib.evaluate import artifact_input
    from calib.export import export_artifact
    from calib.graph import capture
    from calib.methods import calibrate_method

    net, entry, rgb_range, ckpt, lr = build(name, scale)
    g = capture(net, rgb_range=rgb_range, in_channels=1 if entry is not None and entry.color == "y" else 3)
    imgs = calibration_images(entry, rgb_range, scale)
    rows = []
    for spec in CALIBRATIONS:
        method, bits = spec.split(":")
        wb, ab = (int(v) for v in bits.lstrip("W").split("A"))
        t0 = time.time()
        if method == "minmax":
            cal = calibrate_minmax(net, imgs, wb, ab, graph=g)
        else:
            cal = calibrate_method(net, imgs, wb, ab, method, graph=g)
        for real in REALIZATIONS:
            art = export_artifact(net, cal, realization=real, model_meta={"name": name, "scale": scale},
                                  source=source_meta(name, scale, ckpt))
            d = work / f"{name}_{method}_{bits}_{real}"
            d.mkdir()
            row = {"case": f"{name} x{scale} {method} {bits}", "realization": real,
                   "weights": "checkpoint" if ckpt else "random (seed 0)",
                   **case_hashes(art, artifact_input(art, lr), d, reuse)}
            row["seconds"] = round(time.time() - t0, 1)
            print(f"  {row['case']} {real}: {row['seconds']} s", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def factory_rows(work: Path, reuse: Path | None) -> list[dict]:
    from tests.artifact_factory import make_random_artifact

    rows = []
    for seed in (0, 1):
        img = np.random.default_rng(100 + seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        for real in REALIZATIONS:
            d = work / f"factory_{seed}_{real}"
            d.mkdir()
            rows.append({"case": f"factory seed {seed}", "realization": real, "weights": "factory",
                         **case_hashes(make_random_artifact(seed, realization=real), img, d, reuse)})
    return rows


def committed_test_files() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files", "tests"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return {n: sha((ROOT / n).read_bytes()) for n in sorted(names) if not n.endswith(".py")}


# --------------------------------------------------------------------------- report


def markdown(result: dict) -> str:
    lines = [f"# Behaviour hashes of {result['commit']}", "",
             "| case | realization | weights | artifact | golden (all files) | golden tensors | "
             "intsim tensors | intsim counters |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['case']} | {r['realization']} | {r['weights']} | `{r['artifact'][:16]}` | "
                     f"`{r['golden']['all'][:16]}` | `{r['golden']['tensors'][:16]}` | "
                     f"`{r['intsim']['tensors'][:16]}` | `{r['intsim']['counters'][:16]}` |")
    lines += ["", f"Committed non-.py files under tests/: {len(result['committed_test_files'])}"]
    lines += [f"- `{k}` `{v}`" for k, v in result["committed_test_files"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", required=True, help="output prefix (PREFIX.json, PREFIX.md)")
    ap.add_argument("--only", default="", help="comma-separated zoo names and/or 'factory'")
    ap.add_argument("--keep", default=None, help="write the artifacts and golden folders here (kept)")
    ap.add_argument("--reuse-artifacts", default=None,
                    help="a --keep folder of another run: golden and intsim on its artifact files instead")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    only = set(filter(None, args.only.split(","))) or None
    reuse = Path(args.reuse_artifacts) if args.reuse_artifacts else None
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="behaviour-") as tmp:
        if args.keep:
            tmp = args.keep
            Path(tmp).mkdir(parents=True, exist_ok=False)
        if only is None or "factory" in only:
            rows += factory_rows(Path(tmp), reuse)
        for name, scale in zoo_cases(only):
            rows += zoo_rows(name, scale, Path(tmp), reuse)
    result = {"commit": commit, "root": str(ROOT), "reused_artifacts": args.reuse_artifacts, "rows": rows, "committed_test_files": committed_test_files()}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
