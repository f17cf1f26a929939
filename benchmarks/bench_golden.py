"""Golden against ``intsim run``: time, CPU time, peak memory, size limits and disk (docs/golden.md).

Three measurements on a real calibrated artifact (IMDN ×4 W4A4 by default):

1. **Time** on one Set5 LR image (baby), both executors in this one process, in
   interleaved rounds (intsim, golden, intsim, golden, …): wall and CPU time of
   :func:`intsim.engine.run` (what ``intsim run`` computes, ``keep_tensors=False``)
   and of golden (:func:`golden.executor.stream`) keeping only the graph outputs and
   keeping every tensor (converted and handed to a sink that drops them, so the
   disk is not timed). Reported: the median of the per-round ratios. Peak RSS of
   each in its own child process.
2. **Size**: one 500×480 LR image (Urban100 ``img_020`` HR, bicubic to 640×480,
   the left-centre 500×480 crop) through ``intsim golden --tensors outputs`` in a
   child process (peak RSS), then ``intsim verify`` on it.
3. **Disk**: Set5 ×4 goldens with ``--tensors all``, ``conv-io`` and ``conv-io
   --compress``; ``verify`` and ``export-vectors`` on the ``conv-io`` one.

Usage (about 5 minutes on 2 shared cores; ``nice``, one thread)::

    OMP_NUM_THREADS=1 nice python -m benchmarks.bench_golden --artifact ART --data-root ../shared \\
        -o benchmarks/results/golden

``--only time`` runs part 1 alone (the interleaved rounds and the peak RSS of ``intsim run`` and of
``intsim golden`` on the same image), a minute. Every thread pool in this process is held at one
thread (OpenMP, MKL, numba, intsim's band pool): with numba's default pool, an ``intsim`` round left
worker threads whose CPU time landed on the next golden round (measured: 10 s instead of 1 s).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "intsim_cli"]


ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "INTSIM_THREADS": "1"}


def _child_env() -> dict:
    env = dict(os.environ, **ONE_THREAD)
    # the caller's path first: the children import the same golden and intsim as this process
    env["PYTHONPATH"] = os.pathsep.join([p for p in (env.get("PYTHONPATH", ""), str(ROOT)) if p])
    return env


def peak_rss(cmd: list[str]) -> tuple[int, float, float]:
    """Run ``cmd`` in a child of a fresh helper; return (exit code, its peak RSS in MiB, wall s)."""
    helper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
              "rc = subprocess.run(sys.argv[1:]).returncode; w = time.perf_counter() - t; "
              "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, w)")
    out = subprocess.run([sys.executable, "-c", helper, *cmd], capture_output=True, text=True, env=_child_env(),
                         cwd=ROOT)
    rc, kb, wall = out.stdout.split()[-3:]
    return int(rc), int(kb) / 1024, float(wall)


def _clock(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def time_rounds(art, img, rounds: int) -> dict:
    """Interleaved rounds of the integer engine and golden (outputs kept; every tensor kept)."""
    import torch

    from golden.executor import stream
    from intsim.engine import run

    torch.set_num_threads(1)
    feeds = {art.inputs[0]: img}
    runs = {
        "intsim": lambda: run(art, img, keep_tensors=False),
        "golden_outputs": lambda: stream(art, feeds, lambda *a: None, keep=set(art.outputs)),
        "golden_all": lambda: stream(art, feeds, lambda *a: None, keep=None),
    }
    for fn in runs.values():  # warm-up: numba compilation, torch and BLAS initialisation
        fn()
    rows = []
    for _ in range(rounds):
        rows.append({name: _clock(fn) for name, fn in runs.items()})
    out = {"rounds": rounds, "per_round": rows}
    for name in ("golden_outputs", "golden_all"):
        out[name] = {
            "wall_ratio_median": statistics.median(r[name][0] / r["intsim"][0] for r in rows),
            "cpu_ratio_median": statistics.median(r[name][1] / r["intsim"][1] for r in rows),
            "wall_s_median": statistics.median(r[name][0] for r in rows),
            "cpu_s_median": statistics.median(r[name][1] for r in rows),
        }
    out["intsim"] = {"wall_s_median": statistics.median(r["intsim"][0] for r in rows),
                     "cpu_s_median": statistics.median(r["intsim"][1] for r in rows)}
    return out


def make_large_lr(data_root: Path, out: Path) -> Path:
    """The 500×480 LR image: Urban100 img_020 HR (1280×960), bicubic to 640×480, crop x 70..570."""
    from PIL import Image

    im = Image.open(data_root / "data" / "Urban100" / "HR" / "img_020.png").convert("RGB")
    im.resize((640, 480), Image.BICUBIC).crop((70, 0, 570, 480)).save(out)
    return out


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", required=True)
    p.add_argument("--data-root", default=str(ROOT.parent / "shared"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--skip-disk", action="store_true")
    p.add_argument("--disk-from", default=None, metavar="JSON",
                   help="take the disk section from an earlier results file (golden sizes and the exit codes of "
                        "verify and export-vectors do not depend on golden's speed) instead of re-measuring it")
    p.add_argument("--only", choices=("all", "time"), default="all",
                   help="time: the interleaved rounds and the peak RSS on the same image only")
    p.add_argument("--note", default=None, help="a line recorded with the results (e.g. which golden was timed)")
    p.add_argument("-o", "--out", default=str(ROOT / "benchmarks" / "results" / "golden"), help="prefix: .json/.md")
    a = p.parse_args(argv)
    os.environ.update(ONE_THREAD)  # before numba, torch and intsim are imported (module docstring)
    from intsim.artifact import load_artifact
    from intsim.images import read_image

    root = Path(a.data_root)
    art = load_artifact(a.artifact)
    set5 = root / "data" / "Set5" / "LR_bicubic" / "X4"
    baby = set5 / "babyx4.png"
    img = read_image(baby, 3).pixels
    res = {"artifact": Path(a.artifact).name, "artifact_sha256": art.sha256, "image": "Set5 babyx4.png",
           "image_shape": list(img.shape), "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                      "load_average_start": list(os.getloadavg())},
           "threads": 1, "thread_env": ONE_THREAD, "commit": _commit(), "only": a.only, "note": a.note}
    res["time"] = time_rounds(art, img, a.rounds)
    res["golden_package"] = str(Path(sys.modules["golden"].__file__).parent)  # which golden was timed
    tmp = Path(tempfile.mkdtemp(prefix="bench_golden."))
    try:
        rc, mib, wall = peak_rss([*CLI, "run", a.artifact, str(baby), "-o", str(tmp / "sr")])
        res["peak_rss_mib"] = {"intsim_run_baby": mib}
        rc, mib, wall = peak_rss([*CLI, "golden", a.artifact, str(baby), "-o", str(tmp / "g_out"),
                                  "--tensors", "outputs"])
        res["peak_rss_mib"]["golden_outputs_baby"] = mib
        rc, mib, wall = peak_rss([*CLI, "golden", a.artifact, str(baby), "-o", str(tmp / "g_baby")])
        res["peak_rss_mib"]["golden_all_baby"] = mib
        res["cli_wall_s"] = {"golden_all_baby": wall}
        if a.only == "time":
            pass
        elif not a.skip_large:
            big = make_large_lr(root, tmp / "large_500x480.png")
            rc, mib, wall = peak_rss([*CLI, "golden", a.artifact, str(big), "-o", str(tmp / "g_big"),
                                      "--tensors", "outputs"])
            vrc, vmib, vwall = peak_rss([*CLI, "verify", a.artifact, str(tmp / "g_big")])
            res["large"] = {"image": "Urban100 img_020 HR → bicubic 640×480 → crop 500×480", "lr_shape": [480, 500, 3],
                            "golden_exit": rc, "golden_peak_rss_mib": mib, "golden_wall_s": wall,
                            "verify_exit": vrc, "verify_ok": vrc == 0, "verify_peak_rss_mib": vmib,
                            "verify_wall_s": vwall}
            shutil.rmtree(tmp / "g_big", ignore_errors=True)
        if a.only == "time":
            pass
        elif a.disk_from:
            prev = json.loads(Path(a.disk_from).read_text())
            res["disk"], res["disk_commit"] = prev["disk"], prev.get("commit")
        elif not a.skip_disk:
            res["disk"] = disk(a.artifact, set5, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["machine"]["load_average_end"] = list(os.getloadavg())
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


def disk(artifact: str, set5: Path, tmp: Path) -> dict:
    """Set5 ×4 golden sizes per selection; verify and export-vectors on the conv-io goldens."""
    out: dict = {}
    for label, extra in (("all", []), ("conv-io", ["--tensors", "conv-io"]),
                         ("conv-io --compress", ["--tensors", "conv-io", "--compress"]),
                         ("outputs", ["--tensors", "outputs"])):
        d = tmp / label.replace(" ", "_")
        t0 = time.perf_counter()
        rc = subprocess.run([*CLI, "golden", artifact, str(set5), "-o", str(d), *extra], env=_child_env(),
                            cwd=ROOT).returncode
        entry = {"exit": rc, "bytes": du(d), "wall_s": time.perf_counter() - t0}
        if label.startswith("conv-io"):
            entry["verify_exit"] = subprocess.run([*CLI, "verify", artifact, str(d)], env=_child_env(),
                                                  cwd=ROOT, capture_output=True).returncode
            v = tmp / "vectors"
            entry["export_vectors_exit"] = subprocess.run([*CLI, "export-vectors", str(d), "-o", str(v)],
                                                          env=_child_env(), cwd=ROOT, capture_output=True).returncode
            entry["export_vectors_bytes"] = du(v)
            shutil.rmtree(v, ignore_errors=True)
        out[label] = entry
        if label != "all":
            shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(tmp / "all", ignore_errors=True)
    for k in out:
        out[k]["fraction_of_all"] = out[k]["bytes"] / max(1, out["all"]["bytes"])
    return out


def markdown(r: dict) -> str:
    t = r["time"]
    lines = [f"# Golden vs intsim run — {r['artifact']} on {r['image']} ({r['image_shape'][1]}×{r['image_shape'][0]})",
             "", f"Commit {r.get('commit')}. One thread (every pool), one process, {t['rounds']} interleaved rounds after a "
             f"warm-up; median of per-round ratios. Load average {r['machine']['load_average_start'][0]:.1f} → "
             f"{r['machine']['load_average_end'][0]:.1f} on {r['machine']['cpus']} CPUs."
             + (f" {r['note']}" if r.get("note") else ""), "",
             "| run | wall s | CPU s | wall ratio | CPU ratio |", "|---|---|---|---|---|",
             f"| intsim engine.run | {t['intsim']['wall_s_median']:.2f} | {t['intsim']['cpu_s_median']:.2f} | 1 | 1 |"]
    for name, what in (("golden_outputs", "golden, outputs kept"), ("golden_all", "golden, every tensor kept")):
        g = t[name]
        lines.append(f"| {what} | {g['wall_s_median']:.2f} | {g['cpu_s_median']:.2f} | "
                     f"{g['wall_ratio_median']:.2f}× | {g['cpu_ratio_median']:.2f}× |")
    per = [row["golden_outputs"][1] / row["intsim"][1] for row in t["per_round"]]
    lines += ["", "Per-round CPU ratios, golden (outputs kept) / intsim: "
              + ", ".join(f"{v:.2f}" for v in per) + "."]
    pr = r.get("peak_rss_mib", {})
    if pr:
        out = (f"`intsim golden --tensors outputs` {pr['golden_outputs_baby']:.0f} MiB, "
               if "golden_outputs_baby" in pr else "")
        lines += ["", f"Peak RSS (own process, CLI, same image): `intsim run` {pr['intsim_run_baby']:.0f} MiB, "
                      f"{out}`intsim golden` (all tensors) {pr['golden_all_baby']:.0f} MiB."]
    if "large" in r:
        L = r["large"]
        lines += ["", f"## 500×480 LR image ({L['image']})", "",
                  f"`intsim golden --tensors outputs`: exit {L['golden_exit']}, peak RSS "
                  f"{L['golden_peak_rss_mib']:.0f} MiB, {L['golden_wall_s']:.0f} s; `intsim verify`: exit "
                  f"{L['verify_exit']} ({'OK' if L['verify_ok'] else 'FAILED'}), peak RSS "
                  f"{L['verify_peak_rss_mib']:.0f} MiB, {L['verify_wall_s']:.0f} s."]
    if "disk" in r:
        when = f" (measured at commit {r['disk_commit']})" if r.get("disk_commit") else ""
        lines += ["", f"## Set5 ×4 golden on disk{when}", "",
                  "| --tensors | MiB | fraction of all | verify | export-vectors |",
                  "|---|---|---|---|---|"]
        for k, e in r["disk"].items():
            v = "" if "verify_exit" not in e else ("OK" if e["verify_exit"] == 0 else f"exit {e['verify_exit']}")
            x = "" if "export_vectors_exit" not in e else (f"exit {e['export_vectors_exit']}, "
                                                           f"{e['export_vectors_bytes'] / 2**20:.0f} MiB")
            lines.append(f"| {k} | {e['bytes'] / 2**20:.1f} | {e['fraction_of_all']:.3f} | {v} | {x} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
