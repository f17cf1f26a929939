"""Write golden tensors for an artifact (docs/artifact.md "Golden directory format", docs/golden.md).

``write_golden(art_path, [(source, image), ...], out_dir)`` runs the golden
executor on one input at a time, in bands of rows (:mod:`golden.bands`), and
streams every kept tensor to disk as it is produced
(:class:`intsim.golden_dir.GoldenStreamWriter`): memory does not grow with the
number of inputs or the tensors kept. ``tensors`` chooses what is kept
(:func:`tensor_selection`); ``compress`` stores deflated ``.npz`` files. The
folder is published atomically. Command line::

    python -m golden.writer ARTIFACT IMAGE [IMAGE ...] -o GOLDEN_DIR [--tensors conv-io] [--compress]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from golden.bands import default_band_rows
from golden.executor import EVENT_KEYS, feed_image, stream
from golden.numerics import GoldenError
from intsim.artifact import load_artifact
from intsim.golden_dir import storage_dtypes, tensor_ops_of
from intsim.golden_stream import GoldenStreamWriter

PRODUCER = f"golden (torch float64 fake-quant; torch {torch.__version__})"
SELECTIONS = ("all", "outputs", "conv-io")
CONV_OPS = ("conv2d", "conv_transpose2d")


def tensor_selection(art, spec: str | Iterable[str] = "all") -> set[str]:
    """The tensors a golden keeps: the union of ``all`` (every tensor of the graph), ``outputs`` (the
    graph outputs), ``conv-io`` (the input codes and output stream of every convolution: what a conv
    engine's test bench needs) and tensor names. The graph outputs are always kept, so every golden
    can be verified; the input image is always recorded (``inputs/<k>.npy``)."""
    items = [spec] if isinstance(spec, str) else list(spec)
    if not items:
        raise GoldenError("--tensors needs at least one of all, outputs, conv-io or a tensor name")
    keep = set(art.outputs)
    for item in items:
        if item == "all":
            keep |= set(art.tensors)
        elif item == "outputs":
            pass
        elif item == "conv-io":
            keep |= {t for op in art.ops if op.op in CONV_OPS for t in (*op.inputs, *op.outputs)}
        elif item in art.tensors:
            keep.add(item)
        else:
            raise GoldenError(f"--tensors: {item!r} is neither {', '.join(SELECTIONS)} nor a tensor of the graph")
    return keep


def write_golden(art_path, inputs: Iterable[tuple[str, np.ndarray]], out_dir, progress: bool = True,
                 *, art=None, tensors: str | Iterable[str] = "all", compress: bool = False,
                 band_rows: int | None = None) -> Path:
    """Run golden on each ``(source name, uint8 H×W×C image)`` and write ``out_dir``; return its path.

    ``art`` may pass an already loaded artifact (it must be the one at ``art_path``; its ``sha256``
    is recorded). ``tensors``: see :func:`tensor_selection`. ``band_rows``: at most this many rows
    per band (golden's own choice, :func:`golden.bands.default_band_rows`, otherwise).
    """
    if art is None:
        art = load_artifact(art_path)
    if not art.sha256:
        raise ValueError("the artifact has no file sha256; load it from its file (load_artifact)")
    keep = tensor_selection(art, tensors)
    label = tensors if isinstance(tensors, str) else " ".join(tensors)
    with GoldenStreamWriter(out_dir, art.sha256, PRODUCER, tensor_ops_of(art), dtypes=storage_dtypes(art),
                            compress=compress, selection=label) as writer:
        for source, image in inputs:
            img = feed_image(art, art.inputs[0], image)  # refused before anything of it is written
            t0 = time.perf_counter()
            k = writer.add_input(str(source), img)
            files: dict = {}

            def emit(name, shape, y0, rows, k=k, files=files):
                f = files.get(name)
                if f is None:
                    f = files[name] = writer.open_tensor(k, name, shape)
                f.write_rows(rows)
                if f.rows == f.shape[0]:
                    writer.close_tensor(k, name)

            events = stream(art, {art.inputs[0]: img}, emit, keep=keep, band_rows=_rows(art, band_rows, img))
            writer.set_events(k, {op.name: {key: int(events[op.name][key]) for key in EVENT_KEYS}
                                  for op in art.ops})
            if progress:
                print(f"golden: input {k} ({source}) {img.shape[1]}×{img.shape[0]}: {len(files)} tensors "
                      f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        out = writer.finish()
    if progress:
        print(f"golden: wrote {out}", file=sys.stderr, flush=True)
    return out


def _rows(art, band_rows: int | None, img: np.ndarray) -> int | None:
    """Golden's own band height, at most ``band_rows`` (a memory budget's)."""
    if band_rows is None:
        return None
    return max(1, min(int(band_rows), default_band_rows(art, img.shape[0], img.shape[1])))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golden.writer", description=__doc__.splitlines()[0])
    p.add_argument("artifact")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--out", required=True, help="golden directory to write")
    p.add_argument("--tensors", nargs="+", default=["all"], metavar="WHICH",
                   help="all, outputs, conv-io or tensor names (graph outputs always kept)")
    p.add_argument("--compress", action="store_true", help="deflated .npz files")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    from intsim.images import collect_image_paths, read_image

    art = load_artifact(a.artifact)
    channels = art.tensors[art.inputs[0]].channels
    images = ((im.path, im.pixels) for im in (read_image(q, channels) for q in collect_image_paths(a.images)))
    write_golden(a.artifact, images, a.out, progress=not a.quiet, art=art, tensors=a.tensors, compress=a.compress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
