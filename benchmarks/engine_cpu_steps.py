"""CPU time of ``intsim.engine.run`` across several checkouts (commits), interleaved: where a speed change came in.

Each checkout runs in its own subprocess (``PYTHONPATH`` and cwd = the checkout) on the same artifacts and
the Set5 ``baby`` LR ×4 input: two warm-up runs (numba compile / cache), then ``--repeats`` timed runs,
each timed as process CPU seconds (``time.process_time``: on a shared, loaded machine the CPU a run
takes moves far less than its wall time) and wall seconds. Rounds visit the checkouts in alternating
order. Reported per artifact and checkout: the best CPU time, the median over rounds of each round's
best, and the median per-round ratio to the first checkout. ``--threads`` sets NUMBA/OMP threads
(default 1: the engine's own work, free of thread contention).

Run::

    python -m benchmarks.engine_cpu_steps --checkouts /work/before,/tmp/wt_ac110b7,/work/wt3 \\
        --artifacts a.intsim,b.intsim --rounds 3 --repeats 10 -o /tmp/steps.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

LR = Path(os.environ.get("INTSIM_DATA_ROOT", "/work/shared")) / "data/Set5/LR_bicubic/X4/babyx4.png"


def child(repeats: int, artifacts: list[str]) -> None:
    """In the checkout's process: per artifact, ``repeats`` timed runs after two warm-up runs."""
    from intsim import engine
    from intsim.artifact import load_artifact
    from intsim.images import read_image

    img = read_image(LR, 3).pixels
    out = {}
    for p in artifacts:
        art = load_artifact(p)
        for _ in range(2):
            engine.run(art, img, keep_tensors=False)
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            engine.run(art, img, keep_tensors=False)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[Path(p).name] = {"wall": wall, "cpu": cpu}
    print("STEPS_JSON " + json.dumps(out))


def run_checkout(root: str, args) -> dict:
    env = dict(os.environ, PYTHONPATH=root, INTSIM_MALLOC="keep", NUMBA_NUM_THREADS=str(args.threads),
               OMP_NUM_THREADS=str(args.threads))
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(args.repeats),
                        *args.artifacts.split(",")], cwd=root, env=env, capture_output=True, text=True)
    line = [x for x in p.stdout.splitlines() if x.startswith("STEPS_JSON ")]
    if not line:
        raise RuntimeError(f"{root}: rc {p.returncode}: {p.stderr[-2000:]}")
    return json.loads(line[0][len("STEPS_JSON "):])


def summary(rounds: list[dict], names: list[str]) -> dict:
    out: dict = {}
    for a in rounds[0][names[0]]:
        base = [min(r[names[0]][a]["cpu"]) for r in rounds]
        out[a] = {}
        for n in names:
            mins = [min(r[n][a]["cpu"]) for r in rounds]
            out[a][n] = {"cpu_best_s": min(mins), "cpu_median_of_round_best_s": statistics.median(mins),
                         "ratio_to_first": statistics.median(m / b for m, b in zip(mins, base)),
                         "round_ratios": [m / b for m, b in zip(mins, base)]}
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "--child":
        child(int(argv[1]), argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkouts", required=True, help="comma-separated checkout roots; the first is the baseline")
    ap.add_argument("--artifacts", required=True, help="comma-separated .intsim paths (read by every checkout)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    names = args.checkouts.split(",")
    rounds = []
    for i in range(args.rounds):
        rounds.append({n: run_checkout(n, args) for n in (names if i % 2 == 0 else names[::-1])})
        print(f"round {i} done", file=sys.stderr, flush=True)
    result = {"checkouts": names, "threads": args.threads, "repeats": args.repeats, "rounds": rounds,
              "summary": summary(rounds, names)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for a, rows in result["summary"].items():
        print(a)
        for n, v in rows.items():
            print(f"  {n:40} best {v['cpu_best_s'] * 1e3:7.1f} ms  median of round bests "
                  f"{v['cpu_median_of_round_best_s'] * 1e3:7.1f} ms  ratio {v['ratio_to_first']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
