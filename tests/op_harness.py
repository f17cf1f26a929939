"""One-op artifacts run by both executors: golden (float64 real forms) and intsim (integer forms).

Used by the bit-exact golden == intsim tests of the ops added by issue 21
(tests/test_new_ops_exact.py): each op is fed real-size stream tensors and run in
every rounding mode (§2) and overflow policy (§4); outputs, events and, under
``error``, the refusal must agree exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golden.executor import execute
from intsim import op_dispatch
from intsim.artifact import Artifact, Numerics, OpSpec, TensorSpec
from intsim import validate as V
from intsim.rounding import RoundingMode

MODES = RoundingMode.names()  # every mode of §2, a new one included
POLICIES = ("error", "saturate", "wrap")


@dataclass
class Outcome:
    """What one executor produced: the output (None when it refused) and its events."""

    out: np.ndarray | None
    events: dict | None
    overflow: bool = False


def one_op(op: str, C_in: int, f_in: int, f_out: int, C_out: int | None = None, attrs=None, arrays=None,
           **numerics) -> Artifact:
    """A validated artifact ``x`` (stream, frac f_in) → ``op`` → ``y`` (stream, frac f_out)."""
    roles, arrs = {}, {}
    for role, a in (arrays or {}).items():
        roles[role] = f"op.{role}"
        arrs[f"op.{role}"] = np.asarray(a)
    tensors = {"x": TensorSpec("x", "stream", C_in, frac=f_in),
               "y": TensorSpec("y", "stream", C_out or C_in, frac=f_out)}
    art = Artifact(model={"name": "one_op"}, numerics=Numerics(**numerics), inputs=("x",), outputs=("y",),
                   tensors=tensors, ops=[OpSpec("op", op, ("x",), ("y",), dict(attrs or {}), roles)], arrays=arrs)
    validate_one_op(art)
    return art


def validate_one_op(art: Artifact) -> None:
    """The loader's checks that apply to a stream-input fragment (validate_artifact also wants an image
    input): numerics, tensors, op schema, per-op semantics, exactness envelope."""
    v = V._V(art, "artifact")
    V._check_numerics(v)
    V._check_arrays(v)
    V._check_tensors(v)
    V._check_ops_schema(v)
    for op in art.ops:
        V._check_op(v, op)
    V._check_envelope(v)


def run_intsim(art: Artifact, X: np.ndarray) -> Outcome:
    op = art.ops[0]
    try:
        outs, ev = op_dispatch.OPS[op.op](art, op, [X])
    except OverflowError:
        return Outcome(None, None, True)
    return Outcome(np.asarray(outs[0], dtype=np.int64), {k: int(ev[k]) for k in
                                                         ("acc_overflow", "stream_overflow", "saturations")})


def run_golden(art: Artifact, X: np.ndarray) -> Outcome:
    try:
        res = execute(art, {"x": X})
    except OverflowError:
        return Outcome(None, None, True)
    ev = res.events["op"]
    return Outcome(np.asarray(res.tensors["y"], dtype=np.int64),
                   {k: int(ev[k]) for k in ("acc_overflow", "stream_overflow", "saturations")})


def assert_same(art: Artifact, X: np.ndarray) -> Outcome:
    """Run both executors on ``X``; assert identical outputs, events and refusals; return intsim's outcome."""
    a, b = run_intsim(art, X), run_golden(art, X)
    assert a.overflow == b.overflow, (art.numerics, a.overflow, b.overflow)
    if not a.overflow:
        assert a.out.shape == b.out.shape
        bad = np.argwhere(a.out != b.out)
        assert bad.size == 0, f"{art.numerics}: first difference at {bad[0].tolist()}: " \
                              f"intsim {a.out[tuple(bad[0])]}, golden {b.out[tuple(bad[0])]}"
        assert a.events == b.events, (art.numerics, a.events, b.events)
    return a


def stream_tensor(rng: np.random.Generator, shape, stream_bits: int, scale_bits: int | None = None) -> np.ndarray:
    """Random stream integers: a smooth image-like field plus noise, spanning about ±2^scale_bits
    (default: the whole stream range, both ends included)."""
    H, W, C = shape
    top = (1 << (stream_bits - 1)) - 1
    amp = top if scale_bits is None else min(top, (1 << scale_bits) - 1)
    yy, xx = np.mgrid[0:H, 0:W]
    phase = rng.uniform(0, 2 * np.pi, C)
    smooth = np.sin(yy[:, :, None] * 0.11 + phase) * np.cos(xx[:, :, None] * 0.07 - phase)
    x = np.round(smooth * amp * 0.8 + rng.integers(-amp // 5, amp // 5 + 1, (H, W, C))).astype(np.int64)
    x = np.clip(x, -amp - 1 if scale_bits is None else -amp, amp)
    x.flat[: 4] = [-amp - (1 if scale_bits is None else 0), amp, 0, 1]
    return x


def assert_network_bit_exact(art: Artifact, img: np.ndarray):
    """Whole artifact on ``img`` (uint8 H×W×C) through both executors: every tensor golden keeps and every
    op's event counters equal intsim's. Returns intsim's :class:`intsim.run_io.RunResult`."""
    from golden.executor import run_golden as golden_network
    from intsim.engine import run

    res, gold = run(art, img), golden_network(art, img)
    for t, ref in gold.tensors.items():
        assert np.array_equal(np.asarray(res.tensors[t], np.int64), np.asarray(ref, np.int64)), t
    for name, ev in gold.events.items():
        assert {k: res.counters["ops"][name][k] for k in ev} == ev, name
    return res
