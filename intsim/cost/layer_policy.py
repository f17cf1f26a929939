"""Per-conv bits of a uniform comparison scheme (``W<b>A<b>``): the ``uniform_policy`` choice.

A comparison row must be the scheme it names whatever widths the artifact itself runs at, so
every conv's bits are derived from the scheme, never copied from the artifact's codebooks (a
W8A8 artifact's ``W4A4`` row has a 4-bit body). The method's layer policy
(``calib.calibrate.LayerPolicy``) runs the head, the upsampler and the tail at
``max(high_bits, b)`` bits and the body at ``b``; the policies:

* ``follow`` (default): that layer policy as the artifact's calibration recorded it — each conv's
  role from ``metadata["layers"][name]["role"]`` and ``high_roles``/``high_bits`` from
  ``metadata["calibration"]["policy"]`` — else roles from the graph (first conv = head, last =
  tail, a conv whose output feeds only ``pixel_shuffle`` = upsampler, as ``calib.graph``) with
  head, upsampler and tail at 8 bits;
* ``all``: every conv at the scheme's bits.
"""
from __future__ import annotations

from intsim.artifact import Artifact
from intsim.ops.opdef import ops_where

UNIFORM_POLICIES = ("follow", "all")
ROLES = ("head", "body", "upsampler", "tail")
DEFAULT_HIGH_ROLES = ("head", "upsampler", "tail")
DEFAULT_HIGH_BITS = 8
_CONV_OPS = ops_where(cost="gemm")


def _graph_roles(art: Artifact) -> dict[str, str]:
    convs = [op for op in art.ops if op.op in _CONV_OPS]
    consumers: dict[str, list[str]] = {}
    for op in art.ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op.op)
    roles = {}
    for i, op in enumerate(convs):
        users = consumers.get(op.outputs[0], [])
        if i == 0:
            roles[op.name] = "head"
        elif i == len(convs) - 1:
            roles[op.name] = "tail"
        elif users and all(u == "pixel_shuffle" for u in users):
            roles[op.name] = "upsampler"
        else:
            roles[op.name] = "body"
    return roles


def conv_roles(art: Artifact) -> dict[str, str]:
    """Conv op name → ``head`` | ``body`` | ``upsampler`` | ``tail``: the role the calibration
    recorded when the artifact has one for that conv, else the graph's."""
    layers = art.metadata.get("layers") if isinstance(art.metadata, dict) else None
    layers = layers if isinstance(layers, dict) else {}
    roles = _graph_roles(art)
    for name in roles:
        meta = layers.get(name)
        if isinstance(meta, dict) and meta.get("role") in ROLES:
            roles[name] = meta["role"]
    return roles


def _recorded_policy(art: Artifact) -> tuple[tuple[str, ...], int]:
    """(high roles, high bits) from the artifact's calibration record, else the method's defaults."""
    cal = art.metadata.get("calibration") if isinstance(art.metadata, dict) else None
    pol = cal.get("policy") if isinstance(cal, dict) else None
    if not isinstance(pol, dict):
        return DEFAULT_HIGH_ROLES, DEFAULT_HIGH_BITS
    roles, bits = pol.get("high_roles"), pol.get("high_bits")
    if not (isinstance(roles, list) and all(r in ROLES for r in roles)):
        roles = DEFAULT_HIGH_ROLES
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        bits = DEFAULT_HIGH_BITS
    return tuple(roles), bits


def uniform_layer_bits(art: Artifact, weight_bits: int, act_bits: int, policy: str) -> dict[str, tuple[int, int]]:
    """Conv op name → (weight bits, activation bits) of the uniform scheme ``W<weight_bits>A<act_bits>``."""
    if policy not in UNIFORM_POLICIES:
        raise ValueError(f"uniform_policy must be one of {', '.join(UNIFORM_POLICIES)}, got {policy!r}")
    high_roles, high_bits = _recorded_policy(art) if policy == "follow" else ((), 0)
    return {name: (max(high_bits, weight_bits), max(high_bits, act_bits)) if role in high_roles
            else (weight_bits, act_bits) for name, role in conv_roles(art).items()}


def describe(policy: str, art: Artifact) -> str:
    """One line for the comparison table: which convs the uniform rows keep at high bits."""
    if policy == "all":
        return "uniform rows: every conv at the scheme's bits (--uniform-policy all)"
    roles, bits = _recorded_policy(art)
    if not roles:
        return "uniform rows: every conv at the scheme's bits (the artifact's layer policy keeps none higher)"
    return (f"uniform rows: {'/'.join(roles)} at ≥ {bits} bits, the body at the scheme's bits "
            "(--uniform-policy follow)")
