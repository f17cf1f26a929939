"""The commands that need torch or the upper layers (golden, calib, reports): golden, calibrate, eval,
sweep, report, models, demo. Each imports them lazily and after its cheap checks, so the engine's
commands run without torch and a refusal costs no torch import."""
from __future__ import annotations

import sys
from pathlib import Path

from intsim.outputs import check_output
from intsim_cli.errors import EXIT_MISMATCH, EXIT_OK, UsageError
from intsim_cli.inputs import input_channels, load_inputs
from intsim_cli.logging_handler import STATUS
from intsim_cli.terminal import chatty, log, print_json


def cmd_golden(args) -> int:
    from intsim.artifact import load_artifact
    from intsim.golden_dir import check_golden_target
    from intsim.input_checks import check_golden_memory, check_sizes, memory_budget

    art = load_artifact(args.artifact)  # refuse a bad artifact before importing torch
    budget = memory_budget(args.max_memory)
    notices: list[str] = []
    images = load_inputs(args.inputs, input_channels(art), notices, budget)
    check_sizes(art, images, notices)
    band_rows = check_golden_memory(art, images, budget)
    bad = [t for t in args.tensors if t not in ("all", "outputs", "conv-io") and t not in art.tensors]
    if bad:
        raise UsageError(f"--tensors: {bad[0]!r} is neither all, outputs, conv-io nor a tensor of the graph")
    check_output(args.output, "whole-folder")  # refused before torch is imported and anything computed
    check_golden_target(args.output)
    try:
        from golden.writer import write_golden
    except ImportError as e:
        raise UsageError(f"golden needs torch (pip install torch==2.13.0): {e}") from None
    # per-input lines are progress, shown on a terminal only (like the other commands' bars), so a
    # failure while writing stays the one stderr line
    out = write_golden(args.artifact, [(im.path, im.pixels) for im in images], args.output,
                       progress=sys.stderr.isatty() and chatty(), art=art, tensors=args.tensors,
                       compress=args.compress, band_rows=band_rows)
    for n in notices:
        log.info(n)
    log.info(f"wrote golden tensors for {len(images)} input(s) to {args.output}", extra=STATUS)
    if args.json:
        print_json({"artifact_sha256": art.sha256, "golden_dir": str(out), "tensors": " ".join(args.tensors),
                    "compressed": bool(args.compress),
                     "inputs": [{"source": str(im.path), "shape": [int(d) for d in im.pixels.shape]}
                                for im in images], "notices": notices})
    return EXIT_OK


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
                "progress": sys.stderr.isatty() and chatty(), "range_mode": args.range_mode,
                "per_channel": args.per_channel, "log": lambda line: log.info(line, extra=STATUS),
                "recon": {k: v for k, v in (("iters", args.iters), ("weighting", args.loss_weighting))
                          if v is not None} or None,
                "policy_file": args.policy, "budget": args.budget, "stress": args.stress, "equalize": args.equalize,
                "candidate_bits": args.candidates, "rgb_range": args.rgb_range, "in_channels": args.in_channels,
                "finetune": {k: v for k, v in (("epochs", args.epochs), ("lr_mode", args.lr_mode)) if v is not None}
                or None}
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    summary = calibrate_run(**kwargs).summary
    if args.json:
        print_json(summary)
    else:
        log.info(f"wrote {args.output}", extra=STATUS)
    mp = summary.get("mixed_precision")
    if mp:
        print(f"chosen: {mp['budget']} → cost {mp['cost']:.4g} ({mp['metric']}); Pareto front (calibration data): "
              f"{', '.join(mp.get('front_files', []))}", file=sys.stderr)
    from calib.recipe import DEFAULT_METHOD

    _print_quality(summary.get("holdout"), summary.get("bits"), bool(mp), summary.get("method") == DEFAULT_METHOD)
    return EXIT_OK


def below_bicubic_advice(bits: str | None, mixed: bool, default_method: bool = True) -> str:
    """What to try when the artifact is worse than bicubic: a uniform model gets the mixed-precision
    option at a small energy budget (measured: FSRCNN ×4 W4A4 27.29 → 30.38 dB on Set5 at ≤ 1.1× uniform
    W4A4's energy, docs/calibration.md "Mixed precision"), a mixed one a larger budget; a method other
    than the default also gets the default."""
    if mixed or not bits:
        tip = "try a larger --budget or more bits"
    else:
        tip = (f"try --budget energy=1.1x{bits} (mixed precision: the most sensitive layers at more bits for "
               f"≤ 1.1× the energy of uniform {bits}) or more bits")
    return tip + ("" if default_method else ", or the default method (no --method)")


def _print_quality(q: dict | None, bits: str | None = None, mixed: bool = False,
                   default_method: bool = True) -> None:
    """The one line calibrate ends with: quantized vs FP and bicubic on held-out calibration images."""
    if q and q.get("overflow"):  # overflow policy error met a real image: the artifact is written, as asked
        log.warning(f"quality not measured, the integer engine stopped on a held-out image: {q['overflow']}")
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
        log.warning("the quantized model is worse than bicubic upsampling on held-out images; "
                    + below_bicubic_advice(bits, mixed, default_method))


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
    from reports.demo import register_tiny_sr

    register_tiny_sr()  # the embedded model's FP baseline is rebuilt like a zoo model's
    engine, notice = resolve_engine(args.engine)
    extra = {"crop": args.crop} if args.crop is not None else {}
    # the table shows the baselines by default (FP and bicubic cost little beside the engine); the JSON
    # stays the engine's own result unless they are asked for
    if args.baselines if args.baselines is not None else not args.json:
        extra["baselines"] = True
    datasets = [d.strip() for item in args.dataset for d in item.split(",") if d.strip()]
    res = run_eval(args.artifact, datasets, engine, data_root=args.data_root, progress=chatty(),
                   limit=args.limit, **extra)
    if args.json:
        print_json(res)
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
    return sweep_main(args.spec, args.address, args.resume, args.num_cpus, getattr(args, "only", None))


def cmd_report(args) -> int:
    from reports.html_report import build_report

    path = build_report(args.run_dir, args.output)
    if args.json:
        print_json({"report": str(path)})
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
        print_json({"data_root": str(root), "models": rows})
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


def cmd_demo(args) -> int:
    try:
        from reports.demo import result_table, run_demo
    except ImportError as e:
        raise UsageError(f"demo needs torch and scikit-image (make setup): {e}") from None
    own = None
    if args.model is not None:
        if args.scale is None:
            raise UsageError("demo --model needs --scale")
        if not args.model.lower().endswith(".onnx") and args.weights is None:
            raise UsageError("demo --model needs --weights FILE (the demo shows a trained model)")
        own = {"model": args.model, "weights": args.weights, "scale": args.scale, "rgb_range": args.rgb_range}
    elif args.weights is not None or args.scale is not None or args.rgb_range is not None:
        raise UsageError("demo --weights/--scale/--rgb-range go with --model")
    out = args.out or ("intsim-demo-real" if args.real or own else "intsim-demo")
    check_output(out, "folder")
    summary = run_demo(out, quick=args.quick, real=args.real, data_root=args.data_root, bits=args.bits,
                       method=args.method, accel=args.accel, own=own)
    if args.json:
        print_json({k: v for k, v in summary.items() if k != "per_image"})
    else:
        print(result_table(summary))
        print(f"report: {Path(out) / 'report.html'}   summary: {Path(out) / 'summary.json'}")
    return EXIT_OK if summary["bit_exact"] else EXIT_MISMATCH
