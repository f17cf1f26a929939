"""The public Python API of the engine: ``intsim.run`` and ``intsim.verify`` (``intsim.load_artifact`` is
:func:`intsim.artifact.load_artifact`).

``import intsim`` exposes them on first use (intsim/__init__.py). They are ``intsim run`` for one image and
``intsim verify`` for one golden: the same image policy (:mod:`intsim.images`), size checks and memory
budget (:mod:`intsim.input_checks`, bit-exact bands above it) and the same executor
(:func:`intsim.engine.run_banded`); ``intsim verify`` calls :func:`verify` itself. numpy only; torch is
never imported.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from intsim.artifact import Artifact, load_artifact
from intsim.golden_dir import GoldenSet, read_golden_dir
from intsim.images import LoadedImage, read_image
from intsim.input_checks import check_sizes, check_verify_memory, memory_budget, tile_plan
from intsim.run_io import check_image
from intsim.verification import VerifyReport
from intsim.verification import verify as verify_golden

__all__ = ["run", "verify"]

log = logging.getLogger(__name__)

#: how an image handed over as an array is named in messages (a file is named by its path)
ARRAY_NAME = "the image array"


def _artifact(artifact: Artifact | str | os.PathLike) -> Artifact:
    if isinstance(artifact, Artifact):
        return artifact
    if isinstance(artifact, (str, os.PathLike)):
        return load_artifact(artifact)
    raise TypeError(f"artifact must be an intsim Artifact or the path of a .intsim file, got {type(artifact).__name__}")


def _image(art: Artifact, image, max_bytes: int) -> LoadedImage:
    """``image`` as :class:`~intsim.images.LoadedImage`: a file is read under the mode policy of
    :mod:`intsim.images` (what ``intsim run`` does), an array is checked as the engine takes it."""
    if isinstance(image, (str, os.PathLike)):
        im = read_image(image, art.tensors[art.inputs[0]].channels, max_bytes)
        if im.notice:
            log.info(im.notice)
        return im
    pixels = np.asarray(image)
    check_image(art, pixels)
    return LoadedImage(ARRAY_NAME, "image", pixels[:, :, None] if pixels.ndim == 2 else pixels)


def run(artifact: Artifact | str | os.PathLike, image, *, max_memory_mb: float | None = None) -> np.ndarray:
    """Run the integer engine on one low-resolution image and return the super-resolved image.

    ``artifact``: an :class:`~intsim.artifact.Artifact` or the path of a ``.intsim`` file.
    ``image``: a uint8 array H×W×C of pixel codes 0..255 (C = the artifact's input channels: 3 for
    RGB, 1 for Y, where H×W is taken too), or the path of an image file (read as ``intsim run`` reads
    it: grayscale/palette/alpha converted to RGB for an RGB artifact, 16-bit and float images refused).
    ``max_memory_mb``: the memory budget in MiB (default: half the available memory); an image whose
    untiled run exceeds it runs in bands (bit-exact: the same output), one that does not fit even in
    bands of one row is refused.

    Returns the artifact's (first) graph output: a uint8 array (H·scale)×(W·scale)×C of pixel codes
    0..255, exactly the pixels of the PNG ``intsim run`` writes. The per-op event counters are in
    :func:`intsim.engine.run`'s :class:`~intsim.engine.RunResult`.

    Raises :class:`ValueError` (:class:`~intsim.images.ImageError`, :class:`~intsim.artifact.ArtifactError`)
    with one line for an unusable artifact or image.
    """
    from intsim.engine import run_banded  # numba: compiled kernels load on first use only

    art = _artifact(artifact)
    budget = memory_budget(max_memory_mb)
    im = _image(art, image, budget)
    check_sizes(art, [im])
    result = run_banded(art, im.pixels, tile_plan(art, im, budget))
    return result.tensors[art.outputs[0]]


def verify(artifact: Artifact | str | os.PathLike, golden: GoldenSet | str | os.PathLike, *,
           max_memory_mb: float | None = None, max_listed: int = 100) -> VerifyReport:
    """Re-run the engine on every input of a golden and compare every stored tensor and event counter
    exactly (what ``intsim verify`` does).

    ``artifact``: an :class:`~intsim.artifact.Artifact` loaded from its file (its sha256 must be the one
    the golden records) or the path of a ``.intsim`` file. ``golden``: a golden folder (as written by
    ``intsim golden`` / :func:`golden.writer.write_golden`) or a :class:`~intsim.golden_dir.GoldenSet`
    read from one. ``max_memory_mb``: the memory budget in MiB (default: half the available memory);
    verify does not tile, so an input whose untiled run exceeds it is refused, judged from the manifest
    before any array is read. ``max_listed``: at most this many mismatching tensors are listed.

    Returns the :class:`~intsim.verification.VerifyReport` (``ok``, counts, the first mismatch in graph
    order; ``str(report)`` is the CLI's line). Raises :class:`~intsim.golden_dir.GoldenError` for a golden
    made from another artifact, an incomplete or corrupt one, or one over the budget.
    """
    art = _artifact(artifact)
    if isinstance(golden, (str, os.PathLike)):
        # arrays are judged from the manifest first and read (and hash-checked) one at a time by verify:
        # a crafted input is refused from its declared shape, never loaded
        golden = read_golden_dir(golden, check_hashes=False)
    elif not isinstance(golden, GoldenSet):
        raise TypeError(f"golden must be a golden folder path or a GoldenSet, got {type(golden).__name__}")
    if golden.artifact_sha256 == art.sha256:  # else verify refuses it as made from another artifact
        check_verify_memory(art, golden, memory_budget(max_memory_mb))
    return verify_golden(art, golden, max_listed=max_listed)
