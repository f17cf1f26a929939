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


def _load_inputs(paths: list[str], channels: int, notices: list[str] | None = None, max_bytes: int | None = None):
    """Read every input image; mode notices go to ``notices`` when given (printed once the
    command has succeeded), else straight to stderr."""
    from intsim.images import collect_image_paths, read_image

    images = [read_image(p, channels, max_bytes) for p in collect_image_paths(paths)]
    for im in images:
        if im.notice:
            if notices is None:
                print(f"intsim: notice: {im.notice}", file=sys.stderr)
            else:
                notices.append(im.notice)
    return images


def _input_channels(art) -> int:
    return art.tensors[art.inputs[0]].channels


def _refuse_overwrite(out, inputs, what: str) -> None:
    """Refuse (exit 2) an output path that is one of the command's own inputs: never destroy an input."""
    o = Path(out).resolve()
    for p in inputs:
        if p is not None and Path(p).exists() and Path(p).resolve() == o:
            raise UsageError(f"{out}: {what} would overwrite the input {p}; choose another path")


def cmd_run(args) -> int:
    from tqdm import tqdm

    from intsim.artifact import atomic_write_bytes, atomic_write_json, load_artifact
    from intsim.engine import run, run_tiled
    from intsim.footprint import tensor_shapes
    from intsim.images import png_bytes
    from intsim.input_checks import check_sizes, memory_budget, tile_plan

    art = load_artifact(args.artifact)
    acc = _load_accel(args.accel) if args.accel is not None else None
    budget = memory_budget(args.max_memory)
    notices: list[str] = []  # printed once everything succeeded: a refusal stays one line
    images = _load_inputs(args.inputs, _input_channels(art), notices, budget)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder")
    if args.counters:
        _refuse_overwrite(args.counters, [args.artifact] + [im.path for im in images], "--counters")
    check_sizes(art, images, notices)
    held, bands = 0, []  # outputs are held until all images ran: they count against the budget
    for im in images:
        bands.append(tile_plan(art, im, budget, notices, held))
        oh, ow = tensor_shapes(art, *im.pixels.shape[:2])[art.outputs[0]]
        held += oh * ow * art.tensors[art.outputs[0]].channels
    # Compute everything first so a failure leaves no partial outputs behind.
    results, used = [], set()
    for im, rows in tqdm(list(zip(images, bands)), desc="intsim run", unit="img", disable=None, file=sys.stderr):
        res = run(art, im.pixels, keep_tensors=False) if rows is None else run_tiled(art, im.pixels, rows)
        name = im.name
        k = 1
        while name in used:
            k += 1
            name = f"{im.name}_{k}"
        used.add(name)
        _refuse_overwrite(out_dir / f"{name}.png", [args.artifact] + [i.path for i in images], "the SR output")
        results.append((im, name, res))
    for im, name, res in results:
        atomic_write_bytes(out_dir / f"{name}.png", png_bytes(res.tensors[art.outputs[0]]))
    if args.counters:
        record = {
            "artifact_sha256": art.sha256,
            "images": [{"source": im.path, "output": f"{name}.png", "counters": res.counters} for im, name, res in results],
        }
        atomic_write_json(args.counters, record)
    for n in notices:
        print(f"intsim: notice: {n}", file=sys.stderr)
    print(f"wrote {len(results)} image(s) to {out_dir}", file=sys.stderr)
    if acc is not None:
        from intsim.cost import estimate_cost

        print(_cost_line(estimate_cost(art, [res.counters for _, _, res in results], acc)), file=sys.stderr)
    return EXIT_OK


def cmd_golden(args) -> int:
    from intsim.artifact import load_artifact
    from intsim.input_checks import check_golden_memory, check_sizes, memory_budget

    art = load_artifact(args.artifact)  # refuse a bad artifact before importing torch
    budget = memory_budget(args.max_memory)
    notices: list[str] = []
    images = _load_inputs(args.inputs, _input_channels(art), notices, budget)
    check_sizes(art, images, notices)
    check_golden_memory(art, images, budget)
    try:
        from golden.writer import write_golden
    except ImportError as e:
        raise UsageError(f"golden needs torch (pip install torch==2.13.0): {e}") from None
    write_golden(args.artifact, [(im.path, im.pixels) for im in images], args.output)
    for n in notices:
        print(f"intsim: notice: {n}", file=sys.stderr)
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


def _bit_list(text: str) -> tuple[int, ...]:
    try:
        bits = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated bit widths like 3,4,6,8, got {text!r}") from None
    if not bits or any(not 2 <= b <= 8 for b in bits):
        raise argparse.ArgumentTypeError(f"candidate widths must be in 2..8, got {text!r}")
    return bits


def cmd_calibrate(args) -> int:
    try:
        from calib.cli_calibrate import calibrate_run
        from reports.demo import DEMO_WEIGHTS, TINY_SR_NAME, register_tiny_sr
    except ImportError as e:
        raise UsageError(f"calibrate needs torch (pip install torch==2.13.0): {e}") from None
    register_tiny_sr()
    weights = args.weights
    if weights is None and args.model == TINY_SR_NAME:
        weights = str(DEMO_WEIGHTS)
    kwargs = dict(
        model=args.model,
        weights=weights,
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
    optional = {"allocation": args.allocation, "bp_init": args.bp_init, "state_dir": args.state_dir,
                "progress": sys.stderr.isatty(), "range_mode": args.range_mode, "per_channel": args.per_channel,
                "log": lambda line: print(line, file=sys.stderr, flush=True),
                "recon": {"iters": args.iters} if args.iters is not None else None,
                "policy_file": args.policy, "budget": args.budget, "stress": args.stress,
                "candidate_bits": args.candidates,
                "finetune": {k: v for k, v in (("epochs", args.epochs), ("lr_mode", args.lr_mode)) if v is not None}
                or None}
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    summary = calibrate_run(**kwargs).summary
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote {args.output}", file=sys.stderr)
    mp = summary.get("mixed_precision")
    if mp:
        print(f"chosen: {mp['budget']} → cost {mp['cost']:.4g} ({mp['metric']}); Pareto front (calibration data): "
              f"{', '.join(mp.get('front_files', []))}", file=sys.stderr)
    _print_quality(summary.get("holdout"))
    return EXIT_OK


def _print_quality(q: dict | None) -> None:
    """The one line calibrate ends with: quantized vs FP and bicubic on held-out calibration images."""
    if not q or q.get("quantized_psnr_db") is None:
        return
    where = (f"{q['images']} held-out calibration image(s)" if q.get("disjoint")
             else f"{q['images']} calibration image crop(s) (folder too small to hold images out)")
    print(f"{q['verdict_text']} — on {where}, integer engine", file=sys.stderr)
    st = q.get("stressed") or {}
    if st.get("quantized_psnr_db") is not None:
        print(f"  same images colour/contrast-stressed: {st['verdict_text']}", file=sys.stderr)
    if q.get("verdict") == "bad" or st.get("verdict") == "bad":
        print("warning: the quantized model is worse than bicubic upsampling on held-out images; "
              "try more bits or the default method", file=sys.stderr)


def _load_accel(name_or_path: str):
    from intsim.cost import load_accelerator

    return load_accelerator(name_or_path)


def _cost_line(cost: dict) -> str:
    t = cost["totals"]
    return (f"{cost['scheme']} ({cost['realization']}) on {cost['accelerator']['name']}: {cost['images']} image(s), "
            f"{t['energy_pj']['total'] * 1e-6:.2f} µJ and {t['latency_s'] * 1e3:.3f} ms per image, "
            f"{t['per_output_mpix']['energy_mj']:.2f} mJ per output MP, utilisation {t['utilisation']:.2f}")


def cmd_cost(args) -> int:
    from tqdm import tqdm

    from intsim.artifact import atomic_write_json, load_artifact
    from intsim.cost import compare_schemes, estimate_cost
    from intsim.cost.model import load_counters

    if args.list:
        from intsim.cost import packaged_accelerators

        rows = []
        for name, path in packaged_accelerators().items():
            rows.append({"name": name, "path": str(path), "description": _load_accel(path).description})
        if args.json:
            _print_json(rows)
        else:
            for r in rows:
                print(f"{r['name']:12s} {r['description']}")
        return EXIT_OK
    if not args.artifact:
        raise UsageError("cost: give ARTIFACT (and --images INPUT... or --counters FILE), or --list")
    if bool(args.images) == bool(args.counters):
        raise UsageError("cost: give exactly one of --images INPUT... or --counters FILE")
    if args.output:
        _refuse_overwrite(args.output, [args.artifact, args.counters, args.accel], "-o")
    art = load_artifact(args.artifact)
    acc = _load_accel(args.accel)
    if args.counters:
        counters = load_counters(args.counters, art.sha256)
    else:
        from intsim.engine import run

        images = _load_inputs(args.images, _input_channels(art))
        counters = [run(art, im.pixels, keep_tensors=False).counters
                    for im in tqdm(images, desc="intsim run", unit="img", disable=None, file=sys.stderr)]
    cost = estimate_cost(art, counters, acc, args.scheme)
    comp = compare_schemes(art, counters, acc) if args.compare else None
    if args.output:
        atomic_write_json(args.output, cost)
    if args.json:
        from intsim.cost.model import summary_row

        obj = {"summary": summary_row(cost), "warnings": cost["warnings"]}
        if comp is not None:
            obj["compare"] = comp
        _print_json(obj)
    else:
        print(_cost_line(cost))
        if comp is not None:
            print(f"  {'scheme':9s} {'realization':11s} {'energy µJ':>10s} {'latency ms':>10s} {'weights KiB':>11s} "
                  f"{'DRAM MiB':>9s}  conv input bits")
            for r in comp:
                print(f"  {r['scheme']:9s} {r['realization']:11s} {r['energy_uj']:10.2f} {r['latency_ms']:10.3f} "
                      f"{r['weight_storage_kib']:11.1f} {r['dram_mib']:9.2f}  {r['conv_input_bits']}")
        for w in cost["warnings"]:
            print(f"intsim: warning: {w}", file=sys.stderr)
    return EXIT_OK


def cmd_eval(args) -> int:
    from intsim.artifact import load_artifact

    if args.engine != "float":
        load_artifact(args.artifact)  # refuse a bad artifact with the usual one-line message
    elif not Path(args.artifact).exists():
        raise FileNotFoundError(f"{args.artifact}: no such file")
    try:
        from calib.evaluate import run_eval
    except ImportError as e:
        if getattr(e, "name", "") in ("calib.evaluate", "calib") or "calib.evaluate" in str(e):
            raise UsageError("eval: calib.evaluate is not available in this installation") from None
        raise UsageError(f"eval needs torch (pip install torch==2.13.0): {e}") from None
    extra = {"crop": args.crop} if args.crop is not None else {}
    datasets = [d.strip() for item in args.dataset for d in item.split(",") if d.strip()]
    res = run_eval(args.artifact, datasets, args.engine, data_root=args.data_root, progress=True,
                   limit=args.limit, **extra)
    if args.json:
        _print_json(res)
    else:
        for line in _flatten_lines(res):
            print(line)
    return EXIT_OK


def cmd_sweep(args) -> int:
    try:
        from reports.sweep import main as sweep_main
    except ImportError as e:
        raise UsageError(f"sweep needs torch (pip install torch==2.13.0) and the reports package: {e}") from None
    return sweep_main(args.spec, args.address, args.resume, args.num_cpus)


def _flatten_lines(obj, prefix: str = "") -> list[str]:
    """``key.sub: value`` lines of a nested result (lists of scalars on one line)."""
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, (dict, list)) and not (isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)):
                lines.extend(_flatten_lines(v, key))
            else:
                lines.append(f"{key}: {_fmt_value(v)}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            lines.extend(_flatten_lines(v, f"{prefix}[{i}]"))
    else:
        lines.append(f"{prefix}: {_fmt_value(obj)}")
    return lines


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list):
        return ", ".join(_fmt_value(x) for x in v)
    return str(v)


def cmd_report(args) -> int:
    from reports.html_report import build_report

    path = build_report(args.run_dir, args.output)
    if args.json:
        _print_json({"report": str(path)})
    else:
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def cmd_models(args) -> int:
    rows: list[dict] = []
    try:
        from calib.models.zoo import list_models
    except ImportError as e:
        raise UsageError(f"models needs the calib package and its dependencies: {e}") from None
    from calib.data_root import data_root

    root = Path(args.data_root).expanduser().resolve() if args.data_root else data_root()
    if args.data_root and not root.is_dir():
        raise UsageError(f"--data-root {root}: no such folder")
    from reports.demo import DEMO_WEIGHTS, TINY_SR, TINY_SR_NAME, TINY_SR_SCALE

    rows.append({"model": TINY_SR_NAME, "scale": TINY_SR_SCALE,
                 "description": f"embedded demo model (EDSR-style, {TINY_SR['n_resblocks']} blocks, "
                                f"{TINY_SR['n_feats']} features, trained by demo/train_tiny_sr.py)",
                 "color": "rgb", "format": "torch state dict", "checkpoint": "demo/" + DEMO_WEIGHTS.name,
                 "path": str(DEMO_WEIGHTS), "found": DEMO_WEIGHTS.is_file(), "sha256": None, "verified": None})
    rows.extend(list_models(root, verify=args.verify))
    try:
        from calib.cli_calibrate import LOCAL_MODELS

        zoo = {r["model"] for r in rows}
        for name, (_ctor, kw, scales) in LOCAL_MODELS.items():
            if name in zoo:
                continue
            for sc in scales:
                rows.append({"model": name, "scale": sc, "description": f"EDSR {kw} (random init or --weights)",
                             "color": "rgb", "format": "torch state dict", "checkpoint": None, "path": None,
                             "found": False, "sha256": None, "verified": None})
    except ImportError:  # calibrate (torch) not installed: the zoo listing is still useful
        pass
    if args.json:
        _print_json({"data_root": str(root), "models": rows})
    else:
        print(f"data root: {root}{'' if root.is_dir() else ' (absent)'}")
        print(f"{'model':14s} {'scale':>5s}  {'colour':6s} {'checkpoint':9s}  path / description")
        for r in rows:
            found = "found" if r["found"] else ("-" if r["checkpoint"] is None else "missing")
            found = {True: "verified", False: "MISMATCH"}.get(r["verified"], found)
            where = r["path"] if r["found"] else (r["checkpoint"] or r["description"])
            print(f"{r['model']:14s} {r['scale']:>5d}  {r['color']:6s} {found:9s}  {where}")
    bad = [r for r in rows if r["verified"] is False]
    if bad:  # the listing is printed first; the refusal is the one stderr line and exit 2
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{bad[0]['path']}: sha256 does not match the published {bad[0]['sha256'][:16]}… of "
                         f"{bad[0]['model']} ×{bad[0]['scale']}{more}; the file is corrupt, truncated or another checkpoint")
    return EXIT_OK


def cmd_export_vectors(args) -> int:
    from intsim.vectors import export_vectors

    index = export_vectors(args.golden_dir, args.output, args.format, tensors=args.tensor or None,
                           inputs=args.input or None, progress=True)
    if args.json:
        _print_json({k: v for k, v in index.items() if k != "files"} | {"files": len(index["files"]),
                                                                         "out": args.output})
    else:
        print(f"wrote {len(index['files'])} {args.format} file(s) to {args.output} (index: "
              f"{Path(args.output) / 'index.json'})", file=sys.stderr)
    return EXIT_OK


def cmd_demo(args) -> int:
    try:
        from reports.demo import result_table, run_demo
    except ImportError as e:
        raise UsageError(f"demo needs torch and scikit-image (make setup): {e}") from None
    out = args.out or ("intsim-demo-real" if args.real else "intsim-demo")
    summary = run_demo(out, quick=args.quick, real=args.real, data_root=args.data_root, bits=args.bits,
                       method=args.method, accel=args.accel)
    if args.json:
        _print_json({k: v for k, v in summary.items() if k != "per_image"})
    else:
        print(result_table(summary))
        print(f"report: {Path(out) / 'report.html'}   summary: {Path(out) / 'summary.json'}")
    return EXIT_OK if summary["bit_exact"] else EXIT_MISMATCH


# --------------------------------------------------------------------------
# parser


MAIN_EPILOG = """\
examples:
  intsim demo --quick                                  # the whole pipeline on the embedded model
  intsim calibrate --model tiny_sr --scale 2 --bits W4A4 --calib-data DIR -o m.intsim
  intsim golden m.intsim LR_DIR -o golden/              # torch float64 fake-quant
  intsim verify m.intsim golden/                        # exit 1 on the first mismatch
  intsim run m.intsim LR_DIR -o sr/ --counters c.json
  intsim cost m.intsim --counters c.json --accel edge_npu --compare
  intsim export-vectors golden/ --format readmemh -o vectors/
  intsim models --json

exit codes: 0 ok, 1 verification mismatch, 2 bad input or usage, 3 internal error.
--debug shows tracebacks.
"""


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


def _unit_fraction(text: str) -> float:
    """A number in [0, 1] (``--stress``)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return v


def _bits_spec(text: str) -> str:
    """``--bits``: ``W<b>A<b>`` with both widths in 2..16 (checked here, before torch is imported)."""
    import re

    m = re.fullmatch(r"[Ww](\d+)[Aa](\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected W<bits>A<bits> such as W4A4 or W8A8, got {text!r}")
    for what, b in (("weight", int(m.group(1))), ("activation", int(m.group(2)))):
        if not 2 <= b <= 16:
            raise argparse.ArgumentTypeError(f"{what} bits must be in [2, 16], got {b} in {text!r}")
    return text.strip()


def _positive_mb(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MB, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of MB, got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="intsim", description="Bit-exact integer simulation of two-region quantized SR networks.",
                epilog=MAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    # every subcommand also accepts --debug (after the command name)
    _orig_add = sub.add_parser

    def _add(name, **kw):
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        sp = _orig_add(name, **kw)
        sp.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        return sp

    sub.add_parser = _add

    c = sub.add_parser("calibrate", help="calibrate a float model and export an artifact",
                       description="Calibrate two-region quantizers and export an integer artifact.",
                       epilog="example: intsim calibrate --model edsr_baseline --scale 4 --bits W4A4 -o edsr_w4a4.intsim")
    c.add_argument("--model", required=True)
    c.add_argument("--weights", default=None, help="checkpoint file (random init when omitted, where allowed)")
    c.add_argument("--scale", type=_positive_int(2, 8), required=True)
    c.add_argument("--bits", type=_bits_spec, required=True, help="e.g. W4A4, W8A8")
    c.add_argument("--method", default=None, help="default recon (the best measured: block reconstruction with "
                   "learned rounding on two-region codes); the paper's method: oaq; baselines: minmax, percentile, "
                   "omse, ptq4sr, 2dquant, dual_region, plain_ft, sa_ft")
    c.add_argument("--iters", type=_positive_int(1, 100000), default=None,
                   help="reconstruction steps per unit (method recon; default 300)")
    c.add_argument("--stress", type=_unit_fraction, default=None, metavar="FRACTION",
                   help="fraction of calibration patches made colour-saturated and contrast-stretched, so ranges "
                        "cover saturated content (0 = off; default: the recipe's)")
    c.add_argument("--policy", default=None, metavar="FILE",
                   help="per-layer bits from a TOML file ([bits] \"layer\" = b or [w, a])")
    c.add_argument("--budget", default=None, metavar="METRIC=VALUE",
                   help="mixed precision: choose per-layer bits under energy=…|latency=…|storage=… "
                        "(relative: 0.5x = half of uniform W8A8, 1.25xW4A4; absolute: 3uJ, 4ms, 200kB)")
    c.add_argument("--candidates", type=_bit_list, default=None, metavar="B,B,…",
                   help="candidate widths for --budget (default 3,4,6,8)")
    c.add_argument("--allocation", choices=["released", "paper", "budgeted"], default=None,
                   help="code allocation of the two-region methods (default released)")
    c.add_argument("--bp-init", choices=["percentile", "search"], default=None,
                   help="two-region init: percentile (bp at the EMA p99, the recipe) or search "
                        "(joint MSE search of bp and a shrink of l, u)")
    c.add_argument("--state-dir", default=None, metavar="DIR", help="finetuning state (resumable runs)")
    c.add_argument("--epochs", type=_positive_int(1, 1000), default=None, help="finetuning epochs (default 10)")
    c.add_argument("--lr-mode", choices=["absolute", "relative"], default=None,
                   help="finetuning Adam lr: absolute (the recipe) or scaled by each parameter's initial magnitude")
    c.add_argument("--range", dest="range_mode", choices=["ema", "max"], default=None,
                   help="activation bounds: EMA of batch min/max (recipe, default) or extremes over all batches")
    c.add_argument("--per-channel", action="store_true", default=None, help="per-output-channel weight scales")
    c.add_argument("--calib-data", default=None, help="folder of calibration images (default: <data root>/data/SunHays80)")
    c.add_argument("--realization", choices=["split", "grid"], default="split")
    c.add_argument("--rounding", choices=["half_up", "half_away", "half_even", "floor"], default="half_up")
    c.add_argument("--overflow", choices=["error", "saturate", "wrap"], default="saturate")
    c.add_argument("--acc-bits", type=_positive_int(8, 48), default=32)
    c.add_argument("--stream-bits", type=_positive_int(8, 40), default=24)
    c.add_argument("--mult-bits", type=_positive_int(8, 31), default=31)
    c.add_argument("--grid-bits", type=_positive_int(6, 16), default=None, help="LUT width for the grid realization (default: activation bits + 6)")
    c.add_argument("--n-images", type=_positive_int(1, 100000), default=None,
                   help="calibration patches (default: the method's recipe, calib/recipe.py)")
    c.add_argument("--patch", type=_positive_int(8, 4096), default=None, help="LR patch side (default: the recipe's)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", action="store_true")
    c.add_argument("-o", "--output", required=True)
    c.set_defaults(func=cmd_calibrate)

    g = sub.add_parser("golden", help="write golden tensors (torch float64 fake-quant)",
                       epilog="example: intsim golden model.intsim Set5/LR_bicubic/X4 -o golden/")
    g.add_argument("artifact")
    g.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    g.add_argument("-o", "--output", required=True, metavar="GOLDEN_DIR")
    g.add_argument("--max-memory", type=_positive_mb, default=None, metavar="MB",
                   help="memory budget (default: half of the available memory); larger inputs are refused")
    g.set_defaults(func=cmd_golden)

    r = sub.add_parser("run", help="run the integer engine on images",
                       epilog="example: intsim run model.intsim baby.png -o out/ --counters counters.json")
    r.add_argument("artifact")
    r.add_argument("inputs", nargs="+", metavar="INPUT")
    r.add_argument("-o", "--output", required=True, metavar="OUT_DIR")
    r.add_argument("--accel", default=None, metavar="FILE|NAME", help="also print the cost on this accelerator "
                   "(TOML file or packaged name, e.g. edge_npu)")
    r.add_argument("--counters", default=None, metavar="FILE", help="write per-layer event counters as JSON")
    r.add_argument("--max-memory", type=_positive_mb, default=None, metavar="MB",
                   help="memory budget (default: half of the available memory); above it an image runs in "
                        "bit-exact bands, or is refused with the estimate")
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

    e = sub.add_parser("eval", help="Y-PSNR/SSIM of an artifact on benchmark sets (intsim, golden or float)",
                       epilog="examples:\n  intsim eval imdn_x4.intsim --dataset Set5 Set14 --engine intsim\n"
                              "  intsim eval imdn_x4.intsim --dataset Set5 --engine float --json")
    e.add_argument("artifact")
    e.add_argument("--dataset", "--data", dest="dataset", nargs="+", default=["Set5"], metavar="NAME",
                   help="Set5, Set14, B100, Urban100 (space- or comma-separated)")
    e.add_argument("--engine", choices=["intsim", "golden", "float"], default="intsim")
    e.add_argument("--data-root", default=None, metavar="DIR")
    e.add_argument("--limit", type=_positive_int(1, 100000), default=None, help="first N images per set")
    e.add_argument("--crop", type=_positive_int(8, 4096), default=None, metavar="P",
                   help="evaluate only the top-left P×P LR crop of each image (quick checks)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    sw = sub.add_parser("sweep", help="the paper's protocol: a resumable grid of calibrate+evaluate cells on Ray",
                        epilog="examples:\n  intsim sweep sweeps/imdn_x4_w4a4.toml\n"
                               "  intsim sweep sweeps/full.toml --resume --address ray://head:10001")
    sw.add_argument("spec", metavar="SWEEP.toml")
    sw.add_argument("--address", default=None, metavar="RAY_ADDRESS",
                    help="an existing Ray cluster (default: start a local Ray instance)")
    sw.add_argument("--resume", action="store_true", help="keep the cells a previous run finished")
    sw.add_argument("--num-cpus", type=_positive_int(1, 4096), default=None,
                    help="CPUs of the local Ray instance (default: all)")
    sw.set_defaults(func=cmd_sweep)

    co = sub.add_parser("cost", help="energy/latency of an artifact on an accelerator",
                        epilog="examples:\n  intsim cost model.intsim --images Set5/LR_bicubic/X4 --accel edge_npu\n"
                               "  intsim cost model.intsim --counters counters.json --compare --json\n"
                               "  intsim cost --list")
    co.add_argument("artifact", nargs="?")
    co.add_argument("--accel", default="edge_npu", metavar="FILE|NAME", help="accelerator TOML or packaged name "
                    "(default edge_npu; --list shows them)")
    co.add_argument("--images", nargs="+", default=None, metavar="INPUT", help="run the engine on these images")
    co.add_argument("--counters", default=None, metavar="FILE", help="counters written by `intsim run --counters`")
    co.add_argument("--scheme", default="artifact", help="artifact | fp32 | W<b>A<b> (default artifact)")
    co.add_argument("--compare", action="store_true", help="also compare with fp32, W8A8 and W4A4")
    co.add_argument("-o", "--output", default=None, metavar="FILE", help="write the full cost result as JSON")
    co.add_argument("--list", action="store_true", help="list the packaged accelerators")
    co.add_argument("--json", action="store_true")
    co.set_defaults(func=cmd_cost)

    rp = sub.add_parser("report", help="build report.html from a run directory (summary.json)",
                        epilog="example: intsim report intsim-demo  (writes intsim-demo/report.html)")
    rp.add_argument("run_dir", metavar="RUN_DIR", help="folder with summary.json (or the summary.json file)")
    rp.add_argument("-o", "--output", default=None, metavar="FILE", help="default RUN_DIR/report.html")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_report)

    m = sub.add_parser("models", help="list zoo models and the checkpoints found under the data root",
                       epilog="example: intsim models --data-root ../shared --json")
    m.add_argument("--data-root", default=None, metavar="DIR")
    m.add_argument("--verify", action="store_true", help="check found checkpoints against published sha256")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    x = sub.add_parser("export-vectors", help="golden tensors as $readmemh hex files or C headers",
                       epilog="examples:\n  intsim export-vectors golden/ --format readmemh -o vectors_hex\n"
                              "  intsim export-vectors golden/ --format c -o vectors_c --input 0 --tensor t3")
    x.add_argument("golden_dir")
    x.add_argument("--format", choices=["readmemh", "c"], default="readmemh")
    x.add_argument("-o", "--output", required=True, metavar="DIR")
    x.add_argument("--tensor", action="append", default=None, metavar="NAME", help="only this tensor (repeatable)")
    x.add_argument("--input", action="append", type=_positive_int(0, 1 << 30), default=None, metavar="K",
                   help="only input K (repeatable)")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_export_vectors)

    d = sub.add_parser("demo", help="the whole pipeline on the embedded tiny SR model (or IMDN with --real)",
                       epilog="examples:\n  intsim demo --quick            # ~1 minute, writes intsim-demo/\n"
                              "  intsim demo --out demo_run      # full demo\n"
                              "  intsim demo --real --data-root ../shared   # IMDN x4 on Set5")
    d.add_argument("--out", default=None, metavar="DIR", help="run directory (default intsim-demo)")
    d.add_argument("--quick", action="store_true", help="fewer and smaller images (under 90 s)")
    d.add_argument("--real", action="store_true", help="IMDN x4 on Set5 from the data root")
    d.add_argument("--data-root", default=None, metavar="DIR")
    d.add_argument("--bits", default="W4A4")
    d.add_argument("--method", default=None, help="calibration method (default: the best measured recipe, recon — "
                   "block reconstruction with learned rounding on two-region codes; oaq: the paper's method)")
    d.add_argument("--accel", default="edge_npu", metavar="FILE|NAME")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_demo)
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
