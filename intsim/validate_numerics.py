"""Semantic checks of an artifact's numerics, arrays, tensors and codebooks (docs/artifact.md,
"Loader checks" 1–3; arithmetic.md §1.2–§1.4, §2, §3, §4, §5.3, §8).

Also the validation context :class:`_V` that every semantic check of :mod:`intsim.validate`
and :mod:`intsim.validate_ops` reports through (``v.fail(msg)`` raises
:class:`~intsim.artifact_model.ArtifactError` prefixed with ``where``).
"""
from __future__ import annotations

import numpy as np

from intsim import bounds
from intsim.artifact_model import (
    ALLOWED_DTYPES,
    REALIZATIONS,
    Artifact,
    ArtifactError,
    Codebook,
    EncoderStage,
    Numerics,
    OpSpec,
    Segment,
    TensorSpec,
)
from intsim.rounding import RoundingMode
from intsim.spec_enum import OverflowPolicy
from intsim.validate_schema import INT64_MAX, MAX_SHIFT, SEGMENT_KEYS, _int, _list, _str

ROUNDINGS = RoundingMode.names()  # §2
OVERFLOWS = OverflowPolicy.names()  # §4
ACC_BITS = (8, 48)  # §8
STREAM_BITS = (8, 40)  # §8
MULT_BITS = (8, 31)  # §2.1
GRID_BITS = (6, 16)  # §8
MAX_SEGMENTS = 3  # §3.1
# Not in the spec: a sanity cap so that per-code tables (engine, golden, inspect)
# cannot be made to allocate unbounded memory. 2^24 codes is far beyond any
# quantizer (a 16-bit uniform quantizer has 2^16).
MAX_CODES = 1 << 24
# Not in the spec: a sanity bound on fracs (2^±128 is exact in float64 for golden);
# every shift derived from fracs is checked against [0, 62] separately.
FRAC_RANGE = (-128, 128)
IMAGE_CHANNELS = (1, 3)  # §1.4


class _V:
    """Validation context: the artifact, the message prefix and derived facts."""

    def __init__(self, art: Artifact, where: str):
        self.art = art
        self.where = where
        self.nx = art.numerics
        self.mult_max = 0  # set by _check_numerics once mult_bits is known to be valid

    def fail(self, msg: str):
        raise ArtifactError(f"{self.where}: {msg}")

    def tin(self, op: OpSpec, i: int = 0) -> TensorSpec:
        """The spec of the op's ``i``-th input tensor."""
        return self.art.tensors[op.inputs[i]]


def _check_numerics(v: _V) -> None:
    n = v.nx
    if not isinstance(n, Numerics):
        v.fail(f"numerics must be a Numerics, got {type(n).__name__}")
    w = f"{v.where}: numerics"
    if _str(n.rounding, f"{w}.rounding") not in ROUNDINGS:
        v.fail(f"numerics.rounding {n.rounding!r} is not one of {', '.join(ROUNDINGS)} (§2)")
    if _str(n.realization, f"{w}.realization") not in REALIZATIONS:
        v.fail(f"numerics.realization {n.realization!r} is not one of {', '.join(REALIZATIONS)} (§5.3)")
    if _str(n.overflow, f"{w}.overflow") not in OVERFLOWS:
        v.fail(f"numerics.overflow {n.overflow!r} is not one of {', '.join(OVERFLOWS)} (§4)")
    _int(n.acc_bits, f"{w}.acc_bits (§8)", *ACC_BITS)
    _int(n.stream_bits, f"{w}.stream_bits (§8)", *STREAM_BITS)
    _int(n.mult_bits, f"{w}.mult_bits (§2.1)", *MULT_BITS)
    v.mult_max = (1 << n.mult_bits) - 1


def _array_name_ok(name: str) -> bool:
    # The name becomes the archive member arrays/<name>.npy: same rules as members.
    return bool(name) and not (name.startswith("/") or "\\" in name or ".." in name.split("/"))


def _check_arrays(v: _V) -> None:
    if not isinstance(v.art.arrays, dict):
        v.fail("arrays must be a dict of name -> numpy array")
    for name, a in v.art.arrays.items():
        if not isinstance(name, str) or not _array_name_ok(name):
            v.fail(f"array name {name!r} is not a safe member name (empty, absolute, '..' or backslash)")
        if not isinstance(a, np.ndarray):
            v.fail(f"array {name!r} is a {type(a).__name__}, not a numpy array")
        if str(a.dtype) not in ALLOWED_DTYPES:
            v.fail(f"array {name!r}: dtype {a.dtype} not allowed (allowed: {', '.join(ALLOWED_DTYPES)})")


def _check_codebook(v: _V, cb: Codebook, tname: str) -> None:
    """§3: segments, flat codes, thresholds, encoder, grid fit."""
    w = f"{v.where}: tensor {tname!r} codebook"
    if not isinstance(cb, Codebook):
        v.fail(f"tensor {tname!r}: codes tensor needs a Codebook, got {type(cb).__name__}")
    _int(cb.unit_m, f"{w}.unit_m (u = unit_m·2^-unit_e, §3.1)", 1, v.mult_max)
    _int(cb.unit_e, f"{w}.unit_e")
    segs = _list(cb.segments, f"{w}.segments")
    if not 1 <= len(segs) <= MAX_SEGMENTS:
        v.fail(f"tensor {tname!r} codebook: {len(segs)} segments, must be 1 to {MAX_SEGMENTS} (§3.1)")
    ncodes = 0
    prev_hi = None
    for i, s in enumerate(segs):
        sw = f"{w}.segments[{i}]"
        if not isinstance(s, Segment):
            v.fail(f"tensor {tname!r} codebook segment {i} must be a Segment, got {type(s).__name__}")
        for k in SEGMENT_KEYS:
            _int(getattr(s, k), f"{sw}.{k}")
        if s.step < 1:
            v.fail(f"tensor {tname!r} codebook segment {i}: step {s.step} must be ≥ 1 (§3.1)")
        if s.qmin > s.qmax:
            v.fail(f"tensor {tname!r} codebook segment {i}: empty index range qmin {s.qmin} > qmax {s.qmax} (§3.1)")
        for q in (s.qmin, s.qmax):
            if abs(s.step * q) > INT64_MAX or abs(s.origin + s.step * q) > INT64_MAX:
                v.fail(f"tensor {tname!r} codebook segment {i}: grid value G at q = {q} does not fit int64")
        lo, hi = bounds.segment_grid_extremes(s)
        if prev_hi is not None and not prev_hi < lo:
            v.fail(f"tensor {tname!r} codebook segments {i - 1} and {i} are not strictly increasing: "
                   f"G({i - 1}, qmax) = {prev_hi} ≥ G({i}, qmin) = {lo} (§3.1)")
        prev_hi = hi
        ncodes += s.qmax - s.qmin + 1
    if ncodes > MAX_CODES:
        v.fail(f"tensor {tname!r} codebook: {ncodes} codes exceed the limit of {MAX_CODES}")
    thr = _list(cb.thresholds, f"{w}.thresholds")
    if len(thr) != len(segs) - 1:
        v.fail(f"tensor {tname!r} codebook: {len(thr)} thresholds for {len(segs)} segments, need {len(segs) - 1} (§3.4)")
    for i, t in enumerate(thr):
        _int(t, f"{w}.thresholds[{i}]")
        if i and not thr[i - 1] < t:
            v.fail(f"tensor {tname!r} codebook: thresholds not strictly ascending ({thr[i - 1]} then {t}) (§3.4)")
    enc = _list(cb.encoder, f"{w}.encoder")
    if len(enc) != len(segs):
        v.fail(f"tensor {tname!r} codebook: {len(enc)} encoder stages for {len(segs)} segments (§3.4)")
    for i, e in enumerate(enc):
        ew = f"{w}.encoder[{i}]"
        if not isinstance(e, EncoderStage):
            v.fail(f"tensor {tname!r} codebook encoder stage {i} must be an EncoderStage, got {type(e).__name__}")
        _int(e.center, f"{ew}.center")
        _int(e.mult, f"{ew}.mult (E_s ≥ 1 within mult_bits = {v.nx.mult_bits}, §3.4/§2.1)", 1, v.mult_max)
        _int(e.shift, f"{ew}.shift (k_s, §3.4)", 0, MAX_SHIFT)
    gb = cb.grid_bits
    if gb is not None:
        _int(gb, f"{w}.grid_bits (§8)", *GRID_BITS)
    _str(cb.allocation, f"{w}.allocation")  # descriptive (§3.3), type only
    _int(cb.bits, f"{w}.bits", 1)
    width = declared_code_bits(cb.allocation, cb.bits)
    if ncodes > 1 << width:
        v.fail(f"tensor {tname!r} codebook: {ncodes} codes need {(ncodes - 1).bit_length()} bits, more than the "
               f"{width} its declaration allows (bits = {cb.bits}, allocation {cb.allocation!r}, §3.3)")
    if v.nx.realization == "grid":
        if gb is None:
            v.fail(f"tensor {tname!r} codebook: grid_bits is required when numerics.realization is 'grid' (§5.3)")
        glo, ghi = -(1 << (gb - 1)), (1 << (gb - 1)) - 1
        for i, s in enumerate(segs):
            for q, g in zip((s.qmin, s.qmax), bounds.segment_grid_extremes(s)):
                if not glo <= g <= ghi:
                    v.fail(f"tensor {tname!r} codebook segment {i}: grid value G({i}, {q}) = {g} does not fit "
                           f"grid_bits = {gb} (range [{glo}, {ghi}], §5.3)")


def declared_code_bits(allocation: str, bits: int) -> int:
    """Storage width (bits) a codebook declares (§3.3): the released two-region code spends one
    more bit than the nominal ``bits`` (dense b bits plus a region flag); every other allocation,
    uniform included, fits in ``bits``."""
    return bits + 1 if allocation == "released" else bits


def _check_tensors(v: _V) -> None:
    art = v.art
    if not isinstance(art.tensors, dict):
        v.fail("tensors must be a dict")
    for name, t in art.tensors.items():
        if not isinstance(name, str) or not name:
            v.fail(f"tensor name {name!r} must be a non-empty string")
        if not isinstance(t, TensorSpec):
            v.fail(f"tensor {name!r} must be a TensorSpec, got {type(t).__name__}")
        if t.name != name:
            v.fail(f"tensor {name!r}: its spec is named {t.name!r}")
        w = f"{v.where}: tensor {name!r}"
        _int(t.channels, f"{w}.channels", 1)
        if t.kind == "image":
            if t.channels not in IMAGE_CHANNELS:
                v.fail(f"tensor {name!r}: image with {t.channels} channels, must be 3 (RGB) or 1 (Y) (§1.4)")
        elif t.kind == "stream":
            _int(t.frac, f"{w}.frac (§1.2)", *FRAC_RANGE)
        elif t.kind == "codes":
            _check_codebook(v, t.codebook, name)
        else:
            v.fail(f"tensor {name!r}: unknown kind {t.kind!r} (expected image, stream or codes)")
        if t.kind != "stream" and t.frac is not None:
            v.fail(f"tensor {name!r}: only streams have a frac ({t.kind} has frac {t.frac!r})")
        if t.kind != "codes" and t.codebook is not None:
            v.fail(f"tensor {name!r}: only codes tensors have a codebook")
