"""Building the float model a calibration starts from: zoo models, the models calibrate builds itself
(:data:`LOCAL_MODELS`), your own (``net.py:factory``, ``module:Class``, ``model.onnx``), and which
checkpoint each uses (:func:`resolve_weights`). ``calib.cli_calibrate`` and ``calib.evaluate`` both
build models here.
"""
from __future__ import annotations

from pathlib import Path

import torch

from calib.data_root import data_root
from calib.models.edsr import EDSR
from calib.models.user import UserModelEntry, check_io, is_model_spec, load_user_model

#: Models calibrate builds itself (not in the zoo registry, calib/models/zoo.py): full EDSR
#: (32 blocks, 256 features, res_scale 0.1 — the constant factor is folded into the conv at export).
#: name → (constructor, kwargs, scales).
LOCAL_MODELS = {
    "edsr": (EDSR, {"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1}, (2, 3, 4)),
    "edsr_baseline": (EDSR, {"n_resblocks": 16, "n_feats": 64, "res_scale": 1.0}, (2, 3, 4)),
}
def _zoo_entry(model):
    if not isinstance(model, str) or is_model_spec(model):
        return None  # a user model (calib/models/user.py)
    try:
        from calib.models.zoo import get_model
    except ImportError:  # the registry is optional here
        return None
    try:
        return get_model(model)
    except KeyError:
        return None


def known_models() -> list[str]:
    try:
        from calib.models.zoo import MODELS as ZOO
    except ImportError:
        ZOO = {}
    return sorted(set(ZOO) | set(LOCAL_MODELS))


def _unknown_model(model: str) -> ValueError:
    return ValueError(f"unknown model {model!r} (known: {', '.join(known_models())})")


#: Default checkpoints of models outside the zoo (name → file): reports.demo registers tiny_sr's committed weights.
LOCAL_WEIGHTS: dict[str, Path] = {}


def resolve_weights(model: str, scale: int, weights: str | None, random_init: bool,
                    seed: int) -> tuple[str | None, str]:
    """The checkpoint to calibrate (None: random init) and the stage line that says which.

    ``weights`` if given; else the zoo checkpoint under the data root
    (:func:`calib.models.zoo.resolve_checkpoint`) or a local model's registered file
    (:data:`LOCAL_WEIGHTS`). Random weights only when ``random_init`` asks for them: the
    artifact of a random model is no super-resolution, and made by accident it looked like success.
    """
    if weights is not None and random_init:
        raise ValueError("give either --weights or --random-init, not both")
    if isinstance(model, UserModelEntry):  # an in-memory module (calib.quantize): its own weights
        if weights is not None or random_init:
            raise ValueError("an in-memory model brings its own weights: no weights or random_init")
        return None, "weights: the module's own (in memory)"
    if is_model_spec(model) and str(model).lower().endswith(".onnx"):
        if weights is not None or random_init:
            raise ValueError(f"--model {model}: an ONNX file carries its own weights; drop --weights/--random-init")
        return None, f"weights: inside {model}"
    if weights is not None:
        return str(weights), f"weights: {weights}"
    if random_init:
        return None, f"weights: random init (seed {seed}, --random-init): a test model, not super-resolution"
    ask = "pass --weights FILE, or --random-init for random weights"
    if is_model_spec(model):
        raise ValueError(f"--model {model}: {ask}")
    entry = _zoo_entry(model)
    if entry is None:
        if model not in LOCAL_MODELS:
            raise _unknown_model(model)
        if model not in LOCAL_WEIGHTS:
            raise ValueError(f"model {model!r} has no published checkpoint: {ask}")
        return str(LOCAL_WEIGHTS[model]), f"weights: {LOCAL_WEIGHTS[model]} (the {model} model's own checkpoint)"
    rel = entry.default_checkpoint(scale)  # refuses a scale the model does not have
    if rel is None:
        raise ValueError(f"model {model!r} has no published checkpoint for ×{scale}: {ask}")
    from calib.models.zoo import resolve_checkpoint

    try:
        path = resolve_checkpoint(entry.name, scale)
    except FileNotFoundError:
        raise ValueError(f"no --weights given and the {entry.name} ×{scale} checkpoint {data_root() / rel} is not "
                         f"there: {ask}, or set INTSIM_DATA_ROOT to the folder that holds weights/") from None
    return str(path), f"weights: {path} (the {entry.name} ×{scale} zoo checkpoint under the data root)"


def build_model(model: str, scale: int, weights: str | None, seed: int) -> tuple[torch.nn.Module, float, int]:
    """The float model (eval mode), its input range (rgb_range) and image channels (:func:`build_entry`)."""
    net, _entry, rgb_range, in_channels = build_entry(model, scale, weights, seed)
    return net, rgb_range, in_channels


def build_entry(model, scale: int, weights: str | None, seed: int, *, rgb_range: float | None = None,
                in_channels: int | None = None):
    """``(float model in eval mode, its entry, input range rgb_range, image channels)``.

    The entry is the zoo's :class:`calib.models.zoo.ModelEntry`, a user model's
    :class:`calib.models.user.UserModelEntry` (``model`` a spec such as ``net.py:factory`` or ``model.onnx``,
    or an entry of an in-memory module; ``rgb_range`` / ``in_channels`` apply to these only), or None for
    the models calibrate builds itself (:data:`LOCAL_MODELS`).

    Random init under ``torch.manual_seed(seed)`` when ``weights`` is None.
    Models of the zoo registry (calib/models/zoo.py) are built/loaded through
    it (strict state-dict loading, its checkpoint formats); ``edsr`` (full
    EDSR) is built here. Whether the graph can be exported is decided later by
    the capture (unsupported ops are refused by name).
    """
    if isinstance(model, UserModelEntry):
        if rgb_range is not None or in_channels is not None:
            raise ValueError("an in-memory model's rgb_range and in_channels are set when its entry is made")
        if int(scale) < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        check_io(model, model.prebuilt.eval(), int(scale))
        return model.prebuilt, model, float(model.rgb_range), int(model.in_channels)
    if is_model_spec(model):
        entry, net = load_user_model(model, int(scale), weights, seed, rgb_range=rgb_range, in_channels=in_channels)
        check_io(entry, net, int(scale))
        return net, entry, float(entry.rgb_range), int(entry.in_channels)
    if rgb_range is not None or in_channels is not None:
        raise ValueError(f"model {model!r}: rgb_range and in_channels are the zoo's; they apply to your own "
                         "models (--model net.py:factory)")
    entry = _zoo_entry(model)
    if entry is not None:
        if scale not in entry.scales:
            raise ValueError(f"--scale {scale}: model {model!r} supports scales {', '.join(map(str, entry.scales))}")
        if weights is None:
            torch.manual_seed(seed)
            net = entry.build(scale)
        else:
            if not Path(weights).exists():
                raise ValueError(f"weights file {weights} does not exist")
            try:
                from calib.models._checkpoint_io import check_checkpoint_file
                from calib.models.zoo import verify_if_official

                check_checkpoint_file(weights)  # a FIFO, device or folder is refused before anything opens it
                verify_if_official(entry.name, weights)  # an official file name must carry the published sha256
                net = entry.load(weights, scale)
            except (ValueError, RuntimeError, FileNotFoundError) as e:
                raise ValueError(" ".join(str(e).split())) from None
        return net.eval(), entry, float(entry.rgb_range), int(entry.in_channels)
    if model not in LOCAL_MODELS:
        raise _unknown_model(model)
    ctor, kwargs, scales = LOCAL_MODELS[model]
    if scale not in scales:
        raise ValueError(f"--scale {scale}: model {model!r} supports scales {', '.join(map(str, scales))}")
    torch.manual_seed(seed)
    net = ctor(scale, **kwargs)
    if weights is not None:
        p = Path(weights)
        if not p.exists():  # read_torch_checkpoint refuses what is not a regular file
            raise ValueError(f"weights file {weights} does not exist")
        from calib.models._loading import (
            load_state_dict_strict,
            read_torch_checkpoint,
            strip_prefix,
            unwrap_state_dict,
        )

        try:  # weights_only=True: never unpickles code; strict: missing/unexpected keys and shapes listed
            sd = strip_prefix(unwrap_state_dict(read_torch_checkpoint(p), weights), "module.")
            load_state_dict_strict(net, sd, f"{model} ×{scale}", weights)
        except (ValueError, RuntimeError) as e:
            raise ValueError(" ".join(str(e).split())) from None
    return net.eval(), None, float(net.rgb_range), int(net.n_colors)
