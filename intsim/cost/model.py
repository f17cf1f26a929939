"""Cost of running an artifact on an accelerator: cycles, traffic and energy per layer.

``estimate_cost(art, counters_list, accel)`` combines

* the **artifact** (codebooks, weights, numerics): multiplier widths, accumulator count
  and width, rescale multipliers, true storage bits;
* the engine's **event counters** on real images (``intsim.engine.run(...).counters``):
  MACs per code segment (so the outlier fraction of each image feeds the two-region
  costs), and every op's output shape;
* the **accelerator** (:class:`~intsim.cost.accel.AcceleratorConfig`): a SCALE-Sim-like
  analytical model of the systolic array (:mod:`intsim.cost.systolic`), buffers, DRAM
  bandwidth, and an energy table (:mod:`intsim.cost.energy`).

Schemes (``scheme=``): ``"artifact"`` costs the artifact as it is (two-region codes,
``split`` or ``grid`` realization); ``"fp32"``, ``"W8A8"``, ``"W4A4"`` (any ``"W<b>A<b>"``)
cost the *same network* (same graph, shapes and MAC counts) with fp32 or uniform
integer quantization, for the comparison table. A uniform scheme's per-conv bits come
from the scheme, never from the artifact's widths (:mod:`intsim.cost.layer_policy`): with
``uniform_policy="follow"`` (default) the convs the method's layer policy keeps high
(head, upsampler, tail) run at ``max(8, b)`` bits, with ``"all"`` every conv at ``b``.

Modelling decisions (stated once here, repeated in the result's ``"model"`` entry):

* **Conv as GEMM** on the array, SCALE-Sim fold model (see :mod:`intsim.cost.systolic`);
  grouped convs run their groups one after another; a transposed conv is decomposed
  into ``stride²`` sub-pixel convs (``K = ⌈kh/sh⌉·⌈kw/sw⌉·Ci``). A product wider than the
  native multiplier takes ``⌈w/w_native⌉·⌈a/a_native⌉`` passes (cycles × passes).
  fp32 on the integer array: each product is its 24-bit significand product split over
  the native multipliers, ``⌈24/w_native⌉·⌈24/a_native⌉`` passes (so fp32 is never faster
  than int8); its energy is the table's fp32 multiply and add.
* **MAC energy** counts the products the engine counted (padding taps hold no code and
  are skipped); **cycles** count the full GEMM including padding taps (the array still
  spends the slot). Split: each product in segment ``s`` is a ``w_bits × index_bits(s)``
  multiply added into ``P_s``; each product in a segment with a non-zero origin also adds
  ``w`` into the offset accumulator ``Q_s``. Grid: one ``w_bits × grid_bits`` multiply and
  one accumulate per product, plus one LUT decode per code entering the array.
* **Rescale**: per conv output, one ``M_j × acc_j`` multiply per accumulator (widths: the
  largest stored multiplier and the accelerator's accumulator), one add per accumulator
  (the sum with the bias) and one rounding add. Encoders, ``image_in``/``image_out`` count
  as rescale too (requantization); other stream ops are "vector" work.
* **Memory**: layer-by-layer execution as in SCALE-Sim: every tensor leaves the chip
  (written once to DRAM by its producer, read by each consumer), except a tensor whose
  only consumer is a single-input element-wise or re-addressing op (``encode``, ``relu``,
  ``leaky_relu``, ``prelu``, ``lut``, ``pixel_shuffle``, ``split``,
  ``upsample_nearest``, ``image_out``) or a binary ``add``/``mul`` of which it is the
  operand produced last and of the output's size (the residual add of a conv): that op is
  fused into its producer's output pipeline and reads only its other operand. So a
  conv → relu → encode chain writes the *codes* (true code bits) and nothing else,
  conv → pixel_shuffle → encode writes shuffled codes, and conv → add(skip) reads the
  skip and writes the sum. ``concat`` is a view: its producers write into their slices
  of its output (no traffic, no time).
  Tensor widths: images 8 bits, codes ``code_bits = ⌈log2 N⌉`` (artifact) or the
  uniform activation bits, streams ``stream_bits`` (fp32: 32 bits everywhere).
  A conv operand is re-fetched from DRAM once per revisit when the part the schedule
  revisits does not fit the usable part of its buffer (half, when double-buffered); os
  picks the cheaper of its two loop orders. ws/is partial sums (``n_acc ×
  accumulator_bits`` per output, so the split realization's extra accumulators cost
  buffer space) that do not fit the ofmap buffer make the schedule tile the streamed
  dimension (more fill/drain cycles, stationary operand reloaded per tile) rather than
  spill. SRAM energy counts fills, array-edge reads, writes and write-backs.
* **Time**: DRAM transfers overlap compute (double buffering), so a layer (with its fused
  followers) takes ``compute + max(0, dram − compute) + fill``, ``fill`` = the first
  fold's operands at DRAM bandwidth. Vector ops run on ``vector_lanes`` lanes; fused ones
  are hidden in their producer's time.
"""
from __future__ import annotations

from typing import Iterable

from intsim.artifact import Artifact
from intsim.cost.accel import AcceleratorConfig
from intsim.cost.counters import check_counters
from intsim.cost.layer_policy import UNIFORM_POLICIES
from intsim.cost.context import CATEGORIES, CONV_OPS, CostContext, Scheme, mean_tree, parse_scheme, plain_json
from intsim.cost.conv_cost import conv_cost
from intsim.cost.shapes import infer_shapes, input_hw
from intsim.cost.vector_cost import vector_cost


SCHEMA = "intsim-cost"


VERSION = 1


MODEL_NOTES = [
    "conv = GEMM (M=Ho*Wo, K=kh*kw*Ci/g, N=Co/g) on the PE array, SCALE-Sim fold model, folds back to back",
    "os: folds*(T+R+C-2) cycles; ws/is: folds*(T+2R+C-2); passes multiply T when a product is wider than the native multiplier",
    "fp32 on the integer array: ceil(24/w_native)*ceil(24/a_native) passes (24-bit significand products); energy at the table's fp32 multiply/add",
    "MAC energy from the engine's counted products (padding taps skipped); cycles from the full GEMM (padding included)",
    "split: per product one w x index(s) multiply + one add into P_s, plus one add into Q_s when origin_s != 0",
    "grid: per product one w x grid_bits multiply + one add; one LUT decode per code entering the array",
    "rescale per conv output: one M_j x acc_j multiply and one add per accumulator, one rounding add",
    "layer-by-layer through DRAM; a tensor whose only consumer is encode/relu/clamp/leaky_relu/prelu/lut/pixel_shuffle/split/upsample_nearest/image_out, or the last-produced same-size operand of add/mul, is fused (stays on chip); concat is a view",
    "an operand is re-fetched from DRAM once per revisit when the revisited part does not fit the usable buffer; os takes the cheaper loop order",
    "ws/is partial sums (n_acc x accumulator_bits per output) that do not fit the ofmap buffer: the streamed dimension is tiled (fill/drain per tile), no spill",
    "time per fused group = compute + max(0, dram - compute) + first-fold fill at DRAM bandwidth",
]


def _cost_one_image(ctx: CostContext, counters: dict | None, in_hw: tuple[int, int] | None) -> tuple[list[dict], dict]:
    art, acc = ctx.art, ctx.accel
    ctx._cur_counters = counters or {}
    if counters is not None:
        ops_c = counters.get("ops", {})
        missing = [op.name for op in art.ops if op.name not in ops_c]
        if missing:
            raise ValueError(f"counters have no entry for op {missing[0]!r} (counters of another artifact?)")
        hw = in_hw if in_hw is not None else input_hw(art, counters)
    else:
        hw = in_hw
        ops_c = {}
    shapes = infer_shapes(art, hw)
    layers: list[dict] = []
    for op in art.ops:
        oc = ops_c.get(op.name) if counters is not None else None
        if oc is not None and oc.get("op", op.op) != op.op:
            raise ValueError(f"counters entry {op.name!r} is a {oc.get('op')!r} op, the artifact has {op.op!r}")
        if op.op in CONV_OPS:
            layers.append(conv_cost(ctx, op, shapes, oc))
        else:
            layers.append(vector_cost(ctx, op, shapes, oc))
    # fused groups: a fused op's DRAM time is hidden in (added to) its root producer's
    by_name = {l["name"]: l for l in layers}
    root: dict[str, str] = {}
    for op in art.ops:
        l = by_name[op.name]
        if l["kind"] == "vector" and l["fused"]:
            src = ctx.producer[next(t for t in op.inputs if ctx.transient(t))].name
            root[op.name] = root.get(src, src)
        else:
            root[op.name] = op.name
    group_bytes: dict[str, float] = {}
    for op in art.ops:
        l = by_name[op.name]
        group_bytes[root[op.name]] = group_bytes.get(root[op.name], 0.0) + (l["dram_bits"]["read"] + l["dram_bits"]["write"]) / 8.0
    bpc = acc.dram_bytes_per_cycle
    for op in art.ops:
        l = by_name[op.name]
        fill = l.pop("_fill_bytes")
        if root[op.name] != op.name:
            continue
        dram_c = group_bytes[op.name] / bpc
        comp = l["cycles"]["compute"]
        stall = max(0.0, dram_c - comp) + (fill / bpc if comp else 0.0)
        l["cycles"].update({"dram": dram_c, "stall": stall, "total": comp + stall})
    # totals
    out_t = art.outputs[0]
    oh, ow, _ = shapes[out_t]
    tot_e = {c: sum(l["energy_pj"][c] for l in layers) for c in CATEGORIES}
    tot_e["total"] = sum(tot_e[c] for c in CATEGORIES)
    cycles = sum(l["cycles"]["total"] for l in layers)
    comp = sum(l["cycles"]["compute"] for l in layers)
    convs = [l for l in layers if l["kind"] == "conv"]
    mpix = oh * ow / 1e6
    lat = cycles / (acc.clock_mhz * 1e6)
    totals = {
        "input_hw": [int(hw[0]), int(hw[1])],
        "output_hw": [int(oh), int(ow)],
        "macs": int(sum(l["macs_total"] for l in convs)),
        "macs_geometric": int(sum(l["macs_geometric"] for l in convs)),
        "cycles": {"compute": int(comp), "stall": float(cycles - comp), "total": float(cycles)},
        "latency_s": lat,
        "utilisation": (sum(l["macs_geometric"] for l in convs) / (cycles * acc.pes)) if cycles else 0.0,
        "energy_pj": tot_e,
        "dram_bits": {"read": int(sum(l["dram_bits"]["read"] for l in layers)),
                      "write": int(sum(l["dram_bits"]["write"] for l in layers))},
        "storage_bits": {
            "weights": int(sum(l["storage_bits"]["weights"] + l["storage_bits"]["bias"]
                               + l["storage_bits"]["rescale_params"] for l in convs)),
            "conv_inputs": int(sum(l["storage_bits"]["input"] for l in convs)),
        },
        "per_output_mpix": {"energy_mj": tot_e["total"] * 1e-9 / mpix, "latency_ms": lat * 1e3 / mpix},
    }
    return layers, totals


def _as_counters(c) -> dict:
    if hasattr(c, "counters"):
        c = c.counters
    if not isinstance(c, dict) or "ops" not in c:
        raise ValueError("each counters entry must be an engine counters dict ({'ops': ..., 'totals': ...}) "
                         "or a RunResult")
    return c


def estimate_cost(art: Artifact, counters_list: Iterable | None, accel: AcceleratorConfig,
                  scheme: str | Scheme = "artifact", *, image_hw: tuple[int, int] | None = None,
                  uniform_policy: str = "follow") -> dict:
    """Cost of ``art`` on ``accel`` for each image's counters, per layer and in total.

    ``counters_list``: engine counters (or ``RunResult``\\ s), one per image. ``None`` with
    ``image_hw=(H, W)`` gives a geometry-only estimate (MACs from the shapes; only for
    the uniform and fp32 schemes, which need no per-segment counts). With counters the
    input size comes from their ``out_shape`` entries unless ``image_hw`` is given (every
    op's shape is then checked against its counters).
    Returns a JSON-serialisable dict: ``layers`` (per op, mean over images, with
    ``per_image_energy_pj`` / ``per_image_macs``), ``per_image`` totals, ``totals`` (mean),
    ``accelerator``, ``energy_model``, ``model`` notes and ``warnings``.
    """
    sch = parse_scheme(scheme)
    if uniform_policy not in UNIFORM_POLICIES:
        raise ValueError(f"uniform_policy must be one of {', '.join(UNIFORM_POLICIES)}, got {uniform_policy!r}")
    if accel.realization == "artifact":
        realization = art.numerics.realization
    else:
        realization = accel.realization
    if sch.kind != "artifact":
        realization = "fp32" if sch.kind == "fp32" else "uniform"
    ctx = CostContext(art, accel, sch, realization, uniform_policy)
    if counters_list is None:
        if image_hw is None:
            raise ValueError("give counters (one per image) or image_hw for a geometry-only estimate")
        if sch.kind == "artifact":
            raise ValueError("the artifact scheme needs engine counters (MACs per code segment); "
                             "geometry-only estimates are for 'fp32' and 'W<b>A<b>' schemes")
        runs = [None]
    else:
        runs = [_as_counters(c) for c in counters_list]
        if not runs:
            raise ValueError("counters_list is empty")
    if realization != art.numerics.realization and sch.kind == "artifact":
        ctx.warnings.append(f"artifact realization is {art.numerics.realization!r}, costed as {realization!r}"
                            + (" (MACs per segment estimated from the input code histograms)"
                               if realization == "split" else ""))
    per_image_layers, per_image_totals = [], []
    for c in runs:
        layers, totals = _cost_one_image(ctx, c, image_hw)
        per_image_layers.append(layers)
        per_image_totals.append(totals)
    n_ops = len(art.ops)
    layers_mean = []
    for i in range(n_ops):
        items = [pl[i] for pl in per_image_layers]
        m = mean_tree(items)
        m["per_image_energy_pj"] = [float(it["energy_pj"]["total"]) for it in items]
        if items[0]["kind"] == "conv":
            m["per_image_macs"] = [dict(it["macs"]) for it in items]
        layers_mean.append(m)
    result = {
        "schema": SCHEMA,
        "version": VERSION,
        "scheme": sch.label,
        "realization": realization,
        "uniform_policy": uniform_policy if sch.kind == "int" else None,
        "model_name": art.model.get("name") if isinstance(art.model, dict) else None,
        "artifact_sha256": art.sha256,
        "images": len(runs),
        "accelerator": accel.to_json(),
        "energy_model": ctx.em.describe(),
        "model": MODEL_NOTES,
        "categories": list(CATEGORIES),
        "layers": layers_mean,
        "per_image": per_image_totals,
        "totals": mean_tree(per_image_totals),
        "warnings": sorted(set(ctx.warnings)),
    }
    return plain_json(result)


DEFAULT_SCHEMES = ("artifact", "fp32", "W8A8", "W4A4")


def summary_row(cost: dict) -> dict:
    """One comparison-table row of a cost result (means over its images)."""
    t = cost["totals"]
    convs = [l for l in cost["layers"] if l["kind"] == "conv"]
    act_bits = sorted({l["storage_bits"]["input_elem_bits"] for l in convs})
    return {
        "scheme": cost["scheme"],
        "realization": cost["realization"],
        "accelerator": cost["accelerator"]["name"],
        "conv_input_bits": act_bits,
        "energy_uj": t["energy_pj"]["total"] * 1e-6,
        "energy_split_uj": {c: t["energy_pj"][c] * 1e-6 for c in cost["categories"]},
        "latency_ms": t["latency_s"] * 1e3,
        "energy_mj_per_output_mpix": t["per_output_mpix"]["energy_mj"],
        "latency_ms_per_output_mpix": t["per_output_mpix"]["latency_ms"],
        "utilisation": t["utilisation"],
        "weight_storage_kib": t["storage_bits"]["weights"] / 8 / 1024,
        "dram_mib": (t["dram_bits"]["read"] + t["dram_bits"]["write"]) / 8 / 2 ** 20,
    }


def compare_schemes(art: Artifact, counters_list: Iterable | None, accel: AcceleratorConfig,
                    schemes: Iterable[str] = DEFAULT_SCHEMES, **kw) -> list[dict]:
    """:func:`summary_row` for each scheme on the same network, images and accelerator.

    PSNR is not known here: the caller adds it to each row (e.g. from golden/integer runs)."""
    counters_list = list(counters_list) if counters_list is not None else None
    rows = []
    for s in schemes:
        if counters_list is None and parse_scheme(s).kind == "artifact":
            continue
        rows.append(summary_row(estimate_cost(art, counters_list, accel, s, **kw)))
    return rows


def load_counters(path_or_obj, artifact_sha256: str | None = None) -> list[dict]:
    """Engine counters from ``intsim run --counters FILE`` (``{"artifact_sha256", "images":
    [{"counters": ...}, ...]}``), a list of counters dicts, or one counters dict.

    A record whose ``artifact_sha256`` differs from ``artifact_sha256`` (when both are
    known) is refused: counters of another artifact would be costed wrongly."""
    import os

    from intsim.artifact import read_json

    obj = path_or_obj
    where = "counters"
    if isinstance(path_or_obj, (str, os.PathLike)):
        where = str(path_or_obj)
        obj = read_json(path_or_obj, what="a counters file")
    if isinstance(obj, dict) and "images" in obj:
        sha = obj.get("artifact_sha256")
        if sha and artifact_sha256 and sha != artifact_sha256:
            raise ValueError(f"{where}: counters are of artifact {sha[:12]}…, not of this artifact "
                             f"{artifact_sha256[:12]}…")
        if not isinstance(obj["images"], list):
            raise ValueError(f"{where}: 'images' must be a list of per-image records")
        items = [im.get("counters") if isinstance(im, dict) else None for im in obj["images"]]
    elif isinstance(obj, dict) and "ops" in obj:
        items = [obj]
    elif isinstance(obj, list):
        items = obj
    else:
        raise ValueError(f"{where}: expected an 'intsim run --counters' record, a list of counters or one counters dict")
    for i, c in enumerate(items):
        if not isinstance(c, dict) or not isinstance(c.get("ops"), dict):
            raise ValueError(f"{where}: entry {i} is not an engine counters dict (no 'ops')")
        check_counters(c, where, i)
    if not items:
        raise ValueError(f"{where}: no counters in it")
    return items
