"""Robustness cases: golden folders handed to ``intsim verify`` and ``intsim export-vectors``.

Each bad golden is a valid engine-written golden (harness.valid_golden, two inputs)
with one thing broken. ``verify`` writes nothing, so the golden folder itself is
watched; ``export-vectors`` must not create its output folder.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from intsim.artifact import npy_bytes
from tests.robustness.harness import (
    Case,
    Setup,
    valid_artifact,
    valid_golden,
    valid_pixels,
)

TENSOR = "tensors/0/head.conv.out.npy"


def _manifest(g: Path) -> dict:
    return json.loads((g / "manifest.json").read_text())


def _write_manifest(g: Path, m: dict) -> None:
    (g / "manifest.json").write_text(json.dumps(m))


def _verify(edit: Callable[[Path], None], art_seed: int = 0) -> Callable[[Path], Setup]:
    def build(folder: Path) -> Setup:
        g = valid_golden(folder)
        edit(g)
        art = valid_artifact(folder, seed=art_seed)
        return Setup(["verify", art, g], str(g), [g])

    return build


def _export(edit: Callable[[Path], None]) -> Callable[[Path], Setup]:
    def build(folder: Path) -> Setup:
        g = valid_golden(folder)
        edit(g)
        out = folder / "vectors"
        return Setup(["export-vectors", g, "-o", out], str(g), [g, out])

    return build


def _drop_tensor(g: Path) -> None:
    (g / TENSOR).unlink()


def _changed_tensor(g: Path) -> None:
    a = np.load(g / TENSOR, allow_pickle=False).copy()
    a.flat[0] += 1
    (g / TENSOR).write_bytes(npy_bytes(a))  # the manifest keeps the old sha256


def _truncated_tensor(g: Path) -> None:
    data = (g / TENSOR).read_bytes()
    (g / TENSOR).write_bytes(data[: len(data) // 2])


def _padded_tensor(g: Path) -> None:
    # np.load ignores what follows the data, and the sha256 is of the array: only the size gives it away
    p = g / TENSOR
    os.truncate(p, p.stat().st_size + (64 << 20))


def _pickled_tensor(g: Path) -> None:
    import io

    obj = np.empty(1, dtype=object)
    obj[0] = {"payload": "a pickled object"}
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)  # only ever written here, never read back with pickle
    data = buf.getvalue()
    (g / TENSOR).write_bytes(data)
    m = _manifest(g)
    for t in m["tensors"]:
        if t["file"] == TENSOR:
            t["sha256"] = hashlib.sha256(data).hexdigest()
    _write_manifest(g, m)


def _another_input(g: Path) -> None:
    # The manifest of a run on another image: input 0's recorded hash is that image's.
    other = valid_pixels(12, 10, seed=7)
    m = _manifest(g)
    m["inputs"][0]["sha256"] = hashlib.sha256(other.tobytes()).hexdigest()
    _write_manifest(g, m)


def _no_manifest(g: Path) -> None:
    (g / "manifest.json").unlink()


def _manifest_not_json(g: Path) -> None:
    (g / "manifest.json").write_text("{ this is not json")


def _manifest_unknown_version(g: Path) -> None:
    m = _manifest(g)
    m["version"] = 99
    _write_manifest(g, m)


def _escaping_path(g: Path) -> None:
    m = _manifest(g)
    m["tensors"][1]["file"] = "../../etc/passwd"
    _write_manifest(g, m)


def _verify_budget(mb: str) -> Callable[[Path], Setup]:
    def build(folder: Path) -> Setup:
        g = valid_golden(folder)
        return Setup(["verify", valid_artifact(folder), g, "--max-memory", mb], str(g / "inputs" / "0.npy"), [g])

    return build


def _huge_input(g: Path) -> None:
    """Input 0 declared 4000×3000×3 in the manifest, with a .npy file of exactly that size (sparse)."""
    m = _manifest(g)
    m["inputs"][0]["shape"] = [4000, 3000, 3]
    _write_manifest(g, m)
    p = g / m["inputs"][0]["file"]
    header = np.lib.format.header_data_from_array_1_0(np.zeros((0,), np.uint8)) | {"shape": (4000, 3000, 3)}
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
    os.truncate(p, p.stat().st_size + 4000 * 3000 * 3)


def _odd_input(g: Path) -> None:
    m = _manifest(g)
    m["inputs"][0]["shape"] = [12, 10]
    _write_manifest(g, m)


def _verify_input(edit: Callable[[Path], None]) -> Callable[[Path], Setup]:
    def build(folder: Path) -> Setup:
        g = valid_golden(folder)
        edit(g)
        return Setup(["verify", valid_artifact(folder), g, "--max-memory", "512"], str(g / "inputs" / "0.npy"),
                     [g])

    return build


CASES: list[Case] = [
    Case("golden-missing-tensor", "Goldens", "a tensor file listed in the manifest is missing",
         _verify(_drop_tensor), "missing"),
    Case("golden-hash-mismatch", "Goldens", "a tensor file changed, the manifest keeps its old sha256",
         _verify(_changed_tensor), "sha256"),
    Case("golden-truncated-tensor", "Goldens", "a truncated tensor file", _verify(_truncated_tensor), "not a valid .npy array"),
    Case("golden-padded-tensor", "Goldens", "a tensor file with 64 MiB after its data", _verify(_padded_tensor),
         "its header declares 2880", policy="every .npy file is judged from its header (dtype, shape, size against "
         "the manifest and the file size) before its data is read"),
    Case("golden-pickled-tensor", "Goldens", "a tensor file holding a pickled object (hash updated to match)",
         _verify(_pickled_tensor), "holds a pickled/object array, refused", policy="never unpickled: np.load(allow_pickle=False)"),
    Case("golden-other-artifact", "Goldens", "a golden made from another artifact",
         _verify(lambda g: None, art_seed=1), "golden was made from another artifact"),
    Case("golden-other-input", "Goldens", "a manifest written for another input image",
         _verify(_another_input), "written for another input image"),
    Case("golden-no-manifest", "Goldens", "no manifest.json", _verify(_no_manifest), "manifest"),
    Case("golden-manifest-not-json", "Goldens", "manifest.json is not JSON", _verify(_manifest_not_json),
         "manifest"),
    Case("golden-manifest-version", "Goldens", "unknown manifest version", _verify(_manifest_unknown_version),
         "version"),
    Case("golden-escaping-path", "Goldens", "a manifest file path escaping the folder (`../../etc/passwd`)",
         _verify(_escaping_path), "../../etc/passwd"),
    Case("golden-export-missing-tensor", "Goldens", "export-vectors from a golden with a missing tensor",
         _export(_drop_tensor), "missing"),
    Case("golden-verify-over-budget", "Goldens", "`verify` on a golden whose engine run exceeds the memory "
         "budget", _verify_budget("0.05"), "verify does not tile",
         policy="verify keeps every tensor to compare it, so it does not tile: each input is judged from the "
                "manifest's shape before any array is read, and refused with the estimate above the budget "
                "(--max-memory MB, default half of the available memory)"),
    Case("golden-verify-huge-input", "Goldens", "a golden input declared 3000×4000 (a 36 MB sparse .npy), "
         "verify with --max-memory 512", _verify_input(_huge_input), "above the memory budget",
         policy="refused from the manifest's shape: the array is never read"),
    Case("golden-verify-input-not-hwc", "Goldens", "a golden input declared with a 2-D shape",
         _verify_input(_odd_input), "this artifact takes H×W×3 images"),
]
