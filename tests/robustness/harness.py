"""The robustness case table (issue 7): each bad input, what the user sees, and its test.

A :class:`Case` builds one bad input in a scratch folder and names the command
line that meets it. :func:`run_case` runs ``intsim`` in-process and records the
exit code, stderr and whether any watched output was created or changed.
``test_cases.py`` asserts the contract on every case; ``make_doc.py`` renders
the same table, with the messages actually printed, into docs/robustness.md.

Two kinds of case:

* ``refused``: exit code 2, exactly one stderr line ``intsim: error: …`` that
  names the offending file and contains ``expect``; no output created or changed.
* ``accepted``: a stated policy that handles the input (convert with a notice,
  crop, tile): exit code 0 and a stderr line containing ``expect``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

# the shared data root (real weights and images); messages naming files under it are
# shown as ``<data>/...`` in docs/robustness.md so the page does not depend on the machine
DATA_ROOT = Path(os.environ.get("INTSIM_DATA_ROOT", Path(__file__).parents[3] / "shared"))


@dataclass(frozen=True)
class Setup:
    """What a case built: the command line, the file the message must name, the outputs to watch."""

    argv: list[str]
    names: str  # path (or other identifier) the error line must contain
    outputs: list[Path] = field(default_factory=list)  # must be neither created nor changed (refused cases)
    # An environment failure (read-only or full file system) simulated while the command runs:
    # permission bits cannot make a folder read-only for root, and a full disk cannot be made on demand.
    fault: Callable[[], contextlib.AbstractContextManager] | None = None


@dataclass(frozen=True)
class Case:
    id: str  # pytest id: tests/robustness/test_cases.py::test_case[<id>]
    group: str  # Images, Artifacts, Goldens, Checkpoints, Configuration
    title: str  # the situation, as a user would describe it
    build: Callable[[Path], Setup]
    expect: str  # fragment of the line the user sees
    kind: str = "refused"  # refused | accepted
    policy: str = ""  # the stated policy, for accepted cases and where a choice was made
    needs: tuple[str, ...] = ()  # "torch", "data"


@dataclass
class Outcome:
    code: int
    stderr: str
    stdout: str
    changed: list[str]  # watched outputs that were created or changed

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.strip()]


def _fingerprint(p: Path):
    """Content fingerprint of a file or folder tree (None when absent)."""
    if p.is_symlink() or p.is_file():
        return hashlib.sha256(p.read_bytes()).hexdigest()
    if p.is_dir():
        return tuple(sorted((str(q.relative_to(p)), _fingerprint(q) if q.is_file() else "dir")
                            for q in p.rglob("*")))
    return None


def _print_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _terminal_warnings():
    """Warnings reach stderr as in a user's terminal (Python's default filters), not pytest's record:
    a library warning printed before the refusal is a second stderr line the contract must see."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = _print_warning
        yield


def run_case(case: Case, scratch: Path) -> tuple[Setup, Outcome]:
    from intsim_cli import main

    setup = case.build(scratch)
    before = {str(p): _fingerprint(p) for p in setup.outputs}
    err, out = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(scratch)  # relative outputs land in the scratch folder, never in the repo
        fault = setup.fault() if setup.fault else contextlib.nullcontext()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), _terminal_warnings(), fault:
            code = main([str(a) for a in setup.argv])
    finally:
        os.chdir(cwd)
    changed = [k for k, v in before.items() if _fingerprint(Path(k)) != v]
    # A temp file left behind is a half-written output too.
    for p in setup.outputs:
        parent = p.parent
        if parent.is_dir():
            changed += [str(q) for q in parent.iterdir() if q.name.startswith(f".{p.name}.")]
    return setup, Outcome(code, err.getvalue(), out.getvalue(), changed)


# --------------------------------------------------------------------------
# shared valid inputs (built once per process, copied into each scratch folder)


@cache
def _artifact_bytes(seed: int = 0) -> bytes:
    import tempfile

    from intsim.artifact import save_artifact
    from tests.artifact_factory import make_random_artifact

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "model.intsim"
        save_artifact(make_random_artifact(seed), p)
        return p.read_bytes()


def valid_artifact(folder: Path, name: str = "model.intsim", seed: int = 0) -> Path:
    """A small valid 3-channel artifact (tests/artifact_factory, every op kind)."""
    p = folder / name
    p.write_bytes(_artifact_bytes(seed))
    return p


def valid_pixels(h: int = 12, w: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def valid_image(folder: Path, name: str = "img.png", h: int = 12, w: int = 10) -> Path:
    from intsim.images import write_png

    p = folder / name
    write_png(p, valid_pixels(h, w))
    return p


@cache
def _golden_template() -> Path:
    import tempfile

    from intsim.artifact import load_artifact
    from tests.intsim.test_verify import engine_golden

    d = Path(tempfile.mkdtemp(prefix="intsim-robust-golden-"))
    art_path = valid_artifact(d)
    engine_golden(load_artifact(art_path), d / "golden", [("img0.png", valid_pixels(12, 10, 0)),
                                                         ("img1.png", valid_pixels(9, 11, 1))])
    return d / "golden"


def valid_golden(folder: Path, name: str = "golden") -> Path:
    """A valid golden folder for :func:`valid_artifact` (engine-written, two inputs)."""
    dst = folder / name
    shutil.copytree(_golden_template(), dst)
    return dst


def out_dir(folder: Path, name: str = "out") -> Path:
    """An existing output folder holding one earlier result, so 'changed' is observable."""
    d = folder / name
    d.mkdir(exist_ok=True)
    (d / "earlier.png").write_bytes(b"earlier result")
    return d
