"""Peak memory of one calibration (:func:`calib.cli_calibrate.calibrate_run`), estimated before it runs.

The sweep (:mod:`reports.sweep`) reserves it for each calibration task, so that Ray never runs
calibrations side by side whose sum exceeds the node's memory. Nothing comes from a per-model
table: the estimate builds the float model the calibration would build, runs it on **one**
calibration-size patch and measures what the method keeps, then scales by the recipe's numbers.
Every size is in bytes.

    total = BASE_BYTES + ALLOCATOR_FACTOR × (model + data + max(observe, method, check))

* ``BASE_BYTES``: the process before any tensor (Python, torch, calib, intsim, a Ray worker);
* ``ALLOCATOR_FACTOR``: resident memory per byte of live tensors — the C allocator keeps freed heap
  memory resident (fragmentation) and numpy/Python objects come on top; a working set that is
  allocated and freed over and over (a forward, a training step) counts :data:`CHURN_FACTOR` times more;
* ``model``: :data:`PARAM_COPIES` × the float parameters (model, folded copy, fake-quant student,
  rounding offsets, export's integer weights);
* ``data``: :data:`PATCH_COPIES` × the N calibration patches (list, model inputs, batches, stack),
  plus the activation samples every conv input keeps per batch (:func:`calib.methods.collect_activation_stats`);
* ``observe``: the observation (MinMax pass, statistics, initial quantizers) measured on one patch,
  × the observer batch size;
* ``method``: ``recon`` (:mod:`calib.reconstruct`): per unit, the inputs and outputs of its calls
  over all N patches (``cap``) kept for the student and the teacher, while the teacher's are
  gathered a third copy (the per-batch pieces and their concatenation), plus the capturing forward
  at the evaluation batch; then two copies during training, plus one training step (autograd) at the
  reconstruction batch — the largest over units. Finetuning methods (:mod:`calib.finetune`): one
  step (teacher with taps, student with autograd, loss, backward) × the batch size. Else 0;
* ``check``: the held-out check after export (:mod:`calib.quality`): the integer engine's peak on a
  held-out crop (:func:`intsim.footprint.untiled_peak_bytes` of the artifact exported from the
  one-patch calibration), or the float model's forward on it if larger.

"Measured" means :class:`LiveBytes`: the largest sum of the storages of tensors created inside a
block and alive at once (torch's own allocations, counted as they are made and freed), which
is what a batch multiplies. Validation against peak RSS: docs/sweep.md "Memory-aware scheduling".
"""
from __future__ import annotations

import math
import weakref
from collections import Counter
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["ALLOCATOR_FACTOR", "BASE_BYTES", "CHURN_FACTOR", "LiveBytes", "MemoryEstimate",
           "estimate_calibration_memory", "live_peak"]

#: the process before any tensor: measured 285 MiB RSS after importing torch, calib and intsim (317 MiB with
#: ray), rounded up for a Ray worker's own threads and buffers (bytes)
BASE_BYTES = 512 * 2 ** 20
#: peak RSS above the imported process per byte of live tensors: measured 1.37 (FSRCNN ×4 recon, 256 patches:
#: 1077 MiB RSS over 779 MiB live) and 1.39 (IMDN ×4 recon, 128 patches: 2191 over 1573), rounded up
ALLOCATOR_FACTOR = 1.5
#: resident memory per byte of a working set allocated and freed step after step (forward and backward), on top
#: of ALLOCATOR_FACTOR: its freed heap is only partly reused. Measured: IMDN ×4 oaq (100 patches of 96², one epoch)
#: peaked at 1915 MiB RSS, 2.3× its 718 MiB live tensor peak above the imported process (recon's held captures: 1.36×)
CHURN_FACTOR = 1.6
#: float parameter copies alive at once: model, folded copy, student, rounding offsets, export's int64 weights (×2)
PARAM_COPIES = 6
#: copies of the calibration patches: the list, the model's inputs, the observer batches, recon's stack
PATCH_COPIES = 4
#: activation values each conv input keeps per observer batch (calib.methods.collect_activation_stats)
SAMPLES_PER_BATCH = 4096
#: the held-out check's LR crop side (calib.quality.holdout_quality, pixels)
HOLDOUT_PATCH = 96
#: patches per forward when reconstruction captures unit inputs and scores a unit (calib.reconstruct)
RECON_EVAL_BATCH = 8


class LiveBytes(TorchDispatchMode):
    """Inside ``with LiveBytes() as m:``: ``m.now`` bytes of tensor storage created in the block and alive,
    ``m.peak`` the largest ``now`` (views and in-place results share their storage, counted once)."""

    def __init__(self):
        super().__init__()
        self.now = self.peak = 0
        self._alive: set[int] = set()

    def _freed(self, key: int, n: int) -> None:
        self.now -= n
        self._alive.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if not isinstance(t, torch.Tensor) or t.is_meta:
                continue
            st = t.untyped_storage()
            key, n = st.data_ptr(), st.nbytes()
            if n == 0 or key in self._alive:
                continue
            self._alive.add(key)
            self.now += n
            self.peak = max(self.peak, self.now)
            weakref.finalize(st, self._freed, key, n)
        return out


def live_peak(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), peak bytes of the tensors it created alive at once)`` (:class:`LiveBytes`)."""
    with LiveBytes() as m:
        out = fn(*args, **kwargs)
    return out, m.peak


@dataclass(frozen=True)
class MemoryEstimate:
    """An estimated calibration peak and its parts (bytes); ``phases``: observe, method, check."""

    base: int
    model: int
    data: int
    phases: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.base + math.ceil(ALLOCATOR_FACTOR * (self.model + self.data + max(self.phases.values(),
                                                                                        default=0)))

    def describe(self) -> str:
        """One line: the total and its parts (MiB)."""
        phase = max(self.phases, key=self.phases.get) if self.phases else "none"
        return (f"{_mib(self.total)} (process {_mib(self.base)} + {ALLOCATOR_FACTOR:g} × (parameters "
                f"{_mib(self.model)}, patches {_mib(self.data)}, "
                f"peak phase {phase} {_mib(self.phases.get(phase, 0))}))")


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:.0f} MiB"


def _tensor_bytes(obj) -> int:
    """Bytes of the tensors in a (nested) tuple/list/dict."""
    if torch.is_tensor(obj):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _recon_peak(net: nn.Module, result, x: torch.Tensor, n: int, cfg) -> int:
    """Reconstruction's peak beyond model and patches (module doc), from one patch ``x`` (1×C×H×W)."""
    from calib.reconstruct import (FISHER_BATCH, _call_log, _capture, _fisher_weights, _train_unit, _unit_loss,
                                   find_units, student_model)

    fq = student_model(net, result)
    with torch.no_grad():
        fwd = max(live_peak(fq, x)[1], live_peak(net, x)[1])
    units = find_units(net, x, [l.module for l in result.layers.values()])
    calls = Counter(_call_log(net, units, x))
    peak = 0
    if cfg.weighting == "fisher":  # before any unit's caches: the whole network's graph, FISHER_BATCH patches
        peak = CHURN_FACTOR * FISHER_BATCH * live_peak(_fisher_weights, net, units, calls, x, 1, cfg.seed)[1]
    for k, unit in enumerate(units):
        q_data = _capture(fq, unit, x, calls[unit], 1)
        fp_data = _capture(net, unit, x, calls[unit], 1)
        cap = _tensor_bytes([(a, o) for a, _, o in q_data])
        target = [(qa, kw, t) for (qa, kw, _), (_, _, t) in zip(q_data, fp_data)]
        mod = fq.get_submodule(unit)
        train = live_peak(_train_unit, mod, target, fp_data, replace(cfg, iters=1, batch_size=1), k, set(), None,
                          unit)[1]
        loss = live_peak(_unit_loss, mod, target, 1)[1]
        peak = max(peak, 3 * n * cap + CHURN_FACTOR * RECON_EVAL_BATCH * fwd,
                   2 * n * cap + CHURN_FACTOR * max(min(cfg.batch_size, n) * train, RECON_EVAL_BATCH * loss))
    return peak


def _finetune_peak(net: nn.Module, result, x: torch.Tensor, cfg) -> int:
    """One finetuning step at batch 1 (every quantizer parameter learning: the largest graph), × the batch."""
    from calib.blocks import find_blocks
    from calib.finetune import _param_groups, _Taps, step_loss
    from calib.quant.fakequant import build_fakequant_model

    fq = build_fakequant_model(net, result)
    for p in fq.parameters():
        p.requires_grad_(False)
    for _, params in _param_groups(fq, cfg.groups):
        for _, p in params:
            p.requires_grad_(True)
    blocks = find_blocks(net)
    taps_t, taps_q = _Taps(net, blocks), _Taps(fq, blocks)
    weights = torch.full((len(blocks),), 1.0 / max(len(blocks), 1), dtype=torch.float64)

    def step():
        step_loss(net, fq, taps_t, taps_q, x, weights, blocks, cfg)[0].backward()

    try:
        return math.ceil(CHURN_FACTOR * cfg.batch_size * live_peak(step)[1])
    finally:
        taps_t.remove()
        taps_q.remove()


def _check_peak(net: nn.Module, result, model_input) -> int:
    """The held-out check on one :data:`HOLDOUT_PATCH` crop: the integer engine or the float model."""
    from calib.export import export_artifact
    from intsim.footprint import untiled_peak_bytes

    crop = model_input(HOLDOUT_PATCH)
    art = export_artifact(net, result)
    with torch.no_grad():
        fp = live_peak(net, crop)[1]
    return math.ceil(CHURN_FACTOR * max(untiled_peak_bytes(art, crop.shape[-2], crop.shape[-1]), fp))


def estimate_calibration_memory(model, weights: str | None, scale: int, bits: str, method: str | None = None, *,
                                n_images: int | None = None, patch: int | None = None,
                                batch_size: int | None = None, allocation: str | None = None,
                                bp_init: str | None = None, per_channel: bool | None = None, finetune=None,
                                recon=None, seed: int = 0, holdout: bool = True, rgb_range: float | None = None,
                                in_channels: int | None = None) -> MemoryEstimate:
    """The estimated peak memory (bytes, :class:`MemoryEstimate`) of :func:`calib.cli_calibrate.calibrate_run`
    called with the same arguments (settings left None: the method's recipe, :mod:`calib.recipe`).

    Builds the float model (``weights``: the checkpoint calibrate would load) and runs it on one random
    calibration-size patch: seconds, whatever N. Raises ``ValueError`` where calibrate would refuse the request.
    """
    from calib.calibrate import LayerPolicy
    from calib.cli_calibrate import _checked_request, _finetune_config, to_model_inputs
    from calib.graph import capture
    from calib.methods import METHOD_TABLE, calibrate_method
    from calib.model_build import build_entry

    bw, ba, rec = _checked_request(model, int(scale), bits, "estimate", "split", None, None, method,
                                   n_images=n_images, patch=patch, batch_size=batch_size, bp_init=bp_init,
                                   per_channel=per_channel, recon=recon, seed=int(seed), stress=None)
    spec = METHOD_TABLE[rec.method]
    net, entry, rr, in_ch = build_entry(model, int(scale), weights, int(seed), rgb_range=rgb_range,
                                        in_channels=in_channels)
    graph = capture(net, rgb_range=rr, in_channels=in_ch)
    gen = torch.Generator().manual_seed(int(seed))

    def model_input(side: int) -> torch.Tensor:  # a random LR patch as the network takes it (1×C×H×W)
        img = torch.rand(3, side, side, generator=gen) * float(rr)
        return to_model_inputs(entry if entry is not None else model, int(scale), [img], rr)[0][None]

    x = model_input(rec.patch)
    ft = _finetune_config(finetune, int(seed), rec.batch_size)
    with torch.no_grad():
        # recon's initial quantizers are dual_region's (calib.methods.METHOD_TABLE); finetuning runs 0 epochs here;
        # bp at the percentile: the search (on at most 32768 samples) needs real data, not one random patch
        result, observe = live_peak(
            calibrate_method, net, [x[0]], bw, ba, "dual_region" if spec.finetune == "recon" else rec.method,
            LayerPolicy(per_channel_weights=rec.per_channel), allocation=allocation, bp_init="percentile",
            batch_size=1, graph=graph, finetune_config=replace(ft, epochs=0), wide_range_bits=rec.wide_range_bits,
            wide_weight_bits=rec.wide_weight_bits)
    phases = {"observe": math.ceil(CHURN_FACTOR * rec.batch_size * observe), "method": 0,
              "check": _check_peak(net, result, model_input) if holdout else 0}
    if spec.finetune == "recon":
        phases["method"] = math.ceil(_recon_peak(net, result, x, rec.n_images, rec.recon))
    elif spec.finetune is not None:
        phases["method"] = _finetune_peak(net, result, x, ft.for_method(spec.finetune))
    batches = math.ceil(rec.n_images / rec.batch_size)
    samples = 2 * len(result.layers) * batches * SAMPLES_PER_BATCH * 4  # float32, a list then concatenated
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    return MemoryEstimate(BASE_BYTES, PARAM_COPIES * params,
                          PATCH_COPIES * rec.n_images * x.numel() * x.element_size() + samples, phases)
