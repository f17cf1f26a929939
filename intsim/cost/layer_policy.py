"""Per-conv bits of a uniform comparison scheme (``W<b>A<b>``): the ``uniform_policy`` choice.

A comparison row must be the scheme it names whatever widths the artifact itself runs at, so
every conv's bits are derived from the scheme, never copied from the artifact's codebooks (a
W8A8 artifact's ``W4A4`` row has a 4-bit body). The method's layer policy
(``calib.calibrate.LayerPolicy``) runs the head, the upsampler and the tail at
``max(high_bits, b)`` bits and the body at ``b``; the policies:

* ``follow`` (default): that layer policy as the artifact's calibration recorded it — each conv's
  role from ``metadata["layers"][name]["role"]`` and ``high_roles``/``high_bits`` from
  ``metadata["calibration"]["policy"]`` — else roles from the graph (first conv = head, last =
  tail, the upsampling stage's convs = upsampler, the rule of ``calib.captured``) with
  head, upsampler and tail at 8 bits;
* ``all``: every conv at the scheme's bits.
"""
from __future__ import annotations

from typing import Sequence

from intsim.artifact import Artifact
from intsim.ops.opdef import ops_where

UNIFORM_POLICIES = ("follow", "all")
ROLES = ("head", "body", "upsampler", "tail")
DEFAULT_HIGH_ROLES = ("head", "upsampler", "tail")
DEFAULT_HIGH_BITS = 8
_CONV_OPS = ops_where(cost="gemm")


#: ops that enlarge the feature map without weights (the end of an upsampling stage)
UPSAMPLING_OPS = ("pixel_shuffle", "upsample_nearest", "upsample_bilinear", "upsample_bicubic")
#: element-wise ops an upsampling stage may have between its convs (encode = the next conv's input codes)
POINTWISE_OPS = ("relu", "leaky_relu", "prelu", "clamp", "lut", "encode")
#: ops where streams meet: the trunk ends at the last of them
JOIN_OPS = ("add", "concat")


def graph_roles(ops: Sequence, conv_ops: Sequence[str]) -> dict[str, str]:
    """Conv name → role, from the graph alone (the layer policy's one rule; calib's captured graph and
    an artifact's ops both use it). ``ops``: in execution order, each with ``name``, ``op``, ``inputs``,
    ``outputs`` and ``attrs["kernel"]`` on convs.

    ``head`` = first conv, ``tail`` = last conv, ``body`` = the rest except the upsampling stage:
    ``upsampler`` = a conv whose output feeds only spatial upsampling (through pointwise ops: IMDN's and
    EDSR's conv + pixel shuffle, CARN-M's conv + ReLU + pixel shuffle, RDN-idealo's UPN3 + nearest
    upsampling), together with the chain of spatial (k > 1) convs that feeds it through pointwise ops
    alone, when that chain starts at a join (RDN-idealo's global residual add → UPN1 → ReLU → UPN2 →
    ReLU → UPN3). A 1×1 conv only mixes channels and ends the chain (CARN-M's cascade ``c3``), and a
    chain that does not start at a join is body (a plain conv stack has no separate upsampling net).
    """
    convs = [op for op in ops if op.op in conv_ops]
    producer = {t: op for op in ops for t in op.outputs}
    consumers: dict[str, list] = {}
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)

    def users_of(op) -> list:
        users = consumers.get(op.outputs[0], [])
        while len(users) == 1 and users[0].op in POINTWISE_OPS:
            users = consumers.get(users[0].outputs[0], [])
        return users

    def source_of(op):
        src = producer.get(op.inputs[0])
        while src is not None and src.op in POINTWISE_OPS:
            src = producer.get(src.inputs[0])
        return src

    roles = {op.name: "body" for op in convs}
    inner = {op.name for op in convs[1:-1]}
    for op in convs[1:-1]:
        users = users_of(op)
        if not (users and all(u.op in UPSAMPLING_OPS for u in users)):
            continue
        roles[op.name] = "upsampler"
        chain, cur = [], op
        while True:
            src = source_of(cur)
            if (src is None or src.name not in inner or tuple(src.attrs.get("kernel", (1, 1))) == (1, 1)
                    or [u.name for u in users_of(src)] != [cur.name]):
                break
            chain.append(src)
            cur = src
        if chain and src is not None and src.op in JOIN_OPS:
            roles.update({c.name: "upsampler" for c in chain})
    if convs:
        roles[convs[0].name] = "head"
        roles[convs[-1].name] = "tail"
    return roles


def _graph_roles(art: Artifact) -> dict[str, str]:
    return graph_roles(art.ops, _CONV_OPS)


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


def roles_unlike_the_rule(art: Artifact) -> dict[str, tuple[str, str]]:
    """Convs whose recorded role differs from today's rule (:func:`graph_roles`): name → (recorded, rule).
    Non-empty = the artifact was calibrated under an earlier layer policy."""
    layers = art.metadata.get("layers") if isinstance(art.metadata, dict) else None
    layers = layers if isinstance(layers, dict) else {}
    out = {}
    for name, role in _graph_roles(art).items():
        meta = layers.get(name)
        if isinstance(meta, dict) and meta.get("role") in ROLES and meta["role"] != role:
            out[name] = (meta["role"], role)
    return out


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
