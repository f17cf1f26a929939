"""Robustness cases: artifacts handed to ``intsim run`` from other teams and tools.

Each bad artifact is the valid factory artifact (harness.valid_artifact) with one
thing broken, through the file format of docs/artifact.md (a zip of graph.json
and .npy arrays, each array declared with dtype, shape and sha256).
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from intsim.artifact import npy_bytes
from tests.robustness.harness import Case, Setup, out_dir, valid_artifact, valid_image

WEIGHT = "head.conv.weight"


def _run_on(art: Path, folder: Path) -> Setup:
    img = valid_image(folder)
    out = out_dir(folder)
    return Setup(["run", art, img, "-o", out], str(art), [out])


def _members(folder: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(valid_artifact(folder, "valid.intsim")) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)  # ZipInfo: the name is stored verbatim
            info.compress_type = zipfile.ZIP_DEFLATED  # as save_artifact writes (a ZipInfo defaults to stored)
            z.writestr(info, data)
    return path


def _edited(edit: Callable[[dict, dict[str, bytes]], None]) -> Callable[[Path], Setup]:
    """A case whose artifact is the valid one with ``edit(graph, members)`` applied."""

    def build(folder: Path) -> Setup:
        members = _members(folder)
        graph = json.loads(members["graph.json"])
        edit(graph, members)
        members["graph.json"] = json.dumps(graph).encode()
        return _run_on(_write_zip(folder / "bad.intsim", members), folder)

    return build


def _raw(make: Callable[[Path], bytes]) -> Callable[[Path], Setup]:
    def build(folder: Path) -> Setup:
        p = folder / "bad.intsim"
        p.write_bytes(make(folder))
        return _run_on(p, folder)

    return build


def _op(graph: dict, name: str) -> dict:
    return next(o for o in graph["ops"] if o["name"] == name)


def _array(members: dict[str, bytes], name: str) -> np.ndarray:
    return np.load(io.BytesIO(members[f"arrays/{name}.npy"]), allow_pickle=False)


# -- the edits -------------------------------------------------------------


def _schema_99(g, m):
    g["version"] = 99


def _drop_array(g, m):
    del m[f"arrays/{WEIGHT}.npy"]


def _extra_array(g, m):
    m["arrays/extra.npy"] = npy_bytes(np.zeros(3, np.int64))


def _changed_array(g, m):
    w = _array(m, WEIGHT).copy()
    w.flat[0] += 1 if w.flat[0] < 0 else -1
    m[f"arrays/{WEIGHT}.npy"] = npy_bytes(w)  # graph.json keeps the old sha256


def _pickled_member(g, m):
    obj = np.empty(1, dtype=object)
    obj[0] = {"payload": "a pickled object"}
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)  # the hostile member is only ever written, never read back
    m[f"arrays/{WEIGHT}.npy"] = buf.getvalue()


def _dotdot_member(g, m):
    m["arrays/../../evil.npy"] = b"x"


def _absolute_member(g, m):
    m["/etc/evil.npy"] = b"x"


def _nan_in_graph(g, m):
    _op(g, "body.leaky")["attrs"]["mult"] = float("nan")  # json.dumps writes the NaN token


def _inf_in_graph(g, m):
    g["tensors"]["head.enc.codes"]["codebook"]["encoder"][0]["mult"] = float("inf")


def _float_array(g, m):
    a = np.full(_array(m, "head.conv.bias").shape, np.nan)
    m["arrays/head.conv.bias.npy"] = npy_bytes(a)
    g["arrays"]["head.conv.bias"] = {"dtype": "float64", "shape": list(a.shape),
                                     "sha256": hashlib.sha256(a.tobytes()).hexdigest()}


def _mantissa_out_of_range(g, m):
    a = _array(m, "head.conv.w_mant").copy()
    a.flat[0] = 1 << 40  # beyond the declared 31-bit multiplier width
    m["arrays/head.conv.w_mant.npy"] = npy_bytes(a)
    g["arrays"]["head.conv.w_mant"]["sha256"] = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _shape_vs_graph(g, m):
    # a weight whose input-channel count disagrees with the tensor feeding the conv
    w = _array(m, WEIGHT)
    w2 = np.concatenate([w, w[..., :1]], axis=3)  # layout [Co, kh, kw, Ci/g]
    m[f"arrays/{WEIGHT}.npy"] = npy_bytes(w2)
    g["arrays"][WEIGHT] = {"dtype": str(w2.dtype), "shape": list(w2.shape),
                           "sha256": hashlib.sha256(np.ascontiguousarray(w2).tobytes()).hexdigest()}


def _unknown_op(g, m):
    _op(g, "body.relu")["op"] = "gelu"


def _cycle(g, m):
    _op(g, "head.conv")["inputs"] = ["body.enc1.codes"]


def _codes_exceed_bits(g, m):
    g["tensors"]["head.enc.codes"]["codebook"]["segments"][0]["qmax"] = 300  # declared 8-bit codes


def _truncated(folder: Path) -> bytes:
    data = valid_artifact(folder, "valid.intsim").read_bytes()
    return data[: len(data) // 2]


def _duplicate_key(folder: Path) -> bytes:
    members = _members(folder)
    members["graph.json"] = members["graph.json"].replace(b'"format":', b'"format": "x", "format":', 1)
    return _write_zip(folder / "dup.intsim", members).read_bytes()


def _bzip2(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_BZIP2) as z:
        for name, data in _members(folder).items():
            z.writestr(name, data)
    return buf.getvalue()


def _array_bomb(folder: Path) -> bytes:
    members = _members(folder)
    members[f"arrays/{WEIGHT}.npy"] = b"\0" * (256 << 20)  # deflates to about 250 KB
    return _write_zip(folder / "bomb.intsim", members).read_bytes()


def relu_chain_bytes(kind: str, relus: int, dilation: int | None = None, extra_tensors: int = 0) -> bytes:
    """The ``kind`` artifact of cases_images (``valid``: two unpadded 3×3 convs; ``unet``: a stride-2 path
    re-joining a skip path) with ``relus`` relu ops chained after ``head.conv``, that conv's column
    dilation set to ``dilation`` (3×3 taps ``dilation`` apart: 2·dilation + 1 columns), and
    ``extra_tensors`` unused tensors declared."""
    from tests.robustness.cases_images import _special_artifact_bytes

    with zipfile.ZipFile(io.BytesIO(_special_artifact_bytes(kind))) as z:
        members = {n: z.read(n) for n in z.namelist()}
    g = json.loads(members["graph.json"])
    i = next(k for k, o in enumerate(g["ops"]) if o["name"] == "head.conv")
    src = g["ops"][i]["outputs"][0]
    if dilation:
        g["ops"][i]["attrs"]["dilation"] = [1, dilation]
    chain, prev = [], src
    for j in range(relus):
        g["tensors"][f"r{j}.out"] = dict(g["tensors"][src])
        chain.append({"name": f"r{j}", "op": "relu", "inputs": [prev], "outputs": [f"r{j}.out"], "attrs": {},
                      "arrays": {}})
        prev = f"r{j}.out"
    for o in g["ops"][i + 1:]:
        o["inputs"] = [prev if x == src else x for x in o["inputs"]]
    g["ops"] = g["ops"][:i + 1] + chain + g["ops"][i + 1:]
    for j in range(extra_tensors):
        g["tensors"][f"unused{j}"] = dict(g["tensors"][src])
    members["graph.json"] = json.dumps(g).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _chain_on_image(kind: str, relus: int, dilation: int | None, h: int, w: int) -> Callable[[Path], Setup]:
    """Run a relu-chain artifact on an ``h × w`` image the graph cannot take: the message names the image."""

    def build(folder: Path) -> Setup:
        art = folder / "chain.intsim"
        art.write_bytes(relu_chain_bytes(kind, relus, dilation))
        img = valid_image(folder, h=h, w=w)
        out = out_dir(folder)
        return Setup(["run", art, img, "-o", out], str(img), [out])

    return build


CASES: list[Case] = [
    Case("artifact-missing", "Artifacts", "artifact path does not exist",
         lambda f: _run_on(f / "nowhere.intsim", f), "no such artifact file"),
    Case("artifact-not-a-zip", "Artifacts", "not an artifact at all (text file)",
         _raw(lambda f: b"hello, I am not an artifact\n"), "not a readable artifact archive"),
    Case("artifact-truncated", "Artifacts", "truncated archive (first half of a valid file)",
         _raw(_truncated), "truncated"),
    Case("artifact-schema-version", "Artifacts", "unknown schema version (99)", _edited(_schema_99),
         "unsupported schema version 99"),
    Case("artifact-missing-array", "Artifacts", "a declared array is missing from the archive",
         _edited(_drop_array), f"array '{WEIGHT}' is declared in graph.json but missing"),
    Case("artifact-extra-array", "Artifacts", "an extra, undeclared array", _edited(_extra_array),
         "array 'extra' is in the archive but not declared"),
    Case("artifact-changed-array", "Artifacts", "an array changed, graph.json keeps its old sha256",
         _edited(_changed_array), f"array '{WEIGHT}': sha256 mismatch"),
    Case("artifact-pickled-member", "Artifacts", "an .npy member holding a pickled object array",
         _edited(_pickled_member), "pickled/object array, refused",
         policy="never unpickled: np.load(allow_pickle=False)"),
    Case("artifact-member-dotdot", "Artifacts", "member name with `..`", _edited(_dotdot_member),
         "unsafe member name", policy="nothing is ever extracted to disk; names are checked first"),
    Case("artifact-member-absolute", "Artifacts", "member name with an absolute path",
         _edited(_absolute_member), "unsafe member name"),
    Case("artifact-nan-in-graph", "Artifacts", "NaN in a parameter (graph.json attribute)",
         _edited(_nan_in_graph), "got float nan"),
    Case("artifact-inf-in-graph", "Artifacts", "Infinity in a parameter (encoder multiplier)",
         _edited(_inf_in_graph), "got float inf"),
    Case("artifact-float-array", "Artifacts", "a float array full of NaN (declared, correct hash)",
         _edited(_float_array), "dtype float64 not allowed", policy="parameters are integers only"),
    Case("artifact-int-out-of-range", "Artifacts", "an integer parameter out of range "
         "(a 2^40 weight mantissa, mult_bits 31)", _edited(_mantissa_out_of_range), "is outside |M| ≤ 2147483647"),
    Case("artifact-shape-vs-graph", "Artifacts", "array shape inconsistent with the graph "
         "(conv weight with one input channel too many)", _edited(_shape_vs_graph), "head.conv"),
    Case("artifact-unknown-op", "Artifacts", "an unknown op", _edited(_unknown_op), "unknown op 'gelu'"),
    Case("artifact-cycle", "Artifacts", "a cycle in the graph", _edited(_cycle), "cycle"),
    Case("artifact-codes-exceed-bits", "Artifacts", "code range does not fit the declared code bits "
         "(qmax 300 with 8-bit codes)", _edited(_codes_exceed_bits), "more than the 8 its declaration allows"),
    Case("artifact-duplicate-json-key", "Artifacts", "graph.json repeats a key (the last one would silently win)",
         _raw(_duplicate_key), "duplicate key 'format'"),
    Case("artifact-bzip2-member", "Artifacts", "a member compressed with bzip2 (the format allows stored or "
         "deflated only)", _raw(_bzip2), "compression method 12"),
    Case("artifact-array-bomb", "Artifacts", "an array member that inflates far beyond its declared shape "
         "(judged from the zip directory, before inflating)", _raw(_array_bomb), "more than its declared"),
    Case("artifact-too-many-ops", "Artifacts", "graph.json listing 10007 ops (a crafted graph; real networks have a "
         "few hundred)", _raw(lambda f: relu_chain_bytes("valid", 10_001)), "more than the 10000 accepted",
         policy="op, tensor and array counts are capped (10000, 20000, 40000) and checked on the decoded "
                "graph.json before any array is read or any op parsed"),
    Case("artifact-too-many-tensors", "Artifacts", "graph.json declaring 20008 tensors",
         _raw(lambda f: relu_chain_bytes("valid", 0, extra_tensors=20_001)), "more than the 20000 accepted"),
    Case("artifact-needs-6003-columns", "Artifacts", "a 3000-relu net whose dilated conv needs 6003 columns, "
         "given a 10×12 image", _chain_on_image("valid", 3000, 3000, 12, 10), "it needs at least 6003×5 pixels",
         policy="the smallest input size is computed directly (one backward pass over the graph, exact; no "
                "search): refused in well under a second"),
    Case("artifact-odd-size-3000-relus", "Artifacts", "a 3000-relu net with a stride-2 path re-joining a skip "
         "path, given an odd height", _chain_on_image("unet", 3000, None, 13, 10),
         "the nearest larger size that runs is 10×14",
         policy="the nearest size that runs is found for all candidate sizes at once (one vectorised pass "
                "over the graph per axis)"),
]
