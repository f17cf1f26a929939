"""Fuzz the HDF5 (Keras weights) reader: ``open_keras_h5(path)`` with every indexed dataset then read by
``read_dataset`` may only raise ``CheckpointError`` naming the file (calib/models/_checkpoint_io.py;
torch-free, h5py only).

Seeds: small Keras-layout files (``model_weights/<layer>/<layer>/kernel:0`` and ``bias:0``, float32 and
float16, contiguous, chunked + gzip, chunked + shuffle + gzip, fill-value only, a ``model_config``
attribute; one file without the ``model_weights`` group). Strategies: byte mutations (which reach the
superblock, object headers, B-trees, heaps, filter pipelines and chunk data) and random bytes.
"""
from __future__ import annotations

import io
import json
from functools import cache

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from calib.models._checkpoint_io import CheckpointError, open_keras_h5, read_dataset
from tests.fuzz.common import check, fuzz_settings, mutated_bytes, random_bytes, scratch

TARGET = "hdf5"


def _keras_file(compression: str | None, dtype: str, top: bool, fill_only: bool = False) -> bytes:
    import h5py

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        root = f.create_group("model_weights") if top else f
        f.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": [
            {"class_name": "Conv2D", "config": {"name": "F_1_1"}},
            {"class_name": "UpSampling2D", "config": {"size": [2, 2]}}]}})
        for layer, shape in (("F_1_1", (3, 3, 4, 4)), ("F_m1", (3, 3, 3, 4))):
            g = root.create_group(layer).create_group(layer)
            kw = {}
            if compression == "gzip":
                kw = {"compression": "gzip", "chunks": True}
            elif compression == "shuffle":
                kw = {"compression": "gzip", "shuffle": True, "chunks": (1, 3, 2, 4)}
            if fill_only:
                g.create_dataset("kernel:0", shape=shape, dtype=dtype, fillvalue=0.5, **kw)
            else:
                g.create_dataset("kernel:0", data=rng.standard_normal(shape).astype(dtype), **kw)
            g.create_dataset("bias:0", data=rng.standard_normal(shape[-1]).astype(dtype))
    return buf.getvalue()


@cache
def seeds() -> list[bytes]:
    return [_keras_file(None, "float32", True), _keras_file("gzip", "float32", True),
            _keras_file("shuffle", "float16", True), _keras_file("gzip", "float32", True, fill_only=True),
            _keras_file(None, "float32", False)]


@st.composite
def cases(draw):
    kind = draw(st.sampled_from(["bytes", "bytes", "bytes", "random"]))
    data = draw(mutated_bytes(seeds)) if kind == "bytes" else draw(random_bytes)
    return data, kind


#: the seeds' "architecture": the loaders read a dataset only once its shape matched the model's
#: (calib/models/rdn.py load_idealo), so a dataset of any other shape is indexed (and size-checked) but not read
ARCH_SHAPES = frozenset({(3, 3, 4, 4), (3, 3, 3, 4), (4,)})


def read_all(p) -> None:
    """What the loaders do: open and index (links, external storage, declared sizes checked), then read every
    dataset whose shape fits the architecture."""
    with open_keras_h5(p) as (_, layers):
        for weights in layers.values():
            for ds in weights.values():
                if tuple(ds.shape) in ARCH_SHAPES:
                    read_dataset(p, ds)


def run_case(data: bytes, kind: str) -> None:
    with scratch() as d:
        p = d / "weights.h5"
        p.write_bytes(data)
        check(TARGET, lambda: read_all(p), CheckpointError, str(p), f"{kind}, bytes={data[:400]!r}")


def test_seeds_are_read():
    """The seeds themselves pass: the target exercises the accepting path too."""
    with scratch() as d:
        for i, data in enumerate(seeds()):
            p = d / f"{i}.h5"
            p.write_bytes(data)
            read_all(p)


@fuzz_settings()
@given(case=cases())
def test_fuzz_hdf5(case):
    run_case(*case)
