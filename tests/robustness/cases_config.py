"""Robustness cases: configuration — accelerator TOML files and command-line arguments (see harness.py).

Accelerator files are variations of the packaged ``edge_npu.toml`` handed to ``intsim cost ART
--accel FILE`` (the cost's ``-o`` JSON is a pre-existing file that must stay unchanged) or to
``intsim run ... --accel FILE`` (its output folder must stay unchanged). Command-line cases name
the option in the message and are refused while parsing, before any file is read.
"""
from __future__ import annotations

from pathlib import Path

from tests.robustness.harness import Case, Setup, out_dir, valid_artifact, valid_image


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


def _counters_case(text: str):
    """``intsim cost ART --counters F``: a counters file from another tool that is not what it claims."""

    def build(folder: Path) -> Setup:
        art = valid_artifact(folder)
        counters = folder / "counters.json"
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
]
