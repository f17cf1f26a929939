"""Run an artifact on one image with integer arithmetic only (docs/arithmetic.md).

:func:`run` only schedules: it walks the ops in their stored (topological) order, dispatches
each through :data:`intsim.op_dispatch.OPS` (one adapter per op type), runs the groups
:func:`intsim.fusion.fusion_plan` found together when no intermediates are kept (both resolved
once per artifact and input shape, :mod:`intsim.run_plan`), and collects
the event counters (§7) per op and in total (:mod:`intsim.run_io`).

The artifact is assumed validated (``intsim.validate`` on load); the engine
still checks what it needs to run safely (the input image, codes in range,
shifts in [0, 62], shapes) and raises ``ValueError`` with a clear message.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from intsim import allocator, fusion
from intsim.artifact import Artifact
from intsim.run_io import TOTAL_KEYS, RunResult, check_image, counter_entry
from intsim.run_plan import run_plan

__all__ = ["RunResult", "run", "run_banded", "run_tiled"]


def run(art: Artifact, image: np.ndarray, keep_tensors: bool = True,
        op_seconds: dict[str, float] | None = None,
        observe: Callable[[str, np.ndarray], None] | None = None) -> RunResult:
    """Execute ``art`` on one uint8 H×W×C image (C = the input tensor's channels).

    Returns a :class:`RunResult`. Raises ``ValueError`` for an unusable image or
    a malformed op, :class:`~intsim.overflow.EngineOverflowError` under the
    ``error`` overflow policy. ``op_seconds``: if given, each op's wall time (s) is
    added to it under the op's name (a fused group's time is charged to its producer).
    ``observe``: if given, called as ``observe(name, array)`` with every tensor of the graph as it is
    produced (graph inputs first); no op is fused then, so every tensor exists (``verify`` compares a
    golden this way without keeping all tensors: ``keep_tensors=False, observe=…``).
    """
    in_name = check_image(art, image)
    allocator.tune_allocator_if_requested()  # process-wide: only where INTSIM_MALLOC=keep asks for it
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[:, :, None]
    env: dict[str, np.ndarray] = {in_name: np.ascontiguousarray(img)}
    if observe is not None:
        observe(in_name, env[in_name])

    # The schedule (adapters, fused groups, releases) is resolved once per artifact, input shape
    # and mode and kept on the artifact (intsim.run_plan); this loop only calls.
    plan = run_plan(art, env[in_name].shape, fuse=not keep_tensors and observe is None)
    op_counters: dict[str, dict] = {}
    totals = {"macs": 0, **{k: 0 for k in TOTAL_KEYS}}
    fused: dict[str, tuple[list, dict]] = {}  # op name → its outputs and events, computed with its producer
    staged: dict[str, fusion.StagedConcat | None] = {}  # staged concat → its inputs' codes so far (run_plan)
    timed = op_seconds is not None
    t0 = 0.0
    for step in plan.steps:
        op = step.op
        if timed:
            t0 = time.perf_counter()
        if op.name in fused:
            results, events = fused.pop(op.name)
        elif staged.get(op.name) is not None:
            results, events, extra = fusion.finish_staged(op, step.group, staged.pop(op.name))
            fused.update(extra)
        else:
            try:
                xs = [env[t] for t in op.inputs]
            except KeyError:
                missing = [t for t in op.inputs if t not in env]
                raise ValueError(f"op {op.name!r}: input tensor {missing[0]!r} not computed yet (ops out of order?)") from None
            group = fusion.run_fused(art, op, step.group, xs) if step.group is not None else None
            if group is not None:
                results, events, extra = group  # a tensor never materialized: its counters carry its shape
                fused.update(extra)
            else:
                results, events = step.adapter(art, op, xs)
        if len(results) != len(op.outputs):
            raise ValueError(f"op {op.name!r}: produced {len(results)} outputs, graph declares {len(op.outputs)}")
        for t, v, channels, dtype in zip(op.outputs, results, step.out_channels, step.store):
            if v.shape[2] != channels:
                raise ValueError(f"op {op.name!r}: output {t!r} has {v.shape[2]} channels, graph declares {channels}")
            if not isinstance(v, fusion.Shape):
                if dtype is not None and v.dtype != dtype:
                    v = v.astype(dtype)  # a compact stream until its last reader, int64 otherwise (run_plan)
                env[t] = v
                if observe is not None:
                    observe(t, v)
        # shapes of arrays and of Shape stand-ins (made from array shapes) are tuples of Python ints
        op_counters[op.name] = counter_entry(op.op, events, [list(r.shape) for r in results], totals)
        for cop, fus, k in step.stage:  # staged concats exist only when fused (intsim.run_plan)
            fusion.stage_part(art, cop, fus, k, env[cop.inputs[k]], staged)
        if timed:
            op_seconds[op.name] = op_seconds.get(op.name, 0.0) + time.perf_counter() - t0
        if not keep_tensors:
            for t in step.release:
                env.pop(t, None)  # a fused op's output was never stored
            for t, cname in step.early:
                if staged.get(cname) is not None:
                    env.pop(t, None)
        # The loop's own names would keep this op's inputs and outputs alive into the next op (a fused
        # op's step rebinds none of them): a released tensor is freed here, not one or more ops later.
        xs = group = results = extra = v = None

    missing = [t for t in art.outputs if t not in env]
    if missing:
        raise ValueError(f"graph output {missing[0]!r} was never computed")
    tensors = env if keep_tensors else {t: env[t] for t in art.outputs}
    return RunResult(tensors=dict(tensors), counters={"ops": op_counters, "totals": totals})


def run_tiled(art: Artifact, image: np.ndarray, tile_rows: int = 32) -> RunResult:
    """:func:`run` in horizontal bands with bounded memory: the same outputs and counters as
    ``run(art, image, keep_tensors=False)``, bit for bit (see :mod:`intsim.tiling`)."""
    from intsim.tiling import run_tiled as _run_tiled  # tiling imports no engine module: no cycle

    return _run_tiled(art, image, tile_rows)


def run_banded(art: Artifact, image: np.ndarray, band_rows: int | None) -> RunResult:
    """What ``intsim run`` executes for one image under its memory plan
    (:func:`intsim.input_checks.tile_plan`): :func:`run` keeping only the graph outputs when
    ``band_rows`` is None, else :func:`run_tiled` in bands of ``band_rows`` rows (bit-exact: the same
    outputs and counters)."""
    if band_rows is None:
        return run(art, image, keep_tensors=False)
    return run_tiled(art, image, band_rows)
