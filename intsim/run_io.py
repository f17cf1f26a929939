"""What a run takes and gives: the input image check, :class:`RunResult` and the per-op
counters layout (docs/arithmetic.md §7) shared by the untiled and the banded executor."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intsim.artifact import Artifact

@dataclass
class RunResult:
    """What one run produced.

    ``tensors``: graph tensor name → array H×W×C (streams int64, codes the
    codebook's ``code_dtype``, images uint8); every tensor with ``keep_tensors=True``, else only the
    graph outputs. ``counters``: JSON-serialisable event counts (arithmetic.md §7)
    as ``{"ops": {name: {...}}, "totals": {...}}``.
    """

    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    counters: dict = field(default_factory=dict)


TOTAL_KEYS = ("acc_overflow", "stream_overflow", "saturations")


def check_image(art: Artifact, image_px: np.ndarray) -> str:
    if len(art.inputs) != 1:
        raise ValueError(f"artifact has {len(art.inputs)} inputs; the engine runs single-image graphs")
    name = art.inputs[0]
    spec = art.tensors[name]
    if spec.kind != "image":
        raise ValueError(f"graph input {name!r} is a {spec.kind} tensor, expected an image")
    a = np.asarray(image_px)
    if a.dtype != np.uint8:
        raise ValueError(f"input image must be uint8, got {a.dtype}")
    if a.ndim == 2 and spec.channels == 1:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"input image must be H×W×C, got shape {a.shape}")
    if a.shape[2] != spec.channels:
        raise ValueError(f"input image has {a.shape[2]} channels, the artifact's input {name!r} needs {spec.channels}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"input image is empty: shape {a.shape}")
    return name


def counter_entry(op_type: str, events: dict, out_shapes: list[list[int]], totals: dict) -> dict:
    """One op's counters entry (``out_shapes``: [H, W, C] per output); adds its events to ``totals``."""
    entry = {"op": op_type}
    macs = events.get("macs")
    if macs is not None:
        entry["macs"] = macs
        totals["macs"] += sum(macs.values())
    # the three totals unrolled (TOTAL_KEYS order): this runs for every op of every image
    a = int(events.get("acc_overflow", 0))
    s = int(events.get("stream_overflow", 0))
    t = int(events.get("saturations", 0))
    entry["acc_overflow"], entry["stream_overflow"], entry["saturations"] = a, s, t
    if a or s or t:
        totals["acc_overflow"] += a
        totals["stream_overflow"] += s
        totals["saturations"] += t
    if "code_histogram" in events:
        entry["code_histogram"] = events["code_histogram"]
    if "ordered" in events:
        entry["ordered"] = events["ordered"]
    entry["out_shape"] = out_shapes[0]
    if len(out_shapes) > 1:
        entry["out_shapes"] = out_shapes
    return entry
