"""``calib.quantize``: the public calibration API — your float model and images in, an integer artifact out.

    import calib
    art = calib.quantize(net, images, scale=3, bits="W8A8")      # net: any torch.nn.Module
    art = calib.quantize("examples/espcn_like.py:build", "calib_hr/", scale=3, bits="W8A8",
                         weights="espcn_x3.pt", out="espcn.intsim")

It is :func:`calib.cli_calibrate.calibrate_run` (what ``intsim calibrate`` runs) with the data
given the way a Python user has it. Every setting left None comes from the method's recipe
(calib/recipe.py, the one place defaults live) or from :class:`intsim.artifact.Numerics`, exactly as on
the command line. docs/own_model.md walks through it.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["quantize"]

#: the numerics settings ``numerics`` may set (intsim.artifact.Numerics fields, plus the grid LUT width)
NUMERICS_KEYS = ("rounding", "realization", "overflow", "acc_bits", "stream_bits", "mult_bits", "grid_bits")


def _numerics(numerics) -> dict:
    if numerics is None:
        return {}
    if hasattr(numerics, "to_json"):  # intsim.artifact.Numerics
        numerics = numerics.to_json()
    if not isinstance(numerics, dict):
        raise ValueError(f"numerics must be a dict or an intsim.artifact.Numerics, got {type(numerics).__name__}")
    bad = sorted(set(numerics) - set(NUMERICS_KEYS))
    if bad:
        raise ValueError(f"unknown numerics setting(s) {', '.join(bad)}; known: {', '.join(NUMERICS_KEYS)}")
    return dict(numerics)


def _as_image(k: int, img) -> np.ndarray:
    """The ``k``-th in-memory calibration image, checked: uint8 H×W×C (C 1, 3 or 4) or H×W."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"calibration image {k}: expected uint8 pixels, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"calibration image {k}: expected H×W×3 (or H×W×1, H×W, H×W×4), got shape {a.shape}")
    if min(a.shape[:2]) < 1:
        raise ValueError(f"calibration image {k} is empty ({a.shape})")
    return np.ascontiguousarray(a)


def _write_images(images: Iterable, folder: Path) -> int:
    """Write the in-memory images as PNG (lossless) into ``folder``; their number. Names carry no ``x<s>``
    suffix, so only ``calib_layout`` decides whether they are LR."""
    from intsim.images import write_png

    n = 0
    for k, img in enumerate(images):
        a = _as_image(k, img)
        write_png(folder / f"calib_{k:05d}.png", a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2))
        n += 1
    if n == 0:
        raise ValueError("calib_data holds no images")
    return n


def quantize(model, calib_data, *, scale: int, bits: str, method: str | None = None, policy=None, numerics=None,
             rgb_range: float | None = None, in_channels: int | None = None, calib_layout: str | None = None,
             weights: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
             n_images: int | None = None, patch: int | None = None, seed: int = 0, holdout: bool = True,
             log=None, **settings):
    """Calibrate ``model`` on ``calib_data`` and export its integer artifact (:class:`intsim.artifact.Artifact`).

    ``model``: a ``torch.nn.Module`` (float, its own weights; put into eval mode), or a string as
    ``intsim calibrate --model`` takes it: a zoo name, ``path/to/net.py:factory``,
    ``package.module:Class`` or ``model.onnx`` (:mod:`calib.models.user`). Only a string is recorded so
    that ``intsim eval --engine fp``, ``demo``, ``report`` and ``sweep`` can rebuild the float model; an
    in-memory module's artifact runs, verifies and costs like any other.
    ``calib_data``: a folder of images, or an iterable of uint8 H×W×3 images (H×W gray and H×W×4 are
    taken as ``calib.datasets.read_rgb`` takes files). Like ``--calib-data``, they are HR images made LR
    by the MATLAB-compatible bicubic ×``scale``; ``calib_layout='lr'`` says they are LR already
    (default: ``'hr'`` for images in memory, ``'auto'`` — the path guess — for a folder).
    ``scale``: the upscaling factor (integer); ``bits``: ``'W4A4'``, ``'W8A8'``, … (weights, activations,
    2..16 each).
    ``method``, ``policy``, ``n_images``, ``patch``: as ``intsim calibrate`` (None: the method's recipe).
    ``numerics``: a dict (or :class:`intsim.artifact.Numerics`) of ``rounding``, ``realization``,
    ``overflow``, ``acc_bits`` (accumulator bits), ``stream_bits``, ``mult_bits``, ``grid_bits``;
    unset ones keep the CLI's defaults.
    ``rgb_range``: your model's input range — pixels 0..255 are fed as [0, rgb_range] (default 1.0);
    ``in_channels``: 3 (RGB) or 1 (Y); default the first conv's ``in_channels``. Neither is read from a
    class attribute.
    ``weights``: a checkpoint for a string ``model`` (read with ``weights_only=True``).
    ``out``: where to write the artifact (atomically); None keeps it in memory only.
    ``settings``: any further keyword of :func:`calib.cli_calibrate.calibrate_run` (``finetune``,
    ``recon``, ``budget``, ``stress``, ``random_init``, …).

    Bad input raises :class:`ValueError` with one line.
    """
    import torch.nn as nn

    from calib.cli_calibrate import calibrate_run
    from calib.models.user import object_entry
    from intsim.artifact import load_artifact

    io = {"rgb_range": rgb_range, "in_channels": in_channels}
    if isinstance(model, nn.Module):
        if weights is not None:
            raise ValueError("weights: an nn.Module brings its own; load them before calling quantize")
        model, io = object_entry(model, rgb_range=rgb_range, in_channels=in_channels), {}
    elif not isinstance(model, str):
        raise ValueError(f"model must be a torch.nn.Module or a string (zoo name or spec), got {type(model).__name__}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    extra = {**_numerics(numerics), **settings}
    with tempfile.TemporaryDirectory(prefix="intsim-quantize-") as tmp:
        if isinstance(calib_data, (str, os.PathLike)):
            folder, layout = str(calib_data), calib_layout or "auto"
        else:
            if calib_data is None or not isinstance(calib_data, Iterable) or isinstance(calib_data, np.ndarray):
                raise ValueError("calib_data must be a folder or an iterable of uint8 H×W×3 images")
            folder, layout = str(Path(tmp) / "calib"), calib_layout or "hr"
            Path(folder).mkdir()
            _write_images(calib_data, Path(folder))
        target = str(out) if out is not None else str(Path(tmp) / "model.intsim")
        calibrate_run(model=model, weights=None if weights is None else str(weights), scale=scale, bits=bits,
                      method=method, calib_data=folder, out=target, n_images=n_images, patch=patch, seed=seed,
                      policy=policy, calib_layout=layout, holdout=holdout, log=log, **io, **extra)
        return load_artifact(target)
