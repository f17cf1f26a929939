"""What every command shares on the terminal: its logger, whether chatter is shown, JSON on stdout."""
from __future__ import annotations

import json
import logging
import sys

# not __name__ ("intsim_cli.terminal"): the records must come from an "intsim" logger, the one
# logging_handler shows and an embedding program silences, under the name they always had
log = logging.getLogger("intsim.cli")


def chatty() -> bool:
    """Progress bars and status lines are shown (not under ``--quiet``)."""
    return log.isEnabledFor(logging.INFO)


def bars_off() -> bool | None:
    """tqdm's ``disable``: off under ``--quiet``, else None (shown on a terminal only)."""
    return None if chatty() else True


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write("\n")
