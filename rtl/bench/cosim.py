"""Cosimulation of the reference RTL (rtl/*.sv) against intsim, through cocotb and Icarus Verilog
(docs/rtl.md).

:func:`run_cosim` takes an artifact and a golden directory made from it, writes the per-layer test
cases (``intsim export-vectors --artifact``), runs every conv and encode case through rtl/tb/tb_layer.sv
(one simulation, optionally only some output rows / channels of each layer), and compares the dumps with
the golden by ``intsim compare`` (dumps.json maps each dump to its tensor and region). Command line::

    python -m rtl.bench.cosim MODEL.intsim GOLDEN_DIR -o OUT [--rows N] [--channel-step S]
                              [--layer OP ...] [--define PLANT_BUG_FLOOR] [--requant-only]

prints compare's report and exits with its code (0 bit-exact, 1 mismatch, 2 bad input or no simulator).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RTL = Path(__file__).resolve().parents[1]
SOURCES = ["isim_round.sv", "isim_overflow.sv", "isim_encoder.sv", "isim_mac_split.sv", "isim_mac_grid.sv",
           "isim_requant.sv"]
TOP = "tb_layer"
#: The rounding modes rtl/isim_round.sv implements, by their ``RoundingMode`` value (its 2-bit ``mode``
#: input). The one list of them: the unit bench, the synthetic layers and the refusal below read it.
RTL_ROUNDINGS = ("half_up", "half_away", "half_even", "floor")


def check_rounding(rounding: str, where: str) -> None:
    """``ValueError`` naming ``where`` when the RTL lacks rounding mode ``rounding``: the config word
    would reach isim_round.sv truncated to 2 bits and run another mode."""
    if rounding not in RTL_ROUNDINGS:
        raise ValueError(f"{where}: rounding mode {rounding!r} is not implemented by the reference RTL "
                         f"(rtl/isim_round.sv has {', '.join(RTL_ROUNDINGS)})")


class SimulatorMissing(RuntimeError):
    """Icarus Verilog or cocotb is not installed."""


def check_tools() -> None:
    """Raise :class:`SimulatorMissing` naming what is missing (``make rtl-test`` installs both)."""
    if shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise SimulatorMissing("Icarus Verilog (iverilog, vvp) is not installed: apt-get install -y iverilog")
    try:
        import cocotb  # noqa: F401
        import cocotb_tools.runner  # noqa: F401
    except ImportError:
        raise SimulatorMissing("cocotb is not installed: pip install cocotb (see constraints.txt)") from None


@dataclass
class Region:
    """Which outputs of each layer the bench computes: rows [0, rows) (None: all) and every
    ``channel_step``-th channel (channel 0, step, 2·step, …)."""

    rows: int | None = None
    channel_step: int = 1


EVENT_KEYS = ("acc_overflow", "stream_overflow", "saturations")


@dataclass
class CosimResult:
    """``report``: intsim compare's report on the dumps; ``event_mismatches``: per layer computed whole,
    the RTL's event counts (§7) that differ from the golden's, as ``{input, op, counter, expected, got}``;
    ``events_compared``: how many counters were compared."""

    report: object  # intsim.compare.CompareReport
    jobs: int
    seconds: float
    outputs: int
    log: str = ""
    events_compared: int = 0
    event_mismatches: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.report.ok) and not self.event_mismatches


def read_events(dump: Path) -> dict:
    """The event counts the bench wrote beside a dump (``<dump>.events``)."""
    vals = (Path(str(dump) + ".events")).read_text().split()
    if len(vals) != len(EVENT_KEYS):
        raise RuntimeError(f"{dump}.events: expected {len(EVENT_KEYS)} counts, got {vals!r}")
    return dict(zip(EVENT_KEYS, (int(v) for v in vals)))


def build(build_dir: Path, defines: dict | None = None):
    """Compile the bench with Icarus through cocotb's runner (``defines``: e.g. {"PLANT_BUG_FLOOR": 1});
    returns the runner, which :func:`simulate` needs (it keeps the build's state)."""
    from cocotb_tools.runner import get_runner

    runner = get_runner("icarus")
    runner.build(sources=[RTL / s for s in SOURCES] + [RTL / "tb" / "tb_layer.sv"], includes=[RTL / "tb"],
                 hdl_toplevel=TOP, build_dir=build_dir, defines=defines or {}, always=True,
                 timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    return runner


def _run_test(runner, **kw) -> Path:
    """``runner.test(**kw)``; a failure is a ``RuntimeError`` naming the log (under pytest the runner
    itself calls ``sys.exit`` when a test or the simulator fails)."""
    try:
        return runner.test(**kw)
    except SystemExit as e:
        raise RuntimeError(f"cocotb: the simulation failed (exit {e.code}; log {kw.get('log_file')})") from None


def simulate(runner, build_dir: Path, jobs_file: Path, n_jobs: int) -> Path:
    """Run the cocotb test on the bench :func:`build` made; returns the results XML. Raises
    ``RuntimeError`` when the test fails."""
    from cocotb_tools.runner import get_results

    # the runner hands the simulator's Python this process's sys.path (it ignores a PYTHONPATH given in
    # extra_env), so the folder of the cocotb test module must be on it
    if str(RTL / "bench") not in sys.path:
        sys.path.append(str(RTL / "bench"))
    env = {"INTSIM_RTL_JOBS": str(n_jobs)}
    xml = _run_test(runner, test_module="tb_cocotb", hdl_toplevel=TOP, build_dir=build_dir, test_dir=build_dir,
                    plusargs=[f"+jobs={jobs_file}"], extra_env=env, log_file=build_dir / "sim.log")
    total, failed = get_results(xml)
    if total != 1 or failed:
        raise RuntimeError(f"cocotb: {failed} of {total} test(s) failed (log {build_dir / 'sim.log'})")
    return xml


def run_unit(unit: str, out: str | os.PathLike, defines: dict | None = None) -> None:
    """The cocotb unit test of one block (``round``: isim_round, ``overflow``: isim_overflow) in
    rtl/bench/tb_units.py; raises ``RuntimeError`` when it fails."""
    from cocotb_tools.runner import get_results, get_runner

    check_tools()
    top = {"round": "isim_round", "overflow": "isim_overflow"}[unit]
    build_dir = Path(out).resolve() / f"unit_{unit}"
    runner = get_runner("icarus")
    runner.build(sources=[RTL / f"{top}.sv"], hdl_toplevel=top, build_dir=build_dir, defines=defines or {},
                 always=True, timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    if str(RTL / "bench") not in sys.path:
        sys.path.append(str(RTL / "bench"))
    xml = _run_test(runner, test_module="tb_units", hdl_toplevel=top, build_dir=build_dir, test_dir=build_dir,
                    extra_env={"INTSIM_RTL_UNIT": unit}, log_file=build_dir / "sim.log")
    total, failed = get_results(xml)
    if failed:
        raise RuntimeError(f"cocotb: {failed} of {total} test(s) of {top} failed (log {build_dir / 'sim.log'})")


def _jobs(index: dict, out: Path, region: Region, requant_only: bool = False):
    """Job lines for tb_layer.sv, the dumps.json entries, the number of outputs computed, and the
    layers computed whole as ``(input, op, dump)`` (their events are comparable with the golden's).
    ``requant_only``: only the convs with exported accumulators, through the requantizer alone."""
    lines, dumps, outputs, whole = [], [], 0, []
    for e in index["layers"]:
        if requant_only and "acc" not in e["arrays"]:
            continue
        c = e["config"]
        y1 = c["Ho"] if region.rows is None else min(region.rows, c["Ho"])
        step = region.channel_step if e["op_type"] != "encode" else 1
        dump = out / "dumps" / f"in{e['input']}" / f"{e['op']}.hex"
        dump.parent.mkdir(parents=True, exist_ok=True)
        case = out / "vectors" / e["location"]
        for p in (case, dump):
            if any(ch.isspace() for ch in str(p)):
                raise ValueError(f"{p}: the bench's job list cannot hold paths with spaces")
        lines.append(f"{case} {dump} 0 {y1} 0 {c['Wo']} 0 {c['Co']} {step} {int(requant_only)}")
        dumps.append({"input": e["input"], "tensor": e["output_tensor"], "file": str(dump.relative_to(out / "dumps")),
                      "region": {"y": [0, y1], "x": [0, c["Wo"]], "c": [0, c["Co"], step]}})
        outputs += y1 * c["Wo"] * len(range(0, c["Co"], step))
        if y1 == c["Ho"] and step == 1 and not requant_only:
            whole.append((e["input"], e["op"], dump))
    return lines, dumps, outputs, whole


def run_cosim(artifact: str | os.PathLike, golden_dir: str | os.PathLike, out: str | os.PathLike, *,
              region: Region = Region(), layers: list[str] | None = None, defines: dict | None = None,
              inputs: list[int] | None = None, requant_only: bool = False) -> CosimResult:
    """Export the layer cases of ``golden_dir``, run them through the RTL, compare the dumps (see module doc).
    ``requant_only``: export the accumulators and run every conv that has them (the ops that cannot
    overflow, §5.4) through the requantizer alone; encoders are skipped."""
    from intsim.artifact import load_artifact
    from intsim.compare import compare_dumps
    from intsim.golden_dir import read_golden_dir
    from intsim.vectors import export_vectors

    art = load_artifact(artifact)
    check_rounding(art.numerics.rounding, str(artifact))
    check_tools()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    index = export_vectors(golden_dir, out / "vectors", "readmemh", artifact=art, layers=layers, inputs=inputs,
                           tensors=[], accumulators=requant_only)
    lines, dumps, outputs, whole = _jobs(index, out, region, requant_only)
    if not lines:
        raise ValueError("no layer to run (requant-only needs convs that cannot overflow)")
    (out / "dumps" / "dumps.json").write_text(json.dumps({"dumps": dumps}, indent=1))
    seconds, log = run_jobs(lines, out, defines)
    report = compare_dumps(golden_dir, out / "dumps")
    result = CosimResult(report, len(lines), seconds, outputs, log)
    golden = read_golden_dir(golden_dir)
    for k, op, dump in whole:
        want, got = golden.events_for(k).get(op), read_events(dump)
        if want is None:
            continue
        for key in EVENT_KEYS:
            result.events_compared += 1
            if int(want[key]) != got[key]:
                result.event_mismatches.append({"input": k, "op": op, "counter": key, "expected": int(want[key]),
                                                "got": got[key]})
    return result


def run_jobs(lines: list[str], out: Path, defines: dict | None = None) -> tuple[float, str]:
    """Build the bench and run the job lines (see rtl/tb/tb_layer.sv); returns (seconds, simulation log)."""
    jobs_file = out / "jobs.txt"
    jobs_file.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    runner = build(out / "sim_build", defines)
    simulate(runner, out / "sim_build", jobs_file, len(lines))
    return time.perf_counter() - t0, (out / "sim_build" / "sim.log").read_text(errors="replace")


def run_cases(cases: list, out: str | os.PathLike, defines: dict | None = None) -> list[tuple]:
    """Run :class:`~intsim.layer_cases.LayerCase` objects (e.g. synthetic layers) through the RTL, every
    output of each; returns per case what the RTL computed (int64, shaped as its expected) and its
    event counts (:data:`EVENT_KEYS`)."""
    from intsim.layer_vectors import parse_hex, readmemh_files
    from intsim.rounding import RoundingMode

    for case in cases:
        check_rounding(RoundingMode(case.config["rounding"]).spec_name, f"layer case {case.op}")
    check_tools()
    out = Path(out).resolve()
    lines, dumps = [], []
    for i, case in enumerate(cases):
        where = out / "cases" / f"{i:03d}"
        where.mkdir(parents=True, exist_ok=True)
        for name, text in readmemh_files(case, None, 1).items():
            (where / name).write_text(text)
        dump = out / "dumps" / f"{i:03d}.hex"
        dump.parent.mkdir(parents=True, exist_ok=True)
        c = case.config
        lines.append(f"{where} {dump} 0 {c['Ho']} 0 {c['Wo']} 0 {c['Co']} 1 0")
        dumps.append(dump)
    run_jobs(lines, out, defines)
    return [(parse_hex(d.read_text(), case.config["out_bits"]).reshape(case.arrays["expected"].shape), read_events(d))
            for d, case in zip(dumps, cases)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rtl.bench.cosim", description=__doc__.split("\n\n")[0])
    p.add_argument("artifact")
    p.add_argument("golden_dir")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--rows", type=int, default=None, help="only output rows [0, N) of every layer")
    p.add_argument("--channel-step", type=int, default=1, help="only every S-th output channel of every conv")
    p.add_argument("--layer", action="append", default=None, help="only this conv/encode op (repeatable)")
    p.add_argument("--define", action="append", default=[], help="a build-time define (e.g. PLANT_BUG_FLOOR)")
    p.add_argument("--requant-only", action="store_true", help="the requantizer alone, fed exported accumulators")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    try:
        r = run_cosim(a.artifact, a.golden_dir, a.out, region=Region(a.rows, a.channel_step), layers=a.layer,
                      defines={d: 1 for d in a.define}, requant_only=a.requant_only)
    except (SimulatorMissing, ValueError, OSError, RuntimeError) as e:
        print(f"rtl cosim: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    taps = [ln for ln in r.log.splitlines() if "MAC step(s)" in ln]
    summary = {"ok": r.ok, "events_compared": r.events_compared, "event_mismatches": r.event_mismatches[:5],
               "jobs": r.jobs, "outputs": r.outputs, "sim_seconds": round(r.seconds, 1),
               "bench": taps[-1].split("intsim rtl bench: ")[-1] if taps else None}
    if a.json:
        print(json.dumps(summary | {"compare": r.report.to_json()}, indent=1))
    else:
        print(r.report.format())
        print(json.dumps(summary))
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
