"""Which images of a sweep cell golden (the float64 executor) checks, decided from a cost estimate.

Golden is the independent witness that intsim's integer output is right, but it is the
expensive executor of a cell (issue 23: about 15× intsim's time and 10× its memory on IMDN ×4).
So each cell checks golden on every image where that is affordable, and records what it did:

* ``all``: every image of the cell (the default: no ``[golden]`` limits);
* ``some``: the images within the budget, named, and the ones left out, named, with the reason;
* ``none``: no image fits the budget, with the reason.

The estimate per image (:func:`image_cost`): the conv MACs of the artifact at the image's input
size (``GMAC``, 10^9 multiply-accumulates; what golden's float64 convolutions compute, the bulk
of its time) and golden's memory estimate (:func:`intsim.footprint.golden_bytes`, MiB = 2^20 bytes;
every tensor in float64). The budget (``[golden]`` of SWEEP.toml, :class:`GoldenBudget`): an image
is checked when its GMAC and MiB are within the per-image limits and the running GMAC total of the
cell's checked images, taken in file order, stays within the per-cell limit.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class GoldenBudget:
    """Limits on golden per sweep cell; ``None`` = no limit. ``max_gmac_per_image``: conv GMAC of one
    image; ``max_mib_per_image``: golden's memory estimate for one image (MiB); ``max_gmac_per_cell``:
    the sum over the images checked in one cell (GMAC)."""

    max_gmac_per_image: float | None = None
    max_mib_per_image: float | None = None
    max_gmac_per_cell: float | None = None
    always: tuple[str, ...] = ()  # datasets golden checks whatever the GMAC (memory limit still applies)

    def unlimited(self) -> bool:
        return self.max_gmac_per_image is None and self.max_mib_per_image is None and self.max_gmac_per_cell is None


@dataclass(frozen=True)
class ImageCost:
    """Golden's estimated cost on one image: conv GMAC and memory (MiB)."""

    name: str
    gmac: float
    mib: float


def conv_macs_by_op(art, h: int, w: int) -> dict[str, int]:
    """Multiply-accumulates of each conv / transposed conv of ``art`` on an ``h × w`` input image, by op name
    (geometric count, padding included: what a dense float convolution computes)."""
    from intsim.footprint import tensor_shapes

    hw = tensor_shapes(art, h, w)
    out = {}
    for op in art.ops:
        if op.op == "conv2d":  # weight (Co, Ci/g, kh, kw): each output pixel uses all of it once
            ho, wo = hw[op.outputs[0]]
            out[op.name] = int(ho) * int(wo) * int(art.array(op, "weight").size)
        elif op.op == "conv_transpose2d":  # weight (Ci, Co/g, kh, kw): each input pixel scatters all of it
            hi, wi = hw[op.inputs[0]]
            out[op.name] = int(hi) * int(wi) * int(art.array(op, "weight").size)
    return out


def conv_macs(art, h: int, w: int) -> int:
    """Total of :func:`conv_macs_by_op`."""
    return sum(conv_macs_by_op(art, h, w).values())


def image_cost(art, name: str, h: int, w: int) -> ImageCost:
    """:class:`ImageCost` of an ``h × w`` artifact input (pixels)."""
    from golden.bands import default_band_rows
    from intsim.footprint import golden_bytes

    # golden runs in bands of its default height (golden.bands), one input at a time
    return ImageCost(name, conv_macs(art, h, w) / 1e9, golden_bytes(art, h, w, default_band_rows(art, h, w)) / MIB)


def plan_golden(costs: list[ImageCost], budget: GoldenBudget, dataset: str | None = None) -> dict:
    """Which images of ``dataset`` golden checks (see the module docstring; a dataset in ``budget.always``:
    every image). Returns the JSON-able plan recorded in the cell: ``{"mode": "all"|"some"|"none",
    "images": [checked names], "skipped": [names], "gmac_checked", "gmac_all", "reason" (None for "all"),
    "budget"}``."""
    if dataset is not None and dataset in budget.always:  # no time limit; memory still (a worker killed helps no one)
        plan = plan_golden(costs, GoldenBudget(max_mib_per_image=budget.max_mib_per_image))
        return {**plan, "budget": {**plan["budget"], "always": list(budget.always)}}
    checked, skipped, reasons, total = [], [], [], 0.0
    for c in costs:
        why = None
        if budget.max_gmac_per_image is not None and c.gmac > budget.max_gmac_per_image:
            why = "gmac_image"
        elif budget.max_mib_per_image is not None and c.mib > budget.max_mib_per_image:
            why = "mib_image"
        elif budget.max_gmac_per_cell is not None and total + c.gmac > budget.max_gmac_per_cell:
            why = "gmac_cell"
        if why is None:
            checked.append(c.name)
            total += c.gmac
        else:
            skipped.append(c.name)
            reasons.append(why)
    text = {"gmac_image": lambda: f"over {budget.max_gmac_per_image:g} GMAC per image",
            "mib_image": lambda: f"golden's memory estimate over {budget.max_mib_per_image:g} MiB per image",
            "gmac_cell": lambda: f"the cell's golden total would pass {budget.max_gmac_per_cell:g} GMAC"}
    reason = None
    if skipped:
        counts = {k: reasons.count(k) for k in sorted(set(reasons), key=list(text).index)}
        reason = "; ".join(f"{n} image(s) {text[k]()}" for k, n in counts.items())
    mode = "all" if not skipped else "some" if checked else "none"
    return {"mode": mode, "images": checked, "skipped": skipped, "gmac_checked": round(total, 3),
            "gmac_all": round(sum(c.gmac for c in costs), 3), "reason": reason,
            "budget": {k: v for k, v in asdict(budget).items() if v not in (None, ())}}


def coverage_text(plan: dict | None) -> str:
    """One short phrase for the page: how much of a cell golden checked (``None``: a cell recorded
    before plans existed, which checked every image)."""
    if plan is None or plan["mode"] == "all":
        return "every image"
    n = len(plan["images"]) + len(plan["skipped"])
    if plan["mode"] == "none":
        return f"no image of {n} ({plan['reason']})"
    return f"{len(plan['images'])} of {n} images ({plan['reason']})"
