"""``python -m intsim_cli``: the ``intsim`` command without the installed script."""
from intsim_cli.main import console

console()
