"""The artifact's data model (docs/artifact.md): the dataclasses a loaded artifact is made of.

Plain data with no reading, writing or checking: :mod:`intsim.validate` (and the modules its checks are
split into) and :mod:`intsim.bounds` judge these objects, and :mod:`intsim.artifact` reads and writes
them (and validates on every load and save), so this module imports neither.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from intsim.numerics import Numerics

FORMAT = "intsim-artifact"
VERSION = 1
ALLOWED_DTYPES = ("int8", "int16", "int32", "int64", "uint8")
REALIZATIONS = ("split", "grid")


class ArtifactError(ValueError):
    """A refused artifact; the message says what is wrong and where."""


@dataclass(frozen=True)
class Segment:
    """One uniform region: value(q) = (origin + step·q)·unit, q in [qmin, qmax] (§3.1)."""

    origin: int
    step: int
    qmin: int
    qmax: int

    @property
    def count(self) -> int:
        return self.qmax - self.qmin + 1


@dataclass(frozen=True)
class EncoderStage:
    """Per-segment index computation q = R((X − center)·mult, shift) (§3.4)."""

    center: int
    mult: int
    shift: int


@dataclass(frozen=True)
class Codebook:
    """A piecewise-uniform codebook with its encoder (§3)."""

    unit_m: int
    unit_e: int
    segments: tuple[Segment, ...]
    thresholds: tuple[int, ...]
    encoder: tuple[EncoderStage, ...]
    grid_bits: int | None = None
    allocation: str = "uniform"
    bits: int = 8

    @property
    def bases(self) -> tuple[int, ...]:
        """Flat code of each segment's qmin (§3.2)."""
        out, b = [], 0
        for s in self.segments:
            out.append(b)
            b += s.count
        return tuple(out)

    @property
    def num_codes(self) -> int:
        return sum(s.count for s in self.segments)

    @property
    def code_dtype(self) -> np.dtype:
        """Array dtype of flat codes, in the engine and in golden folders: int16 (int32 if N > 32767)."""
        return np.dtype(np.int16 if self.num_codes <= 32767 else np.int32)

    @property
    def held_code_dtype(self) -> np.dtype:
        """Dtype the engine may hold these codes in between two of its own ops when a run keeps no
        intermediates (a staged concat's codes, a pixel shuffle sink's; :mod:`intsim.fusion`): uint8
        where N ≤ 256, else :attr:`code_dtype`. Graph outputs and kept tensors are always :attr:`code_dtype`."""
        return np.dtype(np.uint8) if self.num_codes <= 256 else self.code_dtype

    @property
    def code_bits(self) -> int:
        """Honest storage width: ceil(log2 N) (§1.3)."""
        return max(1, math.ceil(math.log2(self.num_codes)))

    def code_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per flat code: (segment, index q, grid value G), each int64[N]."""
        seg, idx, grid = [], [], []
        for s_i, s in enumerate(self.segments):
            q = np.arange(s.qmin, s.qmax + 1, dtype=np.int64)
            seg.append(np.full(q.shape, s_i, dtype=np.int64))
            idx.append(q)
            grid.append(s.origin + s.step * q)
        return np.concatenate(seg), np.concatenate(idx), np.concatenate(grid)

    def to_json(self) -> dict:
        return {
            "unit_m": self.unit_m,
            "unit_e": self.unit_e,
            "grid_bits": self.grid_bits,
            "segments": [s.__dict__ for s in self.segments],
            "thresholds": list(self.thresholds),
            "encoder": [e.__dict__ for e in self.encoder],
            "allocation": self.allocation,
            "bits": self.bits,
        }


@dataclass(frozen=True)
class TensorSpec:
    name: str
    kind: str  # "image" | "stream" | "codes"
    channels: int
    frac: int | None = None  # streams only (§1.2)
    codebook: Codebook | None = None  # codes only (§3)

    def to_json(self) -> dict:
        d: dict[str, Any] = {"kind": self.kind, "channels": self.channels}
        if self.kind == "stream":
            d["frac"] = self.frac
        if self.kind == "codes":
            d["codebook"] = self.codebook.to_json()
        return d


@dataclass(frozen=True)
class OpSpec:
    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)  # role -> array name

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "op": self.op,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "attrs": self.attrs,
            "arrays": self.arrays,
        }


@dataclass
class Artifact:
    """A loaded, validated artifact. ``sha256`` is the hash of the file bytes (None in memory)."""

    model: dict
    numerics: Numerics
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    tensors: dict[str, TensorSpec]
    ops: list[OpSpec]
    arrays: dict[str, np.ndarray]
    metadata: dict = field(default_factory=dict)
    sha256: str | None = None
    derived: dict = field(default_factory=dict, repr=False, compare=False)
    """What the engine derives from the arrays once and reuses on every run (e.g. a conv's
    packed weights), keyed by op and the identities of the arrays it came from; never saved."""

    def array(self, op: OpSpec, role: str) -> np.ndarray:
        return self.arrays[op.arrays[role]]

    def graph_json(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "numerics": self.numerics.to_json(),
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "tensors": {n: t.to_json() for n, t in self.tensors.items()},
            "ops": [o.to_json() for o in self.ops],
            "arrays": {
                n: {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": array_sha256(a)}
                for n, a in self.arrays.items()
            },
            "metadata": self.metadata,
        }


def array_sha256(a: np.ndarray) -> str:
    """sha256 of the raw C-order little-endian bytes (artifact.md)."""
    a = np.ascontiguousarray(a)
    return hashlib.sha256(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()).hexdigest()
