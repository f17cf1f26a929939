"""The results page's account of the cells a sweep asked for but has not computed yet.

A sweep of the whole protocol runs for days and is read while it runs, so the page says
plainly what is not there: counts by model × scale and bits, by method and by dataset, then
every missing cell id. Cell ids are :attr:`reports.sweep_cell.Cell.id`:
``<model>_x<scale>_<bits>_<method>[_<allocation>]_<dataset>``, lower case (``grid.json``
holds them).
"""
from __future__ import annotations

import re
from collections import Counter

_ID = re.compile(r"^(?P<model>.+)_x(?P<scale>\d+)_(?P<bits>w\d+a\d+)_(?P<rest>.+)_(?P<dataset>[a-z0-9]+)$")
_ALLOCATIONS = ("released", "paper", "budgeted")
_DATASETS = {"set5": "Set5", "set14": "Set14", "b100": "B100-68", "urban100": "Urban100"}


def parse_cell_id(cell_id: str) -> dict | None:
    """``{"model", "scale", "bits", "method", "allocation", "dataset"}`` of a cell id, or None when it is not one."""
    m = _ID.match(cell_id)
    if not m:
        return None
    method, alloc = m.group("rest"), None
    for a in _ALLOCATIONS:
        if method.endswith("_" + a):
            method, alloc = method[: -len(a) - 1], a
    return {"model": m.group("model"), "scale": int(m.group("scale")), "bits": m.group("bits").upper(),
            "method": method, "allocation": alloc, "dataset": _DATASETS.get(m.group("dataset"), m.group("dataset"))}


def _tier(p: dict) -> int:
    """The tier of :func:`reports.sweep_order.priority` of a parsed cell id."""
    from reports.sweep_cell import Cell, Config
    from reports.sweep_order import priority

    dataset = {"B100-68": "B100"}.get(p["dataset"], p["dataset"])  # the display name back to the sweep's
    return priority(Cell(Config(p["model"], p["scale"], p["bits"], p["method"], p["allocation"]), dataset))[0]


def _counts(c: Counter) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def missing_section(missing: list[str], running: bool = False) -> list[str]:
    """Markdown lines: the missing cells counted by model × scale × bits, by method, by dataset, then listed."""
    if not missing:
        return []
    parsed = [(m, parse_cell_id(m)) for m in missing]
    known = [p for _, p in parsed if p is not None]
    why = ("the sweep is still running; these have not landed yet" if running else
           "no sweep run has reached them yet (stopped, or run with `--only`); `intsim sweep … --resume` "
           "computes them (and nothing else)")
    L = ["## Cells not computed yet", "", f"**{len(missing)} cell(s)** asked for are not computed: {why}.", ""]
    if known:
        bits = sorted({p["bits"] for p in known}, key=lambda b: (len(b), b))
        by_row = Counter((p["model"], p["scale"], p["bits"]) for p in known)
        L += ["| model | scale |" + "".join(f" {b} |" for b in bits) + " all |", "|---|---|" + "---|" * (len(bits) + 1)]
        for model, scale in sorted({(p["model"], p["scale"]) for p in known}):
            n = [by_row[(model, scale, b)] for b in bits]
            L.append(f"| {model} | ×{scale} |" + "".join(f" {x} |" for x in n) + f" {sum(n)} |")
        L += ["", "By method: " + _counts(Counter(p["method"] + (f" [{p['allocation']}]" if p["allocation"] else "")
                                                  for p in known)) + ".",
              "", "By dataset: " + _counts(Counter(p["dataset"] for p in known)) + ".", "",
              "By tier of the computing order (reports/sweep_order.py; tier 0: the new default, `oaq` and MinMax at "
              "W4A4/W6A6 on Set5 and Set14): " + ", ".join(f"tier {k} {n}" for k, n in sorted(
                  Counter(_tier(p) for p in known).items())) + ".", ""]
    L += ["<details><summary>every missing cell</summary>", "", ", ".join(f"`{m}`" for m in missing), "",
          "</details>", ""]
    return L
