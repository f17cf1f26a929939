"""What the commands check about their input images before running anything (policies in
intsim/images.py and docs/robustness.md): sizes the graph cannot run on are refused, images
smaller than the receptive field get a notice, and memory is budgeted (``run`` and ``cost --images``
tile bit-exactly above the budget; ``golden`` runs in bands that fit it and refuses only what 1-row
bands exceed; ``verify`` compares tensors as the engine produces them and refuses, with the
estimate, an input whose untiled run exceeds it). Sizes in bytes unless named MiB."""
from __future__ import annotations

import logging

from intsim.footprint import (
    default_budget_bytes,
    golden_bytes,
    mib,
    receptive_field,
    size_problem,
    tiled_peak_bytes,
    untiled_peak_bytes,
    verify_peak_bytes,
)
from intsim.images import ImageError

log = logging.getLogger(__name__)


def _note(notices: list[str] | None, text: str) -> None:
    """To the caller's list (the command prints it only once it succeeded, so a refusal stays one
    line), else to the ``intsim.input_checks`` logger."""
    if notices is None:
        log.info(text)
    else:
        notices.append(text)


def memory_budget(max_memory_mb: float | None) -> int:
    """Bytes a command may use: ``--max-memory MB``, else half of the available memory."""
    return int(max_memory_mb * (1 << 20)) if max_memory_mb is not None else default_budget_bytes()


def check_sizes(art, images, notices: list[str] | None = None) -> None:
    """Refuse an image the graph cannot run on; note one smaller than the receptive field
    (policy: intsim/images.py; tests: tests/robustness). Notes go to ``notices``, else the logger."""
    rf = receptive_field(art)
    for im in images:
        h, w = im.pixels.shape[:2]
        problem = size_problem(art, h, w)
        if problem:
            raise ImageError(f"{im.path}: {problem}")
        if rf.rows is not None and (h < rf.rows or w < rf.cols):
            _note(notices, f"{im.path}: the {w}×{h} image is smaller than the network's receptive field "
                           f"({rf.cols}×{rf.rows}): every output pixel depends on zero padding")


def tile_plan(art, im, budget: int, notices: list[str] | None = None, held: int = 0) -> int | None:
    """``None`` (untiled) when the run fits ``budget`` bytes (less ``held``: the outputs of earlier
    images, kept until all ran), else band rows for ``run_tiled``; refuses with the estimate when
    even bands of one row do not fit. The note that it tiles goes to ``notices``, else the logger."""
    h, w = im.pixels.shape[:2]
    budget -= held
    peak = untiled_peak_bytes(art, h, w)
    if peak <= budget:
        return None
    for rows in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        if rows < h and tiled_peak_bytes(art, h, w, rows) <= budget:
            _note(notices, f"{im.path}: an untiled run needs about {mib(peak)}, above the memory budget of "
                           f"{mib(budget)}; running in bands of {rows} rows (bit-exact: same outputs and counters)")
            return rows
    after = f" left after the {mib(held)} of outputs held for earlier inputs" if held else ""
    raise ImageError(f"{im.path}: a {w}×{h} image needs about {mib(peak)} untiled and "
                     f"{mib(tiled_peak_bytes(art, h, w, 1))} in bands of 1 row (the output and the tensors tiling "
                     f"holds whole), above the memory budget of {mib(max(budget, 0))}{after} (--max-memory MB)")


def check_golden_memory(art, images, budget: int) -> int:
    """Golden runs one input at a time in bands of rows (golden.bands): return the most rows per band
    that keep every input's estimate within ``budget`` bytes; refuse, with the estimate, an input that
    does not fit even in bands of one row (the tensors the band plan holds whole)."""
    best = None
    for im in images:
        h, w = im.pixels.shape[:2]
        rows = next((r for r in (1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)
                     if golden_bytes(art, h, w, min(r, h)) <= budget), None)
        if rows is None:
            raise ImageError(f"{im.path}: golden on this {w}×{h} image needs about "
                             f"{mib(golden_bytes(art, h, w, 1))} even in bands of 1 row (the tensors the band "
                             f"plan holds whole), above the memory budget of {mib(budget)} (--max-memory MB)")
        best = rows if best is None else min(best, rows)
    return best or 1


def check_verify_memory(art, golden, budget: int) -> None:
    """``verify`` runs the engine untiled (it compares each tensor as it is produced): judge each golden
    input from its manifest shape, before any array is read, and refuse (``GoldenError`` naming the input
    file, with the estimate) one the graph cannot run on or whose run would exceed ``budget`` bytes."""
    from intsim.golden_dir import GoldenError

    channels = art.tensors[art.inputs[0]].channels
    for gin in golden.inputs:
        where = golden.path / gin.file
        if len(gin.shape) != 3 or gin.shape[2] != channels:
            raise GoldenError(f"{where}: input {gin.index} has shape {list(gin.shape)}, this artifact takes "
                              f"H×W×{channels} images")
        h, w = gin.shape[:2]
        problem = size_problem(art, h, w)
        if problem:
            raise GoldenError(f"{where}: input {gin.index}: {problem}")
        need = verify_peak_bytes(art, h, w)
        if need > budget:
            raise GoldenError(f"{where}: verifying input {gin.index} ({w}×{h}) needs "
                              f"about {mib(need)}, above the memory budget of {mib(budget)} (--max-memory MB); "
                              "verify does not tile: use a golden made from smaller inputs")
