"""The work of one sweep configuration and one sweep cell (``intsim sweep``, :mod:`reports.sweep`).

A *configuration* is model × scale × bits × method (× allocation for the
dual-region methods): :func:`calibrate_config` calibrates it once on SunHays80
patches (never a test set) and writes its artifact. A *cell* is a configuration
on one dataset: :func:`evaluate_cell` scores the artifact with every executor —

* ``fp``: the float model itself (whole sets only; ``None`` for quick runs with
  ``limit``/``crop``, where no FP reference on the same crops exists);
* ``fake_quant``: float32 fake-quant with the learned (unsnapped) parameters;
* ``golden``: the float64 fake-quant executor of the artifact (on the images its budget allows);
* ``intsim``: the integer engine;

checks that golden and intsim produced the same uint8 output on every image
golden checked (sha256 of the SR image; which images, from a cost estimate against the
sweep's ``[golden]`` budget: :mod:`reports.sweep_golden`, recorded as ``golden_plan``), adds the cost model's totals (the artifact on the
``accel`` accelerator, engine counters of the dataset's first image), and
returns the cell record. Both functions are plain Python: the sweep runs them as
Ray tasks, tests call them directly. :func:`calibration_reservation` is the memory a
configuration's calibration task reserves (its estimated peak, :mod:`calib.memory_estimate`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from intsim.artifact import atomic_write_json, file_sha256

DUAL_REGION_METHODS = ("dual_region", "oaq")
"""Methods with two-region codes: run once per allocation (released codes, budgeted true b bits)."""
CELL_SCHEMA = "intsim.sweep.cell/1"
DEFAULT_RECIPE_METHOD = "recon"
"""The default method (calib.recipe.DEFAULT_METHOD): calibrated with its own recipe, not the sweep's [recipe]."""


@dataclass(frozen=True)
class Recipe:
    """Calibration and evaluation settings shared by every cell of a sweep (``[recipe]`` of SWEEP.toml).

    ``limit``/``crop``: at most this many images per set / only the top-left crop×crop LR
    region (quick runs; None = the protocol). ``accel``: accelerator for the cost totals.
    """

    n_images: int = 100
    patch: int = 48
    epochs: int = 10
    iters_per_epoch: int = 25
    seed: int = 0
    per_channel: bool = True
    range_mode: str = "ema"
    bp_init: str = "percentile"
    limit: int | None = None
    crop: int | None = None
    accel: str = "edge_npu"
    calib_data: str | None = None

    def digest(self) -> str:
        """Short hash of the recipe: a cell or calibration done under another recipe is not reused."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Config:
    """One calibration: ``allocation`` is None for methods without two-region codes. ``spec``/``weights``:
    a user model's source and checkpoint (``[own_models]``; ``model`` is then its name in the sweep)."""

    model: str
    scale: int
    bits: str
    method: str
    allocation: str | None = None
    spec: str | None = None
    weights: str | None = None

    @property
    def id(self) -> str:
        alloc = f"_{self.allocation}" if self.allocation else ""
        return f"{self.model}_x{self.scale}_{self.bits}_{self.method}{alloc}".lower()


@dataclass(frozen=True)
class Cell:
    config: Config
    dataset: str

    @property
    def id(self) -> str:
        return f"{self.config.id}_{self.dataset.lower()}"


def _model_and_weights(config: Config) -> tuple[str, str | None]:
    """The model spec and checkpoint a configuration calibrates: the real checkpoint or nothing (a missing
    one fails the configuration; no random-init stand-in)."""
    from calib.models.zoo import resolve_checkpoint

    if config.spec is not None:  # your own model: its spec and checkpoint (None: an ONNX file's own weights)
        return config.spec, config.weights
    return config.model, str(resolve_checkpoint(config.model, config.scale, None, None))


def recipe_digest(config: Config, recipe: Recipe) -> str:
    """The recipe a cell or calibration of ``config`` was made under: the sweep's [recipe] digest and, for the
    default method, the recipe a user gets for the config's bits (calib/recipe.py), so that its cells are redone
    when that default changes instead of being reused under --resume."""
    if config.method != DEFAULT_RECIPE_METHOD:
        return recipe.digest()
    from calib.cli_calibrate import request_recipe

    own = request_recipe(config.spec or config.model, config.scale, config.bits, seed=recipe.seed).to_json()
    return hashlib.sha256((recipe.digest() + json.dumps(own, sort_keys=True)).encode()).hexdigest()[:16]


def _recipe_settings(config: Config, recipe: Recipe) -> dict:
    """The calibration keywords of ``config`` under ``recipe``: the [recipe] is the paper's, for the paper's
    methods; the default method (recon) runs as a user gets it, with its own recipe (calib/recipe.py: patches,
    bp init, weight granularity, reconstruction steps)."""
    own = config.method == DEFAULT_RECIPE_METHOD
    return {"n_images": None if own else recipe.n_images, "patch": None if own else recipe.patch,
            "seed": recipe.seed, "allocation": config.allocation,
            "finetune": {"epochs": recipe.epochs, "max_iters_per_epoch": recipe.iters_per_epoch, "seed": recipe.seed},
            "per_channel": None if own else recipe.per_channel, "bp_init": None if own else recipe.bp_init}


def earlier_layer_policy(config: Config, out_dir: str | Path) -> bool:
    """Whether the config's artifact in ``out_dir`` was calibrated under an earlier layer policy (a conv's
    recorded role differs from today's rule, intsim.cost.layer_policy.graph_roles): its calibration and
    cells are redone, not reused."""
    art = Path(out_dir) / "artifacts" / f"{config.id}.intsim"
    if not art.is_file():
        return False
    from intsim.artifact import load_artifact
    from intsim.cost.layer_policy import roles_unlike_the_rule

    try:
        return bool(roles_unlike_the_rule(load_artifact(art)))
    except (OSError, ValueError):
        return True  # unreadable: not reusable either


def reused_calibration(config: Config, recipe: Recipe, out_dir: str) -> dict | None:
    """The calibration record a previous run finished under the same recipe and layer policy (its artifact
    unchanged), else None."""
    folder = Path(out_dir) / "artifacts"
    art, record_path = folder / f"{config.id}.intsim", folder / f"{config.id}.calib.json"
    if record_path.is_file() and art.is_file() and not earlier_layer_policy(config, out_dir):
        rec = json.loads(record_path.read_text())
        if rec.get("recipe") == recipe_digest(config, recipe) and rec.get("artifact_sha256") == file_sha256(art):
            return rec
    return None


def calibration_memory(config: Config, recipe: Recipe):
    """The estimated peak memory of :func:`calibrate_config` (:class:`calib.memory_estimate.MemoryEstimate`,
    bytes): seconds, from the float model on one patch."""
    from calib.memory_estimate import estimate_calibration_memory

    model, weights = _model_and_weights(config)
    return estimate_calibration_memory(model, weights, config.scale, config.bits, config.method,
                                       **_recipe_settings(config, recipe))


def calibration_reservation(config: Config, recipe: Recipe, out_dir: str, resume: bool, node_memory: float,
                            cache: dict) -> int | str:
    """Bytes of Ray memory a configuration's calibration task reserves (its estimated peak,
    :mod:`calib.memory_estimate`), or the one-line reason it cannot run on this node.

    0 when ``--resume`` reuses its finished calibration (nothing is computed) or the node's memory is
    unknown. Estimates are cached in ``cache`` by configuration less its bits: a bit width changes the values
    of the tensors a calibration keeps, not their sizes."""
    if not node_memory or (resume and reused_calibration(config, recipe, out_dir) is not None):
        return 0
    key = replace(config, bits="")
    if key not in cache:
        try:
            cache[key] = calibration_memory(config, recipe)
        except Exception as e:  # noqa: BLE001 - the calibration would meet the same error: its cells fail with it
            text = f"{type(e).__name__}: {e}".strip()
            cache[key] = f"memory estimate of the calibration failed: {text.splitlines()[0]}"
    est = cache[key]
    if isinstance(est, str):  # the reason, in one line
        return est
    if est.total > node_memory:
        return (f"calibration needs an estimated {est.total / 2 ** 20:.0f} MiB, more than the Ray node's "
                f"{node_memory / 2 ** 20:.0f} MiB of memory; not started (estimate: {est.describe()})")
    return est.total


def calibrate_config(config: Config, recipe: Recipe, out_dir: str, reuse: bool) -> dict:
    """Calibrate ``config`` and write ``<out>/artifacts/<id>.intsim`` and its ``.calib.json``.

    ``reuse``: keep an artifact a previous run finished under the same recipe (``--resume``,
    :func:`reused_calibration`). Returns the calibration record: artifact path and sha256, true code bits
    per conv, calibration seconds and seeds.
    """
    from calib.cli_calibrate import run_calibrate

    model, weights = _model_and_weights(config)
    folder = Path(out_dir) / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    art = folder / f"{config.id}.intsim"
    if reuse and (rec := reused_calibration(config, recipe, out_dir)) is not None:
        return rec
    t0 = time.time()
    summary = run_calibrate(model, weights, config.scale, config.bits, config.method, recipe.calib_data,
                            str(art), range_mode=recipe.range_mode, **_recipe_settings(config, recipe))
    rec = {"config": asdict(config), "recipe": recipe_digest(config, recipe), "artifact": str(art), "checkpoint": weights,
           "artifact_sha256": summary["sha256"], "allocation": summary["allocation"],
           "code_bits": summary["code_bits"], "calib_seconds": round(time.time() - t0, 1),
           "seeds": {"calibration": recipe.seed, "finetune": recipe.seed}}
    atomic_write_json(folder / f"{config.id}.calib.json", rec)
    return rec


def _scores(res: dict) -> dict:
    d = next(iter(res["datasets"].values()))
    return {"psnr": d["psnr"], "ssim": d["ssim"], "n": d["n"],
            "per_image": [{"image": i["image"], "psnr": i["psnr"], "ssim": i["ssim"],
                           **({"sr_sha256": i["sr_sha256"]} if "sr_sha256" in i else {})} for i in d["images"]]}


def _fp_scores(config: Config, dataset: str, recipe: Recipe, artifact: str) -> dict | None:
    if recipe.limit is not None or recipe.crop is not None:
        return None  # no FP reference on crops / partial sets
    if config.spec is not None:  # your own model: rebuilt from the artifact's recorded source
        from calib.evaluate import run_eval

        r = _scores(run_eval(artifact, [dataset], engine="fp", progress=False))
        return {"psnr": r["psnr"], "ssim": r["ssim"], "n": r["n"]}
    from calib.fp_eval import evaluate_fp

    r = evaluate_fp(config.model, config.scale, dataset)
    return {"psnr": r["psnr"], "ssim": r["ssim"], "n": len(r["per_image"])}


def _cost_totals(artifact: str, dataset: str, recipe: Recipe) -> dict:
    """Cost-model totals of the artifact on the dataset's first image (engine counters)."""
    from calib.datasets import benchmark
    from calib.evaluate import artifact_input
    from intsim.artifact import load_artifact
    from intsim.cost import estimate_cost, load_accelerator
    from intsim.cost.model import summary_row
    from intsim.engine import run

    art = load_artifact(artifact)
    lr = benchmark(dataset, int(art.model["scale"]))[0].lr
    if recipe.crop is not None:
        lr = lr[:recipe.crop, :recipe.crop]
    counters = run(art, artifact_input(art, lr), keep_tensors=False).counters
    row = summary_row(estimate_cost(art, [counters], load_accelerator(recipe.accel)))
    return {"accelerator": row["accelerator"], "image": "first image of the set", "energy_uj": row["energy_uj"],
            "latency_ms": row["latency_ms"], "energy_mj_per_output_mpix": row["energy_mj_per_output_mpix"],
            "weight_storage_kib": row["weight_storage_kib"], "dram_mib": row["dram_mib"],
            "conv_input_bits": row["conv_input_bits"]}


def _golden_subset(art_path: str, dataset: str, names: list[str], recipe: Recipe) -> dict:
    """Golden's scores on the images ``names`` of ``dataset`` only (as :func:`calib.evaluate.run_eval`
    scores a whole set: same input, crop, Y-PSNR/SSIM and sha256 of the uint8 SR image)."""
    import numpy as np

    from calib.datasets import benchmark
    from calib.evaluate import make_runner
    from calib.metrics import psnr_y, ssim_y
    from intsim.artifact import load_artifact

    art = load_artifact(art_path)
    ds = benchmark(dataset, int(art.model["scale"]))
    runner = make_runner(art, "golden")
    want, rows = set(names), []
    for i in range(len(ds) if recipe.limit is None else min(recipe.limit, len(ds))):
        pair = ds[i]
        if pair.name not in want:
            continue
        lr, hr = pair.lr, pair.hr
        if recipe.crop is not None:
            lr = lr[:recipe.crop, :recipe.crop]
            hr = hr[:lr.shape[0] * ds.scale, :lr.shape[1] * ds.scale]
        sr = runner(lr)
        sr = sr[:, :, 0] if sr.ndim == 3 and sr.shape[2] == 1 else sr
        rows.append({"image": pair.name, "psnr": float(psnr_y(sr, hr, ds.scale)),
                     "ssim": float(ssim_y(sr, hr, ds.scale)),
                     "sr_sha256": hashlib.sha256(np.ascontiguousarray(sr, dtype=np.uint8).tobytes()).hexdigest()})
    return {"psnr": sum(r["psnr"] for r in rows) / len(rows), "ssim": sum(r["ssim"] for r in rows) / len(rows),
            "n": len(rows), "per_image": rows}


def golden_costs(art_path: str, dataset: str, recipe: Recipe) -> list:
    """Golden's estimated cost (:class:`reports.sweep_golden.ImageCost`) on each image the cell evaluates."""
    from calib.datasets import benchmark
    from calib.evaluate import artifact_input
    from intsim.artifact import load_artifact
    from reports.sweep_golden import image_cost

    art = load_artifact(art_path)
    ds = benchmark(dataset, int(art.model["scale"]))
    costs = []
    for i in range(len(ds) if recipe.limit is None else min(recipe.limit, len(ds))):
        pair = ds[i]
        lr = pair.lr if recipe.crop is None else pair.lr[:recipe.crop, :recipe.crop]
        h, w = artifact_input(art, lr).shape[:2]  # the artifact's input (VDSR: the bicubic-upsampled image)
        costs.append(image_cost(art, pair.name, h, w))
    return costs


def evaluate_cell(calib_record: dict, cell: Cell, recipe: Recipe, golden_budget=None) -> dict:
    """The cell record (see the module docstring) of ``cell`` given its configuration's calibration.

    ``golden_budget``: a :class:`reports.sweep_golden.GoldenBudget` (None: no limit, golden on every image);
    the record's ``golden_plan`` says which images golden checked and why not the others, and
    ``golden_equals_intsim`` compares those (None when golden checked none)."""
    from calib.evaluate import run_eval
    from reports.sweep_golden import GoldenBudget, plan_golden

    art = calib_record["artifact"]
    t0 = time.time()
    engines = {}
    for name, engine in (("fake_quant", "fakequant"), ("intsim", "intsim")):
        engines[name] = _scores(run_eval(art, [cell.dataset], engine=engine, progress=False,
                                         limit=recipe.limit, crop=recipe.crop))
    budget = golden_budget or GoldenBudget()
    plan = plan_golden(golden_costs(art, cell.dataset, recipe), budget, cell.dataset)
    if plan["mode"] == "all":
        engines["golden"] = _scores(run_eval(art, [cell.dataset], engine="golden", progress=False,
                                             limit=recipe.limit, crop=recipe.crop))
    elif plan["mode"] == "some":
        engines["golden"] = _golden_subset(art, cell.dataset, plan["images"], recipe)
    else:
        engines["golden"] = None
    ints = {i["image"]: i["sr_sha256"] for i in engines["intsim"]["per_image"]}
    gold = {i["image"]: i["sr_sha256"] for i in (engines["golden"] or {}).get("per_image", [])}
    same = None if not gold else all(ints.get(k) == v for k, v in gold.items())
    c = cell.config
    return {
        "schema": CELL_SCHEMA,
        "status": "done",
        "cell": cell.id,
        "model": c.model, "scale": c.scale, "bits": c.bits, "method": c.method,
        "allocation": calib_record["allocation"] if c.method in DUAL_REGION_METHODS else None,
        "dataset": cell.dataset,
        "recipe": recipe_digest(c, recipe),
        "recipe_fields": asdict(recipe),
        "fp": _fp_scores(c, cell.dataset, recipe, art),
        "fake_quant": engines["fake_quant"], "golden": engines["golden"], "intsim": engines["intsim"],
        "golden_plan": plan,
        "golden_equals_intsim": same,
        "code_bits": calib_record["code_bits"],
        "true_code_bits": sorted(set(calib_record["code_bits"].values())),
        "calib_seconds": calib_record["calib_seconds"],
        "eval_seconds": round(time.time() - t0, 1),
        "cost": _cost_totals(art, cell.dataset, recipe),
        "seeds": calib_record["seeds"],
        "artifact_sha256": calib_record["artifact_sha256"],
        "host": os.uname().nodename,
    }


def failed_cell(cell: Cell, recipe: Recipe, error: str) -> dict:
    """The record of a cell that could not be computed (kept so the page can say so)."""
    c = cell.config
    return {"schema": CELL_SCHEMA, "status": "failed", "cell": cell.id, "model": c.model, "scale": c.scale,
            "bits": c.bits, "method": c.method, "allocation": c.allocation, "dataset": cell.dataset,
            "recipe": recipe_digest(c, recipe), "error": error}
