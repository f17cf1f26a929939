"""Exit codes and how an exception maps to one (intsim_cli.main prints nothing else on failure).

0 success, 1 verification mismatch, 2 bad input or usage (one line on stderr, nothing half-written;
environment errors such as a read-only or full disk count, see intsim/outputs.py), 3 an internal error
(a bug: please report), 4 an arithmetic overflow under the artifact's ``error`` overflow policy
(engine or golden; one line naming the op).
"""
from __future__ import annotations

import sys
import traceback

from intsim.outputs import ENV_ERRNOS, env_error_line

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OVERFLOW = 0, 1, 2, 3, 4


class UsageError(Exception):
    """Bad command-line usage (exit 2)."""


def _bad_input_types() -> tuple[type, ...]:
    from intsim.artifact import ArtifactError
    from intsim.images import ImageError

    types: list[type] = [UsageError, ArtifactError, ImageError, ValueError, FileNotFoundError, PermissionError]
    try:
        from intsim.golden_dir import GoldenError

        types.append(GoldenError)
    except ImportError:
        pass
    return tuple(types)


def _overflow_types() -> tuple[type, ...]:
    """Overflows under the ``error`` policy (exit 4): the artifact is valid, its arithmetic is not wide
    enough for this input, which a script should tell apart from a bad input."""
    from intsim.overflow import EngineOverflowError

    types: list[type] = [EngineOverflowError]
    golden = sys.modules.get("golden.numerics")  # only when golden ran: importing it would import torch
    if golden is not None:
        types.append(golden.GoldenOverflowError)
    return tuple(types)


def exit_code(e: Exception, debug: bool) -> int:
    """Print the one stderr line for ``e`` (its traceback too under ``--debug``) and return the exit code."""
    if debug:
        traceback.print_exc()
    if isinstance(e, OSError) and e.errno in ENV_ERRNOS:  # the environment, not a bug: name the path
        print(f"intsim: error: {env_error_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if isinstance(e, _overflow_types()):
        print(f"intsim: error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return EXIT_OVERFLOW
    if isinstance(e, _bad_input_types()):
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"intsim: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"intsim: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL
