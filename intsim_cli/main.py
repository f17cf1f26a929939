"""The ``intsim`` command's entry points: :func:`main` (in-process) and :func:`console` (the script)."""
from __future__ import annotations

import logging
import sys

from intsim_cli.errors import EXIT_OK, UsageError, exit_code
from intsim_cli.logging_handler import command_logging
from intsim_cli.parser import build_parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "func", None):
            raise UsageError("a command is required (try intsim --help)")
        with command_logging(_log_level(args)):
            return args.func(args)
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
    except KeyboardInterrupt:
        print("intsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `intsim inspect A | head`: the reader left, not an error
        sys.stderr.close()
        return EXIT_OK
    except Exception as e:
        return exit_code(e, debug)


def _log_level(args) -> int:
    """Which notices the command shows: ``-q`` warnings only, ``-v`` also debug lines."""
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    if quiet and verbose:
        raise UsageError("--quiet and --verbose exclude each other")
    return logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO


def console() -> None:
    """The ``intsim`` command (its console-script entry point): a process of its own, so the engine
    may keep freed memory for its large tensors (intsim/allocator.py). :func:`main`, which tests and
    programs call in their own process, leaves that process's allocator alone."""
    from intsim.allocator import tune_allocator

    if sys.argv[1:2] != ["golden"]:  # golden (torch, many band-sized float64 temporaries of varying size) fragments
        tune_allocator()  # a heap that keeps everything: its peak RSS is lower with the host's allocator
    sys.exit(main())
