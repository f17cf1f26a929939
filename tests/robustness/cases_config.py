"""Robustness cases: configuration — accelerator TOML files and command-line arguments (see harness.py).

Accelerator files are variations of the packaged ``edge_npu.toml`` handed to ``intsim cost ART
--accel FILE`` (the cost's ``-o`` JSON is a pre-existing file that must stay unchanged) or to
``intsim run ... --accel FILE`` (its output folder must stay unchanged). Command-line cases name
the option in the message and are refused while parsing, before any file is read.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

from tests.robustness.harness import DATA_ROOT as _DATA_ROOT
from tests.robustness.harness import Case, Setup, out_dir, valid_artifact, valid_image, valid_pixels


def _edge_npu_text() -> str:
    from intsim.cost import packaged_accelerators

    return packaged_accelerators()["edge_npu"].read_text(encoding="utf-8")


def _accel_file(folder: Path, old: str, new: str, *more: tuple[str, str], name: str = "my_npu.toml") -> Path:
    """edge_npu.toml with ``old`` replaced by ``new`` (and each further (old, new) pair of ``more``)."""
    text = _edge_npu_text()
    for o, n in ((old, new), *more):
        assert o in text, o
        text = text.replace(o, n, 1)
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p


def _cost_with(accel: Path, folder: Path) -> Setup:
    art = valid_artifact(folder)
    img = valid_image(folder)
    out = folder / "cost.json"
    out.write_text('{"earlier": "result"}')
    return Setup(["cost", art, "--images", img, "--accel", accel, "-o", out], str(accel), [out])


def _accel_case(old: str, new: str, *more: tuple[str, str]):
    def build(folder: Path) -> Setup:
        return _cost_with(_accel_file(folder, old, new, *more), folder)

    return build


def _accel_missing(folder: Path) -> Setup:
    return _cost_with(folder / "my_npu.toml", folder)


def _counters_case(text: str | Callable[[Path], None]):
    """``intsim cost ART --counters F``: a counters file from another tool that is not what it claims
    (``text``, or made by ``text(path)``)."""

    def build(folder: Path) -> Setup:
        art = valid_artifact(folder)
        counters = folder / "counters.json"
        if callable(text):
            text(counters)
        else:
            counters.write_text(text)
        out = folder / "cost.json"
        out.write_text('{"earlier": "result"}')
        return Setup(["cost", art, "--counters", counters, "-o", out], str(counters), [out])

    return build


def _accel_on_run(folder: Path) -> Setup:
    accel = _accel_file(folder, "rows = 32", "rows = 0")
    art = valid_artifact(folder)
    img = valid_image(folder)
    out = out_dir(folder)
    return Setup(["run", art, img, "-o", out, "--accel", accel], str(accel), [out])


def _args(*argv: str, option: str):
    """A command line refused while parsing; ``-o`` points at an existing output that must stay unchanged."""

    def build(folder: Path) -> Setup:
        out = folder / "model.intsim"
        out.write_bytes(b"an earlier artifact")
        cal = folder / "calib"
        cal.mkdir(exist_ok=True)
        valid_image(cal)
        full = [a.replace("{out}", str(out)).replace("{cal}", str(cal)) for a in argv]
        return Setup(full, option, [out])

    return build


def _calibrate(**over: str):
    opts = {"--model": "tiny_sr", "--scale": "2", "--bits": "W8A8", "--calib-data": "{cal}", "-o": "{out}", **over}
    return ["calibrate", *(x for k, v in opts.items() for x in (k, v))]


def _eval_args(*extra: str):
    def build(folder: Path) -> Setup:
        art = valid_artifact(folder)
        return Setup(["eval", art, "--engine", "intsim", *extra], extra[0], [])

    return build


def _sweep(extra: str = "", prepare=None, **over: str):
    """``intsim sweep`` of a one-cell SWEEP.toml (imdn ×4 W8A8 minmax on Set5), ``over`` replacing
    [sweep] keys and ``extra`` appended; ``prepare(folder)`` makes the files it names. Its ``out``
    folder must not be created: the refusal comes before Ray starts or anything is calibrated."""

    def build(folder: Path) -> Setup:
        keys = {"out": '"o"', "models": '["imdn:4"]', "bits": '["W8A8"]', "methods": '["minmax"]',
                "datasets": '["Set5"]', **over}
        if prepare:
            prepare(folder)
        spec = folder / "sweep.toml"
        spec.write_text("[sweep]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + extra)
        return Setup(["sweep", spec], "sweep.toml", [folder / "o"])

    return build


_SWEEP_UP_FRONT = ("checked for every cell when the sweep file is read, before Ray starts: nothing is calibrated "
                   "or written")

# ------------------------------------------------------------ files that are not plain, small files
def _fifo(path: Path) -> Path:
    os.mkfifo(path)  # opening it for reading would block until a writer comes: it must be refused unopened
    return path


def _accel_fifo(folder: Path) -> Setup:
    return _cost_with(_fifo(folder / "my_npu.toml"), folder)


def _accel_dev_zero(folder: Path) -> Setup:
    return _cost_with(Path("/dev/zero"), folder)


def _accel_too_large(folder: Path) -> Setup:
    p = folder / "my_npu.toml"
    p.write_text(_edge_npu_text() + ("# padding\n" * 110_000), encoding="utf-8")  # a valid file of 1.05 MiB
    return _cost_with(p, folder)


_HUGE_INT = "9" * 5000  # more digits than Python converts (sys.get_int_max_str_digits(): 4300)


def _engine_counters(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """Write the engine's counters of the valid artifact on the valid image, changed by ``edit``."""

    def write(path: Path) -> None:
        from intsim.artifact import load_artifact
        from intsim.engine import run

        counters = run(load_artifact(valid_artifact(path.parent)), valid_pixels(), keep_tensors=False).counters
        edit(counters)
        path.write_text(json.dumps([counters]))

    return write


def _sweep_fifo(folder: Path) -> Setup:
    spec = _fifo(folder / "sweep.toml")
    return Setup(["sweep", spec], str(spec), [folder / "o"])


# ------------------------------------------------------------ files an earlier run left: state, metadata, summary
def _calibrate_argv(folder: Path, method: str, model: str = "tiny_sr") -> list:
    """``intsim calibrate`` of ``model`` (the repo's tiny_sr; a zoo model with its ×2 checkpoint from the data
    root) on two small LR images with ``--state-dir folder/state``."""
    weights = [] if model == "tiny_sr" else ["--weights", _DATA_ROOT / "weights" / model / f"{model}_x2.pth"]
    cal = folder / "calib"
    cal.mkdir(exist_ok=True)
    valid_image(cal, "a.png", 24, 24)
    valid_image(cal, "b.png", 20, 28)
    steps = ["--iters", "2"] if method == "recon" else ["--epochs", "1"]
    return ["calibrate", "--model", model, *weights, "--scale", "2", "--bits", "W8A8", "--calib-data", cal,
            "--calib-layout", "lr", "--n-images", "1", "--patch", "8", "--method", method, *steps, "--state-dir",
            folder / "state", "-o", folder / "model.intsim"]


@cache
def _calibrated(method: str, model: str = "tiny_sr") -> Path:
    """A folder holding a finished run's state (``state/``) and artifact (``model.intsim``); made once per
    process (a few seconds)."""
    import contextlib
    import io
    import tempfile

    from intsim_cli import main

    d = Path(tempfile.mkdtemp(prefix=f"intsim-robust-{method}-"))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        code = main([str(a) for a in _calibrate_argv(d, method, model)])
    assert code == 0, err.getvalue()
    return d


def _resume(method: str, json_name: str, edit: Callable[[Path, Path], Path]):
    """Calibrate again with ``--state-dir`` holding the finished run's state changed by ``edit(state, json)``,
    which returns the file the message must name; ``-o`` and the state folder must stay unchanged."""

    def build(folder: Path) -> Setup:
        shutil.copytree(_calibrated(method) / "state", folder / "state")
        names = edit(folder / "state", folder / "state" / json_name)
        argv = _calibrate_argv(folder, method)
        out = folder / "model.intsim"
        out.write_bytes(b"an earlier artifact")
        return Setup(argv, str(names), [out, folder / "state"])

    return build


def _edit_json(change: Callable[[dict], object]) -> Callable[[Path, Path], Path]:
    def edit(state: Path, js: Path) -> Path:
        meta = json.loads(js.read_text())
        js.write_text(json.dumps(change(meta)))
        return js

    return edit


def _tensors_outside(state: Path, js: Path) -> Path:
    meta = json.loads(js.read_text())
    shutil.copy(state / meta["tensors"], state.parent / "elsewhere.pt")
    js.write_text(json.dumps({**meta, "tensors": "../elsewhere.pt"}))
    return js


def _tensors_not_tensors(state: Path, js: Path) -> Path:
    import torch

    p = state / json.loads(js.read_text())["tensors"]
    torch.save({"param.head.0.act_quant.l": [0.5]}, p)  # a list where a tensor belongs
    return p


def _state_fifo(state: Path, js: Path) -> Path:
    js.unlink()
    return _fifo(js)


def _with_graph(art: Path, change: Callable[[dict], None], literal: tuple[str, str] = ("", "")) -> Path:
    """Rewrite the artifact's graph.json (its arrays and their hashes unchanged) after ``change``; the
    JSON text then has ``literal[0]`` replaced by ``literal[1]`` (a number JSON cannot spell, e.g. 1e999)."""
    import zipfile

    with zipfile.ZipFile(art) as z:
        members = {n: z.read(n) for n in z.namelist()}
    graph = json.loads(members["graph.json"])
    change(graph)
    members["graph.json"] = json.dumps(graph).replace(*literal).encode()
    with zipfile.ZipFile(art, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in members.items():
            z.writestr(n, data)
    return art


def _eval_scale_inf(folder: Path) -> Setup:
    art = _with_graph(valid_artifact(folder), lambda g: g["model"].update(scale="SCALE"), ('"SCALE"', "1e999"))
    return Setup(["eval", art, "--engine", "intsim"], str(art), [])


def _eval_null_bound(folder: Path) -> Setup:
    art = folder / "model.intsim"
    shutil.copy(_calibrated("minmax", "fsrcnn") / "model.intsim", art)
    _with_graph(art, lambda g: g["metadata"]["layers"]["first_part.0"]["act"].update(l=None))
    return Setup(["eval", art, "--engine", "fakequant"], str(art), [])


def _report_psnr_text(folder: Path) -> Setup:
    run = folder / "intsim-demo"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"model": "tiny_sr", "scale": 2, "psnr_db": "x"}))
    return Setup(["report", run], str(run / "summary.json"), [run / "report.html"])


def _cost_record(**totals) -> dict:
    """A minimal cost result (``intsim cost -o``) with ``totals`` overridden."""
    t = {"energy_pj": {"mac": 1.0e6, "dram": 2.0e6, "total": 3.0e6}, "latency_s": 1e-3, "utilisation": 0.5}
    return {"scheme": "W8A8", "realization": "split", "accelerator": {"name": "edge-npu"},
            "totals": t | totals, "layers": [{"name": "head.conv", "kind": "conv", "op": "conv2d",
                                              "energy_pj": {"mac": 1.0e6, "total": 1.0e6}}]}


def _report_cost(cost) -> Callable[[Path], Setup]:
    """``intsim report`` of a run folder whose summary.json names a crafted cost.json."""

    def build(folder: Path) -> Setup:
        run = folder / "run"
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({"model": "tiny_sr", "scale": 2, "cost": "cost.json",
                                                      "psnr_db": {"intsim": 30.0, "bicubic": 28.0}}))
        (run / "cost.json").write_text(json.dumps(cost))
        return Setup(["report", run], str(run / "cost.json"), [run / "report.html"])

    return build


_REGULAR = ("every input file is judged by stat before it is opened: only a regular file within the reader's size "
            "cap is read (a FIFO would block the open, /dev/zero never ends)")
_RESUME = "a resume state is read as strictly as any input: a JSON object with the keys this code writes, its " \
          "tensors file inside the state folder, tensors that fit the model; anything else is refused (use a fresh " \
          "--state-dir)"

_STRICT = "every key checked: unknown sections/keys, wrong types and impossible values refused (a typo never falls back to a default)"

CASES: list[Case] = [
    # ------------------------------------------------------------ accelerator TOML
    Case("config-accel-unknown-key", "Configuration", "accelerator TOML with a misspelt extra key (colums)",
         _accel_case("cols = 32", "cols = 32\ncolums = 32"), "[array] unknown key 'colums'", policy=_STRICT),
    Case("config-accel-unknown-section", "Configuration", "accelerator TOML with an unknown section [cache]",
         _accel_case("[dram]", "[cache]\nl2_kb = 512\n\n[dram]"), "unknown section or top-level key 'cache'",
         policy=_STRICT),
    Case("config-accel-missing-key", "Configuration", "accelerator TOML without a required key (dataflow)",
         _accel_case('dataflow = "os"\n', ""), "[array] missing required key 'dataflow'"),
    Case("config-accel-narrow-accumulator", "Configuration",
         "accumulator narrower than weight + activation bits (12 < 8 + 8)",
         _accel_case("accumulator_bits = 32", "accumulator_bits = 12"),
         "[datapath] accumulator_bits: 12 bits cannot hold one 8×8-bit product (16 bits)"),
    Case("config-accel-zero-rows", "Configuration", "a PE array with zero rows", _accel_case("rows = 32", "rows = 0"),
         "[array] rows: must be ≥ 1, got 0"),
    Case("config-accel-negative-clock", "Configuration", "a negative clock", _accel_case("clock_mhz = 800.0", "clock_mhz = -800.0"),
         "[accelerator] clock_mhz: must be > 0, got -800"),
    Case("config-accel-wrong-type", "Configuration", 'a number written as a string (rows = "32")',
         _accel_case("rows = 32", 'rows = "32"'), "[array] rows: must be an integer, got str '32'"),
    Case("config-accel-bool-as-number", "Configuration", "a boolean where a number belongs (ifmap_kb = true)",
         _accel_case("ifmap_kb = 256", "ifmap_kb = true"), "[buffers] ifmap_kb: must be a number, got bool True"),
    Case("config-accel-dram-both", "Configuration", "DRAM bandwidth given twice (bytes_per_cycle and gb_per_s)",
         _accel_case("gb_per_s = 12.8", "gb_per_s = 12.8\nbytes_per_cycle = 16.0"),
         "[dram] give exactly one of 'bytes_per_cycle' or 'gb_per_s' (both given)"),
    Case("config-accel-bandwidth-overflow", "Configuration", "a DRAM bandwidth that overflows per cycle "
         "(gb_per_s = 1e300 at 1e-300 MHz)",
         _accel_case("clock_mhz = 800.0", "clock_mhz = 1e-300", ("gb_per_s = 12.8", "gb_per_s = 1e300")),
         "gives inf bytes per cycle"),
    Case("config-accel-bad-choice", "Configuration", "an unknown dataflow", _accel_case('dataflow = "os"', 'dataflow = "rs"'),
         "[array] dataflow: must be one of 'os', 'ws', 'is', got 'rs'"),
    Case("config-accel-toml-syntax", "Configuration", "accelerator file with a TOML syntax error",
         _accel_case("rows = 32", "rows = 32 32"), "not valid TOML"),
    Case("config-accel-energy-table-missing", "Configuration", "an energy table that does not exist",
         _accel_case('table = "energy_45nm.toml"', 'table = "energy_7nm.toml"'),
         "[energy] table: energy table 'energy_7nm.toml' not found"),
    Case("config-counters-not-json", "Configuration", "a counters file (`intsim cost --counters`) that is not JSON",
         _counters_case("{ counters: yes"), "not valid JSON"),
    Case("config-counters-nested", "Configuration", "a counters file nested 100000 deep",
         _counters_case("[" * 100000 + "]" * 100000), "nested too deeply to parse"),
    Case("config-counters-other-artifact", "Configuration", "counters recorded for another artifact",
         _counters_case('{"artifact_sha256": "' + "ab" * 32 + '", "images": []}'), "not of this artifact"),
    Case("config-accel-missing", "Configuration", "--accel file does not exist", _accel_missing, "no such file"),
    Case("config-accel-on-run", "Configuration", "a bad accelerator file given to intsim run --accel",
         _accel_on_run, "[array] rows: must be ≥ 1, got 0",
         policy="checked before any image is run: nothing is written"),
    # ------------------------------------------------------------ command-line arguments
    Case("arg-scale-zero", "Configuration", "calibrate --scale 0", _args(*_calibrate(**{"--scale": "0"}), option="--scale"),
         "must be in [2, 8], got 0"),
    Case("arg-scale-too-large", "Configuration", "calibrate --scale 99", _args(*_calibrate(**{"--scale": "99"}), option="--scale"),
         "must be in [2, 8], got 99"),
    Case("arg-scale-unsupported", "Configuration", "calibrate --scale 3 for a model built for ×2 only",
         _args(*_calibrate(**{"--scale": "3"}), option="--scale"), "model 'tiny_sr' supports scales 2",
         needs=("torch",)),
    Case("arg-scale-not-integer", "Configuration", "calibrate --scale 2.5",
         _args(*_calibrate(**{"--scale": "2.5"}), option="--scale"), "expected an integer, got '2.5'"),
    Case("arg-acc-bits-too-large", "Configuration", "calibrate --acc-bits 200",
         _args(*_calibrate(**{"--acc-bits": "200"}), option="--acc-bits"), "must be in [8, 48], got 200"),
    Case("arg-n-images-zero", "Configuration", "calibrate --n-images 0",
         _args(*_calibrate(**{"--n-images": "0"}), option="--n-images"), "must be in [1, 100000], got 0"),
    Case("arg-patch-too-small", "Configuration", "calibrate --patch 3",
         _args(*_calibrate(**{"--patch": "3"}), option="--patch"), "must be in [8, 4096], got 3"),
    Case("arg-bits-malformed", "Configuration", "calibrate --bits W4 (no activation width)",
         _args(*_calibrate(**{"--bits": "W4"}), option="--bits"), "expected W<bits>A<bits> such as W4A4 or W8A8, got 'W4'",
         policy="checked while parsing, before torch is imported"),
    Case("arg-bits-out-of-range", "Configuration", "calibrate --bits W1A8",
         _args(*_calibrate(**{"--bits": "W1A8"}), option="--bits"), "weight bits must be in [2, 16], got 1"),
    Case("arg-seed-not-integer", "Configuration", "calibrate --seed abc",
         _args(*_calibrate(**{"--seed": "abc"}), option="--seed"), "invalid int value: 'abc'"),
    Case("arg-limit-negative", "Configuration", "eval --limit -1", _eval_args("--limit", "-1"),
         "must be in [1, 100000], got -1"),
    Case("arg-crop-not-integer", "Configuration", "eval --crop 1e3", _eval_args("--crop", "1e3"),
         "expected an integer, got '1e3'"),
    # ------------------------------------------------------------ sweep files (intsim sweep)
    Case("config-sweep-unknown-accel", "Configuration", "sweep file naming an unknown accelerator",
         _sweep('[recipe]\naccel = "tpu9000"\n'), "[recipe] accel: 'tpu9000' is neither a packaged accelerator",
         needs=("torch",), policy=_SWEEP_UP_FRONT),
    Case("config-sweep-bad-accel-file", "Configuration", "sweep file naming a broken accelerator TOML",
         _sweep('[recipe]\naccel = "my_npu.toml"\n', lambda d: _accel_file(d, "rows = 32", "rows = 0")),
         "[array] rows: must be ≥ 1, got 0", needs=("torch",), policy=_SWEEP_UP_FRONT),
    Case("config-sweep-calib-data-missing", "Configuration", "sweep file whose `calib_data` folder does not exist",
         _sweep('[recipe]\ncalib_data = "no_such_folder"\n'), "image folder not found", needs=("torch",),
         policy=_SWEEP_UP_FRONT),
    Case("config-sweep-calib-data-empty", "Configuration", "sweep file whose `calib_data` folder holds no images",
         _sweep('[recipe]\ncalib_data = "empty"\n', lambda d: (d / "empty").mkdir()), "folder holds no images",
         needs=("torch",), policy=_SWEEP_UP_FRONT),
    Case("config-sweep-bits-w1a1", "Configuration", "sweep file asking for W1A1 (calibrate takes 2..16 bits)",
         _sweep(bits='["W8A8", "W1A1"]'), "[sweep] bits: weight bits must be in 2..16, got 1 in 'W1A1'",
         needs=("torch",), policy=_SWEEP_UP_FRONT),
    Case("config-sweep-model-scale-no-checkpoint", "Configuration",
         "sweep file asking for a model × scale the zoo has no checkpoint for (rdn_idealo ×4)",
         _sweep(models='["imdn:4", "rdn_idealo:4"]'),
         "[sweep] models: 'rdn_idealo:4': the zoo knows no rdn_idealo ×4 checkpoint (it has: ×2)",
         needs=("torch",), policy=_SWEEP_UP_FRONT + " (a checkpoint file absent from the data root still fails "
                                                   "its cells one by one: the workers' data root decides)"),
    Case("config-sweep-page-is-folder", "Configuration", "sweep file whose [report] page is a folder",
         _sweep('[report]\npage = "docs"\n', lambda d: (d / "docs").mkdir()), "[report] page: ",
         needs=("torch",), policy=_SWEEP_UP_FRONT + " (the page is written only after the last cell)"),
    # ------------------------------------------------------------ files that are not plain, small files
    Case("config-accel-fifo", "Configuration", "--accel names a FIFO (named pipe)", _accel_fifo,
         "is a FIFO, not a regular file", policy=_REGULAR),
    Case("config-accel-dev-zero", "Configuration", "--accel /dev/zero (an endless device)", _accel_dev_zero,
         "is a character device, not a regular file", policy=_REGULAR),
    Case("config-accel-too-large", "Configuration", "an accelerator TOML over 1 MiB", _accel_too_large,
         "more than the 1 MiB accepted for a configuration file", policy=_REGULAR),
    Case("config-accel-huge-integer", "Configuration", "an accelerator TOML with a 5000-digit number",
         _accel_case("rows = 32", "rows = " + _HUGE_INT), "not valid TOML (Exceeds the limit (4300 digits)"),
    Case("config-counters-fifo", "Configuration", "--counters names a FIFO", _counters_case(_fifo),
         "is a FIFO, not a regular file", policy=_REGULAR),
    Case("config-counters-huge-integer", "Configuration", "a counters file with a 5000-digit number",
         _counters_case('{"images": [{"counters": {"ops": {}, "totals": {"macs": ' + _HUGE_INT + '}}}]}'),
         "not valid JSON (Exceeds the limit (4300 digits)"),
    Case("config-counters-string-count", "Configuration", "a counters file with a string where a count belongs",
         _counters_case(_engine_counters(lambda c: c["ops"]["head.conv"].update(macs="many"))),
         "op 'head.conv': 'macs' must be an object mapping segments to non-negative integers, got str 'many'",
         policy="every count is checked to be a non-negative integer when the file is read"),
    Case("config-sweep-fifo", "Configuration", "the sweep file is a FIFO", _sweep_fifo,
         "is a FIFO, not a regular file", needs=("torch",), policy=_REGULAR),
    Case("config-sweep-huge-integer", "Configuration", "a sweep file with a 5000-digit number",
         _sweep(f"[recipe]\nseed = {_HUGE_INT}\n"), "not valid TOML (Exceeds the limit (4300 digits)",
         needs=("torch",)),
    # ------------------------------------------------------------ files an earlier run left
    Case("state-recon-list", "Configuration", "a --state-dir whose recon_state.json holds a list",
         _resume("recon", "recon_state.json", _edit_json(lambda m: [m])), "must hold a JSON object, got list",
         needs=("torch",), policy=_RESUME),
    Case("state-recon-missing-key", "Configuration", "a recon_state.json without its 'done' list",
         _resume("recon", "recon_state.json", _edit_json(lambda m: {k: v for k, v in m.items() if k != "done"})),
         "missing key 'done'", needs=("torch",), policy=_RESUME),
    Case("state-recon-tensors-outside", "Configuration",
         "a recon_state.json whose tensors file lies outside the state folder (`../elsewhere.pt`)",
         _resume("recon", "recon_state.json", _tensors_outside), "not the name of a file in the state folder",
         needs=("torch",), policy=_RESUME),
    Case("state-recon-fifo", "Configuration", "a recon_state.json that is a FIFO",
         _resume("recon", "recon_state.json", _state_fifo), "is a FIFO, not a regular file", needs=("torch",),
         policy=_REGULAR),
    Case("state-finetune-not-tensors", "Configuration", "a finetuning state whose tensors file holds a list "
         "where a tensor belongs", _resume("plain_ft", "finetune_state.json", _tensors_not_tensors),
         "must hold a dict of named tensors", needs=("torch",), policy=_RESUME),
    Case("eval-model-scale-infinite", "Configuration", "`intsim eval` of an artifact whose model.scale is 1e999",
         _eval_scale_inf, "model.scale must be an integer in 1..32, got float inf", needs=("torch",),
         policy="the metadata `intsim eval` reads (free-form to the engine) is checked field by field"),
    Case("eval-metadata-null-bound", "Configuration",
         "`intsim eval --engine fakequant` of an artifact whose recorded activation bound is null", _eval_null_bound,
         "metadata.layers['first_part.0'].act.l must be a finite number, got NoneType None",
         needs=("torch", "data"),
         policy="the metadata `intsim eval` reads (free-form to the engine) is checked field by field"),
    Case("report-psnr-not-numbers", "Configuration", '`intsim report` of a summary.json with "psnr_db": "x"',
         _report_psnr_text, "psnr_db: must be an object of PSNRs, got str",
         policy="the fields of summary.json the report reads are checked before anything is drawn"),
    Case("report-cost-not-numbers", "Configuration", '`intsim report` of a cost.json with '
         '"total": "<script>…" and a NaN latency', _report_cost(_cost_record(
             energy_pj={"total": "<script>alert(1)</script>"}, latency_s=float("nan"))),
         "totals.energy_pj.total must be a number, got str",
         policy="cost.json and cost_compare.json are checked field by field (types, finite non-negative "
                "numbers, utilisation in [0, 1], string lengths, list sizes) before anything is drawn; every "
                "string that reaches the page is HTML-escaped and plotted with mathtext off"),
    Case("report-cost-utilisation-out-of-range", "Configuration", "`intsim report` of a cost.json with "
         "utilisation 7", _report_cost(_cost_record(utilisation=7)), "totals.utilisation must be a finite "
         "number in [0, 1]"),
    Case("report-cost-too-many-layers", "Configuration", "`intsim report` of a cost.json with 10001 layers",
         _report_cost(_cost_record() | {"layers": [{"name": "x", "kind": "conv", "op": "conv2d",
                                                    "energy_pj": {}}] * 10_001}), "layers has 10001 entries"),
]
