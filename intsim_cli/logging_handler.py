"""How the ``intsim`` command shows the library's log records.

The library reports notices through the ``intsim`` loggers (``logging.getLogger("intsim.<module>")``),
so a program that embeds it silences or redirects them with the standard ``logging`` calls. The
command attaches a handler for the duration of one command only: each record becomes one stderr
line, ``intsim: notice: …`` (INFO), ``intsim: warning: …``, ``intsim: debug: …`` (``-v``), or the
bare message for a status line (``extra=STATUS``: "wrote 3 image(s) to out"). Errors do not pass
through here: the command prints its one error line itself, whatever the level.
"""
from __future__ import annotations

import contextlib
import logging
import sys

ROOT = "intsim"
STATUS = {"status": True}  # ``log.info(text, extra=STATUS)``: a status line, shown without a prefix
_WORDS = {logging.DEBUG: "debug", logging.INFO: "notice", logging.WARNING: "warning"}


class _StderrLines(logging.Handler):
    """One line per record on the ``sys.stderr`` of the moment (tests and the robustness harness
    replace it after the handler was made)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if not getattr(record, "status", False):
                text = f"intsim: {_WORDS.get(record.levelno, record.levelname.lower())}: {text}"
            print(text, file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging's convention: a failing handler must not fail the caller
            self.handleError(record)


@contextlib.contextmanager
def command_logging(level: int):
    """Show the ``intsim`` loggers' records at ``level`` and above on stderr while the block runs,
    and only there (a root handler an embedding program set up would print them twice); the
    loggers are as they were afterwards."""
    logger = logging.getLogger(ROOT)
    handler = _StderrLines()
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
