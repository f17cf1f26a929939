"""Verify the integer engine against stored golden tensors (docs/arithmetic.md).

``verify(art, golden)`` re-runs :func:`intsim.engine.run` on every recorded
input, compares every stored tensor (a golden may keep all tensors, or a
selection that includes every graph output) in graph order for exact equality and the
per-op event counters (``acc_overflow``, ``stream_overflow``, ``saturations``),
and reports the first mismatch in graph order (an op's tensors, then its
events). numpy only; torch is never imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intsim.golden_dir import EVENT_KEYS, GoldenError, GoldenSet
from intsim.golden_selection import kept_tensors


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`.

    ``mismatches``: differing elements over all compared tensors (a tensor
    whose shape differs, or that the engine did not produce, counts all of its
    golden elements); ``event_mismatches``: differing event counters;
    ``first``: the first mismatch in graph order, as
    ``{kind: "tensor", input, source, op, tensor, index, expected, got}`` or
    ``{kind: "event", input, source, op, counter, expected, got}``.
    """

    ok: bool = True
    mismatches: int = 0
    event_mismatches: int = 0
    compared_tensors: int = 0
    mismatched_tensors: int = 0
    compared_events: int = 0
    inputs: int = 0
    first: dict | None = None
    artifact_sha256: str | None = None
    golden_path: str | None = None
    per_tensor: list[dict] = field(default_factory=list)  # every tensor that mismatched

    def to_json(self) -> dict:
        d = {
            "ok": self.ok,
            "mismatches": self.mismatches,
            "event_mismatches": self.event_mismatches,
            "compared_tensors": self.compared_tensors,
            "mismatched_tensors": self.mismatched_tensors,
            "compared_events": self.compared_events,
            "inputs": self.inputs,
            "artifact_sha256": self.artifact_sha256,
            "golden": self.golden_path,
            "first": None if self.first is None else dict(self.first),
            "mismatched": [dict(t) for t in self.per_tensor],
        }
        if d["first"] is not None and d["first"].get("index") is not None:
            d["first"]["index"] = list(d["first"]["index"])
        for t in d["mismatched"]:
            if t.get("index") is not None:
                t["index"] = list(t["index"])
        return d

    def format(self, verbose: bool = False) -> str:
        """One human line: ``OK …`` or the first mismatch (``verbose`` adds a summary line)."""
        if self.ok:
            return (f"OK: {self.inputs} input(s), {self.compared_tensors} tensors and {self.compared_events} "
                    f"event counters identical")
        f = self.first or {}
        who = f"input {f.get('input')} ({f.get('source')}) op {f.get('op') or '(graph input)'}"
        if f.get("kind") == "event":
            line = f"MISMATCH {who} counter {f.get('counter')}: expected {f.get('expected')}, got {f.get('got')}"
        elif f.get("index") is None:
            line = f"MISMATCH {who} tensor {f.get('tensor')}: {f.get('reason')}"
        else:
            line = (f"MISMATCH {who} tensor {f.get('tensor')} index {tuple(f['index'])}: "
                    f"expected {f.get('expected')}, got {f.get('got')}")
        if verbose:
            line += (f"\n{self.mismatches} differing element(s) in {self.mismatched_tensors} of "
                     f"{self.compared_tensors} tensor(s); {self.event_mismatches} of {self.compared_events} "
                     f"event counter(s) differ")
        return line

    def __str__(self) -> str:
        return self.format()


def _graph_order(art) -> list[tuple[str, list[str]]]:
    """[(op name, or "" for the graph inputs, tensors it produces)] in graph order."""
    order: list[tuple[str, list[str]]] = [("", list(art.inputs))]
    for op in art.ops:
        order.append((op.name, list(op.outputs)))
    return order


def _compare(expected: np.ndarray, got: np.ndarray | None) -> tuple[int, dict | None]:
    """(number of differing elements, first difference) between a golden and an engine tensor."""
    if got is None:
        return int(expected.size), {"index": None, "reason": "not produced by the engine",
                                    "expected": list(expected.shape), "got": None}
    got = np.asarray(got)
    if got.shape != expected.shape:
        return int(max(expected.size, 1)), {"index": None,
                                            "reason": f"shape {list(got.shape)}, golden has {list(expected.shape)}",
                                            "expected": list(expected.shape), "got": list(got.shape)}
    if got.dtype.kind not in "iub":
        return int(expected.size), {"index": None, "reason": f"engine dtype {got.dtype} is not an integer dtype",
                                    "expected": str(expected.dtype), "got": str(got.dtype)}
    diff = expected.astype(np.int64) != got.astype(np.int64)
    n = int(np.count_nonzero(diff))
    if n == 0:
        return 0, None
    flat = int(np.flatnonzero(diff.reshape(-1))[0])
    idx = tuple(int(i) for i in np.unravel_index(flat, expected.shape))
    return n, {"index": idx, "expected": int(expected[idx]), "got": int(got[idx])}


def _check_complete(art, golden: GoldenSet) -> None:
    """A golden that compares nothing must never pass: it needs at least one input, and for every input
    every tensor its recorded selection implies (``tensors_kept``, :mod:`intsim.golden_selection`; all
    tensors when it records none, always the graph outputs) and every op's event counters."""
    if not golden.inputs:
        raise GoldenError(f"{golden.path}: the golden has no inputs; there is nothing to compare")
    spec = golden.manifest.get("tensors_kept", ["all"])  # no record: written before selections, keeps all
    if not (isinstance(spec, list) and all(isinstance(s, str) for s in spec)):
        raise GoldenError(f"{golden.path}: manifest 'tensors_kept' must be a list of names, got {type(spec).__name__}")
    try:
        need = kept_tensors(art, spec)
    except ValueError as e:
        raise GoldenError(f"{golden.path}: manifest 'tensors_kept': {e}") from None
    order = [t for t in art.tensors if t in need]
    for gin in golden.inputs:
        stored = set(golden.tensor_names(gin.index))
        missing = [t for t in order if t not in stored]
        if missing:
            what = "graph output tensor" if missing[0] in art.outputs else "tensor"
            raise GoldenError(f"{golden.path}: input {gin.index} lacks {what} {missing[0]!r} ({len(missing)} "
                              f"missing) although the golden keeps {' '.join(spec)[:80]!r}; a golden must hold "
                              "every tensor its selection names and every graph output")
        ev = golden.events_for(gin.index)
        no_ev = [op.name for op in art.ops if op.name not in ev]
        if no_ev:
            raise GoldenError(f"{golden.path}: input {gin.index} has no event counters for {len(no_ev)} op(s), "
                              f"first {no_ev[0]!r}; a golden must hold every op's events")


def verify(art, golden: GoldenSet, *, max_listed: int = 100) -> VerifyReport:
    """Re-run the engine on every golden input and compare tensors and events exactly.

    Raises :class:`~intsim.golden_dir.GoldenError` if the golden set was made
    from another artifact, lists tensors or ops the artifact does not have, or
    is incomplete (no input, or an input without every graph output tensor and every
    op's events): a regression job must never pass having compared nothing. Stored
    intermediate tensors are compared as the engine produces them (bounded memory).
    """
    from intsim.engine import run

    if art.sha256 is None:
        raise GoldenError("the artifact has no file sha256 (load it with load_artifact) to check the golden against")
    if golden.artifact_sha256 != art.sha256:
        raise GoldenError(
            f"golden was made from another artifact: {golden.path} records artifact sha256 "
            f"{golden.artifact_sha256[:16]}…, this artifact is {art.sha256[:16]}…"
        )
    known_tensors = set(art.tensors)
    known_ops = {op.name for op in art.ops}
    for e in golden.entries:
        if e.tensor not in known_tensors:
            raise GoldenError(f"{golden.path}: golden tensor {e.tensor!r} (input {e.input}) is not in the artifact graph")
    for k, ops in golden.events.items():
        for name in ops:
            if name not in known_ops:
                raise GoldenError(f"{golden.path}: golden events name op {name!r} (input {k}), not in the artifact")

    _check_complete(art, golden)
    rep = VerifyReport(artifact_sha256=art.sha256, golden_path=str(golden.path), inputs=len(golden.inputs))
    order = _graph_order(art)
    for gin in golden.inputs:
        k, source = gin.index, gin.source
        image = golden.input_image(k)
        stored = set(golden.tensor_names(k))
        compared: dict[str, tuple[int, dict | None]] = {}

        def observe(t: str, got: np.ndarray, k=k, stored=stored, compared=compared) -> None:
            # each stored tensor is compared as the engine produces it: nothing is kept beyond the engine's
            # own working set, so a golden of a large image verifies in bounded memory
            if t in stored and t not in compared:
                compared[t] = _compare(golden.tensor(k, t), got)

        result = run(art, image, keep_tensors=False, observe=observe)
        gev = golden.events_for(k)
        eops = result.counters.get("ops", {})
        for op_name, outs in order:
            for t in outs:
                if t not in stored:
                    continue
                n, first = compared[t] if t in compared else _compare(golden.tensor(k, t), None)
                rep.compared_tensors += 1
                if n:
                    rep.mismatches += n
                    rep.mismatched_tensors += 1
                    entry = {"kind": "tensor", "input": k, "source": source, "op": op_name, "tensor": t,
                             "count": n, **first}
                    if len(rep.per_tensor) < max_listed:
                        rep.per_tensor.append(entry)
                    if rep.first is None:
                        rep.first = {key: v for key, v in entry.items() if key != "count"}
            if not op_name or op_name not in gev:
                continue
            counters = eops.get(op_name, {})
            for key in EVENT_KEYS:
                rep.compared_events += 1
                exp_v, got_v = int(gev[op_name][key]), int(counters.get(key, 0))
                if exp_v != got_v:
                    rep.event_mismatches += 1
                    if rep.first is None:
                        rep.first = {"kind": "event", "input": k, "source": source, "op": op_name, "counter": key,
                                     "expected": exp_v, "got": got_v}
    rep.ok = rep.mismatches == 0 and rep.event_mismatches == 0
    return rep
