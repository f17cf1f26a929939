"""Which tensors a golden directory keeps (a file-format fact shared by golden's writer and ``verify``).

A golden records its selection in the manifest as ``tensors_kept``: a list of items, each ``all``
(every tensor of the graph), ``outputs`` (the graph outputs), ``conv-io`` (the input codes and output
stream of every convolution: what a conv engine's test bench needs) or a tensor name. The graph
outputs are always kept. A manifest without ``tensors_kept`` (written before selections existed)
keeps ``all``. ``verify`` demands every tensor the recorded selection implies, so a golden whose
tensors were dropped after writing is refused rather than passing on less than it claims.
"""
from __future__ import annotations

from typing import Iterable

SELECTIONS = ("all", "outputs", "conv-io")
CONV_OPS = ("conv2d", "conv_transpose2d")
#: most items a recorded selection may list (each a keyword or a tensor name)
MAX_ITEMS = 20000


def selection_items(spec: str | Iterable[str]) -> list[str]:
    """``spec`` as a list of items: a string is split on whitespace (``"conv-io"``, ``"all"``, …)."""
    items = str(spec).split() if isinstance(spec, str) else [str(s) for s in spec]
    if not items:
        raise ValueError("a tensor selection needs at least one of all, outputs, conv-io or a tensor name")
    if len(items) > MAX_ITEMS:
        raise ValueError(f"a tensor selection lists {len(items)} items, more than {MAX_ITEMS}")
    return items


def kept_tensors(art, spec: str | Iterable[str] = "all") -> set[str]:
    """The tensor names of ``art`` that the selection ``spec`` keeps (graph outputs always included).

    Raises ValueError naming an item that is neither a keyword nor a tensor of the graph."""
    keep = set(art.outputs)
    for item in selection_items(spec):
        if item == "all":
            keep |= set(art.tensors)
        elif item == "outputs":
            pass
        elif item == "conv-io":
            keep |= {t for op in art.ops if op.op in CONV_OPS for t in (*op.inputs, *op.outputs)}
        elif item in art.tensors:
            keep.add(item)
        else:
            raise ValueError(f"{item!r} is neither {', '.join(SELECTIONS)} nor a tensor of the graph")
    return keep
