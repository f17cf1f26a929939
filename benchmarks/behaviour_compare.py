"""Compare two :mod:`benchmarks.behaviour_hashes` results (before, after): one row per case with
before == after per digest, and for every digest that differs, where (artifact zip members, golden
files and manifest fields, intsim counter fields).

Run: ``python -m benchmarks.behaviour_compare BEFORE.json AFTER.json -o PREFIX`` (PREFIX.json, PREFIX.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DIGESTS = (("artifact", ("artifact",)), ("golden files", ("golden", "all")),
           ("golden tensors", ("golden", "tensors")), ("intsim tensors", ("intsim", "tensors")),
           ("intsim output", ("intsim", "output")), ("intsim counters", ("intsim", "counters")),
           ("tiled output", ("intsim", "tiled_output")), ("tiled counters", ("intsim", "tiled_counters")),
           ("size facts", ("intsim", "facts")))


def get(row: dict, path: tuple[str, ...]):
    for k in path:
        row = row[k]
    return row


def json_diff(a, b, path: str = "", out: list | None = None, limit: int = 40) -> list[str]:
    """Leaf paths where two JSON values differ (at most ``limit``)."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only {'after' if k not in a else 'before'}")
            else:
                json_diff(a[k], b[k], f"{path}/{k}", out, limit)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            json_diff(x, y, f"{path}[{i}]", out, limit)
    elif a != b:
        out.append(f"{path}: {json.dumps(a)[:120]} -> {json.dumps(b)[:120]}")
    return out


def case_diff(b: dict, a: dict) -> dict:
    """Where a case's before and after digests differ."""
    d: dict = {}
    if b["artifact"] != a["artifact"]:
        d["artifact members"] = json_diff(b["artifact_members"], a["artifact_members"])
    if b["golden"]["all"] != a["golden"]["all"]:
        d["golden files"] = json_diff(b["golden"]["files"], a["golden"]["files"])
        d["golden manifest"] = json_diff(b["golden_manifest"], a["golden_manifest"])
    if b["intsim"]["counters"] != a["intsim"]["counters"]:
        d["intsim counters"] = json_diff(b["intsim"]["counters_json"], a["intsim"]["counters_json"])
    if b["intsim"]["facts"] != a["intsim"]["facts"]:
        d["size facts"] = json_diff(b["intsim"]["facts_json"], a["intsim"]["facts_json"])
    return d


def compare(before: dict, after: dict) -> dict:
    key = lambda r: (r["case"], r["realization"])  # noqa: E731
    a_rows = {key(r): r for r in after["rows"]}
    rows = []
    for b in before["rows"]:
        a = a_rows.pop(key(b), None)
        if a is None:
            rows.append({"case": b["case"], "realization": b["realization"], "missing": "after"})
            continue
        row = {"case": b["case"], "realization": b["realization"], "weights": b["weights"]}
        for label, path in DIGESTS:
            row[label] = {"before": get(b, path), "after": get(a, path), "equal": get(b, path) == get(a, path)}
        row["diff"] = case_diff(b, a)
        rows.append(row)
    rows += [{"case": k[0], "realization": k[1], "missing": "before"} for k in a_rows]
    tests = {"before": before["committed_test_files"], "after": after["committed_test_files"],
             "equal": before["committed_test_files"] == after["committed_test_files"]}
    return {"before_commit": before["commit"], "after_commit": after["commit"], "rows": rows,
            "committed_test_files": tests}


def markdown(result: dict) -> str:
    labels = [lab for lab, _ in DIGESTS]
    lines = ["| case | realization | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for r in result["rows"]:
        if "missing" in r:
            lines.append(f"| {r['case']} | {r['realization']} | missing {r['missing']} |")
            continue
        cells = [f"`{r[lab]['after'][:12]}` {'==' if r[lab]['equal'] else '**≠**'}" for lab in labels]
        lines.append(f"| {r['case']} | {r['realization']} | " + " | ".join(cells) + " |")
    diffs = [r for r in result["rows"] if r.get("diff")]
    if diffs:
        lines += ["", "Differences (before -> after):", ""]
        for r in diffs:
            lines.append(f"- {r['case']} {r['realization']}:")
            for what, items in r["diff"].items():
                lines.append(f"  - {what}: " + "; ".join(f"`{s}`" for s in items[:8])
                             + (f" (+{len(items) - 8} more)" if len(items) > 8 else ""))
    t = result["committed_test_files"]
    lines += ["", f"Committed non-.py files under tests/: {len(t['before'])} before, {len(t['after'])} after, "
              f"{'identical' if t['equal'] else 'DIFFERENT'}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    result = compare(json.loads(Path(args.before).read_text()), json.loads(Path(args.after).read_text()))
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    Path(args.out + ".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
