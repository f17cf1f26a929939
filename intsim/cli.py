"""The ``intsim`` command: one front for every stage.

Exit codes: 0 success, 1 verification mismatch, 2 bad input or usage (one line
on stderr, nothing half-written; environment errors such as a read-only or full disk count,
see intsim/outputs.py), 3 an internal error (a bug: please report), 4 an arithmetic overflow under the
artifact's ``error`` overflow policy (engine or golden; one line naming the op). ``--debug`` shows tracebacks. Stages that
need torch (calibrate, golden) import it lazily so the engine runs without it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from pathlib import Path

from intsim.cli_logging import STATUS, command_logging
from intsim.outputs import ENV_ERRNOS, Staged, check_output, env_error_line

# not __name__: run as ``python -m intsim.cli`` that is "__main__", outside the "intsim" loggers
log = logging.getLogger("intsim.cli")

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OVERFLOW = 0, 1, 2, 3, 4


class UsageError(Exception):
    """Bad command-line usage (exit 2)."""


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


def _chatty() -> bool:
    """Progress bars and status lines are shown (not under ``--quiet``)."""
    return log.isEnabledFor(logging.INFO)


def _bars_off() -> bool | None:
    """tqdm's ``disable``: off under ``--quiet``, else None (shown on a terminal only)."""
    return None if _chatty() else True


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
    command has succeeded), else straight to the log."""
    from intsim.images import collect_image_paths, read_image

    images = [read_image(p, channels, max_bytes) for p in collect_image_paths(paths)]
    for im in images:
        if im.notice:
            if notices is None:
                log.info(im.notice)
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

    from intsim.artifact import load_artifact
    from intsim.engine import run, run_tiled
    from intsim.footprint import tensor_shapes
    from intsim.images import png_bytes
    from intsim.input_checks import check_sizes, memory_budget, tile_plan
    from intsim.kernels.parallel import num_threads
    from intsim.overflow import event_summary, events_notice

    art = load_artifact(args.artifact)
    acc = _load_accel(args.accel) if args.accel is not None else None
    budget = memory_budget(args.max_memory)
    notices: list[str] = []  # printed once everything succeeded: a refusal stays one line
    images = _load_inputs(args.inputs, _input_channels(art), notices, budget)
    out_dir = check_output(args.output, "folder")
    if args.counters:
        _refuse_overwrite(args.counters, [args.artifact] + [im.path for im in images], "--counters")
        check_output(args.counters)
    check_sizes(art, images, notices)
    held, bands = 0, []  # outputs are held until all images ran: they count against the budget
    for im in images:
        bands.append(tile_plan(art, im, budget, notices, held))
        oh, ow = tensor_shapes(art, *im.pixels.shape[:2])[art.outputs[0]]
        held += oh * ow * art.tensors[art.outputs[0]].channels
    # Compute everything first so a failure leaves no partial outputs behind.
    results, used = [], set()
    log.debug(f"engine threads: {num_threads()} (INTSIM_THREADS, else numba's); memory budget {budget >> 20} MiB")
    for im, rows in tqdm(list(zip(images, bands)), desc="intsim run", unit="img", disable=_bars_off(),
                         file=sys.stderr):
        t0 = time.perf_counter()
        res = run(art, im.pixels, keep_tensors=False) if rows is None else run_tiled(art, im.pixels, rows)
        log.debug(f"{im.path}: {im.pixels.shape[1]}×{im.pixels.shape[0]}, "
                  f"{'untiled' if rows is None else f'bands of {rows} rows'}, {time.perf_counter() - t0:.2f} s")
        name = im.name
        k = 1
        while name in used:
            k += 1
            name = f"{im.name}_{k}"
        used.add(name)
        _refuse_overwrite(out_dir / f"{name}.png", [args.artifact] + [i.path for i in images], "the SR output")
        results.append((im, name, res))
    with Staged() as staged:  # all or nothing: a full disk leaves no image, temp file or new folder behind
        for im, name, res in results:
            staged.write(out_dir / f"{name}.png", png_bytes(res.tensors[art.outputs[0]]))
        if args.counters:
            record = {
                "artifact_sha256": art.sha256,
                "images": [{"source": im.path, "output": f"{name}.png", "counters": res.counters}
                           for im, name, res in results],
            }
            staged.write(args.counters, json.dumps(record, indent=1).encode("utf-8"))
        staged.commit()
    # saturated or wrapped values change the image without failing the run: say so, once
    events = event_summary([res.counters for _, _, res in results])
    notice = events_notice(events, art.numerics.overflow)
    notices += [notice] if notice else []
    for n in notices:
        log.info(n)
    log.info(f"wrote {len(results)} image(s) to {out_dir}", extra=STATUS)
    cost = None
    if acc is not None:
        from intsim.cost import estimate_cost

        cost = estimate_cost(art, [res.counters for _, _, res in results], acc)
        print(_cost_line(cost), file=sys.stderr)
    if args.json:
        _print_json(_run_summary(art, results, out_dir, args.counters, events, notices, cost))
    return EXIT_OK


def _run_summary(art, results, out_dir, counters_path, events: dict, notices: list[str], cost) -> dict:
    """``intsim run --json``: the images written, the overflow/saturation events (counts of values,
    per op, summed over the images) and the cost summary when ``--accel`` was given."""
    summary = {
        "artifact_sha256": art.sha256,
        "output_dir": str(out_dir),
        "images": [{"source": str(im.path), "output": f"{name}.png",
                    "out_shape": [int(d) for d in res.tensors[art.outputs[0]].shape]} for im, name, res in results],
        "counters": str(counters_path) if counters_path else None,
        "overflow_policy": art.numerics.overflow,
        "events": events,
        "notices": notices,
        "cost": None,
    }
    if cost is not None:
        from intsim.cost.model import summary_row

        summary["cost"] = summary_row(cost)
    return summary


def cmd_golden(args) -> int:
    from intsim.artifact import load_artifact
    from intsim.golden_dir import check_golden_target
    from intsim.input_checks import check_golden_memory, check_sizes, memory_budget

    art = load_artifact(args.artifact)  # refuse a bad artifact before importing torch
    budget = memory_budget(args.max_memory)
    notices: list[str] = []
    images = _load_inputs(args.inputs, _input_channels(art), notices, budget)
    check_sizes(art, images, notices)
    check_golden_memory(art, images, budget)
    check_output(args.output, "whole-folder")  # refused before torch is imported and anything computed
    check_golden_target(args.output)
    try:
        from golden.writer import write_golden
    except ImportError as e:
        raise UsageError(f"golden needs torch (pip install torch==2.13.0): {e}") from None
    # per-input lines are progress, shown on a terminal only (like the other commands' bars), so a
    # failure while writing stays the one stderr line
    out = write_golden(args.artifact, [(im.path, im.pixels) for im in images], args.output,
                       progress=sys.stderr.isatty() and _chatty())
    for n in notices:
        log.info(n)
    log.info(f"wrote golden tensors for {len(images)} input(s) to {args.output}", extra=STATUS)
    if args.json:
        _print_json({"artifact_sha256": art.sha256, "golden_dir": str(out),
                     "inputs": [{"source": str(im.path), "shape": [int(d) for d in im.pixels.shape]}
                                for im in images], "notices": notices})
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
    check_output(args.output)  # before hours of calibration, not after
    if args.state_dir is not None:
        check_output(args.state_dir, "folder")
    try:
        from calib.cli_calibrate import calibrate_run
        from reports.demo import register_tiny_sr
    except ImportError as e:
        raise UsageError(f"calibrate needs torch (pip install torch==2.13.0): {e}") from None
    register_tiny_sr()  # tiny_sr and its committed weights
    kwargs = dict(
        model=args.model,
        weights=args.weights,
        random_init=args.random_init,
        calib_layout=args.calib_layout,
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
                "progress": sys.stderr.isatty() and _chatty(), "range_mode": args.range_mode,
                "per_channel": args.per_channel, "log": lambda line: log.info(line, extra=STATUS),
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
        log.info(f"wrote {args.output}", extra=STATUS)
    mp = summary.get("mixed_precision")
    if mp:
        print(f"chosen: {mp['budget']} → cost {mp['cost']:.4g} ({mp['metric']}); Pareto front (calibration data): "
              f"{', '.join(mp.get('front_files', []))}", file=sys.stderr)
    _print_quality(summary.get("holdout"))
    return EXIT_OK


def _print_quality(q: dict | None) -> None:
    """The one line calibrate ends with: quantized vs FP and bicubic on held-out calibration images."""
    if q and q.get("overflow"):  # overflow policy error met a real image: the artifact is written, as asked
        print(f"warning: quality not measured, the integer engine stopped on a held-out image: {q['overflow']}",
              file=sys.stderr)
        return
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
    from intsim.cost.layer_policy import describe as describe_policy
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
        check_output(args.output)
    art = load_artifact(args.artifact)
    acc = _load_accel(args.accel)
    if args.counters:
        counters = load_counters(args.counters, art.sha256)
    else:
        from intsim.engine import run

        images = _load_inputs(args.images, _input_channels(art))
        counters = [run(art, im.pixels, keep_tensors=False).counters
                    for im in tqdm(images, desc="intsim run", unit="img", disable=_bars_off(), file=sys.stderr)]
    cost = estimate_cost(art, counters, acc, args.scheme, uniform_policy=args.uniform_policy)
    comp = compare_schemes(art, counters, acc, uniform_policy=args.uniform_policy) if args.compare else None
    if args.output:
        atomic_write_json(args.output, cost)
    if args.json:
        from intsim.cost.model import summary_row

        obj = {"summary": summary_row(cost), "warnings": cost["warnings"], "uniform_policy": args.uniform_policy}
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
            print(f"  {describe_policy(args.uniform_policy, art)}; fp32: the table's fp32 MAC energy, "
                  f"24-bit significand products in ⌈24/{acc.weight_bits}⌉·⌈24/{acc.activation_bits}⌉ "
                  "passes of the integer array")
        for w in cost["warnings"]:
            log.warning(w)
    return EXIT_OK


def cmd_eval(args) -> int:
    from intsim.artifact import load_artifact

    if args.engine in ("intsim", "golden"):
        load_artifact(args.artifact)  # refuse a bad artifact with the usual one-line message
    elif not Path(args.artifact).exists():
        raise FileNotFoundError(f"{args.artifact}: no such file")
    try:
        from calib.evaluate import resolve_engine, run_eval
    except ImportError as e:
        if getattr(e, "name", "") in ("calib.evaluate", "calib") or "calib.evaluate" in str(e):
            raise UsageError("eval: calib.evaluate is not available in this installation") from None
        raise UsageError(f"eval needs torch (pip install torch==2.13.0): {e}") from None
    engine, notice = resolve_engine(args.engine)
    extra = {"crop": args.crop} if args.crop is not None else {}
    # the table shows the baselines by default (FP and bicubic cost little beside the engine); the JSON
    # stays the engine's own result unless they are asked for
    if args.baselines if args.baselines is not None else not args.json:
        extra["baselines"] = True
    datasets = [d.strip() for item in args.dataset for d in item.split(",") if d.strip()]
    res = run_eval(args.artifact, datasets, engine, data_root=args.data_root, progress=_chatty(),
                   limit=args.limit, **extra)
    if args.json:
        _print_json(res)
    else:
        from reports.eval_table import format_eval

        print(format_eval(res, per_image=args.per_image))
    if notice:  # after the run, so that a refusal stays one line
        log.info(notice)
    return EXIT_OK


def cmd_sweep(args) -> int:
    try:
        from reports.sweep import main as sweep_main
    except ImportError as e:
        raise UsageError(f"sweep needs torch (pip install torch==2.13.0) and the reports package: {e}") from None
    return sweep_main(args.spec, args.address, args.resume, args.num_cpus)


def cmd_report(args) -> int:
    from reports.html_report import build_report

    path = build_report(args.run_dir, args.output)
    if args.json:
        _print_json({"report": str(path)})
    else:
        log.info(f"wrote {path}", extra=STATUS)
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
                rows.append({"model": name, "scale": sc, "description": f"EDSR {kw} (--weights FILE, or --random-init)",
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

    notices: list[str] = []
    index = export_vectors(args.golden_dir, args.output, args.format, tensors=args.tensor or None,
                           inputs=args.input or None, progress=_chatty(), notices=notices)
    for n in notices:
        log.info(n)
    if args.json:
        _print_json({k: v for k, v in index.items() if k != "files"} | {"files": len(index["files"]),
                                                                         "out": args.output})
    else:
        log.info(f"wrote {len(index['files'])} {args.format} file(s) to {args.output} (index: "
                 f"{Path(args.output) / 'index.json'})", extra=STATUS)
    return EXIT_OK


def cmd_demo(args) -> int:
    try:
        from reports.demo import result_table, run_demo
    except ImportError as e:
        raise UsageError(f"demo needs torch and scikit-image (make setup): {e}") from None
    out = args.out or ("intsim-demo-real" if args.real else "intsim-demo")
    check_output(out, "folder")
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

exit codes: 0 ok, 1 verification mismatch, 2 bad input or usage, 3 internal error,
  4 arithmetic overflow under the artifact's 'error' overflow policy.
--debug shows tracebacks; -q hides notices, progress and status lines, -v adds debug lines.
Notices are Python logging records of the "intsim" loggers (silence them there when embedding).
"""


CALIBRATE_EPILOG = """\
examples:
  intsim calibrate --model fsrcnn --scale 3 --bits W8A8 -o fsrcnn_x3_w8a8.intsim   # its checkpoint under the data root
  intsim calibrate --model imdn --weights IMDN_x4.pth --scale 4 --bits W4A4 -o imdn_x4_w4a4.intsim
"""


def _calibrate_models() -> str:
    """``calibrate --model`` names for its help, without importing torch: the zoo, full EDSR
    (calib.cli_calibrate.LOCAL_MODELS) and the demo's tiny_sr; tests/test_cli.py checks this list
    against calib.cli_calibrate.known_models."""
    try:
        from calib.models.zoo import MODELS
    except ImportError:  # the engine alone installed: calibrate cannot run anyway
        return "the models `intsim models` lists"
    return ", ".join(sorted({*MODELS, "edsr", "tiny_sr"}))


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

    c = sub.add_parser("calibrate", help="calibrate a float model and export an artifact",
                       description="Calibrate two-region quantizers and export an integer artifact. "
                                   "'default: from the method's recipe' means calib/recipe.py decides.",
                       epilog=CALIBRATE_EPILOG)
    c.add_argument("--model", required=True, help=f"one of {_calibrate_models()}")
    c.add_argument("--weights", default=None, metavar="FILE",
                   help="float checkpoint (default: the model's checkpoint under the data root, see `intsim models`; "
                        "refused when there is none)")
    c.add_argument("--random-init", action="store_true",
                   help="random weights instead of a checkpoint (tests only: the artifact is no super-resolution)")
    c.add_argument("--scale", type=_positive_int(2, 8), required=True)
    c.add_argument("--bits", type=_bits_spec, required=True, help="e.g. W4A4, W8A8")
    c.add_argument("--method", default=None, help="default recon (the best measured: block reconstruction with "
                   "learned rounding on two-region codes); the paper's method: oaq; baselines: minmax, percentile, "
                   "omse, ptq4sr, 2dquant, dual_region, plain_ft, sa_ft")
    c.add_argument("--iters", type=_positive_int(1, 100000), default=None,
                   help="reconstruction steps per unit (method recon; default: from the method's recipe, 300)")
    c.add_argument("--stress", type=_unit_fraction, default=None, metavar="FRACTION",
                   help="fraction of calibration patches made colour-saturated and contrast-stretched, so ranges "
                        "cover saturated content (0 = off; default: the recipe's)")
    c.add_argument("--policy", default=None, metavar="FILE",
                   help="per-layer bits from a TOML file ([bits] \"layer\" = b or [w, a]; default: none, "
                        "every layer at --bits)")
    c.add_argument("--budget", default=None, metavar="METRIC=VALUE",
                   help="mixed precision: choose per-layer bits under energy=…|latency=…|storage=… "
                        "(relative: 0.5x = half of uniform W8A8, 1.25xW4A4; absolute: 3uJ, 4ms, 200kB; "
                        "default: none, uniform bits)")
    c.add_argument("--candidates", type=_bit_list, default=None, metavar="B,B,…",
                   help="candidate widths for --budget (default 3,4,6,8)")
    c.add_argument("--allocation", choices=["released", "paper", "budgeted"], default=None,
                   help="code allocation of the two-region methods (default released)")
    c.add_argument("--bp-init", choices=["percentile", "search"], default=None,
                   help="two-region init: percentile (bp at the EMA p99) or search "
                        "(joint MSE search of bp and a shrink of l, u); default: from the method's recipe")
    c.add_argument("--state-dir", default=None, metavar="DIR",
                   help="finetuning state (resumable runs; default: none, not resumable)")
    c.add_argument("--epochs", type=_positive_int(1, 1000), default=None, help="finetuning epochs (default 10)")
    c.add_argument("--lr-mode", choices=["absolute", "relative"], default=None,
                   help="finetuning Adam lr: absolute or scaled by each parameter's initial magnitude "
                        "(default: from the method's recipe, absolute)")
    c.add_argument("--range", dest="range_mode", choices=["ema", "max"], default=None,
                   help="activation bounds: EMA of batch min/max or extremes over all batches "
                        "(default: from the method's recipe, ema)")
    c.add_argument("--per-channel", action="store_true", default=None, help="per-output-channel weight scales")
    c.add_argument("--calib-data", default=None, metavar="DIR",
                   help="folder of calibration images (default: <data root>/data/SunHays80)")
    c.add_argument("--calib-layout", choices=["auto", "hr", "lr"], default="auto",
                   help="the --calib-data images are HR (made LR by bicubic ×scale) or LR (used as they are); "
                        "auto guesses from the path: a folder named LR… or files named …x<s> "
                        "(default: %(default)s)")
    c.add_argument("--realization", choices=["split", "grid"], default="split", help="default: %(default)s")
    c.add_argument("--rounding", choices=["half_up", "half_away", "half_even", "floor"], default="half_up",
                   help="default: %(default)s")
    c.add_argument("--overflow", choices=["error", "saturate", "wrap"], default="saturate",
                   help="accumulator/stream overflow policy (default: %(default)s; error warns at calibration "
                        "when a conv's worst case exceeds --acc-bits)")
    c.add_argument("--acc-bits", type=_positive_int(8, 48), default=32, help="accumulator width (default: %(default)s)")
    c.add_argument("--stream-bits", type=_positive_int(8, 40), default=24, help="stream width (default: %(default)s)")
    c.add_argument("--mult-bits", type=_positive_int(8, 31), default=31,
                   help="requantization multiplier width (default: %(default)s)")
    c.add_argument("--grid-bits", type=_positive_int(6, 16), default=None, help="LUT width for the grid realization (default: activation bits + 6)")
    c.add_argument("--n-images", type=_positive_int(1, 100000), default=None,
                   help="calibration patches (default: from the method's recipe)")
    c.add_argument("--patch", type=_positive_int(8, 4096), default=None,
                   help="LR patch side (default: from the method's recipe)")
    c.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    c.add_argument("--json", action="store_true")
    c.add_argument("-o", "--output", required=True, metavar="ARTIFACT")
    c.set_defaults(func=cmd_calibrate)

    g = sub.add_parser("golden", help="write golden tensors (torch float64 fake-quant)",
                       epilog="example: intsim golden model.intsim Set5/LR_bicubic/X4 -o golden/")
    g.add_argument("artifact")
    g.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    g.add_argument("-o", "--output", required=True, metavar="GOLDEN_DIR")
    g.add_argument("--max-memory", type=_positive_mb, default=None, metavar="MB",
                   help="memory budget (default: half of the available memory); larger inputs are refused")
    g.add_argument("--json", action="store_true", help="print a JSON summary (golden folder, inputs) on stdout")
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
    r.add_argument("--json", action="store_true", help="print a JSON summary (images written, overflow and "
                   "saturation events per op, cost with --accel) on stdout")
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

    e = sub.add_parser("eval", help="Y-PSNR/SSIM of an artifact on benchmark sets, beside the FP and bicubic "
                       "baselines",
                       epilog="examples:\n  intsim eval imdn_x4.intsim --dataset Set5 Set14 --engine intsim\n"
                              "  intsim eval imdn_x4.intsim --dataset my_hr_images/ -v\n"
                              "  intsim eval imdn_x4.intsim --dataset Set5 --engine fakequant --json")
    e.add_argument("artifact")
    e.add_argument("--dataset", "--data", dest="dataset", nargs="+", default=["Set5"], metavar="NAME",
                   help="Set5, Set14, B100, Urban100, or a folder of HR images (LR made with the MATLAB-compatible "
                        "bicubic); space- or comma-separated")
    e.add_argument("--engine", choices=["intsim", "golden", "fakequant", "fp", "float"], default="intsim",
                   help="intsim: the integer engine; golden: its float64 reference; fakequant: the float32 "
                        "fake-quant model; fp: the unquantized float model the artifact came from "
                        "(float: old name of fakequant)")
    e.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=None,
                   help="score the FP model and bicubic on the same images (default: in the table, not in --json)")
    e.add_argument("-v", "--per-image", action="store_true", help="one table row per image")
    e.add_argument("--data-root", default=None, metavar="DIR")
    e.add_argument("--limit", type=_positive_int(1, 100000), default=None, help="first N images per set")
    e.add_argument("--crop", type=_positive_int(8, 4096), default=None, metavar="P",
                   help="evaluate only the top-left P×P LR crop of each image (quick checks)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)

    sw = sub.add_parser("sweep", help="a resumable grid of calibrate+evaluate cells on Ray (e.g. the paper's protocol)",
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
    co.add_argument("--uniform-policy", choices=["follow", "all"], default="follow",
                    help="uniform W<b>A<b> schemes: follow = head/upsampler/tail at >= 8 bits as the method's "
                         "layer policy (default), all = every conv at b bits")
    co.add_argument("-o", "--output", default=None, metavar="FILE", help="write the full cost result as JSON")
    co.add_argument("--list", action="store_true", help="list the packaged accelerators")
    co.add_argument("--json", action="store_true")
    co.set_defaults(func=cmd_cost)

    rp = sub.add_parser("report", help="build report.html from a run directory (summary.json)",
                        epilog="example: intsim report intsim-demo  (writes intsim-demo/report.html)")
    rp.add_argument("run_dir", metavar="RUN_DIR",
                    help="folder with summary.json (or the summary.json file), or a folder of calibrate / golden / "
                         "verify --json / run --counters / cost -o outputs (the report says what is missing)")
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

    tune_allocator()
    sys.exit(main())


if __name__ == "__main__":
    console()
