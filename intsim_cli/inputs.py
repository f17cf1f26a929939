"""Reading a command's input images and refusing outputs that would overwrite an input."""
from __future__ import annotations

from pathlib import Path

from intsim_cli.errors import UsageError
from intsim_cli.terminal import log


def load_inputs(paths: list[str], channels: int, notices: list[str] | None = None, max_bytes: int | None = None):
    """Read every input image; mode notices go to ``notices`` when given (printed once the
    command has succeeded), else straight to the log."""
    from intsim.images import collect_image_paths, read_image

    images = [read_image(p, channels, max_bytes) for p in collect_image_paths(paths)]
    for im in images:
        if im.notice:
            if notices is None:
                log.info(im.notice)
            else:
                notices.append(im.notice)
    return images


def input_channels(art) -> int:
    return art.tensors[art.inputs[0]].channels


def refuse_overwrite(out, inputs, what: str) -> None:
    """Refuse (exit 2) an output path that is one of the command's own inputs: never destroy an input."""
    o = Path(out).resolve()
    for p in inputs:
        if p is not None and Path(p).exists() and Path(p).resolve() == o:
            raise UsageError(f"{out}: {what} would overwrite the input {p}; choose another path")
