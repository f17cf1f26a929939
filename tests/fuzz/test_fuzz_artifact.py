"""Fuzz the artifact loader: ``load_artifact`` may only raise ``ArtifactError`` naming the file.

Strategies: byte mutations of valid artifacts; structure-aware rewrites of the zip
(mutated graph.json, mutated/retyped/reshaped .npy members with or without fixing
the declarations and hashes, renamed/extra/missing/duplicate members, pickled
members); fully random bytes.
"""
from __future__ import annotations

import copy
import io
import json
import warnings
import zipfile
from functools import cache

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from intsim.artifact import ArtifactError, array_sha256, load_artifact
from tests.fuzz.common import (
    check,
    dumps,
    fuzz_settings,
    json_words,
    mutated_bytes,
    mutated_json,
    random_bytes,
    scratch,
    with_deep_value,
)

TARGET = "artifact"


@cache
def seed_bytes(seed: int) -> bytes:
    from tests.robustness.harness import _artifact_bytes

    return _artifact_bytes(seed)


def seeds() -> list[bytes]:
    return [seed_bytes(0), seed_bytes(1)]


@cache
def _parsed(seed: int):
    z = zipfile.ZipFile(io.BytesIO(seed_bytes(seed)))
    graph = json.loads(z.read("graph.json"))
    members = {n: z.read(n) for n in z.namelist() if n != "graph.json"}
    return graph, members, json_words(graph)


def _zip(members: list[tuple[str, bytes]], stored: bool) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are a deliberate case
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as z:
            for n, b in members:
                z.writestr(n, b)
    return buf.getvalue()


_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint64", "float32", "float64", "bool", ">i4",
           "complex64", "U3", "V4"]


@st.composite
def mutated_array(draw, a: np.ndarray) -> np.ndarray:
    kind = draw(st.sampled_from(["values", "dtype", "shape", "empty", "scalar", "big"]))
    a = a.copy()
    if kind == "values" and a.size and a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        for _ in range(draw(st.integers(1, 4))):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([info.min, info.max, 0, -1 if info.min else 1]))
        return a
    if kind == "dtype":
        dt = draw(st.sampled_from(_DTYPES))
        try:
            return a.astype(dt)
        except (TypeError, ValueError, OverflowError):  # e.g. a "U3" array of "179" to int8
            return a
    if kind == "shape":
        choice = draw(st.sampled_from(["flat", "addaxis", "transpose", "slice"]))
        if choice == "flat":
            return a.reshape(-1)
        if choice == "addaxis":
            return a[None]
        if choice == "transpose":
            return np.ascontiguousarray(a.T)
        return a[: max(0, (a.shape[0] if a.ndim else 1) - 1)] if a.ndim else a
    if kind == "empty":
        return np.zeros((0,) * max(1, a.ndim), dtype=a.dtype)
    if kind == "scalar":
        return np.array(a.reshape(-1)[0] if a.size else 0, dtype=a.dtype)
    n = draw(st.integers(1, 4096))
    return np.full(n, draw(st.sampled_from([0, 1, 127])), dtype=a.dtype)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


@st.composite
def structured(draw) -> tuple[bytes, str]:
    """A rewritten zip: mutated graph.json (as JSON or as text), mutated arrays, or mutated members."""
    seed = draw(st.sampled_from([0, 1]))
    graph, members, words = _parsed(seed)
    graph = copy.deepcopy(graph)  # the parsed seed is cached: never mutate it
    members = dict(members)
    mode = draw(st.sampled_from(["json", "json", "json", "json", "jsontext", "deep", "arrays", "arrays", "members"]))
    notes = [f"seed {seed}", mode]
    graph_text = None
    if mode == "json":
        graph = draw(mutated_json(graph, words, max_ops=3))
    elif mode == "deep":
        graph_text = draw(with_deep_value(graph))
    elif mode == "jsontext":
        graph_text = draw(mutated_bytes([json.dumps(graph, indent=1).encode()], max_ops=3))
    elif mode == "arrays":
        for _ in range(draw(st.integers(1, 2))):
            name = draw(st.sampled_from(sorted(members)))
            try:
                a = np.load(io.BytesIO(members[name]), allow_pickle=False)
            except Exception:  # noqa: BLE001, S112 - mutated earlier
                continue
            b = draw(mutated_array(a))
            members[name] = _npy(b)
            notes.append(f"array {name} -> {b.dtype}{list(b.shape)}")
            decl = graph["arrays"]
            key = name[len("arrays/"):-4]
            if draw(st.integers(0, 4)):
                # fix the declaration so that the change reaches the semantic checks
                d = decl[key]
                d["dtype"], d["shape"] = str(b.dtype), list(b.shape)
                try:
                    d["sha256"] = array_sha256(b)
                except Exception:  # noqa: BLE001, S110 - unhashable dtypes: leave the old hash
                    pass
                notes.append("declaration fixed")
    else:
        for _ in range(draw(st.integers(1, 3))):
            name = draw(st.sampled_from(sorted(members)))
            action = draw(st.sampled_from(["bytes", "pickle", "drop", "rename", "extra"]))
            notes.append(f"{action} {name}")
            if action == "bytes":
                members[name] = draw(mutated_bytes([members[name]], max_ops=3))  # small npy: short repr
            elif action == "pickle":
                members[name] = _npy(np.array([1, "x", None], dtype=object))
            elif action == "drop":
                del members[name]
            elif action == "rename":
                members[draw(st.sampled_from(["/abs.npy", "arrays/../x.npy", "arrays\\x.npy", "arrays/x.npy",
                                              "x.npy", "arrays/", "arrays/a/b.npy", name + ".bak"]))] = members.pop(name)
            elif action == "extra":
                members[name + "x" if draw(st.booleans()) else "other.txt"] = b"data"
    ordered = [("graph.json", graph_text if graph_text is not None else dumps(graph))] + sorted(members.items())
    if mode == "members" and draw(st.booleans()):
        ordered.append(draw(st.sampled_from(ordered)))  # duplicate member
        notes.append("duplicate member")
    data = _zip(ordered, stored=draw(st.booleans()))
    shown = graph_text[:1500] if graph_text is not None else json.dumps(graph, allow_nan=True)[:1500]
    return data, "; ".join(notes) + f"; graph={shown}"


def cases():
    byte_level = st.builds(lambda d: (d, "byte mutation"), mutated_bytes(seeds))
    rand = st.builds(lambda d: (d, "random bytes"), random_bytes)
    return st.one_of(structured(), structured(), structured(), structured(), byte_level, rand)


def run_case(data: bytes, describe: str) -> None:
    with scratch() as d:
        p = d / "model.intsim"
        p.write_bytes(data)
        check(TARGET, lambda: load_artifact(p), ArtifactError, str(p), describe)


_DEEP = b"[" * 100000 + b"]" * 100000


def _bad_zip_version() -> bytes:
    """A valid artifact whose first central-directory entry needs "zip version 13.4"."""
    data = bytearray(seed_bytes(0))
    i = data.find(b"PK\x01\x02")
    data[i + 6] = 0x86
    return bytes(data)


@fuzz_settings()
@given(case=cases())
# found by fuzzing: json.loads raised RecursionError (not ArtifactError) on deeply nested graph.json
@example(case=(_zip([("graph.json", _DEEP)], stored=False), "regression: deep graph.json"))
# found by atheris: zipfile raised NotImplementedError ("zip file version 13.4"), not ArtifactError
@example(case=(_bad_zip_version(), "regression: unsupported zip version"))
def test_fuzz_artifact(case):
    run_case(*case)
