"""The lowering rules of shapes, sizes, channel slices and spatial reductions (a global mean
or population std over H×W → ``mean_pool`` / ``std_pool``, docs/arithmetic.md §6.11–6.12):
methods of :class:`calib.lowering._Lowering`, which holds the state they read (``env``,
``channels``) and the helpers they call (``stream_of``, ``fail``, ``emit_split``…).
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx

from calib.lowering_values import (
    AAP_FN,
    DIV,
    MEAN_FN,
    MUL,
    POW,
    SPATIAL,
    SQRT_FN,
    STD_FN,
    SUB,
    Reduce,
    Shape,
    Size,
    Stream,
    Tuple,
)


class ReductionRules:
    """Mixin of :class:`calib.lowering._Lowering`: the size and reduction patterns."""

    def _sizes_and_slices(self, node: fx.Node, t: Any, is_fn: bool, args: list, kwargs: dict, a0: Any) -> bool:
        """Shapes and sizes (for mean = sum / (H·W)) and getitem on them, on split results and
        as channel slices; True if ``node`` was handled."""
        # --- shapes and sizes (for mean = sum / (H·W))
        if (is_fn and t is getattr and len(args) == 2 and args[1] == "shape") or \
                (not is_fn and t == "size" and len(args) == 1 and not kwargs):
            self.env[node.name] = Shape(self.stream_of(node, args[0]))
            return True
        if not is_fn and t == "size":
            d = args[1] if len(args) > 1 else kwargs.get("dim")
            self.env[node.name] = Size(self.stream_of(node, args[0]), self.dims_of(node, d))
            return True
        if is_fn and t is operator.getitem:
            idx = args[1]
            if isinstance(a0, Shape):
                self.env[node.name] = Size(a0.tensor, self.dims_of(node, idx))
                return True
            if isinstance(a0, Tuple):
                if not isinstance(idx, int):
                    raise self.fail(node, f"only constant integer indices into a split result, got {idx!r}")
                self.env[node.name] = Stream(a0.items[idx])
                return True
            x = self.stream_of(node, args[0])
            idx = idx if isinstance(idx, tuple) else (idx,)
            if len(idx) < 2 or not (isinstance(idx[0], slice) and idx[0] == slice(None)) or \
                    any(not (isinstance(i, slice) and i == slice(None)) and i is not Ellipsis for i in idx[2:]) \
                    or not isinstance(idx[1], slice) or idx[1].step not in (None, 1):
                raise self.fail(node, f"only channel slicing x[:, a:b] lowers (to split), got index {args[1]!r}")
            c = self.channels[x]
            lo, hi, _ = idx[1].indices(c)
            if hi <= lo:
                raise self.fail(node, "empty channel slice")
            if lo == 0 and hi == c:
                self.env[node.name] = Stream(x)
                return True
            sizes = [s for s in (lo, hi - lo, c - hi) if s > 0]
            outs = self.emit_split(node, x, sizes, "slice")
            self.env[node.name] = Stream(outs[0] if lo == 0 else outs[1])
            prod = self.producers[self.env[node.name].tensor]
            # the slice node itself carries this output's value (for calibration taps)
            i = prod.outputs.index(self.env[node.name].tensor)
            if i == 0:
                prod.fx_node = node.name
            else:
                fxs = list(prod.extra_fx)
                fxs[i - 1] = node.name
                prod.extra_fx = tuple(fxs)
            return True
        if isinstance(a0, (Size, Shape)) or any(isinstance(self.env.get(x.name), (Size, Shape))
                                                 for x in args[1:2] if isinstance(x, fx.Node)):
            a1 = self.env.get(args[1].name) if len(args) > 1 and isinstance(args[1], fx.Node) else None
            if is_fn and t in MUL and isinstance(a0, Size) and isinstance(a1, Size) and a0.tensor == a1.tensor:
                self.env[node.name] = Size(a0.tensor, a0.dims | a1.dims)
                return True
            if is_fn and t in DIV and isinstance(a0, Reduce) and isinstance(a1, Size):
                pass  # handled below
            else:
                raise self.fail(node, "arithmetic on tensor sizes lowers only as H·W in a global mean")
        return False

    def _spatial_reduction(self, node: fx.Node, t: Any, is_fn: bool, args: list, kwargs: dict, a0: Any) -> bool:
        """The steps of a global mean / population std over H×W (mean_pool, std_pool); True if
        ``node`` was handled."""
        # --- spatial reductions (mean / std patterns)
        if (not is_fn and t == "sum") or (is_fn and t is torch.sum):
            d = args[1] if len(args) > 1 else kwargs.get("dim")
            self.check_keepdim(node, args[2] if len(args) > 2 else kwargs.get("keepdim", False))
            dims = self.dims_of(node, d)
            if not dims <= SPATIAL:
                raise self.fail(node, f"only sums over the spatial dims (2, 3) lower, got {sorted(dims)}")
            if isinstance(a0, Reduce) and a0.kind in ("sum", "sq", "sqsum") and a0.kind != "mean":
                kind = "sqsum" if a0.kind in ("sq", "sqsum") else "sum"
                if a0.kind in ("sum", "sqsum") and dims & a0.dims:
                    raise self.fail(node, "summing a dim twice")
                self.env[node.name] = Reduce(kind, a0.tensor, (a0.dims if a0.kind != "sq" else frozenset()) | dims,
                                         node.name)
            else:
                self.env[node.name] = Reduce("sum", self.stream_of(node, args[0]), dims, node.name)
            return True
        if (not is_fn and t == "mean") or (is_fn and t in MEAN_FN):
            d = args[1] if len(args) > 1 else kwargs.get("dim")
            self.check_keepdim(node, args[2] if len(args) > 2 else kwargs.get("keepdim", False))
            if self.dims_of(node, d) != SPATIAL:
                raise self.fail(node, "only a mean over both spatial dims (2, 3) lowers (mean_pool)")
            if isinstance(a0, Reduce) and a0.kind == "sq":
                self.env[node.name] = Reduce("var", a0.tensor, SPATIAL, node.name)
            else:
                self.pool_mean(node, self.stream_of(node, args[0]))
            return True
        if (not is_fn and t == "std") or (is_fn and t in STD_FN):
            d = args[1] if len(args) > 1 else kwargs.get("dim")
            unbiased = kwargs.get("unbiased", None)
            corr = kwargs.get("correction", None)
            if not ((unbiased is False) or corr == 0):
                raise self.fail(node, "only the population std (unbiased=False / correction=0) lowers (std_pool)")
            self.check_keepdim(node, kwargs.get("keepdim", False))
            if self.dims_of(node, d) != SPATIAL:
                raise self.fail(node, "only a std over both spatial dims (2, 3) lowers (std_pool)")
            self.pool_std(node, self.stream_of(node, args[0]))
            return True
        if is_fn and t in AAP_FN:
            o = args[1] if len(args) > 1 else kwargs.get("output_size")
            if o not in (1, (1, 1), [1, 1]):
                raise self.fail(node, f"adaptive average pooling to {o!r} (only global pooling to 1×1 lowers)")
            self.pool_mean(node, self.stream_of(node, args[0]))
            return True
        if (is_fn and t in POW) or (not is_fn and t in ("pow", "pow_")) or \
                (is_fn and t in SQRT_FN) or (not is_fn and t in ("sqrt", "sqrt_")):
            e = 0.5 if (t in SQRT_FN or t in ("sqrt", "sqrt_")) else self.scalar(args[1] if len(args) > 1
                                                                            else kwargs.get("exponent"))
            if isinstance(a0, Reduce) and a0.kind == "centered" and e == 2:
                self.env[node.name] = Reduce("sq", a0.tensor, frozenset(), node.name)
                return True
            if isinstance(a0, Reduce) and a0.kind == "var" and e == 0.5:
                self.pool_std(node, a0.tensor)
                return True
            raise self.fail(node, "powers lower only inside a population std over H×W "
                             "(sqrt(mean((x − mean x)²)) → std_pool)")
        if (is_fn and t in SUB) or (not is_fn and t in ("sub", "sub_")):
            a1 = self.env.get(args[1].name) if len(args) > 1 and isinstance(args[1], fx.Node) else None
            if isinstance(a1, Reduce) and a1.kind == "mean" and isinstance(a0, Stream) and \
                    a0.tensor == a1.tensor and not kwargs:
                self.env[node.name] = Reduce("centered", a0.tensor, frozenset(), node.name)
                return True
            raise self.fail(node, "subtraction lowers only as x − mean(x) inside a std")
        if (is_fn and t in DIV) or (not is_fn and t in ("div", "div_")):
            a1 = self.env.get(args[1].name) if len(args) > 1 and isinstance(args[1], fx.Node) else None
            if isinstance(a0, Reduce) and a0.kind in ("sum", "sqsum"):
                ok = isinstance(a1, Size) and a1.tensor == a0.tensor and a1.dims == SPATIAL
                if a0.dims != SPATIAL or not ok:
                    raise self.fail(node, "a spatial sum lowers only divided by H·W of the same tensor (a mean)")
                if a0.kind == "sum":
                    self.pool_mean(node, a0.tensor)
                else:
                    self.env[node.name] = Reduce("var", a0.tensor, SPATIAL, node.name)
                return True
        if isinstance(a0, Reduce) and a0.kind != "mean":
            raise self.fail(node, f"the intermediate '{a0.kind}' of a spatial reduction is used by another "
                             f"operation; only mean_pool / std_pool patterns lower")
        return False
