"""Fuzz the golden reader: ``read_golden_dir`` (and loading every listed array) may only
raise ``GoldenError`` naming the folder.

Strategies: mutated manifest.json (random values at random keys, deleted/inserted
keys), byte-mutated manifest and .npy files, re-typed/re-shaped arrays with the
manifest fixed up to match, deleted files, files replaced by folders.
"""
from __future__ import annotations

import copy
import io
import json
import shutil
from functools import cache

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from intsim.artifact import array_sha256
from intsim.golden_dir import GoldenError
from tests.fuzz.common import (
    check,
    dumps,
    fuzz_settings,
    json_words,
    mutated_bytes,
    mutated_json,
    read_golden_fully,
    scratch,
    with_deep_value,
)

TARGET = "golden"


@cache
def _template():
    from tests.robustness.harness import _golden_template

    root = _golden_template()
    manifest = json.loads((root / "manifest.json").read_bytes())
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.npy"))
    return root, manifest, json_words(manifest), files


def _manifest_bytes():
    root = _template()[0]
    return [(root / "manifest.json").read_bytes()]


@st.composite
def cases(draw):
    root, manifest, words, files = _template()
    manifest = copy.deepcopy(manifest)
    ops = []  # (kind, file, payload)
    notes = []
    mode = draw(st.sampled_from(["json", "json", "bytes", "deep", "files", "files"]))
    raw = None
    if mode == "json":
        manifest = draw(mutated_json(manifest, words))
        notes.append("manifest mutated")
    elif mode == "bytes":
        raw = draw(mutated_bytes(_manifest_bytes, max_ops=4))
    elif mode == "deep":
        raw = draw(with_deep_value(manifest))
        notes.append("manifest bytes mutated")
    for _ in range(draw(st.integers(0 if mode != "files" else 1, 3))):
        f = draw(st.sampled_from(files))
        kind = draw(st.sampled_from(["array", "array", "bytes", "delete", "dir", "pickle", "empty"]))
        notes.append(f"{kind} {f}")
        payload = None
        if kind == "array":
            a = np.load(root / f, allow_pickle=False)
            change = draw(st.sampled_from(["dtype", "shape", "values", "scalar"]))
            if change == "dtype":
                try:
                    a = a.astype(draw(st.sampled_from(["int8", "uint8", "int16", "int32", "int64", "float32",
                                                       "bool", "uint64", ">i4"])))
                except (TypeError, ValueError, OverflowError):
                    pass
            elif change == "shape":
                a = a.reshape(-1) if draw(st.booleans()) else a[None]
            elif change == "values" and a.size:
                a = a.copy()
                a.flat[0] = np.iinfo(a.dtype).max
            else:
                a = np.array(0, dtype=a.dtype)
            payload = a
            if draw(st.booleans()) and raw is None and isinstance(manifest, dict):
                for key in ("inputs", "tensors"):
                    for e in manifest.get(key, []) if isinstance(manifest.get(key), list) else []:
                        if isinstance(e, dict) and e.get("file") == f:
                            e["dtype"], e["shape"] = str(a.dtype), list(a.shape)
                            e["sha256"] = array_sha256(a)
        elif kind == "bytes":
            payload = draw(mutated_bytes([(root / f).read_bytes()], max_ops=3))
        ops.append((kind, f, payload))
    desc = "; ".join(notes) + "; manifest=" + (repr(raw[:300]) if raw is not None
                                               else json.dumps(manifest, allow_nan=True)[:1500])
    return (raw if raw is not None else dumps(manifest)), ops, desc


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def run_case(manifest: bytes, ops, describe: str) -> None:
    root = _template()[0]
    with scratch() as d:
        g = d / "golden"
        shutil.copytree(root, g)
        (g / "manifest.json").write_bytes(manifest)
        for kind, f, payload in ops:
            p = g / f
            if p.is_dir():  # an earlier op replaced the file by a folder
                shutil.rmtree(p)
            if kind == "array":
                p.write_bytes(_npy(payload))
            elif kind == "bytes":
                p.write_bytes(payload)
            elif kind == "delete":
                p.unlink(missing_ok=True)
            elif kind == "dir":
                p.unlink(missing_ok=True)
                p.mkdir()
            elif kind == "pickle":
                p.write_bytes(_npy(np.array([1, None], dtype=object)))
            elif kind == "empty":
                p.write_bytes(b"")

        check(TARGET, lambda: read_golden_fully(g), GoldenError, str(g), describe)


def _long_name_manifest() -> bytes:
    m = copy.deepcopy(_template()[1])
    m["inputs"][0]["file"] = "inputs/" + "a" * 300  # one component > NAME_MAX
    m["tensors"][0]["file"] = "tensors/" + "a/" * 2100 + "x.npy"  # whole path > PATH_MAX
    return dumps(m)


@fuzz_settings()
@given(case=cases())
# found by fuzzing: Path.is_file() raised OSError (ENAMETOOLONG) on a manifest-listed file name
@example(case=(_long_name_manifest(), [], "regression: file name too long"))
# found by fuzzing: json.loads raised RecursionError (not GoldenError) on a deeply nested manifest
@example(case=(b"[" * 100000 + b"]" * 100000, [], "regression: deep manifest"))
@example(case=(b'{"format": ' * 5000 + b"1" + b"}" * 5000, [], "regression: deep manifest"))
def test_fuzz_golden(case):
    run_case(*case)
