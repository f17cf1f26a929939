"""Write golden tensors for an artifact (docs/artifact.md "Golden directory format").

``write_golden(art_path, [(source, image), ...], out_dir)`` runs the golden
executor on every input and writes the golden directory atomically via
``intsim.golden_dir``. Command line::

    python -m golden.writer ARTIFACT IMAGE [IMAGE ...] -o GOLDEN_DIR
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from golden.executor import EVENT_KEYS, run_golden
from intsim.artifact import load_artifact
from intsim.golden_dir import storage_dtypes, tensor_ops_of, write_golden_dir

PRODUCER = f"golden (torch float64 fake-quant; torch {torch.__version__})"


def write_golden(art_path, inputs: list[tuple[str, np.ndarray]], out_dir, progress: bool = True,
                 *, art=None) -> Path:
    """Run golden on each ``(source name, uint8 H×W×C image)`` and write ``out_dir``.

    ``art`` may pass an already loaded artifact (it must be the one at
    ``art_path``; its ``sha256`` is recorded). Returns the golden folder's path.
    """
    if art is None:
        art = load_artifact(art_path)
    if not art.sha256:
        raise ValueError("the artifact has no file sha256; load it from its file (load_artifact)")
    tensor_ops = tensor_ops_of(art)
    all_tensors, all_events, recorded = [], [], []
    for k, (source, image) in enumerate(inputs):
        img = np.asarray(image)
        if img.ndim == 2:
            img = img[:, :, None]
        t0 = time.perf_counter()
        res = run_golden(art, img)
        order = [n for n in tensor_ops if n in res.tensors]
        all_tensors.append({n: res.tensors[n] for n in order})
        all_events.append({op.name: {key: int(res.events[op.name][key]) for key in EVENT_KEYS} for op in art.ops})
        recorded.append((str(source), np.ascontiguousarray(img, dtype=np.uint8)))
        if progress:
            print(f"golden: input {k} ({source}) {img.shape[1]}×{img.shape[0]}: {len(order)} tensors "
                  f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    out = write_golden_dir(out_dir, art.sha256, recorded, all_tensors, all_events, PRODUCER, tensor_ops,
                           dtypes=storage_dtypes(art))
    if progress:
        print(f"golden: wrote {out}", file=sys.stderr, flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golden.writer", description=__doc__.splitlines()[0])
    p.add_argument("artifact")
    p.add_argument("images", nargs="+")
    p.add_argument("-o", "--out", required=True, help="golden directory to write")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    from intsim.images import collect_image_paths, read_image

    art = load_artifact(a.artifact)
    channels = art.tensors[art.inputs[0]].channels
    images = [read_image(q, channels) for q in collect_image_paths(a.images)]
    write_golden(a.artifact, [(im.path, im.pixels) for im in images], a.out, progress=not a.quiet, art=art)
    return 0


if __name__ == "__main__":
    sys.exit(main())
