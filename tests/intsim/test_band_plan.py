"""The band schedule (:func:`intsim.band_plan.band_steps`, :func:`~intsim.band_plan.pass_streams`) shared by ``intsim run`` and golden.

On a toy pass with hand-written row maps (a 3-row halo, a stride-2 reduction, a 2×
upsampling, a two-input op and a global input): every op's steps cover its output rows
exactly once and in order, no step reads input rows not yet produced, and an
inconsistent row map raises :class:`NoProgress` instead of looping.
"""
from __future__ import annotations

import pytest

from intsim.artifact import OpSpec
from intsim.band_plan import NoProgress, band_steps, pass_streams


class _Rows:
    """Output row i reads input rows [lo[i], hi[i]); deliberately a plain loop (not the executors' prefix max)."""

    def __init__(self, lo: list[int], hi: list[int]):
        self.lo, self.hi = lo, hi

    def producible(self, avail: int) -> int:
        n = 0
        while n < len(self.hi) and max(self.hi[:n + 1]) <= avail:
            n += 1
        return n


class _Stuck:
    def producible(self, avail: int) -> int:
        return 0


H = 10
OPS = [
    OpSpec("conv", "conv2d", ("x",), ("y",)),  # 3×3, padding 1: rows [i-1, i+2)
    OpSpec("down", "conv2d", ("y",), ("z",)),  # stride 2, 3×3: rows [2i-1, 2i+2)
    OpSpec("up", "upsample_nearest", ("z",), ("u",)),  # 2×: row i//2
    OpSpec("add", "add", ("y", "u", "g"), ("s",)),  # g: a 1×1 global tensor
]
HW = {"x": (H, 4), "y": (H, 4), "z": (H // 2, 2), "u": (H, 4), "s": (H, 4), "g": (1, 1)}
IS_GLOBAL = {t: t == "g" for t in HW}
ROWS = {
    ("conv", 0): _Rows([max(0, i - 1) for i in range(H)], [min(H, i + 2) for i in range(H)]),
    ("down", 0): _Rows([max(0, 2 * i - 1) for i in range(H // 2)], [min(H, 2 * i + 2) for i in range(H // 2)]),
    ("up", 0): _Rows([i // 2 for i in range(H)], [i // 2 + 1 for i in range(H)]),
    ("add", 0): _Rows(list(range(H)), [i + 1 for i in range(H)]),
    ("add", 1): _Rows(list(range(H)), [i + 1 for i in range(H)]),
}


@pytest.mark.parametrize("band_rows", [1, 2, 3, 4, 7, 100])
def test_steps_cover_rows_once_in_order_within_producible(band_rows):
    produced = {"x": H}  # the source is materialized: all its rows exist
    rows_of = {op.name: [] for op in OPS}
    for op, a, n, op_done in band_steps(OPS, HW, ["x"], ROWS, IS_GLOBAL, band_rows):
        assert a == (rows_of[op.name][-1][1] if rows_of[op.name] else 0)  # contiguous, in order
        assert n > a
        assert op_done[op.name] == n  # the yielded step is already recorded
        for j, t in enumerate(op.inputs):
            if not IS_GLOBAL[t]:
                assert max(ROWS[(op.name, j)].hi[:n]) <= produced.get(t, 0), (op.name, t, a, n)
        rows_of[op.name].append((a, n))
        for t in op.outputs:
            produced[t] = n
    for op in OPS:
        covered = [r for a, n in rows_of[op.name] for r in range(a, n)]
        assert covered == list(range(HW[op.outputs[0]][0])), op.name


def test_one_band_runs_each_op_once_in_graph_order():
    steps = [(op.name, a, n) for op, a, n, _ in band_steps(OPS, HW, ["x"], ROWS, IS_GLOBAL, 100)]
    assert steps == [("conv", 0, H), ("down", 0, H // 2), ("up", 0, H), ("add", 0, H)]


def test_small_bands_stream():
    """With 2-row bands the first op starts before the source's last band (it does not run whole)."""
    steps = [(op.name, a, n) for op, a, n, _ in band_steps(OPS, HW, ["x"], ROWS, IS_GLOBAL, 2)]
    assert steps[0] == ("conv", 0, 1)  # source rows [0, 2): the halo holds row 1 back
    assert max(n - a for _, a, n in steps) <= 2


def test_inconsistent_row_map_raises():
    rows = {**ROWS, ("down", 0): _Stuck()}
    with pytest.raises(NoProgress, match="no progress"):
        list(band_steps(OPS, HW, ["x"], rows, IS_GLOBAL, 3))


def test_pass_streams():
    consumers, sources = pass_streams(OPS, IS_GLOBAL)
    assert sources == ["x"]  # g is global; y, z, u are produced in the pass
    assert {t: [(op.name, j) for op, j in c] for t, c in consumers.items()} == {
        "x": [("conv", 0)], "y": [("down", 0), ("add", 0)], "z": [("up", 0)], "u": [("add", 1)]}
