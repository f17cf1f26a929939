"""Your own model: a float network named by a spec instead of a zoo name.

Three spellings of ``--model`` (and of :func:`calib.quantize`'s ``model`` when it is a string):

* ``path/to/net.py:factory`` — the file is imported (the user names it: loading user code is
  explicit) and ``factory(scale)`` must return an ``nn.Module``;
* ``package.module:Name`` — the same through ``importlib`` (the module must be importable);
* ``model.onnx`` — a float ONNX graph, read by :mod:`calib.onnx_import` (no user code runs).

``factory`` may also be a class (``Name(scale)``) or take no argument at all (``Name()``).
Weights come from ``--weights FILE``, read only through :func:`calib.models._loading.read_torch_checkpoint`
(``torch.load(weights_only=True)``: a checkpoint never runs code) and loaded strictly; an ONNX file
carries its own weights.

The model's value range (``rgb_range``: pixels 0..255 ↔ [0, rgb_range]) is an argument, default 1.0;
its image channels (1 = Y, 3 = RGB) are an argument or the ``in_channels`` of its first conv. No class
attribute is read.

The artifact records the spec, the sha256 of the source file (the ``.py`` / module file / ``.onnx``),
the range, channels and checkpoint (:meth:`UserModelEntry.source_record`), so ``eval``
(``--engine fp`` and ``fakequant``), ``report`` and ``sweep`` rebuild the float model from the
artifact alone (:func:`rebuild`); a changed or missing source file is refused with one line.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calib.models.zoo import ModelEntry, _as_rgb_uint8, sha256_file

#: ``metadata.source.kind`` of a user model: python file, importable module, ONNX file, or an
#: in-memory module given to :func:`calib.quantize` (not rebuildable).
KINDS = ("python", "module", "onnx", "object")
#: Scales a user model may be asked for (the engine's upsamplers take any integer factor).
USER_SCALES = tuple(range(1, 9))


class ModelSpecError(ValueError):
    """A ``--model`` spec that cannot be loaded (one line: what and why)."""


def is_model_spec(model) -> bool:
    """Whether ``model`` names a user model (a spec with ``:``, a ``.py`` or an ``.onnx`` file) rather than a
    zoo name."""
    if isinstance(model, UserModelEntry):
        return True
    s = str(model)
    return ":" in s or s.lower().endswith((".onnx", ".py"))


def _first_conv_channels(net) -> int | None:
    import torch.nn as nn

    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return int(m.in_channels)
    return None


def _resolve_callable(spec: str) -> tuple[str, Callable, str]:
    """``(kind, the factory, its source file)`` of a ``file.py:name`` or ``module:name`` spec."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ModelSpecError(f"--model {spec!r}: expected path/to/net.py:factory, package.module:Class or "
                             "model.onnx")
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = Path(target).expanduser()
        if not path.is_file():
            raise ModelSpecError(f"--model {spec}: {path} is not a file")
        kind, name = "python", f"_intsim_user_model_{sha256_file(path)[:16]}"
        try:
            mspec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module  # dataclasses and pickling look the module up by name
            mspec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's code may raise anything; one line says what
            sys.modules.pop(name, None)
            raise ModelSpecError(f"--model {spec}: importing {path} failed: {type(e).__name__}: "
                                 f"{' '.join(str(e).split())}") from None
        source = str(path.resolve())
    else:
        kind = "module"
        try:
            module = importlib.import_module(target)
        except Exception as e:  # noqa: BLE001
            raise ModelSpecError(f"--model {spec}: cannot import module {target!r}: {type(e).__name__}: "
                                 f"{' '.join(str(e).split())}") from None
        source = getattr(module, "__file__", None)
        if not source:
            raise ModelSpecError(f"--model {spec}: module {target!r} has no source file to record")
        source = str(Path(source).resolve())
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ModelSpecError(f"--model {spec}: {target} has no callable {attr!r}")
    return kind, fn, source


def _call_factory(spec: str, fn: Callable, scale: int):
    import torch.nn as nn

    try:
        takes = [p for p in inspect.signature(fn).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):  # builtins without a signature: call with the scale
        takes = [None]
    try:
        net = fn(int(scale)) if takes else fn()
    except Exception as e:  # noqa: BLE001 - the user's factory may raise anything
        raise ModelSpecError(f"--model {spec}: the factory raised {type(e).__name__}: "
                             f"{' '.join(str(e).split())}") from None
    if not isinstance(net, nn.Module):
        raise ModelSpecError(f"--model {spec}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    return net


@dataclass(frozen=True)
class UserModelEntry(ModelEntry):
    """A zoo-like entry (:class:`calib.models.zoo.ModelEntry`'s interface) for a user model."""

    spec: str = ""
    kind: str = "python"
    source_file: str | None = None
    source_sha256: str | None = None
    factory: Callable | None = field(default=None, compare=False, repr=False)
    prebuilt: object = field(default=None, compare=False, repr=False)  # kind "object": the module itself

    # -- construction / loading
    def build(self, scale: int):
        scale = self._check_scale(scale)
        if self.kind == "object":
            return self.prebuilt
        if self.kind == "onnx":
            from calib.onnx_import import load_onnx

            return load_onnx(self.source_file)
        return _call_factory(self.spec, self.factory, scale)

    def load(self, path, scale: int, verify: bool = False):
        """``build(scale)`` with the checkpoint's state dict loaded strictly (``weights_only=True``)."""
        from calib.models._loading import (
            load_state_dict_strict,
            read_torch_checkpoint,
            strip_prefix,
            unwrap_state_dict,
        )

        if self.kind == "onnx":
            raise ModelSpecError(f"--model {self.spec}: an ONNX file carries its own weights; drop --weights")
        net = self.build(scale)
        sd = strip_prefix(unwrap_state_dict(read_torch_checkpoint(path), path), "module.")
        return load_state_dict_strict(net, sd, f"{self.spec} ×{scale}", path).eval()

    def default_checkpoint(self, scale: int) -> str | None:
        return None

    # -- I/O conventions: RGB or Y (of the LR), any rgb_range
    def preprocess(self, lr: np.ndarray, scale: int):
        import torch

        if self.color == "y":
            y = torch.from_numpy(self.y_plane_uint8(lr, scale).astype(np.float32))[None, None]
        else:
            y = torch.from_numpy(np.ascontiguousarray(_as_rgb_uint8(lr).transpose(2, 0, 1))).float()[None]
        return y * (self.rgb_range / 255.0)

    def y_plane_uint8(self, lr: np.ndarray, scale: int) -> np.ndarray:
        """The uint8 Y plane (MATLAB rgb2ycbcr luma, rounded) of the LR image: a 1-channel model's input."""
        from calib.metrics import rgb2y

        return np.clip(np.floor(rgb2y(_as_rgb_uint8(lr)) + 0.5), 0, 255).astype(np.uint8)

    def postprocess(self, out) -> np.ndarray:
        from calib.metrics import to_uint8

        a = out.detach().float().cpu()[0].numpy().transpose(1, 2, 0).astype(np.float64) * (255.0 / self.rgb_range)
        return to_uint8(a[:, :, 0] if self.color == "y" else a)

    # -- provenance
    def source_record(self, scale: int, checkpoint: str | None, seed: int | None) -> dict:
        """``metadata.source`` of an artifact of this model (see the module doc); ``seed``: the random init's
        seed when there is no checkpoint."""
        out: dict = {"model": self.spec, "kind": self.kind, "scale": int(scale), "rgb_range": float(self.rgb_range),
                     "in_channels": int(self.in_channels)}
        if self.source_file is not None:
            out.update(source_file=self.source_file, source_sha256=self.source_sha256)
        out["checkpoint"] = None  # export would otherwise record the metadata's weights label here
        if checkpoint is not None:
            out.update(checkpoint=os.path.abspath(str(checkpoint)), checkpoint_sha256=sha256_file(checkpoint))
        elif seed is not None and self.kind in ("python", "module"):
            out["random_init_seed"] = int(seed)
        return out


def _entry(spec: str, kind: str, rgb_range: float, in_channels: int, source_file, factory=None,
           prebuilt=None) -> UserModelEntry:
    if in_channels not in (1, 3):
        raise ModelSpecError(f"--model {spec}: the model takes {in_channels} image channels; the engine takes 1 (Y) "
                             "or 3 (RGB)")
    if not (isinstance(rgb_range, (int, float)) and 0 < float(rgb_range) < float("inf")):
        raise ModelSpecError(f"rgb_range must be a positive number, got {rgb_range!r}")
    return UserModelEntry(
        name=spec, description=f"user model {spec}", scales=USER_SCALES, module="", build_fn="", load_fn="",
        color="y" if in_channels == 1 else "rgb", rgb_range=float(rgb_range), spec=spec, kind=kind,
        source_file=source_file, source_sha256=sha256_file(source_file) if source_file else None,
        factory=factory, prebuilt=prebuilt)


def _channels(spec: str, net, in_channels: int | None) -> int:
    if in_channels is not None:
        return int(in_channels)
    found = _first_conv_channels(net)
    if found is None:
        raise ModelSpecError(f"--model {spec}: no conv to infer the image channels from; pass in_channels "
                             "(--in-channels)")
    return found


def load_user_model(spec: str, scale: int, weights: str | None, seed: int, *, rgb_range: float | None = None,
                    in_channels: int | None = None):
    """``(entry, float model in eval mode)`` of a spec; random init under ``torch.manual_seed(seed)`` when
    ``weights`` is None (a Python spec) — an ONNX file brings its weights. Bad specs raise
    :class:`ModelSpecError` (one line)."""
    import torch

    spec = str(spec)
    rr = 1.0 if rgb_range is None else rgb_range
    if spec.lower().endswith(".onnx"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ModelSpecError(f"--model {spec}: no such ONNX file")
        if weights is not None:
            raise ModelSpecError(f"--model {spec}: an ONNX file carries its own weights; drop --weights")
        from calib.onnx_import import load_onnx

        net = load_onnx(path)
        entry = _entry(spec, "onnx", rr, _channels(spec, net, in_channels), str(path.resolve()))
        return entry, net.eval()
    kind, fn, source = _resolve_callable(spec)
    torch.manual_seed(seed)
    net = _call_factory(spec, fn, scale)
    entry = _entry(spec, kind, rr, _channels(spec, net, in_channels), source, factory=fn)
    if weights is not None:
        net = entry.load(weights, scale)
    return entry, net.eval()


def object_entry(net, *, name: str | None = None, rgb_range: float | None = None,
                 in_channels: int | None = None) -> UserModelEntry:
    """The entry of an in-memory module (:func:`calib.quantize`): calibratable, not rebuildable from the
    artifact (there is no source to import)."""
    import torch.nn as nn

    if not isinstance(net, nn.Module):
        raise ModelSpecError(f"model must be a torch.nn.Module or a spec string, got {type(net).__name__}")
    label = name or type(net).__name__
    return _entry(label, "object", 1.0 if rgb_range is None else rgb_range, _channels(label, net, in_channels),
                  None, prebuilt=net)


def check_io(entry: UserModelEntry, net, scale: int, side: int = 16) -> None:
    """Refuse (one line) a model whose output is not ``in_channels`` × (side·scale)² for a side² input: a wrong
    ``--scale`` or ``--in-channels`` is named here, not met as a shape error deep in calibration."""
    import torch

    c = int(entry.in_channels)
    try:
        with torch.no_grad():
            y = net(torch.full((1, c, side, side), 0.5 * entry.rgb_range))
    except Exception as e:  # noqa: BLE001 - the user's forward may raise anything
        raise ModelSpecError(f"--model {entry.spec}: its forward fails on a 1×{c}×{side}×{side} input "
                             f"({type(e).__name__}: {' '.join(str(e).split())[:160]}); check --in-channels") from None
    want = (1, c, side * scale, side * scale)
    got = tuple(getattr(y, "shape", ()))
    if got != want:
        raise ModelSpecError(f"--model {entry.spec}: at scale {scale} a 1×{c}×{side}×{side} input should give "
                             f"{'×'.join(map(str, want))}, the model gives {'×'.join(map(str, got)) or type(y).__name__}; "
                             "check --scale (and --in-channels)")


def rebuild(src: dict):
    """``(entry, float model in eval mode, scale)`` from an artifact's ``metadata.source`` of a user model.

    The recorded source file must exist and have the recorded sha256 (else :class:`ModelSpecError`, one
    line: the artifact no longer describes that code). The checkpoint, when recorded, must exist too."""
    spec, kind = str(src.get("model")), src.get("kind")
    if kind == "object":
        raise ModelSpecError(f"the artifact's model {spec!r} was given to calib.quantize as an in-memory module: "
                             "there is no source to rebuild it from (pass a 'net.py:factory' spec to record one)")
    if kind not in KINDS:
        raise ModelSpecError(f"metadata.source.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    sfile, want = src.get("source_file"), src.get("source_sha256")
    if not isinstance(sfile, str) or not isinstance(want, str):
        raise ModelSpecError("metadata.source of a user model must record source_file and source_sha256")
    if not Path(sfile).is_file():
        raise ModelSpecError(f"the model source {sfile} recorded in the artifact is missing; the float model "
                             "cannot be rebuilt")
    if sha256_file(sfile) != want:
        raise ModelSpecError(f"the model source {sfile} changed since the artifact was exported (sha256 "
                             f"{sha256_file(sfile)[:12]}…, recorded {want[:12]}…); re-calibrate, or restore the file")
    scale = src.get("scale")
    if not (isinstance(scale, int) and scale in USER_SCALES):
        raise ModelSpecError(f"metadata.source.scale must be an integer in 1..8, got {scale!r}")
    ck = src.get("checkpoint")
    if ck is not None:
        if not isinstance(ck, str) or not Path(ck).is_file():
            raise ModelSpecError(f"the checkpoint {ck} recorded in the artifact is missing")
        got = sha256_file(ck)
        if got != src.get("checkpoint_sha256"):
            raise ModelSpecError(f"the checkpoint {ck} changed since the artifact was exported (sha256 {got[:12]}…)")
    seed = src.get("random_init_seed", 0)
    model = sfile if kind == "onnx" else spec
    if kind == "python":  # the spec's path may have been relative to another folder: import the recorded file
        model = f"{sfile}:{spec.rpartition(':')[2]}"
    entry, net = load_user_model(model, scale, ck, int(seed) if isinstance(seed, int) else 0,
                                 rgb_range=src.get("rgb_range"), in_channels=src.get("in_channels"))
    return entry, net, scale
