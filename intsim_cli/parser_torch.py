"""The torch commands' arguments (calibrate, golden, eval, sweep, report, models, demo)."""
from __future__ import annotations

import argparse

from intsim.artifact import REALIZATIONS, Numerics
from intsim.overflow import OverflowPolicy
from intsim.rounding import RoundingMode

from intsim_cli.arg_types import bit_list, bits_spec, positive_float, positive_int, positive_mb, unit_fraction
from intsim_cli.torch_commands import (
    cmd_calibrate, cmd_demo, cmd_eval, cmd_golden, cmd_models, cmd_report, cmd_sweep,
)


CALIBRATE_EPILOG = """\
examples:
  intsim calibrate --model fsrcnn --scale 3 --bits W8A8 -o fsrcnn_x3_w8a8.intsim   # its checkpoint under the data root
  intsim calibrate --model imdn --weights IMDN_x4.pth --scale 4 --bits W4A4 -o imdn_x4_w4a4.intsim
  intsim calibrate --model examples/espcn_like.py:build --weights espcn_x3.pt --scale 3 --bits W8A8 -o espcn.intsim
  intsim calibrate --model imdn_x4.onnx --scale 4 --bits W4A4 -o imdn_onnx.intsim
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


def add_calibrate(sub) -> None:
    c = sub.add_parser("calibrate", help="calibrate a float model and export an artifact",
                       description="Calibrate two-region quantizers and export an integer artifact. "
                                   "'default: from the method's recipe' means calib/recipe.py decides.",
                       epilog=CALIBRATE_EPILOG)
    c.add_argument("--model", required=True,
                   help="your own model — path/to/net.py:factory (factory(scale) returns the nn.Module), "
                        f"package.module:Class or model.onnx (docs/own_model.md) — or one of {_calibrate_models()}")
    c.add_argument("--rgb-range", type=positive_float, default=None, metavar="R",
                   help="your own model's input range: pixels 0..255 are [0, R] (default 1; zoo models know theirs)")
    c.add_argument("--in-channels", type=int, choices=(1, 3), default=None,
                   help="your own model's image channels: 3 RGB, 1 Y (default: the first conv's in_channels)")
    c.add_argument("--weights", default=None, metavar="FILE",
                   help="float checkpoint (default: the model's checkpoint under the data root, see `intsim models`; "
                        "refused when there is none)")
    c.add_argument("--random-init", action="store_true",
                   help="random weights instead of a checkpoint (tests only: the artifact is no super-resolution)")
    c.add_argument("--scale", type=positive_int(2, 8), required=True)
    c.add_argument("--bits", type=bits_spec, required=True, help="e.g. W4A4, W8A8")
    c.add_argument("--method", default=None, help="default recon (the best measured: block reconstruction with "
                   "learned rounding on two-region codes); the paper's method: oaq; baselines: minmax, percentile, "
                   "omse, ptq4sr, 2dquant, dual_region, plain_ft, sa_ft")
    c.add_argument("--iters", type=positive_int(1, 100000), default=None,
                   help="reconstruction steps per unit (method recon; default: from the method's recipe, 300)")
    c.add_argument("--loss-weighting", choices=["none", "fisher"], default=None,
                   help="reconstruction loss (method recon): fisher weights each unit-output channel's error by its "
                        "measured effect on the SR output, none is plain MSE (default: the recipe's)")
    c.add_argument("--equalize", type=unit_fraction, default=None, metavar="ALPHA",
                   help="cross-layer equalization before calibration: rescale channels through ReLU-like "
                        "activations, migration strength ALPHA in [0, 1] (exact in float; default: the recipe's, off)")
    c.add_argument("--stress", type=unit_fraction, default=None, metavar="FRACTION",
                   help="fraction of calibration patches made colour-saturated and contrast-stretched, so ranges "
                        "cover saturated content (0 = off; default: the recipe's)")
    c.add_argument("--policy", default=None, metavar="FILE",
                   help="per-layer bits from a TOML file ([bits] \"layer\" = b or [w, a]; default: none, "
                        "every layer at --bits)")
    c.add_argument("--budget", default=None, metavar="METRIC=VALUE",
                   help="mixed precision: choose per-layer bits under energy=…|latency=…|storage=… "
                        "(relative: 0.5x = half of uniform W8A8, 1.25xW4A4; absolute: 3uJ, 4ms, 200kB; "
                        "default: none, uniform bits)")
    c.add_argument("--candidates", type=bit_list, default=None, metavar="B,B,…",
                   help="candidate widths for --budget (default 3,4,6,8)")
    c.add_argument("--allocation", choices=["released", "paper", "budgeted"], default=None,
                   help="code allocation of the two-region methods (default released)")
    c.add_argument("--bp-init", choices=["percentile", "search"], default=None,
                   help="two-region init: percentile (bp at the EMA p99) or search "
                        "(joint MSE search of bp and a shrink of l, u); default: from the method's recipe")
    c.add_argument("--state-dir", default=None, metavar="DIR",
                   help="finetuning state (resumable runs; default: none, not resumable)")
    c.add_argument("--epochs", type=positive_int(1, 1000), default=None, help="finetuning epochs (default 10)")
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
    c.add_argument("--realization", choices=REALIZATIONS, default=Numerics.realization, help="default: %(default)s")
    c.add_argument("--rounding", choices=RoundingMode.names(), default=Numerics.rounding,
                   help="default: %(default)s")
    c.add_argument("--overflow", choices=OverflowPolicy.names(), default=Numerics.overflow,
                   help="accumulator/stream overflow policy (default: %(default)s; error warns at calibration "
                        "when a conv's worst case exceeds --acc-bits)")
    c.add_argument("--acc-bits", type=positive_int(8, 48), default=32, help="accumulator width (default: %(default)s)")
    c.add_argument("--stream-bits", type=positive_int(8, 40), default=24, help="stream width (default: %(default)s)")
    c.add_argument("--mult-bits", type=positive_int(8, 31), default=31,
                   help="requantization multiplier width (default: %(default)s)")
    c.add_argument("--grid-bits", type=positive_int(6, 16), default=None, help="LUT width for the grid realization (default: activation bits + 6)")
    c.add_argument("--n-images", type=positive_int(1, 100000), default=None,
                   help="calibration patches (default: from the method's recipe)")
    c.add_argument("--patch", type=positive_int(8, 4096), default=None,
                   help="LR patch side (default: from the method's recipe)")
    c.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    c.add_argument("--json", action="store_true")
    c.add_argument("-o", "--output", required=True, metavar="ARTIFACT")
    c.set_defaults(func=cmd_calibrate)


def add_golden(sub) -> None:
    g = sub.add_parser("golden", help="write golden tensors (torch float64 fake-quant)",
                       epilog="examples:\n  intsim golden model.intsim Set5/LR_bicubic/X4 -o golden/\n"
                              "  intsim golden model.intsim big.png -o golden/ --tensors conv-io --compress")
    g.add_argument("artifact")
    g.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    g.add_argument("-o", "--output", required=True, metavar="GOLDEN_DIR")
    g.add_argument("--max-memory", type=positive_mb, default=None, metavar="MB",
                   help="memory budget (default: half of the available memory): golden runs in bands of rows "
                        "that fit it; an input that does not fit even in 1-row bands is refused")
    g.add_argument("--tensors", nargs="+", default=["all"], metavar="WHICH",
                   help="tensors to keep: all, outputs, conv-io (every conv's input codes and output), or tensor "
                        "names; the graph outputs are always kept, so verify works (default: all)")
    g.add_argument("--compress", action="store_true",
                   help="store tensors as deflated .npz (the manifest's dtype, shape and sha256 are unchanged)")
    g.add_argument("--json", action="store_true", help="print a JSON summary (golden folder, inputs) on stdout")
    g.set_defaults(func=cmd_golden)


def add_eval(sub) -> None:
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
    e.add_argument("--limit", type=positive_int(1, 100000), default=None, help="first N images per set")
    e.add_argument("--crop", type=positive_int(8, 4096), default=None, metavar="P",
                   help="evaluate only the top-left P×P LR crop of each image (quick checks)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval)


def add_sweep(sub) -> None:
    sw = sub.add_parser("sweep", help="a resumable grid of calibrate+evaluate cells on Ray (e.g. the paper's protocol)",
                        epilog="examples:\n  intsim sweep sweeps/imdn_x4_w4a4.toml\n"
                               "  intsim sweep sweeps/full.toml --resume --address ray://head:10001\n"
                               "  intsim sweep sweeps/protocol_all_checkpoints.toml --resume "
                               "--only fsrcnn_x4_w8a8_minmax_set5   # a smoke test (docs/sweep.md)")
    sw.add_argument("spec", metavar="SWEEP.toml")
    sw.add_argument("--address", default=None, metavar="RAY_ADDRESS",
                    help="an existing Ray cluster (default: start a local Ray instance)")
    sw.add_argument("--resume", action="store_true", help="keep the cells a previous run finished")
    sw.add_argument("--num-cpus", type=positive_int(1, 4096), default=None,
                    help="CPUs of the local Ray instance (default: all)")
    sw.add_argument("--only", action="append", default=None, metavar="GLOB",
                    help="run only the cells whose id matches GLOB (fnmatch; repeatable), e.g. a smoke test "
                         "'fsrcnn_x4_w8a8_minmax_set5'; the page still counts the whole grid")
    sw.set_defaults(func=cmd_sweep)


def add_report(sub) -> None:
    rp = sub.add_parser("report", help="build report.html from a run directory (summary.json)",
                        epilog="example: intsim report intsim-demo  (writes intsim-demo/report.html)")
    rp.add_argument("run_dir", metavar="RUN_DIR",
                    help="folder with summary.json (or the summary.json file), or a folder of calibrate / golden / "
                         "verify --json / run --counters / cost -o outputs (the report says what is missing)")
    rp.add_argument("-o", "--output", default=None, metavar="FILE", help="default RUN_DIR/report.html")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_report)


def add_models(sub) -> None:
    m = sub.add_parser("models", help="list zoo models and the checkpoints found under the data root",
                       epilog="example: intsim models --data-root ../shared --json")
    m.add_argument("--data-root", default=None, metavar="DIR")
    m.add_argument("--verify", action="store_true", help="check found checkpoints against published sha256")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)


def add_demo(sub) -> None:
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
    d.add_argument("--model", default=None, metavar="SPEC",
                   help="your own RGB model instead: path/to/net.py:factory, package.module:Class or model.onnx, "
                        "calibrated on SunHays80 and run on Set5 from the data root (docs/own_model.md)")
    d.add_argument("--weights", default=None, metavar="FILE", help="--model's checkpoint (not for ONNX)")
    d.add_argument("--scale", type=positive_int(1, 8), default=None, help="--model's scale")
    d.add_argument("--rgb-range", type=positive_float, default=None, metavar="R",
                   help="--model's input range (default 1: pixels as [0, 1])")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_demo)
