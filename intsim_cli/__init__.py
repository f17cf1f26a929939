"""The ``intsim`` command: one front for every stage, the top layer (it may import intsim, golden,
calib and reports; none of them imports it, see the import-linter contracts in pyproject.toml).

Commands that need only the engine are in engine_commands; those that need torch (calibrate,
golden, eval, demo, ...) in torch_commands, which imports the upper layers lazily so the engine
runs without torch. Exit codes: intsim_cli.errors. ``--debug`` shows tracebacks.
"""
from intsim_cli.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_MISMATCH, EXIT_OK, EXIT_OVERFLOW, UsageError
from intsim_cli.main import console, main
from intsim_cli.parser import build_parser

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_MISMATCH", "EXIT_OK", "EXIT_OVERFLOW", "UsageError",
           "build_parser", "console", "main"]
