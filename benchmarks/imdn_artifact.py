"""A stand-in IMDN artifact for benchmarks when calib/ cannot export IMDN (not the calib/ exporter).

benchmarks.bench_engine uses ``calib.cli_calibrate.run_calibrate(model='imdn', …)``
when it can; when the calib/ exporter cannot lower IMDN (as before its
LeakyReLU/split/concat/CCA lowering existed), this module builds the same graph as
``calib/models/imdn.py`` (fea_conv; 6 IMDBs with c1–c4, 16/48 splits, LeakyReLU
0.05, concat, contrast-aware channel attention: std_pool + mean_pool → 1×1
conv → ReLU → 1×1 conv → sigmoid → mul, c5, residual; concat of the 6 block
outputs, 1×1 conv + LeakyReLU, LR_conv, long skip, upsampler conv and pixel
shuffle) with :class:`tests.artifact_factory._Builder`: the **official IMDN
weights** (``IMDN_x{s}.pth``) quantized per output channel (W bits in the body,
8 bits for fea_conv, the CCA convs and the upsampler), activations encoded with
two-region codebooks (released allocation, A bits; 8 bits for the image
input), all scales calibrated by a float64 forward pass on one LR crop. A
stand-in of a proper OAQ export: its numbers are for speed and memory, not for
PSNR.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from intsim.artifact import Artifact, Numerics, TensorSpec
from tests.artifact_factory import (
    _Builder,
    _finish,
    _pow2_frac,
    _round_half_up,
    encode_multiplier,
)

LRELU = 0.05


class _FeedRNG:
    """Hands the builder's ``conv`` the given float weight and bias instead of random ones."""

    def __init__(self, rng: np.random.Generator, arrays: list[np.ndarray]):
        self._rng = rng
        self._queue = list(arrays)

    def normal(self, loc=0.0, scale=1.0, size=None):
        if self._queue:
            a = self._queue.pop(0)
            assert size is None or tuple(np.shape(a)) == tuple(np.atleast_1d(size)), (np.shape(a), size)
            return np.asarray(a, dtype=np.float64)
        return self._rng.normal(loc, scale, size)

    def __getattr__(self, name):
        return getattr(self._rng, name)


class _IMDNBuilder(_Builder):
    BP_PERCENTILE = 99.0  # breakpoint at the 99th percentile of |x| (docs/calibration.md), not the factory's 75th
    GRID_BITS = 12

    def codebook_units(self) -> tuple[int, int]:
        return 1, self.GRID_BITS  # fixed: one realistic codebook shape, not the factory's random ones

    def conv_w(self, name, src, W, b, *, kernel, padding, wbits):
        """``conv`` with given float weight [Co, Ci, kh, kw] (torch layout) and bias [Co]."""
        real = self.rng
        self.rng = _FeedRNG(real, [np.transpose(W, (0, 2, 3, 1)), b])
        try:
            return self.conv(name, src, int(W.shape[0]), kernel=kernel, padding=padding, wbits=wbits)
        finally:
            self.rng = real

    def image_in_unit(self, name: str, src: str) -> str:
        """uint8 → x/255 (IMDN's input range [0, 1], no mean shift), §6.1."""
        C = self.tensors[src].channels
        x = self.val[src] / 255.0
        e_max = self.mb + 7
        f_o = min(self.frac_for(x), e_max)
        e = min(f_o + 8, e_max)
        m = np.full(C, _round_half_up(Fraction(1, 255) * _pow2_frac(e)), dtype=np.int64)
        o = np.zeros(C, dtype=np.int64)
        out = self.stream(f"{name}.out", self.val[src] * (m / 2.0 ** e), f_o)
        self.op(name, "image_in", [src], [out], {"exp": e}, {"mult": m, "offset": o})
        return out

    def leaky_fixed(self, name: str, src: str, alpha: float = LRELU) -> str:
        M, k = encode_multiplier(alpha, self.mbits(15))
        x = self.val[src]
        return self._same(name, "leaky_relu", src, np.where(x >= 0, x, x * M / 2.0 ** k), {"mult": M, "shift": k})

    def image_out_unit(self, name: str, src: str) -> str:
        """x ∈ [0, 1] → clamp(round(255·x)), §6.2."""
        C = self.tensors[src].channels
        f_i = self.frac(src)
        e = max(self.mbits(16) - 1 - math.floor(math.log2(255.0)), -f_i)
        m = np.full(C, _round_half_up(Fraction(255) * _pow2_frac(e)), dtype=np.int64)
        out = "output"
        self.tensors[out] = TensorSpec(out, "image", C)
        self.op(name, "image_out", [src], [out], {"exp": int(e)}, {"mult": m, "offset": np.zeros(C, np.int64)})
        return out


def _np(t) -> np.ndarray:
    return t.detach().double().numpy()


def build_imdn_artifact(weights: str | Path, scale: int, calib_image: np.ndarray, *, wbits: int = 4,
                        abits: int = 4, realization: str = "split", rounding: str = "half_up",
                        acc_bits: int = 32, stream_bits: int = 24, seed: int = 0) -> Artifact:
    """The IMDN ×``scale`` graph with the official weights at W``wbits``A``abits`` (see the module docstring)."""
    from calib.models.imdn import load  # torch only here

    net = load(weights, scale)
    rng = np.random.default_rng(seed)
    nx = Numerics(rounding=rounding, realization=realization, overflow="saturate", acc_bits=acc_bits,
                  stream_bits=stream_bits)
    B = _IMDNBuilder(rng, nx, np.asarray(calib_image, dtype=np.uint8))

    def conv(name, src, mod, wb, kind="signed2r", bits=None):
        c = B.encode(f"{name}.enc", src, kind, abits if bits is None else bits)
        k = int(mod.weight.shape[2])
        return B.conv_w(name, c, _np(mod.weight), _np(mod.bias), kernel=(k, k), padding=(k // 2, k // 2), wbits=wb)

    x = B.image_in_unit("head.image_in", "input")
    fea = conv("fea_conv", x, net.fea_conv, 8, "uniform", 8)
    h, outs = fea, []
    for i in range(1, 7):
        blk = getattr(net, f"IMDB{i}")
        p = f"IMDB{i}"
        d = blk.distilled_channels
        r = blk.remaining_channels
        o1 = B.leaky_fixed(f"{p}.act1", conv(f"{p}.c1", h, blk.c1, wbits))
        d1, r1 = B.split(f"{p}.split1", o1, [d, r])
        o2 = B.leaky_fixed(f"{p}.act2", conv(f"{p}.c2", r1, blk.c2, wbits))
        d2, r2 = B.split(f"{p}.split2", o2, [d, r])
        o3 = B.leaky_fixed(f"{p}.act3", conv(f"{p}.c3", r2, blk.c3, wbits))
        d3, r3 = B.split(f"{p}.split3", o3, [d, r])
        o4 = conv(f"{p}.c4", r3, blk.c4, wbits)
        cat_v = np.concatenate([B.val[t] for t in (d1, d2, d3, o4)], axis=2)
        cat = B.concat(f"{p}.cat", [d1, d2, d3, o4], B.frac_for(cat_v))
        # CCA: y = std(x) + mean(x); y = sigmoid(conv(relu(conv(y)))); x·y
        sd = B.std_pool(f"{p}.cca.std", cat)
        mn = B.mean_pool(f"{p}.cca.mean", cat)
        y = B.add(f"{p}.cca.add", sd, mn)
        y = B.relu(f"{p}.cca.relu", conv(f"{p}.cca.du0", y, blk.cca.conv_du[0], 8, "uniform", 8))
        y = B.sigmoid(f"{p}.cca.sigmoid", conv(f"{p}.cca.du2", y, blk.cca.conv_du[2], 8, "relu2r", 8))
        att = B.mul(f"{p}.cca.mul", cat, y)
        c5 = conv(f"{p}.c5", att, blk.c5, wbits)
        h = B.add(f"{p}.add", c5, h)
        outs.append(h)
    cat_v = np.concatenate([B.val[t] for t in outs], axis=2)
    cat = B.concat("c.cat", outs, B.frac_for(cat_v))
    ob = B.leaky_fixed("c.act", conv("c.conv", cat, net.c[0], wbits))
    lr = B.add("LR.add", conv("LR_conv", ob, net.LR_conv, wbits), fea)
    up = conv("upsampler.conv", lr, net.upsampler[0], 8, "signed2r", 8)
    sh = B.pixel_shuffle("upsampler.shuffle", up, scale)
    B.image_out_unit("tail.image_out", sh)
    art = _finish(B, seed, "imdn")
    art.model.update({"name": "imdn", "scale": int(scale), "weights": Path(weights).name,
                      "bits": f"W{wbits}A{abits}", "builder": "benchmarks.imdn_artifact (test factory)"})
    return art
