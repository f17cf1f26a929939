"""A resumable grid of calibrate+evaluate cells run as Ray tasks (``intsim sweep``), such as the paper's protocol.

    intsim sweep SWEEP.toml [--address RAY_ADDRESS] [--resume] [--num-cpus N]

SWEEP.toml (paths relative to its folder)::

    [sweep]
    title = "IMDN ×4 and ×2 at low bits"   # optional: the results page's title (default: the file's name)
    out = "results/sweep"                  # cell JSONs, artifacts, results page
    models = ["imdn:4", "imdn:2"]          # name:scale, a zoo model or one of [own_models]
    bits = ["W4A4", "W6A6", "W8A8"]
    methods = ["minmax", "percentile", "omse", "ptq4sr", "2dquant", "dual_region", "plain_ft", "sa_ft", "oaq"]
    allocations = ["released", "budgeted"] # dual-region methods run once per allocation
    datasets = ["Set5", "Set14", "B100", "Urban100"]

    [recipe]                               # optional; the defaults are the protocol
    n_images = 100  patch = 48  epochs = 10  iters_per_epoch = 25  seed = 0
    per_channel = true  range = "ema"  bp_init = "percentile"  accel = "edge_npu"
    limit = 0  crop = 0                    # > 0: quick runs on few images / LR crops
    calib_data = "calib_images"            # default: <data root>/data/SunHays80; accel: a name or a TOML file

    [report]                               # optional
    page = "../docs/results.md"            # also write the results page here

    [golden]                               # optional; 0 or absent = no limit (golden on every image)
    max_gmac_per_image = 200               # conv GMAC of one image (10^9 MACs)
    max_mib_per_image = 4096               # golden's memory estimate for one image (MiB)
    max_gmac_per_cell = 2000               # sum over the images one cell checks, in file order
    always = ["Set5", "Set14"]             # datasets golden checks whatever the GMAC (memory limit still applies)

    [own_models.espcn]                     # optional: your own models (docs/own_model.md), "espcn:3" above
    model = "../examples/espcn_like.py:build"   # path/net.py:factory, package.module:Class or model.onnx
    weights = "espcn_x3.pt"                # required, except for ONNX (weights inside)

Every field is checked, for every cell, when the file is read (before Ray starts):
bits calibrate cannot take, a model × scale without a zoo checkpoint, an unknown
accelerator, a missing or empty ``calib_data`` folder and unwritable ``out``/``page``
paths are refused in one line naming the file and the field. Only what a worker finds
(a checkpoint or data set absent from the data root) fails its cells one by one.

Each configuration (model × scale × bits × method × allocation) is one Ray task
that calibrates (:func:`reports.sweep_cell.calibrate_config`); each of its cells
(× dataset) is a Ray task depending on it (:func:`reports.sweep_cell.evaluate_cell`)
that writes ``<out>/cells/<cell>.json`` atomically. A failed task is recorded as a
failed cell with its error and the others go on. ``--resume`` keeps the cells
(and calibrations) a previous run finished under the same recipe and recomputes
the rest; without it an ``out`` folder holding finished cells is refused, so a
slip of the keyboard cannot throw hours away. Ctrl-C stops the sweep cleanly: finished
cells stay, the run is logged as interrupted and the page rebuilt (SIGTERM likewise). Each
cell reserves a share of the node's memory by dataset (:data:`MEMORY_SHARE`), so the
float64 golden runs on Urban100 do not run side by side and exhaust it; each calibration reserves its
configuration's estimated peak (:mod:`calib.memory_estimate`, estimated in the driver before it is submitted),
and one whose estimate alone exceeds the node's memory is not started: its cells fail with one line saying so.
Cells are computed in the order of :mod:`reports.sweep_order` (the new default, ``oaq`` and MinMax at
W4A4/W6A6 on Set5 and Set14 for every model × scale first; then the other methods, B100, Urban100; then
W8A8), at most twice the node's CPUs in flight, each calibration submitted with its configuration's first
cell. Golden checks every image its ``[golden]`` budget allows (:mod:`reports.sweep_golden`; the choice is
recorded per cell and shown on the page). The results page is rewritten (atomically) each time a cell lands, with
the cells not computed yet counted and listed. The progress
line counts cells done, tasks running (evaluating, calibrating: :func:`running_marker`), cells queued and
failed. Ray: a local instance by default,
the cluster at ``--address`` otherwise. At the end the results page, CSV and
plots are regenerated from every cell JSON (:mod:`reports.results_page`).
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from intsim.artifact import atomic_write_json, read_json
from intsim.cost._toml import ConfigError, Section, check_sections, read_toml
from reports.sweep_golden import GoldenBudget
from reports.sweep_order import order_cells
from reports.sweep_cell import (
    DUAL_REGION_METHODS,
    Cell,
    Config,
    Recipe,
    calibrate_config,
    calibration_reservation,
    earlier_layer_policy,
    evaluate_cell,
    failed_cell,
    recipe_digest,
)

_BITS = re.compile(r"^W\d+A\d+$")  # the form; the range is calibrate's (calib.cli_calibrate.parse_bits)
# Share of the Ray node's memory a cell reserves, by dataset: golden (float64) on Urban100's large
# images is the peak (a few GiB for IMDN ×4 with intermediates freed), so at most two run at once.
MEMORY_SHARE = {"Set5": 0.1, "Set14": 0.15, "B100": 0.15, "Urban100": 0.4}
_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "INTSIM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Sweep:
    """A parsed SWEEP.toml: the grid, the shared recipe and where results go."""

    path: Path
    out: Path
    cells: tuple[Cell, ...]
    recipe: Recipe
    page: Path | None
    title: str
    golden: GoldenBudget = GoldenBudget()

    @property
    def configs(self) -> list[Config]:
        return list(dict.fromkeys(c.config for c in self.cells))


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Parse and check SWEEP.toml; every refusal is a :class:`ConfigError` naming file, section and key."""
    from calib.cli_calibrate import parse_bits
    from calib.evaluate import DATASETS
    from calib.methods import METHODS, TWO_REGION_ALLOCATIONS
    from calib.models.zoo import MODELS

    path = Path(path)
    where = path.name
    doc = read_toml(path)
    check_sections(doc, ("sweep", "recipe", "report", "own_models", "golden"), where)
    own = _own_models(doc, where, path.parent)
    s = Section(doc, "sweep", where)
    title = s.string("title", required=False, default=f"Results of {path.name}")
    if not title.strip() or "\n" in title:  # the page's heading: one line
        raise ConfigError(f"{where}: [sweep] title: must be one non-empty line, got {title!r}")
    out = path.parent / s.string("out")
    models = []
    for m in s.strings("models"):
        name, _, scale = m.partition(":")
        if name in own:
            if not scale.isdigit() or not 1 <= int(scale) <= 8:
                raise ConfigError(f"{where}: [sweep] models: {m!r} must be name:scale with a scale in 1..8")
            models.append((name, int(scale), *own[name]))
            continue
        if name.lower() not in MODELS or not scale.isdigit() or int(scale) not in (2, 3, 4):
            raise ConfigError(f"{where}: [sweep] models: {m!r} must be name:scale with a zoo model "
                              f"({', '.join(sorted(MODELS))}) or one of [own_models] and scale 2, 3 or 4")
        have = sorted(MODELS[name.lower()].checkpoints)
        if int(scale) not in have:  # every cell of it would fail (calibration needs the real checkpoint)
            raise ConfigError(f"{where}: [sweep] models: {m!r}: the zoo knows no {name.lower()} ×{scale} checkpoint "
                              f"(it has: {', '.join(f'×{x}' for x in have) or 'none'})")
        models.append((name.lower(), int(scale), None, None))
    bits = s.strings("bits")
    for b in bits:
        if not _BITS.match(b):
            raise ConfigError(f"{where}: [sweep] bits: {b!r} must look like W4A4 (2 to 16 bits)")
        try:
            parse_bits(b)
        except ValueError as e:
            raise ConfigError(f"{where}: [sweep] bits: {e}") from None
    methods = s.strings("methods", choices=METHODS)
    allocations = s.strings("allocations", required=False, default=["released"], choices=TWO_REGION_ALLOCATIONS)
    datasets = s.strings("datasets", choices=DATASETS)
    s.done()
    r = Section(doc, "recipe", where, required=False)
    base = Recipe()
    recipe = Recipe(
        n_images=r.integer("n_images", required=False, default=base.n_images, lo=1, hi=100000),
        patch=r.integer("patch", required=False, default=base.patch, lo=8, hi=4096),
        epochs=r.integer("epochs", required=False, default=base.epochs, lo=0, hi=10000),
        iters_per_epoch=r.integer("iters_per_epoch", required=False, default=base.iters_per_epoch, lo=1, hi=10**6),
        seed=r.integer("seed", required=False, default=base.seed, lo=0, hi=2**31 - 1),
        per_channel=r.boolean("per_channel", required=False, default=base.per_channel),
        range_mode=r.string("range", required=False, default=base.range_mode, choices=("ema", "max")),
        bp_init=r.string("bp_init", required=False, default=base.bp_init, choices=("percentile", "search")),
        limit=r.integer("limit", required=False, default=0, lo=0, hi=100000) or None,
        crop=r.integer("crop", required=False, default=0, lo=0, hi=4096) or None,
        accel=r.string("accel", required=False, default=base.accel),
        calib_data=r.string("calib_data", required=False, default=None))
    r.done()
    if recipe.crop is not None and recipe.crop < 8:
        raise ConfigError(f"{where}: [recipe] crop: must be 0 (whole images) or ≥ 8, got {recipe.crop}")
    recipe = _check_recipe(recipe, where, path.parent)
    rep = Section(doc, "report", where, required=False)
    page = rep.string("page", required=False, default=None)
    rep.done()
    golden = _golden_budget(doc, where)
    _check_output(out, True, f"{where}: [sweep] out")
    if page:
        _check_output(path.parent / page, False, f"{where}: [report] page")
    cells = []
    for model, scale, spec, weights in models:
        for b in bits:
            for m in methods:
                for alloc in (allocations if m in DUAL_REGION_METHODS else [None]):
                    cfg = Config(model, scale, b, m, alloc, spec, weights)
                    cells += [Cell(cfg, d) for d in datasets]
    return Sweep(path, out, tuple(cells), recipe, path.parent / page if page else None, title.strip(), golden)


def _golden_budget(doc: dict, where: str) -> GoldenBudget:
    """``[golden]``: limits on golden per cell (:mod:`reports.sweep_golden`); 0 or absent = no limit.
    Not part of the recipe: a cell's scores do not depend on it, only how much golden checked."""
    g = Section(doc, "golden", where, required=False)
    from calib.evaluate import DATASETS

    vals = {k: g.number(k, required=False, default=0.0, nonnegative=True)
            for k in ("max_gmac_per_image", "max_mib_per_image", "max_gmac_per_cell")}
    always = g.strings("always", required=False, default=[], choices=DATASETS)
    g.done()
    return GoldenBudget(**{k: (v or None) for k, v in vals.items()}, always=tuple(always))


def _own_models(doc: dict, where: str, folder: Path) -> dict[str, tuple[str, str | None]]:
    """``[own_models.NAME]`` tables → ``{NAME: (model spec, weights file or None)}``, paths resolved against the
    sweep file's ``folder`` and checked now (a missing file would fail every cell of the model)."""
    from calib.models.zoo import MODELS

    raw = doc.get("own_models") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [own_models] must be tables [own_models.NAME]")
    out = {}
    for name, table in raw.items():
        sec = Section({f"own_models.{name}": table}, f"own_models.{name}", where)
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name.lower() in MODELS:
            raise ConfigError(f"{where}: [own_models.{name}] the name must be a word that is not a zoo model's")
        spec, weights = sec.string("model"), sec.string("weights", required=False, default=None)
        sec.done()
        target, sep, attr = spec.rpartition(":")
        onnx = spec.lower().endswith(".onnx")
        path = folder / spec if onnx else folder / target if sep and (target.endswith(".py") or "/" in target) else None
        if path is not None:
            if not path.is_file():
                raise ConfigError(f"{where}: [own_models.{name}] model: {path} is not a file")
            spec = str(path) if onnx else f"{path}:{attr}"
        if onnx and weights is not None:
            raise ConfigError(f"{where}: [own_models.{name}] weights: an ONNX file carries its own weights")
        if not onnx and weights is None:
            raise ConfigError(f"{where}: [own_models.{name}] weights: required (the sweep calibrates real "
                              "checkpoints, never a random init)")
        if weights is not None:
            if not (folder / weights).is_file():
                raise ConfigError(f"{where}: [own_models.{name}] weights: {folder / weights} is not a file")
            weights = str(folder / weights)
        out[name] = (spec, weights)
    return out


def _check_recipe(recipe: Recipe, where: str, folder: Path) -> Recipe:
    """The recipe with its files resolved against the sweep file's ``folder``, refused now where they
    would fail every cell only after its calibration: the accelerator, the calibration images."""
    from calib.datasets import list_images
    from intsim.cost import load_accelerator, packaged_accelerators

    shipped = packaged_accelerators()
    if recipe.accel not in shipped:
        accel = folder / recipe.accel
        if not accel.is_file():
            raise ConfigError(f"{where}: [recipe] accel: {recipe.accel!r} is neither a packaged accelerator "
                              f"({', '.join(shipped)}) nor a file ({accel})")
        recipe = replace(recipe, accel=str(accel))
    try:
        load_accelerator(recipe.accel)
    except (ValueError, OSError) as e:
        raise ConfigError(f"{where}: [recipe] accel: {_first_line(e)}") from None
    if recipe.calib_data is not None:
        recipe = replace(recipe, calib_data=str(folder / recipe.calib_data))
        try:
            list_images(recipe.calib_data)
        except OSError as e:
            raise ConfigError(f"{where}: [recipe] calib_data: {_first_line(e)}") from None
    return recipe


def _check_output(p: Path, folder: bool, what: str) -> None:
    """Refuse an output path that cannot be written: it is written only once the cells are done."""
    if p.exists() and p.is_dir() != folder:
        raise ConfigError(f"{what}: {p} {'exists and is not' if folder else 'is'} a folder")
    parent = next(q for q in p.parents if q.exists())  # created when written, if it is a folder
    if not parent.is_dir():
        raise ConfigError(f"{what}: {parent} is not a folder")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def cell_path(out: Path, cell: Cell) -> Path:
    return out / "cells" / f"{cell.id}.json"


def read_cell(path: Path) -> dict | None:
    """A cell JSON, or None if it is missing or unreadable, or not a plain file (then the cell is simply redone)."""
    try:
        return read_json(path, what="a sweep cell record")
    except (OSError, ValueError):
        return None


def finished(sweep: Sweep) -> list[Cell]:
    """Cells whose JSON says done under this sweep's recipe and today's layer policy."""
    digests: dict = {}
    done = []
    for c in sweep.cells:
        rec = read_cell(cell_path(sweep.out, c))
        if not (rec and rec.get("status") == "done"):
            continue
        if c.config not in digests:
            digests[c.config] = (None if earlier_layer_policy(c.config, sweep.out)
                                 else recipe_digest(c.config, sweep.recipe))
        if rec.get("recipe") == digests[c.config]:
            done.append(c)
    return done


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse a ``host:port`` / ``ray://host:port`` address nothing listens on (ray.init would retry for
    minutes); ``auto`` and other forms are left to Ray."""
    import socket

    m = re.match(r"^(?:ray://)?\[?([^\]]+?)\]?:(\d{1,5})$", address.strip())
    if not m:
        return
    try:
        socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(f"cannot start or reach Ray at {address}: {e.strerror or e}") from None


def _stop_on_signals() -> dict:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the driver (also when the shell started it in the
    background with SIGINT ignored); returns the previous handlers."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    saved = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, stop)
    return saved


RUNNING_DIR = "running"
"""``<out>/running/<name>``: a task's marker while it runs (the progress display's "running"
count; Ray's own task states need its dashboard). A killed worker can leave one behind, so
the driver clears the folder before it submits anything."""


@contextmanager
def running_marker(out: Path, name: str):
    """Mark ``name`` (a cell id or ``calibrate-<config id>``) as running for the block's duration."""
    path = out / RUNNING_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _running(out: Path) -> set[str]:
    try:
        return {p.name for p in (out / RUNNING_DIR).iterdir()}
    except OSError:
        return set()


def _error_text(exc: BaseException) -> str:
    """One line naming the original exception of a (possibly Ray-wrapped) task failure."""
    cause = getattr(exc, "cause", None) or exc
    text = f"{type(cause).__name__}: {cause}".strip()
    return text.splitlines()[0] if text else type(cause).__name__


def _tasks(ray):
    """The two Ray remote functions (defined here so that ray is imported only when a sweep runs)."""

    def _one_thread():
        import torch

        torch.set_num_threads(1)

    @ray.remote(num_cpus=1, max_retries=0)
    def calibrate_task(config, recipe, out_dir, reuse):
        _one_thread()
        with running_marker(Path(out_dir), f"calibrate-{config.id}"):
            return calibrate_config(config, recipe, out_dir, reuse)

    @ray.remote(num_cpus=1, max_retries=0)
    def cell_task(calib_record, cell, recipe, out_dir, golden):
        _one_thread()
        with running_marker(Path(out_dir), cell.id):
            rec = evaluate_cell(calib_record, cell, recipe, golden)
            atomic_write_json(cell_path(Path(out_dir), cell), rec)
        return rec

    return calibrate_task, cell_task


def run_sweep(sweep: Sweep, address: str | None = None, resume: bool = False, num_cpus: int | None = None,
              progress: bool = True, command: str = "intsim sweep", only: list[str] | None = None) -> dict:
    """Run every cell not finished yet (``only``: of those whose id matches one of these fnmatch globs);
    return ``{"done", "skipped", "failed", "seconds", "interrupted"}`` (cell ids).

    Each run is logged in ``<out>/runs.json`` (command, wall seconds, counts) for the results page;
    ``grid.json`` gets every cell of the sweep, ``only`` or not, so the page counts what is missing."""
    try:
        import ray
    except ImportError:
        raise ConfigError("intsim sweep needs Ray: pip install 'ray==2.60.0' (the [sweep] extra)") from None
    skipped = finished(sweep)
    if skipped and not resume:
        raise ConfigError(f"{sweep.out}: already holds {len(skipped)} finished cell(s) of this sweep; "
                          f"pass --resume to keep them, or choose another [sweep] out")
    todo = [c for c in sweep.cells if c not in set(skipped)
            and (only is None or any(fnmatch.fnmatchcase(c.id, g.lower()) for g in only))]
    (sweep.out / "cells").mkdir(parents=True, exist_ok=True)
    # the cells asked for in this folder (every sweep run into it), so the page can name the missing ones
    grid_path = sweep.out / "grid.json"
    grid = json.loads(grid_path.read_text()) if grid_path.is_file() else []
    atomic_write_json(grid_path, sorted(set(grid) | {c.id for c in sweep.cells}))
    t0 = time.time()
    done: list[Cell] = []
    failed: list[Cell] = []
    interrupted = False
    if todo:
        env = dict(_THREAD_ENV)
        if os.environ.get("INTSIM_DATA_ROOT"):
            env["INTSIM_DATA_ROOT"] = os.environ["INTSIM_DATA_ROOT"]
        init = {"address": address, "runtime_env": {"env_vars": env}, "include_dashboard": False,
                "log_to_driver": False, "configure_logging": False}
        if address is None and num_cpus is not None:
            init["num_cpus"] = int(num_cpus)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray must not phone home from CI or a lab
        if address is not None:
            _check_reachable(address)
        try:
            ray.init(**init)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
        saved = _stop_on_signals()
        try:
            _drive(ray, sweep, todo, resume, progress, done, failed, finished_before=len(skipped))
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: finished cells are on disk; log the run, rebuild the page
            interrupted = True
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            ray.shutdown()
    res = {"done": [c.id for c in done], "skipped": [c.id for c in skipped], "failed": [c.id for c in failed],
           "seconds": round(time.time() - t0, 1), "interrupted": interrupted}
    runs_path = sweep.out / "runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.is_file() else []
    runs.append({"command": command, "title": sweep.title,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)),
                 "seconds": res["seconds"], "done": len(done), "failed": len(failed), "skipped": len(skipped),
                 "interrupted": interrupted})
    atomic_write_json(runs_path, runs)
    from reports.results_page import write_results

    write_results(sweep.out, sweep.page, sweep.title)
    return res


PLOTS_EVERY_S = 600.0
"""While a sweep runs the page (markdown, CSV) is rewritten as each cell lands; its plots, slower to draw,
at most this often (seconds), and once more at the end."""


def _refresh_page(sweep: Sweep, draw: bool, live: str | None) -> None:
    """Rewrite the results page from the cells on disk (atomically); a page that cannot be written is one
    line on stderr, never the end of the sweep (the cells are what matters, and the end rebuilds it)."""
    from reports.results_page import write_results

    try:
        write_results(sweep.out, sweep.page, sweep.title, draw=draw, live=live)
    except OSError as e:
        print(f"intsim sweep: the results page could not be rewritten: {e}", file=sys.stderr)


def _drive(ray, sweep: Sweep, todo: list[Cell], resume: bool, progress: bool, done: list, failed: list,
           window: int | None = None, finished_before: int = 0) -> None:
    """Submit the calibrations and cells, record results as they finish (into ``done``/``failed``),
    rewrite the page as each lands, show progress.

    Cells go in :func:`reports.sweep_order.order_cells` order, at most ``window`` (default: twice the
    node's CPUs) in flight, each configuration's calibration submitted with its first cell: so Ray
    cannot run late calibrations ahead of early cells, and the page fills its most informative rows first."""
    import shutil

    from tqdm import tqdm

    calibrate_task, cell_task = _tasks(ray)
    out = str(sweep.out)
    shutil.rmtree(sweep.out / RUNNING_DIR, ignore_errors=True)  # markers a killed run left behind
    queue = order_cells(todo)
    resources = ray.cluster_resources()
    node_memory = float(resources.get("memory", 0))
    window = window or max(2, 2 * int(resources.get("CPU", 1)))
    calib_refs: dict = {}
    calibrating: set = set()
    pending: dict = {}
    refused: dict = {}  # configuration → why its calibration is not started
    estimates: dict = {}

    def refuse(c: Cell) -> None:
        atomic_write_json(cell_path(sweep.out, c), failed_cell(c, sweep.recipe, refused[c.config]))
        failed.append(c)
        bar.update(1)

    def submit():
        while queue and len(pending) < window:
            c = queue.pop(0)
            if c.config not in calib_refs and c.config not in refused:
                need = calibration_reservation(c.config, sweep.recipe, out, resume, node_memory, estimates)
                if isinstance(need, str):
                    refused[c.config] = need
                else:  # Ray starts a calibration only while the reservations of those running leave it room
                    task = calibrate_task.options(memory=need) if need else calibrate_task
                    calib_refs[c.config] = task.remote(c.config, sweep.recipe, out, resume)
                    calibrating.add(calib_refs[c.config])
            if c.config in refused:
                refuse(c)
                continue
            task = cell_task.options(memory=int(MEMORY_SHARE[c.dataset] * node_memory)) if node_memory else cell_task
            pending[task.remote(calib_refs[c.config], c, sweep.recipe, out, sweep.golden)] = c

    bar = tqdm(total=finished_before + len(todo), initial=finished_before, unit="cell", desc="sweep",
               disable=not progress, file=sys.stderr)  # this run's cells (--only: the matching ones)

    def show():
        marked = _running(sweep.out)
        evaluating = sum(1 for c in pending.values() if c.id in marked)
        calib = sum(1 for cfg in calib_refs if f"calibrate-{cfg.id}" in marked)
        bar.set_postfix_str(f"done {len(done)}, running {evaluating + calib} ({evaluating} evaluating, "
                            f"{calib} calibrating), queued {len(pending) - evaluating + len(queue)}, "
                            f"failed {len(failed)}")

    def live() -> str:
        return (f"a sweep is running: {len(done)} cell(s) of this run done, {len(failed)} failed, "
                f"{len(pending) + len(queue)} to go; this page is rewritten as each cell lands "
                f"(last: {time.strftime('%Y-%m-%d %H:%M:%S')})")

    submit()
    _refresh_page(sweep, False, live())  # the page says at once that a sweep is running, and what is missing
    show()
    drawn = time.time()
    while pending:
        if calibrating:
            ready, _ = ray.wait(list(calibrating), num_returns=len(calibrating), timeout=0)
            calibrating.difference_update(ready)
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            cell = pending.pop(ref)
            try:
                ray.get(ref)
                done.append(cell)
            except Exception as e:  # noqa: BLE001 - any task failure is recorded as that cell's error
                atomic_write_json(cell_path(sweep.out, cell), failed_cell(cell, sweep.recipe, _error_text(e)))
                failed.append(cell)
            bar.update(1)
        if ready:
            submit()
            draw = time.time() - drawn >= PLOTS_EVERY_S
            drawn = time.time() if draw else drawn
            _refresh_page(sweep, draw, live())
        show()
    bar.close()


def main(path: str, address: str | None, resume: bool, num_cpus: int | None, only: list[str] | None = None) -> int:
    """``intsim sweep``: 0 when every cell is done, 1 when some failed (recorded in their JSONs)."""
    sweep = load_sweep(path)
    if only and not any(fnmatch.fnmatchcase(c.id, g.lower()) for c in sweep.cells for g in only):
        raise ConfigError(f"--only {' '.join(only)}: matches no cell of {sweep.path.name} "
                          f"(cell ids look like {sweep.cells[0].id})")
    configs = sweep.configs
    print(f"sweep {sweep.path.name}: {len(sweep.cells)} cells ({len(configs)} calibrations) → {sweep.out}",
          flush=True)
    command = " ".join(["intsim sweep", path] + (["--resume"] if resume else [])
                       + ([f"--address {address}"] if address else []) + [f"--only {g}" for g in only or []])
    res = run_sweep(sweep, address=address, resume=resume, num_cpus=num_cpus, command=command, only=only)
    print(f"done {len(res['done'])}, skipped (finished earlier) {len(res['skipped'])}, "
          f"failed {len(res['failed'])} in {res['seconds']:.0f} s"
          + (" (interrupted: rerun with --resume to finish)" if res["interrupted"] else ""), flush=True)
    for cid in res["failed"]:
        rec = read_cell(sweep.out / "cells" / f"{cid}.json") or {}
        print(f"failed: {cid}: {rec.get('error', '?')}", file=sys.stderr)
    if res["interrupted"]:
        return 130
    return 1 if res["failed"] else 0
