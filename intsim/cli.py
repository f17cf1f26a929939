"""The ``intsim`` command: one front for every stage.

Exit codes: 0 success, 1 verification mismatch, 2 bad input or usage (one line
on stderr, nothing half-written), 3 an internal error (a bug: please report). ``--debug`` shows tracebacks. Stages that
need torch (calibrate, golden) import it lazily so the engine runs without it.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(Exception):
    """Bad command-line usage (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def _bad_input_types() -> tuple[type, ...]:
    from intsim.artifact import ArtifactError
    from intsim.images import ImageError
    from intsim.overflow import EngineOverflowError

    types: list[type] = [UsageError, ArtifactError, ImageError, EngineOverflowError, ValueError, FileNotFoundError, PermissionError]
    try:
        from intsim.golden_dir import GoldenError

        types.append(GoldenError)
    except ImportError:
        pass
    return tuple(types)


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=1)
    sys.stdout.write("\n")


# --------------------------------------------------------------------------
# subcommands


def cmd_inspect(args) -> int:
    from intsim.artifact import load_artifact
    from intsim.inspect import describe, format_inspect

    desc = describe(load_artifact(args.artifact))
    if args.json:
        _print_json(desc)
    else:
        print(format_inspect(desc))
    return EXIT_OK


def _load_inputs(paths: list[str], channels: int):
    from intsim.images import collect_image_paths, read_image

    images = [read_image(p, channels) for p in collect_image_paths(paths)]
    for im in images:
        if im.notice:
            print(f"intsim: notice: {im.notice}", file=sys.stderr)
    return images


def _input_channels(art) -> int:
    return art.tensors[art.inputs[0]].channels


def cmd_run(args) -> int:
    from tqdm import tqdm

    from intsim.artifact import atomic_write_bytes, load_artifact
    from intsim.engine import run
    from intsim.images import png_bytes

    if args.accel is not None:
        raise UsageError("--accel: the accelerator cost model is not available in this version")
    art = load_artifact(args.artifact)
    images = _load_inputs(args.inputs, _input_channels(art))
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder")
    # Compute everything first so a failure leaves no partial outputs behind.
    results, used = [], set()
    for im in tqdm(images, desc="intsim run", unit="img", disable=None, file=sys.stderr):
        res = run(art, im.pixels, keep_tensors=False)
        name = im.name
        k = 1
        while name in used:
            k += 1
            name = f"{im.name}_{k}"
        used.add(name)
        results.append((im, name, res))
    for im, name, res in results:
        atomic_write_bytes(out_dir / f"{name}.png", png_bytes(res.tensors[art.outputs[0]]))
    if args.counters:
        record = {
            "artifact_sha256": art.sha256,
            "images": [{"source": im.path, "output": f"{name}.png", "counters": res.counters} for im, name, res in results],
        }
        atomic_write_bytes(args.counters, json.dumps(record, indent=1).encode())
    print(f"wrote {len(results)} image(s) to {out_dir}", file=sys.stderr)
    return EXIT_OK


def cmd_golden(args) -> int:
    from intsim.artifact import load_artifact

    art = load_artifact(args.artifact)  # refuse a bad artifact before importing torch
    images = _load_inputs(args.inputs, _input_channels(art))
    try:
        from golden.writer import write_golden
    except ImportError as e:
        raise UsageError(f"golden needs torch (pip install torch==2.13.0): {e}") from None
    write_golden(args.artifact, [(im.path, im.pixels) for im in images], args.output)
    print(f"wrote golden tensors for {len(images)} input(s) to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_verify(args) -> int:
    from intsim.artifact import load_artifact
    from intsim.golden_dir import read_golden_dir
    from intsim.verify import verify

    art = load_artifact(args.artifact)
    golden = read_golden_dir(args.golden_dir)
    report = verify(art, golden)
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.format())
    return EXIT_OK if report.ok else EXIT_MISMATCH


def cmd_calibrate(args) -> int:
    try:
        from calib.cli_calibrate import run_calibrate
    except ImportError as e:
        raise UsageError(f"calibrate needs torch (pip install torch==2.13.0): {e}") from None
    summary = run_calibrate(
        model=args.model,
        weights=args.weights,
        scale=args.scale,
        bits=args.bits,
        method=args.method,
        calib_data=args.calib_data,
        out=args.output,
        realization=args.realization,
        rounding=args.rounding,
        overflow=args.overflow,
        acc_bits=args.acc_bits,
        stream_bits=args.stream_bits,
        n_images=args.n_images,
        patch=args.patch,
        seed=args.seed,
        mult_bits=args.mult_bits,
        grid_bits=args.grid_bits,
    )
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------
# parser


def _positive_int(lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {v}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="intsim", description="Bit-exact integer simulation of two-region quantized SR networks.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    c = sub.add_parser("calibrate", help="calibrate a float model and export an artifact",
                       description="Calibrate two-region quantizers and export an integer artifact.",
                       epilog="example: intsim calibrate --model edsr_baseline --scale 4 --bits W4A4 -o edsr_w4a4.intsim")
    c.add_argument("--model", required=True)
    c.add_argument("--weights", default=None, help="checkpoint file (random init when omitted, where allowed)")
    c.add_argument("--scale", type=_positive_int(2, 8), required=True)
    c.add_argument("--bits", required=True, help="e.g. W4A4, W8A8")
    c.add_argument("--method", default="minmax")
    c.add_argument("--calib-data", default=None, help="folder of calibration images (default: <data root>/data/SunHays80)")
    c.add_argument("--realization", choices=["split", "grid"], default="split")
    c.add_argument("--rounding", choices=["half_up", "half_away", "half_even", "floor"], default="half_up")
    c.add_argument("--overflow", choices=["error", "saturate", "wrap"], default="saturate")
    c.add_argument("--acc-bits", type=_positive_int(8, 48), default=32)
    c.add_argument("--stream-bits", type=_positive_int(8, 40), default=24)
    c.add_argument("--mult-bits", type=_positive_int(8, 31), default=31)
    c.add_argument("--grid-bits", type=_positive_int(6, 16), default=None, help="LUT width for the grid realization (default: activation bits + 6)")
    c.add_argument("--n-images", type=_positive_int(1, 100000), default=8)
    c.add_argument("--patch", type=_positive_int(8, 4096), default=48)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true")
    c.add_argument("-o", "--output", required=True)
    c.set_defaults(func=cmd_calibrate)

    g = sub.add_parser("golden", help="write golden tensors (torch float64 fake-quant)",
                       epilog="example: intsim golden model.intsim Set5/LR_bicubic/X4 -o golden/")
    g.add_argument("artifact")
    g.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    g.add_argument("-o", "--output", required=True, metavar="GOLDEN_DIR")
    g.set_defaults(func=cmd_golden)

    r = sub.add_parser("run", help="run the integer engine on images",
                       epilog="example: intsim run model.intsim baby.png -o out/ --counters counters.json")
    r.add_argument("artifact")
    r.add_argument("inputs", nargs="+", metavar="INPUT")
    r.add_argument("-o", "--output", required=True, metavar="OUT_DIR")
    r.add_argument("--accel", default=None, metavar="CONFIG")
    r.add_argument("--counters", default=None, metavar="FILE", help="write per-layer event counters as JSON")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="re-run intsim on a golden's inputs and compare every tensor",
                       epilog="example: intsim verify model.intsim golden/  (exit 1 on a mismatch)")
    v.add_argument("artifact")
    v.add_argument("golden_dir")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)

    i = sub.add_parser("inspect", help="print an artifact's graph",
                       epilog="example: intsim inspect model.intsim --json")
    i.add_argument("artifact")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if not getattr(args, "func", None):
            raise UsageError("intsim: a command is required (try intsim --help)")
        return args.func(args)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except KeyboardInterrupt:
        print("intsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `intsim inspect A | head`: the reader left, not an error
        sys.stderr.close()
        return EXIT_OK
    except Exception as e:
        if debug:
            traceback.print_exc()
        if isinstance(e, _bad_input_types()):
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"intsim: error: {msg}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"intsim: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
