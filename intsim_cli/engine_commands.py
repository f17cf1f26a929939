"""The commands that need only the engine (numpy + numba): inspect, run, verify, cost, export-vectors,
compare."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from intsim.outputs import Staged, check_output
from intsim_cli.errors import EXIT_MISMATCH, EXIT_OK, UsageError
from intsim_cli.inputs import input_channels, load_inputs, refuse_overwrite
from intsim_cli.logging_handler import STATUS
from intsim_cli.terminal import bars_off, chatty, log, print_json


def cmd_inspect(args) -> int:
    from intsim.artifact import load_artifact
    from intsim.inspect import describe, format_inspect

    desc = describe(load_artifact(args.artifact))
    if args.json:
        print_json(desc)
    else:
        print(format_inspect(desc))
    return EXIT_OK


def cmd_run(args) -> int:
    from tqdm import tqdm

    from intsim.artifact import load_artifact
    from intsim.engine import run_banded
    from intsim.footprint import tensor_shapes
    from intsim.images import png_bytes
    from intsim.input_checks import check_sizes, memory_budget, tile_plan
    from intsim.kernels.parallel import num_threads
    from intsim.overflow import event_summary, events_notice

    art = load_artifact(args.artifact)
    acc = _load_accel(args.accel) if args.accel is not None else None
    budget = memory_budget(args.max_memory)
    notices: list[str] = []  # printed once everything succeeded: a refusal stays one line
    images = load_inputs(args.inputs, input_channels(art), notices, budget)
    out_dir = check_output(args.output, "folder")
    if args.counters:
        refuse_overwrite(args.counters, [args.artifact] + [im.path for im in images], "--counters")
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
    for im, rows in tqdm(list(zip(images, bands)), desc="intsim run", unit="img", disable=bars_off(),
                         file=sys.stderr):
        t0 = time.perf_counter()
        res = run_banded(art, im.pixels, rows)
        log.debug(f"{im.path}: {im.pixels.shape[1]}×{im.pixels.shape[0]}, "
                  f"{'untiled' if rows is None else f'bands of {rows} rows'}, {time.perf_counter() - t0:.2f} s")
        name = im.name
        k = 1
        while name in used:
            k += 1
            name = f"{im.name}_{k}"
        used.add(name)
        refuse_overwrite(out_dir / f"{name}.png", [args.artifact] + [i.path for i in images], "the SR output")
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
        print_json(_run_summary(art, results, out_dir, args.counters, events, notices, cost))
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


def cmd_verify(args) -> int:
    from intsim.api import verify

    report = verify(args.artifact, args.golden_dir, max_memory_mb=args.max_memory)
    if args.json:
        print_json(report.to_json())
    else:
        print(report.format())
    return EXIT_OK if report.ok else EXIT_MISMATCH


def cmd_compare(args) -> int:
    from intsim.compare import compare_dumps

    report = compare_dumps(args.golden_dir, args.dump_dir, index=args.index, ops=args.layer, inputs=args.input)
    if args.json:
        print_json(report.to_json())
    else:
        print(report.format())
    return EXIT_OK if report.ok else EXIT_MISMATCH


def _load_accel(name_or_path: str):
    from intsim.cost import load_accelerator

    return load_accelerator(name_or_path)


def _cost_line(cost: dict) -> str:
    t = cost["totals"]
    return (f"{cost['scheme']} ({cost['realization']}) on {cost['accelerator']['name']}: {cost['images']} image(s), "
            f"{t['energy_pj']['total'] * 1e-6:.2f} µJ and {t['latency_s'] * 1e3:.3f} ms per image, "
            f"{t['per_output_mpix']['energy_mj']:.2f} mJ per output MP, utilisation {t['utilisation']:.2f}")


def cmd_cost(args) -> int:
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
            print_json(rows)
        else:
            for r in rows:
                print(f"{r['name']:12s} {r['description']}")
        return EXIT_OK
    if not args.artifact:
        raise UsageError("cost: give ARTIFACT (and --images INPUT... or --counters FILE), or --list")
    if bool(args.images) == bool(args.counters):
        raise UsageError("cost: give exactly one of --images INPUT... or --counters FILE")
    if args.output:
        refuse_overwrite(args.output, [args.artifact, args.counters, args.accel], "-o")
        check_output(args.output)
    art = load_artifact(args.artifact)
    acc = _load_accel(args.accel)
    notices: list[str] = []  # printed once the command succeeded: a refusal stays one line
    if args.counters:
        counters = load_counters(args.counters, art.sha256)
    else:
        counters = _image_counters(art, args.images, args.max_memory, notices)
    cost = estimate_cost(art, counters, acc, args.scheme, uniform_policy=args.uniform_policy)
    comp = compare_schemes(art, counters, acc, uniform_policy=args.uniform_policy) if args.compare else None
    if args.output:
        atomic_write_json(args.output, cost)
    for n in notices:
        log.info(n)
    if args.json:
        from intsim.cost.model import summary_row

        obj = {"summary": summary_row(cost), "warnings": cost["warnings"], "uniform_policy": args.uniform_policy}
        if comp is not None:
            obj["compare"] = comp
        print_json(obj)
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


def _image_counters(art, inputs: list[str], max_memory_mb: float | None, notices: list[str]) -> list[dict]:
    """Engine counters of every input, under the same memory budget as ``run``: each image is judged
    before anything runs and runs untiled, in bit-exact bands (same counters), or is refused with the
    estimate. Only the counters are kept, so earlier outputs do not count against the budget. Notices
    (mode conversions, tiling) go to ``notices`` for the caller to print once it succeeded."""
    from tqdm import tqdm

    from intsim.engine import run_banded
    from intsim.input_checks import check_sizes, memory_budget, tile_plan

    budget = memory_budget(max_memory_mb)
    images = load_inputs(inputs, input_channels(art), notices, budget)
    check_sizes(art, images, notices)
    bands = [tile_plan(art, im, budget, notices) for im in images]
    counters = []
    for im, rows in tqdm(list(zip(images, bands)), desc="intsim run", unit="img", disable=bars_off(),
                         file=sys.stderr):
        counters.append(run_banded(art, im.pixels, rows).counters)
    return counters


def cmd_export_vectors(args) -> int:
    from intsim.vectors import export_vectors

    art = None
    if args.artifact is not None:
        from intsim.artifact import load_artifact

        art = load_artifact(args.artifact)
    notices: list[str] = []
    index = export_vectors(args.golden_dir, args.output, args.format, tensors=args.tensor or None,
                           inputs=args.input or None, progress=chatty(), notices=notices, artifact=art,
                           layers=args.layer, accumulators=args.accumulators, pack_bits=args.pack_bits)
    for n in notices:
        log.info(n)
    if args.json:
        print_json({k: v for k, v in index.items() if k not in ("files", "layers")}
                   | {"files": len(index["files"]), "layers": len(index.get("layers", [])), "out": args.output})
    else:
        cases = f" and {len(index['layers'])} layer case(s)" if "layers" in index else ""
        log.info(f"wrote {len(index['files'])} {args.format} file(s){cases} to {args.output} (index: "
                 f"{Path(args.output) / 'index.json'})", extra=STATUS)
    return EXIT_OK
