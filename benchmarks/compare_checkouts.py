"""Speed of two checkouts side by side: ``python -m benchmarks.bench_engine`` run alternately from each.

Rounds are interleaved (A B, B A, A B, … — the order flips each round so neither side always runs
first on a machine that warms up or gets busier), each run a subprocess with ``PYTHONPATH`` and the
working directory set to its checkout, so each side runs its own engine and its own bench_engine.
Both read the same artifacts (``--artifacts``, built once by the first warm-up run), so only the code
differs. A warm-up round (not counted) fills each checkout's numba cache first.

Per run: every configuration's median end-to-end seconds (``e2e_s``: intsim, torch fp32 — torch is
the same library for both, a control for machine noise — and golden if asked), the summed conv-layer
intsim seconds, and the child's wall and CPU time (user + system, ``resource.getrusage`` of the
children). Reported: the median over rounds of the per-round ratio after/before (< 1: after is
faster) and the per-side medians. Thread settings are bench_engine's own (``--threads``, default 2;
the environment is passed through unchanged and recorded).

Run::

    python -m benchmarks.compare_checkouts --before /work/before --after /work/wt3 --rounds 5 \\
        -o benchmarks/results/issue20_bench -- --quick --no-compile --no-rss --ref-repeats 0 --golden-repeats 0

Arguments after ``--`` go to bench_engine unchanged (``--artifacts`` and ``--out`` are set here).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_side(root: Path, bench_args: list[str], out: Path, python: str) -> dict:
    """One bench_engine run from ``root``; its per-config seconds and the child's wall / CPU time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([python, "-m", "benchmarks.bench_engine", *bench_args, "--out", str(out)], cwd=root,
                       env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise RuntimeError(f"bench_engine in {root} failed (rc {p.returncode}): {p.stderr[-3000:]}")
    res = json.loads(out.read_text())
    times = {"process_wall_s": wall,
             "process_cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}
    for c in res["configs"]:
        name = f"{c['model']} x{c['scale']} {c['bits']} {c['realization']}"
        for col, v in c["e2e_s"].items():
            times[f"{name} | {col}"] = v
        times[f"{name} | conv layers intsim"] = c["conv_layers"]["intsim_s"]
    return times


def summarize(rounds: list[dict]) -> dict:
    """Per measure: per-side medians and the median of the per-round ratios after/before."""
    keys = [k for k in rounds[0]["before"] if all(k in r["before"] and k in r["after"] for r in rounds)]
    out = {}
    for k in keys:
        b = [r["before"][k] for r in rounds]
        a = [r["after"][k] for r in rounds]
        ratios = [y / x for x, y in zip(b, a) if x]
        out[k] = {"before_median_s": statistics.median(b), "after_median_s": statistics.median(a),
                  "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                  "ratios": ratios}
    return out


def markdown(result: dict) -> str:
    lines = [f"Rounds: {len(result['rounds'])} (interleaved, order flipped each round); bench args: "
             f"`{' '.join(result['bench_args'])}`", "",
             "| measure | before median (s) | after median (s) | after/before (median of per-round ratios) "
             "| min | max |", "|---|---:|---:|---:|---:|---:|"]
    for k, v in result["summary"].items():
        lines.append(f"| {k} | {v['before_median_s']:.3f} | {v['after_median_s']:.3f} | "
                     f"**{v['ratio_median']:.3f}** | {v['ratio_min']:.3f} | {v['ratio_max']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    bench_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--artifacts", default="/tmp/compare_checkouts_artifacts",
                    help="shared artifact cache for both sides (built by the first warm-up run)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("-o", "--out", required=True, help="output prefix (PREFIX.json, PREFIX.md)")
    args = ap.parse_args(own)
    sides = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    bench_args = bench_args + ["--artifacts", args.artifacts]
    tmp = Path(args.out + ".runs")
    tmp.mkdir(parents=True, exist_ok=True)
    for side in ("after", "before"):  # warm-up: artifacts and numba caches; not counted
        print(f"warm-up {side} ...", file=sys.stderr, flush=True)
        run_side(sides[side], bench_args, tmp / f"warmup_{side}.json", args.python)
    rounds = []
    for i in range(args.rounds):
        order = ("before", "after") if i % 2 == 0 else ("after", "before")
        r = {"order": list(order)}
        for side in order:
            r[side] = run_side(sides[side], bench_args, tmp / f"round{i}_{side}.json", args.python)
            print(f"round {i} {side}: {r[side]['process_wall_s']:.0f} s wall", file=sys.stderr, flush=True)
        rounds.append(r)
    env_keys = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "INTSIM_MALLOC")
    result = {"before": str(sides["before"]), "after": str(sides["after"]), "bench_args": bench_args,
              "environment": {k: os.environ.get(k) for k in env_keys}, "cores": os.cpu_count(),
              "rounds": rounds, "summary": summarize(rounds)}
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
