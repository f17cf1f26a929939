"""Run every fuzz target at the full budget: ``python -m tests.fuzz.run --examples 10000``.

Random (not derandomized) hypothesis seeds; failures are counted, not raised
(``INTSIM_FUZZ_RECORD=1``). The whole run is under an address-space limit (``--max-as-mb``,
default 2048: RLIMIT_AS, so an unbounded read fails as a MemoryError, a counted failure,
instead of swapping) and the process's peak RSS is recorded after each target. Prints a
table and writes ``benchmarks/results/fuzz.json`` atomically. ``--atheris-runs N`` also
runs the atheris harnesses (when atheris is installed) in subprocesses.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

TARGETS = ("artifact", "golden", "image", "accel", "hdf5")
ATHERIS_TARGETS = ("artifact", "golden", "image", "accel")  # tests/fuzz/atheris_targets.py
ROOT = Path(__file__).resolve().parents[2]


def _atheris(target: str, runs: int) -> dict:
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix="intsim-atheris-run-")
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, "-m", "tests.fuzz.atheris_targets", "--target", target,
                            f"-atheris_runs={runs}", "-rss_limit_mb=4096", "-timeout=20",
                            f"-artifact_prefix={tmp}/"],
                           check=False, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TMPDIR": tmp})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = p.stdout + p.stderr
    lines = [ln for ln in out.splitlines() if ln.strip()]
    done = [ln for ln in lines if ln.startswith("Done ")]
    cov = [ln for ln in lines if " cov: " in ln]
    return {"target": target, "runs": runs, "returncode": p.returncode, "ok": p.returncode == 0,
            "wall_s": round(time.perf_counter() - t0, 1), "done": done[-1] if done else None,
            "last_status": cov[-1] if cov else None, "tail": lines[-3:] if p.returncode else []}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=10000)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--atheris-runs", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz.json"))
    ap.add_argument("--max-as-mb", type=int, default=2048, help="address-space limit of this process (MiB)")
    ap.add_argument("--update", action="store_true", help="replace only these targets' rows in an existing --out "
                    "(each row records its own command and date)")
    args = ap.parse_args(argv)
    limit = args.max_as_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ["INTSIM_FUZZ_EXAMPLES"] = str(args.examples)
    os.environ["INTSIM_FUZZ_RANDOM"] = "1"
    os.environ["INTSIM_FUZZ_RECORD"] = "1"
    from tests.fuzz import common

    rows = []
    for target in args.targets.split(","):
        mod = importlib.import_module(f"tests.fuzz.test_fuzz_{target}")
        t0 = time.perf_counter()
        getattr(mod, f"test_fuzz_{target}")()
        s = common.STATS.get(mod.TARGET, {"cases": 0, "failures": 0, "max_case_s": 0.0, "examples": []})
        rows.append({"target": target, "cases": s["cases"], "failures": s["failures"],
                     "wall_s": round(time.perf_counter() - t0, 1), "max_case_s": round(s["max_case_s"], 3),
                     "peak_rss_mib_after": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
                     "failure_examples": s["examples"]})
        print(f"{target}: {s['cases']} cases, {s['failures']} failures", flush=True)
    ath = []
    if args.atheris_runs:
        for target in [t for t in args.targets.split(",") if t in ATHERIS_TARGETS]:
            ath.append(_atheris(target, args.atheris_runs))
            print(f"atheris {target}: {'ok' if ath[-1]['ok'] else 'FAILED'} {ath[-1]['tail'][-1:]}", flush=True)

    print(f"\n{'target':<10} {'cases':>7} {'failures':>8} {'wall s':>8} {'max case s':>10} {'peak RSS MiB':>12}")
    for r in rows:
        print(f"{r['target']:<10} {r['cases']:>7} {r['failures']:>8} {r['wall_s']:>8} {r['max_case_s']:>10} "
              f"{r['peak_rss_mib_after']:>12}")
    for a in ath:
        print(f"atheris {a['target']:<10} runs {a['runs']:>6} {'ok' if a['ok'] else 'FAILED':>7} {a['wall_s']:>8}")
    doc = {"command": "python -m tests.fuzz.run " + " ".join(argv if argv is not None else sys.argv[1:]),
           "examples_per_target": args.examples, "derandomized": False,
           "hang_limit_s": common.HANG_S, "address_space_limit_mib": args.max_as_mb,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10,
           "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "hypothesis": rows, "atheris": ath}
    for r in rows:
        r["command"], r["date"] = doc["command"], doc["date"]
    if args.update and Path(args.out).is_file():
        old = json.loads(Path(args.out).read_text(encoding="utf-8"))
        done = {r["target"] for r in rows}
        for r in old.get("hypothesis", []):
            r.setdefault("command", old.get("command"))
            r.setdefault("date", old.get("date"))
        rows[:0] = [r for r in old.get("hypothesis", []) if r["target"] not in done]
        order = {t: i for i, t in enumerate(TARGETS)}
        rows.sort(key=lambda r: order.get(r["target"], len(order)))
        doc = {**old, "hypothesis": rows, "updated": doc["date"],
               "peak_rss_mib": max(r.get("peak_rss_mib_after", 0) for r in rows),
               "atheris": ath or old.get("atheris", [])}
    from intsim.artifact import atomic_write_bytes

    atomic_write_bytes(args.out, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    print(f"wrote {args.out}")
    return 0 if all(r["failures"] == 0 for r in rows) and all(a["ok"] for a in ath) else 1


if __name__ == "__main__":
    sys.exit(main())
