"""Where the third-party benchmark images and checkpoints live.

The data (``data/``, ``weights/``) are read in place and never copied into the
repository. The root is ``$INTSIM_DATA_ROOT`` when set, else ``<repo>/../shared``
(the folder next to the repository checkout).
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "INTSIM_DATA_ROOT"
_REPO = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """The data root: ``$INTSIM_DATA_ROOT`` if set (and non-empty), else ``<repo>/../shared``.

    The folder is not required to exist; use :func:`require` for paths that must.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return (_REPO.parent / "shared").resolve()


def require(path_rel: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """``data_root() / path_rel``, raising a clear :class:`FileNotFoundError` if it is absent.

    ``root`` overrides the data root (e.g. a ``--data-root`` option).
    """
    base = Path(root).expanduser().resolve() if root is not None else data_root()
    p = Path(path_rel)
    full = p if p.is_absolute() else base / p
    if not full.exists():
        if not base.exists():
            hint = (f"the data root {base} does not exist; set ${ENV_VAR} to the folder that holds "
                    f"data/ and weights/ (default: ../shared next to the repository)")
        else:
            hint = f"it is not under the data root {base} (set ${ENV_VAR} to use another root)"
        raise FileNotFoundError(f"{full}: not found: {hint}")
    return full


def available(path_rel: str | os.PathLike, root: str | os.PathLike | None = None) -> bool:
    """True when ``path_rel`` exists under the data root."""
    try:
        require(path_rel, root)
    except FileNotFoundError:
        return False
    return True
