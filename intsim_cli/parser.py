"""The ``intsim`` argument parser: global flags, then each command's arguments (parser_engine,
parser_torch), in the order ``intsim --help`` lists them."""
from __future__ import annotations

import argparse

from intsim_cli import parser_engine as E
from intsim_cli import parser_torch as T
from intsim_cli.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump; main() prefixes "intsim: error: "
        where = self.prog.removeprefix("intsim").strip()  # the subcommand, if any
        raise UsageError(f"{where}: {message}" if where else message)


class _Version(argparse.Action):
    """``--version``: read from the installed package's metadata only when asked (importlib.metadata
    is slow to import for every command)."""

    def __init__(self, option_strings, dest, **kw):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0,
                         help="print intsim's version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        import intsim

        print(f"intsim {intsim.__version__}")
        parser.exit()


MAIN_EPILOG = """\
examples:
  intsim demo --quick                                  # the whole pipeline on the embedded model
  intsim calibrate --model tiny_sr --scale 2 --bits W4A4 --calib-data DIR -o m.intsim
  intsim golden m.intsim LR_DIR -o golden/              # torch float64 fake-quant
  intsim verify m.intsim golden/                        # exit 1 on the first mismatch
  intsim run m.intsim LR_DIR -o sr/ --counters c.json
  intsim cost m.intsim --counters c.json --accel edge_npu --compare
  intsim export-vectors golden/ --format readmemh -o vectors/ --artifact m.intsim
  intsim compare golden/ rtl_dumps/                     # exit 1 on the first mismatch
  intsim models --json

exit codes: 0 ok, 1 verification mismatch, 2 bad input or usage, 3 internal error,
  4 arithmetic overflow under the artifact's 'error' overflow policy.
--debug shows tracebacks; -q hides notices, progress and status lines, -v adds debug lines.
Notices are Python logging records of the "intsim" loggers (silence them there when embedding).
"""


def _global_flags(p: argparse.ArgumentParser, short_verbose: bool = False) -> None:
    """--debug, -q/--quiet, --verbose: before the command name and after it. -v only before it:
    after it a command may give -v a meaning of its own (eval: --per-image)."""
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # SUPPRESS: a subcommand's default must not undo the flag given before the command name
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no notices, progress bars or status lines (warnings and errors only)")
    p.add_argument(*(["-v"] if short_verbose else []), "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="also debug lines (thread counts, per-image times)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="intsim", description="Bit-exact integer simulation of two-region quantized SR networks.",
                epilog=MAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action=_Version)
    _global_flags(p, short_verbose=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # every subcommand also accepts the global flags (after the command name)
    _orig_add = sub.add_parser

    def _add(name, **kw):
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        sp = _orig_add(name, **kw)
        _global_flags(sp)
        return sp

    sub.add_parser = _add
    for add in (T.add_calibrate, T.add_golden, E.add_run, E.add_verify, E.add_inspect, T.add_eval, T.add_sweep,
                E.add_cost, T.add_report, T.add_models, E.add_export_vectors, E.add_compare, T.add_demo):
        add(sub)
    return p
