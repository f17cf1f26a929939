"""The engine commands' arguments (run, verify, inspect, cost, export-vectors)."""
from __future__ import annotations

from intsim_cli.arg_types import positive_int, positive_mb
from intsim_cli.engine_commands import cmd_compare, cmd_cost, cmd_export_vectors, cmd_inspect, cmd_run, cmd_verify


def add_run(sub) -> None:
    r = sub.add_parser("run", help="run the integer engine on images",
                       epilog="example: intsim run model.intsim baby.png -o out/ --counters counters.json")
    r.add_argument("artifact")
    r.add_argument("inputs", nargs="+", metavar="INPUT")
    r.add_argument("-o", "--output", required=True, metavar="OUT_DIR")
    r.add_argument("--accel", default=None, metavar="FILE|NAME", help="also print the cost on this accelerator "
                   "(TOML file or packaged name, e.g. edge_npu)")
    r.add_argument("--counters", default=None, metavar="FILE", help="write per-layer event counters as JSON")
    r.add_argument("--max-memory", type=positive_mb, default=None, metavar="MB",
                   help="memory budget (default: half of the available memory); above it an image runs in "
                        "bit-exact bands, or is refused with the estimate")
    r.add_argument("--json", action="store_true", help="print a JSON summary (images written, overflow and "
                   "saturation events per op, cost with --accel) on stdout")
    r.set_defaults(func=cmd_run)


def add_verify(sub) -> None:
    v = sub.add_parser("verify", help="re-run intsim on a golden's inputs and compare every tensor",
                       epilog="example: intsim verify model.intsim golden/  (exit 1 on a mismatch)")
    v.add_argument("artifact")
    v.add_argument("golden_dir")
    v.add_argument("--max-memory", type=positive_mb, default=None, metavar="MB",
                   help="memory budget (default: half of the available memory); verify keeps every tensor and "
                        "does not tile: a golden input whose run needs more is refused with the estimate")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)


def add_compare(sub) -> None:
    c = sub.add_parser("compare", help="compare a simulator's dumps (hex or .npy) with a golden directory",
                       epilog="examples:\n  intsim compare golden/ rtl_dumps/           # in<k>/<NNN>_<tensor>.hex\n"
                              "  intsim compare golden/ dumps/ --index dumps/map.json --layer body.0.conv1\n"
                              "exit 0 all identical, 1 a mismatch (first one named), 2 bad input")
    c.add_argument("golden_dir")
    c.add_argument("dump_dir")
    c.add_argument("--index", default=None, metavar="FILE", help="JSON {\"dumps\": [{input, tensor, file, "
                   "region?, bits?}]} mapping dumps to tensors (default: DUMP_DIR/dumps.json if present, else "
                   "file names as export-vectors writes them)")
    c.add_argument("--layer", action="append", default=None, metavar="OP", help="only the tensors of this op "
                   "(repeatable); each must have a dump")
    c.add_argument("--input", action="append", type=positive_int(0, 1 << 30), default=None, metavar="K",
                   help="only input K (repeatable)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)


def add_inspect(sub) -> None:
    i = sub.add_parser("inspect", help="print an artifact's graph",
                       epilog="example: intsim inspect model.intsim --json")
    i.add_argument("artifact")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_inspect)


def add_cost(sub) -> None:
    co = sub.add_parser("cost", help="energy/latency of an artifact on an accelerator",
                        epilog="examples:\n  intsim cost model.intsim --images Set5/LR_bicubic/X4 --accel edge_npu\n"
                               "  intsim cost model.intsim --counters counters.json --compare --json\n"
                               "  intsim cost --list")
    co.add_argument("artifact", nargs="?")
    co.add_argument("--accel", default="edge_npu", metavar="FILE|NAME", help="accelerator TOML or packaged name "
                    "(default edge_npu; --list shows them)")
    co.add_argument("--images", nargs="+", default=None, metavar="INPUT", help="run the engine on these images")
    co.add_argument("--max-memory", type=positive_mb, default=None, metavar="MB",
                    help="memory budget for --images (default: half of the available memory); above it an image "
                         "runs in bit-exact bands (same counters), or is refused with the estimate")
    co.add_argument("--counters", default=None, metavar="FILE", help="counters written by `intsim run --counters`")
    co.add_argument("--scheme", default="artifact", help="artifact | fp32 | W<b>A<b> (default artifact)")
    co.add_argument("--compare", action="store_true", help="also compare with fp32, W8A8 and W4A4")
    co.add_argument("--uniform-policy", choices=["follow", "all"], default="follow",
                    help="uniform W<b>A<b> schemes: follow = head/upsampler/tail at >= 8 bits as the method's "
                         "layer policy (default), all = every conv at b bits")
    co.add_argument("-o", "--output", default=None, metavar="FILE", help="write the full cost result as JSON")
    co.add_argument("--list", action="store_true", help="list the packaged accelerators")
    co.add_argument("--json", action="store_true")
    co.set_defaults(func=cmd_cost)


def add_export_vectors(sub) -> None:
    x = sub.add_parser("export-vectors", help="golden tensors as $readmemh hex files or C headers",
                       epilog="examples:\n  intsim export-vectors golden/ --format readmemh -o vectors_hex\n"
                              "  intsim export-vectors golden/ --format c -o vectors_c --input 0 --tensor t3\n"
                              "  intsim export-vectors golden/ --artifact model.intsim -o vectors/  "
                              "# + per-layer cases")
    x.add_argument("golden_dir")
    x.add_argument("--format", choices=["readmemh", "c"], default="readmemh")
    x.add_argument("-o", "--output", required=True, metavar="DIR")
    x.add_argument("--tensor", action="append", default=None, metavar="NAME", help="only this tensor (repeatable)")
    x.add_argument("--input", action="append", type=positive_int(0, 1 << 30), default=None, metavar="K",
                   help="only input K (repeatable)")
    x.add_argument("--artifact", default=None, metavar="FILE", help="the artifact the golden was made from: also "
                   "write per-layer test cases (conv and encode: inputs, parameters, LUTs, expected output) under "
                   "layers/ (docs/rtl.md)")
    x.add_argument("--layer", action="append", default=None, metavar="OP", help="only this conv/encode op's "
                   "cases (repeatable; needs --artifact)")
    x.add_argument("--accumulators", action="store_true", help="also the expected accumulators of convs that "
                   "cannot overflow (needs --artifact)")
    x.add_argument("--pack-bits", type=positive_int(8, 64), default=None, metavar="BITS",
                   help="also write code arrays stream-packed, several codes per BITS-bit word (needs --artifact)")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_export_vectors)
