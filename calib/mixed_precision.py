"""Mixed precision under a budget: per-layer bits from measured sensitivity and the cost model.

For every body conv ``l`` and candidate width ``b`` (WbAb, default 3/4/6/8):

* **sensitivity** ``S[l, b]``: the mean squared error of the model output
  (against the float model, on calibration patches) when only ``l`` is
  quantized at ``b`` bits — the two-region init of the ``recon`` recipe, before
  reconstruction; assumed additive over layers, as in HAWQ-style allocation;
* **cost** ``C[l, b]``: the layer's energy, latency or weight storage from
  :func:`intsim.cost.estimate_cost` on the engine's counters for calibration
  patches, with every body conv exported at ``b`` bits (head, upsampler and tail
  keep the policy's 8 bits and count as a fixed cost).

:func:`allocate` solves ``min Σ S[l, b_l]`` s.t. ``Σ C[l, b_l] ≤ budget`` exactly
(``scipy.optimize.milp``, one binary per (layer, width), one width per layer).
A budget is absolute or relative to a uniform scheme (:func:`parse_budget`).
The result is a :class:`calib.calibrate.LayerPolicy` ``overrides`` dict, which
``calibrate --policy FILE`` (TOML, :func:`read_policy`) also accepts directly.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["Budget", "LayerTable", "parse_budget", "measure", "allocate", "read_policy", "CANDIDATE_BITS",
           "METRICS"]

CANDIDATE_BITS = (3, 4, 6, 8)
METRICS = ("energy", "latency", "storage")
_UNITS = {"energy": {"pj": 1.0, "nj": 1e3, "uj": 1e6, "µj": 1e6, "mj": 1e9},
          "latency": {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6},
          "storage": {"bit": 1.0, "b": 8.0, "kb": 8e3, "mb": 8e6}}


@dataclass(frozen=True)
class Budget:
    """``metric`` ≤ ``value`` (pJ, s or bits per calibration patch), or ≤ ``value`` × the cost of the
    uniform scheme W``ref_bits``A``ref_bits`` when ``relative``."""

    metric: str
    value: float
    relative: bool = True
    ref_bits: int = 8

    def describe(self) -> str:
        if self.relative:
            return f"{self.metric} ≤ {self.value:g} × uniform W{self.ref_bits}A{self.ref_bits}"
        unit = {"energy": "pJ", "latency": "s", "storage": "bit"}[self.metric]
        return f"{self.metric} ≤ {self.value:g} {unit} per calibration patch"


def parse_budget(text: str) -> Budget:
    """``energy=0.5`` / ``energy=0.5x`` (× W8A8), ``latency=1.25xW4A4`` (× uniform W4A4), or absolute
    ``energy=3.2uJ``, ``latency=4ms``, ``storage=200kB`` (per calibration patch)."""
    m = re.fullmatch(r"\s*(energy|latency|storage)\s*=\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*(\S*)\s*", str(text),
                     re.IGNORECASE)
    if not m:
        raise ValueError(f"budget must look like 'energy=0.5x', 'latency=1.25xW4A4' or 'storage=200kB' "
                         f"(metric one of {', '.join(METRICS)}), got {text!r}")
    metric, value, unit = m.group(1).lower(), float(m.group(2)), m.group(3)
    if not value > 0:
        raise ValueError(f"budget value must be positive, got {text!r}")
    u = unit.lower()
    if u in ("", "x"):
        return Budget(metric, value, True, 8)
    r = re.fullmatch(r"x?w(\d+)a(\d+)", u)
    if r:
        if r.group(1) != r.group(2) or int(r.group(1)) not in CANDIDATE_BITS:
            raise ValueError(f"a relative budget's reference must be a uniform WbAb with b in "
                             f"{CANDIDATE_BITS}, got {unit!r}")
        return Budget(metric, value, True, int(r.group(1)))
    if u not in _UNITS[metric]:
        raise ValueError(f"unknown {metric} unit {unit!r} (known: {', '.join(_UNITS[metric])}, or x for relative)")
    return Budget(metric, value * _UNITS[metric][u], False)


@dataclass
class LayerTable:
    """Measured per-layer sensitivity and cost for each candidate width."""

    layers: list[str]  # choosable (body) conv op names, graph order
    bits: tuple[int, ...]
    sensitivity: np.ndarray  # [layer, width] output MSE with only that layer quantized
    cost: dict[str, np.ndarray]  # metric → [layer, width]
    fixed_cost: dict[str, np.ndarray]  # metric → [width]: the other layers' cost when body is at that width
    specs: dict = field(default_factory=dict, repr=False)  # width → CalibrationResult (init specs; not saved)

    def compose(self, bits: dict[str, int]):
        """A CalibrationResult with each layer's init spec at its allocated width (others: as at 8 bits)."""
        from copy import copy

        base = self.specs[max(self.bits)]
        res = copy(base)
        res.layers = {n: (self.specs[bits[n]].layers[n] if n in bits else l) for n, l in base.layers.items()}
        return res

    def fixed(self, metric: str) -> float:
        """Cost of the non-choosable ops (8-bit head/upsampler/tail, element-wise ops): their mean over the
        uniform probes (it moves a little with the body's width, through stream widths and code counts)."""
        return float(np.mean(self.fixed_cost[metric]))

    def uniform_cost(self, metric: str, b: int) -> float:
        j = self.bits.index(b)
        return float(self.cost[metric][:, j].sum() + self.fixed(metric))

    def budget_value(self, budget: Budget) -> float:
        if not budget.relative:
            return budget.value
        if budget.ref_bits not in self.bits:
            raise ValueError(f"relative budget references W{budget.ref_bits}A{budget.ref_bits}, which is not "
                             f"among the candidate widths {self.bits}")
        return budget.value * self.uniform_cost(budget.metric, budget.ref_bits)

    def to_json(self) -> dict:
        return {"layers": self.layers, "bits": list(self.bits), "sensitivity": self.sensitivity.tolist(),
                "cost": {k: v.tolist() for k, v in self.cost.items()},
                "fixed_cost": {k: v.tolist() for k, v in self.fixed_cost.items()},
                "uniform": {m: {f"W{b}A{b}": self.uniform_cost(m, b) for b in self.bits} for m in self.cost}}


def _layer_costs(net, graph, calib_w, images_u8, accel) -> dict[str, dict[str, float]]:
    """op name → {energy pJ, latency s, storage bits} of the exported calibration, mean over images."""
    from calib.export import export_artifact
    from intsim.cost import estimate_cost
    from intsim.engine import run

    art = export_artifact(net, calib_w, model_meta={"name": "mixed-precision-probe", "scale": 1})
    counters = [run(art, img, keep_tensors=False).counters for img in images_u8]
    cost = estimate_cost(art, counters, accel)
    clock = float(accel.clock_mhz) * 1e6
    out = {}
    for lay in cost["layers"]:
        cyc = float(lay.get("cycles", {}).get("total", 0.0))
        st = lay.get("storage_bits", {})
        out[lay["name"]] = {"energy": float(lay["energy_pj"]["total"]),
                            "latency": cyc / clock,
                            "storage": float(st.get("weights", 0) + st.get("bias", 0) + st.get("rescale_params", 0))}
    return out


def _to_u8(img: torch.Tensor, rgb_range: float) -> np.ndarray:
    a = img.double().numpy().transpose(1, 2, 0) * (255.0 / rgb_range)
    return np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8)


@torch.no_grad()
def measure(net, graph, images: Sequence[torch.Tensor], rgb_range: float, *, bits: Sequence[int] = CANDIDATE_BITS,
            accel="edge_npu", policy=None, n_sens: int = 8, n_cost: int = 2, progress=None) -> LayerTable:
    """Measure :class:`LayerTable` on calibration patches (``images``: model inputs, equal size)."""
    from dataclasses import replace

    from calib.calibrate import CalibrationResult, LayerPolicy
    from calib.methods import calibrate_method
    from calib.recipe import resolve_recipe
    from calib.quant.fakequant import build_fakequant_model
    from intsim.cost import load_accelerator

    acc = load_accelerator(accel) if isinstance(accel, str) else accel
    pol = replace(LayerPolicy.parse(policy), per_channel_weights=True, overrides={})
    bits = tuple(sorted(set(int(b) for b in bits)))
    init = resolve_recipe()
    x = torch.stack(list(images[:n_sens]))
    y = net(x)
    u8 = [_to_u8(i, rgb_range) for i in images[:n_cost]]
    per_bits = {}
    for b in bits:
        per_bits[b] = calibrate_method(net, images, b, b, "dual_region", pol, bp_init="search", graph=graph,
                                       wide_range_bits=init.wide_range_bits,  # the default recipe's init
                                       wide_weight_bits=init.wide_weight_bits,
                                       full_range_weights=init.full_range_weights)
    roles = graph.conv_roles()
    layers = [n for n in per_bits[bits[0]].layers if roles[n] == "body"]
    sens = np.zeros((len(layers), len(bits)))
    cost = {m: np.zeros((len(layers), len(bits))) for m in METRICS}
    fixed = {m: np.zeros(len(bits)) for m in METRICS}
    for j, b in enumerate(bits):
        res = per_bits[b]
        lc = _layer_costs(net, graph, res, u8, acc)
        for m in METRICS:
            fixed[m][j] = sum(v[m] for k, v in lc.items() if k not in layers)
            for i, name in enumerate(layers):
                cost[m][i, j] = lc[name][m]
        for i, name in enumerate(layers):
            one = CalibrationResult(res.graph, {name: res.layers[name]}, res.stream_absmax, b, b, res.policy,
                                    res.method, res.n_images, res.n_batches)
            sens[i, j] = float(((build_fakequant_model(net, one)(x) - y) ** 2).mean())
            if progress is not None:
                progress(f"sensitivity W{b}A{b} {name}: {sens[i, j]:.3g}")
    return LayerTable(layers, bits, sens, cost, fixed, per_bits)


@contextlib.contextmanager
def _native_stdout_silenced():
    """HiGHS (inside scipy's milp) can print solver notes straight to file descriptor 1, which would corrupt
    ``--json`` output; point fd 1 at /dev/null for the solve only, then restore it."""
    import os
    import sys

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # captured or replaced stdout: nothing native to silence
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def allocate(table: LayerTable, budget: Budget) -> dict:
    """Exact allocation (MILP): ``{"bits": {layer: b}, "sensitivity", "cost", "budget", "feasible"}``."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    nl, nb = len(table.layers), len(table.bits)
    limit = table.budget_value(budget)
    c_metric = table.cost[budget.metric]
    fixed = table.fixed(budget.metric)
    a_one = np.zeros((nl, nl * nb))
    for i in range(nl):
        a_one[i, i * nb:(i + 1) * nb] = 1.0
    cons = [LinearConstraint(a_one, 1.0, 1.0), LinearConstraint(c_metric.reshape(1, -1), -np.inf, limit - fixed)]
    sens = table.sensitivity.reshape(-1)
    scale = max(float(np.abs(sens).max()), 1e-30)
    with _native_stdout_silenced():
        res = milp(sens / scale, constraints=cons, integrality=np.ones(nl * nb), bounds=Bounds(0, 1))
    if res.x is None:
        cheapest = float(c_metric.min(axis=1).sum() + fixed)
        raise ValueError(f"budget {budget.describe()} ({limit:.4g}) is infeasible: the cheapest allocation costs "
                         f"{cheapest:.4g}")
    choice = np.asarray(res.x).reshape(nl, nb).argmax(axis=1)
    bits = {name: int(table.bits[j]) for name, j in zip(table.layers, choice)}
    return {"bits": bits, "budget": budget.describe(), "limit": limit,
            "cost": float(sum(c_metric[i, j] for i, j in enumerate(choice)) + fixed),
            "sensitivity": float(sum(table.sensitivity[i, j] for i, j in enumerate(choice))),
            "metric": budget.metric}


def read_policy(path: str | Path, known: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """Per-layer bits from a TOML file → LayerPolicy ``overrides``.

    Format: a ``[bits]`` table mapping a conv op name (as ``intsim inspect`` and
    the artifact's ``metadata.layers`` name it) to ``b`` (WbAb) or ``[bw, ba]``::

        [bits]
        "IMDB1.c1" = 4
        "LR_conv" = [8, 8]
    """
    from intsim.cost._toml import read_toml

    p = Path(path)
    if not p.exists():
        raise ValueError(f"policy file {p} does not exist")
    doc = read_toml(p, ValueError, "a precision policy file")
    extra = set(doc) - {"bits"}
    if extra or not isinstance(doc.get("bits"), dict):
        raise ValueError(f"policy file {p}: expected exactly one [bits] table (got sections {sorted(doc)})")
    out: dict[str, tuple[int, int]] = {}
    for name, v in doc["bits"].items():
        pair = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, list) else None
        if pair is None or len(pair) != 2 or not all(isinstance(b, int) and 2 <= b <= 16 for b in pair):
            raise ValueError(f"policy file {p}: bits of {name!r} must be an integer 2..16 or [w, a], got {v!r}")
        if known is not None and name not in known:
            raise ValueError(f"policy file {p}: unknown layer {name!r} (layers: {', '.join(list(known)[:6])}…)")
        out[str(name)] = (int(pair[0]), int(pair[1]))
    return out


def budget_sweep(table: LayerTable, metric: str, fractions: Sequence[float]) -> list[dict]:
    """Allocations for budgets spread between the cheapest allocation (0) and uniform W8A8 (1);
    distinct allocations only, cheapest first."""
    lo = float(table.cost[metric].min(axis=1).sum() + table.fixed(metric))
    hi = table.uniform_cost(metric, max(table.bits))
    seen, out = set(), []
    for f in sorted(fractions):
        limit = lo + float(f) * (hi - lo)
        try:
            a = allocate(table, Budget(metric, limit, False))
        except ValueError:
            continue
        key = tuple(sorted(a["bits"].items()))
        if key not in seen:
            seen.add(key)
            out.append({**a, "fraction": float(f), "relative_budget": limit / hi})
    return out


#: budgets of the Pareto sweep: fractions of the way from the cheapest allocation to uniform W8A8
SWEEP = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def plan(net, graph, images, rgb_range: float, budget: str, *, candidate_bits=None, accel="edge_npu", policy=None,
         holdout=None, model_name: str = "", log=None) -> dict:
    """Measure, sweep and allocate: the chosen per-layer bits plus a calibration-data Pareto front.

    The front scores each distinct allocation of :data:`SWEEP` (and the uniform
    widths) with its init fake-quant model on held-out calibration images
    (``holdout`` = (folder, scale, n_used, seed), :func:`calib.quality.holdout_pairs`);
    it ranks allocations before reconstruction, which then lifts every point.
    """
    from calib.quality import holdout_pairs, score
    from calib.quant.fakequant import build_fakequant_model

    b = parse_budget(budget)
    table = measure(net, graph, images, rgb_range, bits=candidate_bits or CANDIDATE_BITS, accel=accel,
                    policy=policy)
    chosen = allocate(table, b)
    points = [{"label": f"W{w}A{w}", "bits": {n: w for n in table.layers}} for w in table.bits]
    points += [{"label": f"{b.metric} ≤ {a['relative_budget']:.3f}×W8A8", "bits": a["bits"]}
               for a in budget_sweep(table, b.metric, SWEEP)]
    points.append({"label": "chosen", "bits": chosen["bits"]})
    pairs = holdout_pairs(*holdout)[0] if holdout is not None else []
    w8 = {m: table.uniform_cost(m, max(table.bits)) for m in METRICS}
    for p in points:
        idx = [table.bits.index(p["bits"][n]) for n in table.layers]
        for m in METRICS:
            fixed = table.fixed(m)
            p[m] = float(sum(table.cost[m][i, j] for i, j in enumerate(idx)) + fixed)
            p[f"{m}_vs_w8a8"] = p[m] / w8[m]
        p["predicted_mse"] = float(sum(table.sensitivity[i, j] for i, j in enumerate(idx)))
        if pairs:
            p["holdout_psnr_db_init"] = score(model_name, build_fakequant_model(net, table.compose(p["bits"])),
                                              rgb_range, int(holdout[1]), pairs)
        if log:
            log(f"  {p['label']}: {b.metric} {p[f'{b.metric}_vs_w8a8']:.3f}×W8A8"
                + (f", held-out {p['holdout_psnr_db_init']:.2f} dB (before reconstruction)" if pairs else ""))
    return {**chosen, "table": table.to_json(), "front": points}



def write_front(mixed: dict, artifact: str | Path) -> list[str]:
    """``<artifact>.pareto.json`` (the plan) and, with matplotlib, ``.pareto.png`` (held-out PSNR before
    reconstruction vs estimated energy); returns the paths written."""
    from intsim.artifact import atomic_write_json

    artifact = Path(artifact)
    js, png = artifact.with_name(artifact.name + ".pareto.json"), artifact.with_name(artifact.name + ".pareto.png")
    atomic_write_json(js, {k: v for k, v in mixed.items() if k != "front_files"})
    written = [str(js)]
    pts = [p for p in mixed["front"] if p.get("holdout_psnr_db_init") is not None]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    if pts:
        fig, ax = plt.subplots(figsize=(6.0, 4.2))
        for p in pts:
            ax.scatter([p["energy"] * 1e-6], [p["holdout_psnr_db_init"]], s=28)
            ax.annotate(p["label"], (p["energy"] * 1e-6, p["holdout_psnr_db_init"]), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        ax.set_xlabel("estimated energy per calibration patch [µJ]")
        ax.set_ylabel("held-out Y-PSNR before reconstruction [dB]")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(png, dpi=120)
        plt.close(fig)
        written.append(str(png))
    return written
