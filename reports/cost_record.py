"""What ``intsim report`` accepts as a cost result (``intsim cost -o``) and a scheme comparison
(``intsim cost --compare --json``): the fields the report reads, with their types, ranges and sizes.

A run folder may hold files made by anyone, so the report never trusts them: a record that fails
these checks is refused in one line naming the file (exit 2) before anything is drawn. Strings
are escaped when written into the HTML (reports/html_report.py) and drawn with matplotlib's
mathtext off (a ``$`` in a layer name is text, not a formula), so what passes here is also safe
to show. Energies are pJ, latencies s (cost result) or ms (comparison), sizes KiB / MiB.
"""
from __future__ import annotations

import math

#: the largest graph an artifact may have (intsim/validate.py MAX_OPS): one cost layer per op
MAX_LAYERS = 10_000
MAX_TEXT = 500  # characters of one name, scheme, warning …
MAX_WARNINGS = 100
MAX_CATEGORIES = 32
MAX_COMPARE_ROWS = 64
MAX_BITS = 64  # conv input bits of a scheme
MAX_NUMBER = 1e30  # any energy, latency or size above this is not a cost result


def _number(v, what: str, lo: float = 0.0, hi: float = MAX_NUMBER) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"{what} must be a number, got {type(v).__name__}"
    if not math.isfinite(v) or not lo <= v <= hi:
        return f"{what} must be a finite number in [{lo:g}, {hi:g}], got {v!r}"[:200]
    return None


def _text(v, what: str) -> str | None:
    if not isinstance(v, str):
        return f"{what} must be a string, got {type(v).__name__}"
    if len(v) > MAX_TEXT:
        return f"{what} is {len(v)} characters long, more than the {MAX_TEXT} accepted"
    return None


def _energies(d, what: str, need_total: bool) -> str | None:
    """A ``{category: pJ}`` object of finite non-negative numbers (with ``total`` when ``need_total``)."""
    if not isinstance(d, dict):
        return f"{what} must be an object of energies, got {type(d).__name__}"
    if len(d) > MAX_CATEGORIES + 1:
        return f"{what} has {len(d)} entries, more than the {MAX_CATEGORIES + 1} accepted"
    if need_total and "total" not in d:
        return f"{what} has no total"
    for k, v in d.items():
        problem = _text(k, f"{what} key") or _number(v, f"{what}.{k}")
        if problem:
            return problem
    return None


def _first(*problems: str | None) -> str | None:
    return next((p for p in problems if p), None)


def _layer_problem(i: int, layer) -> str | None:
    w = f"layers[{i}]"
    if not isinstance(layer, dict):
        return f"{w} must be an object"
    for key in ("name", "kind", "op"):
        if key not in layer:
            return f"{w} has no {key}"
    return _first(_text(layer["name"], f"{w}.name"), _text(layer["kind"], f"{w}.kind"),
                  _text(layer["op"], f"{w}.op"), _energies(layer.get("energy_pj"), f"{w}.energy_pj", False))


def cost_problem(cost) -> str | None:
    """Why ``cost`` is not a cost result the report can show (``None``: it is)."""
    if not isinstance(cost, dict):
        return f"a cost result must be a JSON object, got {type(cost).__name__}"
    for key in ("totals", "layers", "accelerator", "scheme", "realization"):
        if key not in cost:
            return f"a cost result needs {key!r}"
    acc = cost["accelerator"]
    if not isinstance(acc, dict) or "name" not in acc:
        return "accelerator must be an object with a name"
    t = cost["totals"]
    if not isinstance(t, dict):
        return f"totals must be an object, got {type(t).__name__}"
    problem = _first(_text(acc["name"], "accelerator.name"), _text(cost["scheme"], "scheme"),
                     _text(cost["realization"], "realization"),
                     _energies(t.get("energy_pj"), "totals.energy_pj", True),
                     _number(t.get("latency_s"), "totals.latency_s"),
                     _number(t.get("utilisation"), "totals.utilisation", 0.0, 1.0))
    if problem:
        return problem
    layers = cost["layers"]
    if not isinstance(layers, list):
        return f"layers must be a list, got {type(layers).__name__}"
    if len(layers) > MAX_LAYERS:
        return f"layers has {len(layers)} entries, more than the {MAX_LAYERS} accepted"
    problem = next((p for p in (_layer_problem(i, x) for i, x in enumerate(layers)) if p), None)
    if problem:
        return problem
    cats = cost.get("categories")
    if cats is not None:
        if not isinstance(cats, list) or len(cats) > MAX_CATEGORIES:
            return f"categories must be a list of at most {MAX_CATEGORIES} names"
        problem = next((p for p in (_text(c, f"categories[{i}]") for i, c in enumerate(cats)) if p), None)
        if problem:
            return problem
    warnings = cost.get("warnings", [])
    if not isinstance(warnings, list) or len(warnings) > MAX_WARNINGS:
        return f"warnings must be a list of at most {MAX_WARNINGS} strings"
    return next((p for p in (_text(w, f"warnings[{i}]") for i, w in enumerate(warnings)) if p), None)


def _compare_row_problem(i: int, r) -> str | None:
    w = f"compare[{i}]"
    if not isinstance(r, dict):
        return f"{w} must be an object"
    for key in ("scheme", "realization", "energy_uj", "latency_ms", "weight_storage_kib", "dram_mib",
                "conv_input_bits"):
        if key not in r:
            return f"{w} has no {key}"
    problem = _first(_text(r["scheme"], f"{w}.scheme"), _text(r["realization"], f"{w}.realization"),
                     *(_number(r[k], f"{w}.{k}") for k in ("energy_uj", "latency_ms", "weight_storage_kib",
                                                            "dram_mib")))
    if problem:
        return problem
    bits = r["conv_input_bits"]
    if not isinstance(bits, list) or len(bits) > MAX_LAYERS or not all(
            type(b) is int and 1 <= b <= MAX_BITS for b in bits):
        return f"{w}.conv_input_bits must be a list of integers in 1..{MAX_BITS}"
    return None


def compare_problem(rows) -> str | None:
    """Why ``rows`` (the ``compare`` list) is not a scheme comparison the report can show (``None``: it is)."""
    if not isinstance(rows, list):
        return f"compare must be a list of schemes, got {type(rows).__name__}"
    if len(rows) > MAX_COMPARE_ROWS:
        return f"compare has {len(rows)} rows, more than the {MAX_COMPARE_ROWS} accepted"
    return next((p for p in (_compare_row_problem(i, r) for i, r in enumerate(rows)) if p), None)
