"""What a run folder holds, for ``intsim report``: found by content, not only by name.

A folder made by ``intsim demo`` has ``summary.json`` naming every part. A folder made by
hand with the CLI has none; its parts are recognised by what they are:

* the artifact — ``*.intsim`` (``intsim calibrate -o``);
* the golden folder — a sub-folder with an ``intsim-golden`` manifest (``intsim golden -o``);
* JSON records, by their keys — calibration summary (``intsim calibrate --json``), verify
  report (``intsim verify --json``), run counters (``intsim run --counters``), cost result
  (``intsim cost -o``), scheme comparison (``intsim cost --compare --json``);
* SR images — the outputs the counters name; LR images — the sources the counters (or the
  golden manifest) name; HR images — same-named files in a folder called ``hr``.

With HR images the report measures Y-PSNR of intsim, golden and bicubic itself. Each part that
is absent becomes one plain line in :attr:`RunFolder.missing`: what the report cannot show and
the command that makes it. A part of another artifact (a different sha256) is said too.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: How deep below the run folder parts are looked for (``DIR/x``, ``DIR/sub/x``, ``DIR/sub/sub/x``).
SCAN_DEPTH = 3
#: Directory entries looked at, at most: a report pointed at a huge tree must not crawl it.
SCAN_LIMIT = 5000
#: What the report cannot show without each part, and how to make it (shown when it is missing).
PARTS = {
    "artifact": ("the model, its bits or the activation histograms",
                 "make it with `intsim calibrate … -o DIR/model.intsim`"),
    "golden": ("the golden output's PSNR", "make it with `intsim golden ARTIFACT LR_IMAGES… -o DIR/golden`"),
    "verify": ("the bit-exactness verdict",
               "make it with `intsim verify ARTIFACT DIR/golden --json > DIR/verify.json`"),
    "counters": ("saturation and overflow counts or the SR images",
                 "make it with `intsim run ARTIFACT LR_IMAGES… -o DIR/sr --counters DIR/counters.json`"),
    "cost": ("energy and latency", "make it with `intsim cost ARTIFACT --counters DIR/counters.json -o DIR/cost.json`"),
    "cost_compare": ("the fp32 / W8A8 / W4A4 comparison", "make it with `intsim cost ARTIFACT --counters "
                     "DIR/counters.json --compare --json > DIR/cost_compare.json`"),
    "calibrate": ("the held-out calibration check", "make it with `intsim calibrate … --json > DIR/calibrate.json`"),
    "hr": ("Y-PSNR, SSIM and the quality verdict on these images",
           "put the HR images in DIR/hr/, named like the LR inputs"),
}


class ReportError(ValueError):
    """A run folder that cannot be reported (missing or malformed summary, nothing intsim wrote)."""


@dataclass
class RunFolder:
    """The parts of a run folder, loaded. ``summary`` has the fields ``intsim demo`` writes that
    could be known (from ``summary.json``, or assembled from the parts)."""

    root: Path
    summary: dict
    from_summary: bool
    art: object | None = None
    golden: object | None = None
    counters: list | None = None  # one engine counters dict per image
    counter_images: list = field(default_factory=list)  # the counters file's {"source", "output"} records
    cost: dict | None = None
    cost_compare: list | None = None
    found: dict = field(default_factory=dict)  # part -> path relative to root (as text)
    missing: list = field(default_factory=list)  # plain lines


@dataclass
class _Scan:
    arts: list = field(default_factory=list)
    goldens: list = field(default_factory=list)
    jsons: list = field(default_factory=list)
    hrs: list = field(default_factory=list)
    pngs: dict = field(default_factory=dict)  # file name -> [paths]


#: a JSON record of a run folder larger than this is refused unread (counters of 100 DIV2K images
#: through IMDN are about 30 MB)
RECORD_MAX_BYTES = 128 << 20


def _rel(root: Path, p: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200]


def json_kind(obj) -> str | None:
    """Which CLI output a parsed JSON document is (a key of :data:`PARTS`, ``"summary"``), or None."""
    if isinstance(obj, list):
        return "cost_compare" if obj and all(isinstance(r, dict) and "energy_uj" in r for r in obj) else None
    if not isinstance(obj, dict):
        return None
    if {"totals", "layers", "accelerator"} <= obj.keys():
        return "cost"
    if isinstance(obj.get("compare"), list):
        return "cost_compare"
    if {"ok", "compared_tensors"} <= obj.keys():
        return "verify"
    images = obj.get("images")
    if isinstance(images, list) and images and all(isinstance(i, dict) and "counters" in i for i in images):
        return "counters"
    if "recipe_text" in obj or {"method", "holdout"} <= obj.keys():
        return "calibrate"
    if "psnr_db" in obj:
        return "summary"
    return None


def _scan(root: Path) -> _Scan:
    """The candidate parts under ``root``, sorted by path; golden folders are not entered, links not followed."""
    from intsim.golden_dir import is_golden_dir

    found, seen, todo = _Scan(), 0, [(root, 0)]
    while todo and seen < SCAN_LIMIT:
        folder, depth = todo.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            seen += 1
            p, name = Path(e.path), e.name
            if e.is_dir(follow_symlinks=False):
                if is_golden_dir(p):
                    found.goldens.append(p)
                elif depth + 1 < SCAN_DEPTH and not name.startswith("."):
                    if name.lower() == "hr":
                        found.hrs.append(p)
                    todo.append((p, depth + 1))
            elif not e.is_file(follow_symlinks=False):
                continue
            elif name.endswith(".intsim"):
                found.arts.append(p)
            elif name.endswith(".json") and name != "summary.json":
                found.jsons.append(p)
            elif name.lower().endswith(".png"):
                found.pngs.setdefault(name, []).append(p)
    for lst in (found.arts, found.goldens, found.jsons, found.hrs, *found.pngs.values()):
        lst.sort()
    return found


def _pick(rf: RunFolder, part: str, paths: list[Path]) -> Path | None:
    if len(paths) > 1:
        rf.missing.append(f"{len(paths)} candidates for the {part} ({', '.join(_rel(rf.root, p) for p in paths[:4])}"
                          f"{'…' if len(paths) > 4 else ''}): the report uses {_rel(rf.root, paths[0])}")
    return paths[0] if paths else None


def _named(rf: RunFolder, key: str) -> Path | None:
    """The path ``summary.json`` gives for ``key`` when it names one that is there."""
    rel = rf.summary.get(key)
    if not isinstance(rel, str):
        return None
    p = rf.root / rel
    if not p.exists():
        rf.missing.append(f"summary.json names {key} {rel!r}, which is not in the folder")
        return None
    return p


def _load_records(rf: RunFolder, jsons: list[Path]) -> dict[str, list[tuple[Path, object]]]:
    from intsim.artifact import read_json

    records: dict[str, list[tuple[Path, object]]] = {}
    for p in jsons:
        try:
            obj = read_json(p, ValueError, "a JSON record", RECORD_MAX_BYTES)
        except (OSError, ValueError) as e:
            rf.missing.append(f"{_rel(rf.root, p)} skipped: {_one_line(e)}")
            continue
        kind = json_kind(obj)
        if kind is not None and kind != "summary":
            records.setdefault(kind, []).append((p, obj))
    return records


def _same_artifact(rf: RunFolder, part: str, sha) -> bool:
    """False (and a line in ``missing``) when the record of ``part`` belongs to another artifact."""
    own = getattr(rf.art, "sha256", None)
    if isinstance(sha, str) and own and sha != own:
        rf.missing.append(f"the {part} {rf.found.get(part)} is of artifact {sha[:12]}…, not of "
                          f"{rf.found.get('artifact')} ({own[:12]}…): not shown")
        rf.found.pop(part, None)
        return False
    return True


def _load_model_parts(rf: RunFolder, scan: _Scan) -> None:
    """The artifact and the golden folder: named by summary.json (refused when broken), else found
    (skipped with a line when broken: the folder may hold anything)."""
    from intsim.artifact import load_artifact
    from intsim.golden_dir import read_golden_dir

    for part, cands, load in (("artifact", scan.arts, load_artifact), ("golden", scan.goldens, read_golden_dir)):
        path = _named(rf, part)
        if path is not None:
            obj = load(path)
        else:
            path = _pick(rf, part, cands)
            try:
                obj = load(path) if path is not None else None
            except (OSError, ValueError) as e:
                rf.missing.append(f"{_rel(rf.root, path)} skipped: {_one_line(e)}")
                obj = None
        if obj is None:
            continue
        rf.found[part] = _rel(rf.root, path)
        if part == "artifact":
            rf.art = obj
        elif _same_artifact(rf, part, obj.artifact_sha256):
            rf.golden = obj


def _load_json_parts(rf: RunFolder, scan: _Scan) -> None:
    from intsim.artifact import read_json
    from intsim.cost.model import load_counters

    records = _load_records(rf, scan.jsons)
    for part in ("counters", "cost", "cost_compare", "verify", "calibrate"):
        path = _named(rf, part) if part in ("counters", "cost", "cost_compare") else None
        named = path is not None
        if named:
            obj = read_json(path, ReportError, f"a {part.replace('_', ' ')} record", RECORD_MAX_BYTES)
        else:
            cands = records.get(part, [])
            path = _pick(rf, part, [p for p, _ in cands])
            obj = cands[0][1] if cands else None
        if path is None:
            continue
        rf.found[part] = _rel(rf.root, path)
        sha = obj.get("sha256" if part == "calibrate" else "artifact_sha256") if isinstance(obj, dict) else None
        if not _same_artifact(rf, part, sha):
            continue
        if part == "counters":
            try:
                rf.counters = load_counters(obj, getattr(rf.art, "sha256", None))
            except ValueError as e:  # named by summary.json: refused; found: the folder may hold anything
                if named:
                    raise ReportError(f"{path}: {_one_line(e)}") from None
                rf.missing.append(f"{rf.found.pop(part)} skipped: {_one_line(e)}")
                continue
            rf.counter_images = obj.get("images", []) if isinstance(obj, dict) else []
        elif part in ("cost", "cost_compare"):
            # recognised as a cost record (by its name or its keys): shown only when every field the report
            # reads is well-formed, else refused naming the file (crafted contents never reach the page)
            from reports.cost_record import compare_problem, cost_problem

            if part == "cost":
                problem, rf.cost = cost_problem(obj), obj
            else:
                rows = obj.get("compare") if isinstance(obj, dict) else obj
                problem, rf.cost_compare = compare_problem(rows), rows
            if problem:
                raise ReportError(f"{path}: not a usable {part.replace('_', ' ')} record: {problem}")
        elif part == "verify" and "bit_exact" not in rf.summary:
            rf.summary.update(bit_exact=bool(obj.get("ok")), mismatches=obj.get("mismatches"))
        elif part == "calibrate":
            rf.summary.setdefault("calibrate", {"holdout": obj.get("holdout")})
            rf.summary.setdefault("recipe", obj.get("recipe_text"))


def open_run_folder(root: Path, summary: dict | None) -> RunFolder:
    """Find and load the parts of the run folder ``root`` (``summary``: its ``summary.json``, if any)."""
    rf = RunFolder(root=root, summary=dict(summary or {}), from_summary=summary is not None)
    scan = _scan(root)
    _load_model_parts(rf, scan)
    _load_json_parts(rf, scan)
    if scan.hrs:
        rf.found["hr"] = _rel(root, scan.hrs[0])
    if not rf.from_summary:
        if not rf.found:
            raise ReportError(f"{root}: no summary.json and nothing intsim writes (artifact, golden folder, "
                              f"counters, cost, verify or calibrate JSON): run `intsim demo` or give a run folder")
        _assemble_summary(rf, scan)
    _say_missing(rf)
    return rf


def _say_missing(rf: RunFolder) -> None:
    s = rf.summary
    have = set(rf.found)
    if s.get("bit_exact") is not None:
        have.add("verify")
    if (s.get("calibrate") or {}).get("holdout"):
        have.add("calibrate")
    if any("hr" in (r.get("files") or {}) for r in s.get("per_image") or []) or (rf.from_summary and s["psnr_db"]):
        have.add("hr")  # a demo summary measured its PSNRs against HR itself
    for part, (gives, how) in PARTS.items():
        if part not in have:
            rf.missing.append(f"no {part.replace('_', ' ')}: the report cannot show {gives} ({how})")


# --------------------------------------------------------------------------- assembling a summary
def _resolve(rf: RunFolder, scan: _Scan, source: str) -> Path | None:
    """An LR input named by the counters or the golden manifest: the path as written (absolute, or
    relative to the folder), else a same-named file in a folder called ``lr`` (the run may have been
    made from another working directory; ``intsim run`` names its outputs like its inputs, so only
    an ``lr`` folder tells an input from an output)."""
    p = Path(source)
    for cand in ((p,) if p.is_absolute() else (rf.root / p,)):
        if cand.is_file():
            return cand
    lrs = [c for c in scan.pngs.get(p.name, []) if c.parent.name.lower() == "lr"]
    return lrs[0] if lrs else None


def _image_rows(rf: RunFolder, scan: _Scan) -> list[dict]:
    """``per_image`` rows (name, source, files) from the counters' images, else the golden inputs."""
    rows = []
    for im in rf.counter_images:
        source, output = str(im.get("source", "")), str(im.get("output", ""))
        files = {}
        lr = _resolve(rf, scan, source) if source else None
        if lr is not None:
            files["lr"] = _rel(rf.root, lr)
        # `intsim run` names an output like its input: the output is the same-named file outside lr/ and hr/
        sr = [c for c in scan.pngs.get(output, []) if c != lr and c.parent.name.lower() not in ("lr", "hr")]
        if sr:
            files["intsim"] = _rel(rf.root, sr[0])
        rows.append({"name": Path(source or output).stem, "source": source, "files": files})
    if not rows and rf.golden is not None:
        for gi in rf.golden.inputs:
            lr = _resolve(rf, scan, gi.source)
            rows.append({"name": Path(gi.source).stem, "source": gi.source,
                         "files": {"lr": _rel(rf.root, lr)} if lr is not None else {}})
    hr_dir = scan.hrs[0] if scan.hrs else None
    for row in rows:
        hr = [p for n, ps in scan.pngs.items() for p in ps if p.parent == hr_dir and Path(n).stem == row["name"]]
        if hr:
            row["files"]["hr"] = _rel(rf.root, hr[0])
    return rows


def _measure(rf: RunFolder, row: dict, scale: int) -> dict:
    """Y-PSNR of intsim, golden and bicubic against the row's HR image (what can be measured)."""
    from calib.bicubic import bicubic_upsample_rounded
    from intsim.images import read_image
    from calib.metrics import psnr_y

    files, out = row["files"], {}
    if "hr" not in files:
        return out
    try:
        hr = read_image(rf.root / files["hr"], 3).pixels
        lr = read_image(rf.root / files["lr"], 3).pixels if "lr" in files else None
        if lr is not None:
            row["lr_size"] = f"{lr.shape[1]}×{lr.shape[0]}"
        cands = {"intsim": read_image(rf.root / files["intsim"], 3).pixels if "intsim" in files else None,
                 "bicubic": bicubic_upsample_rounded(lr, scale) if lr is not None else None,
                 "golden": _golden_output(rf, row.get("source"))}
    except (OSError, ValueError) as e:  # an unreadable image or golden tensor
        rf.missing.append(f"{row['name']}: images not measured ({_one_line(e)})")
        return out
    for label, sr in cands.items():
        if sr is None:
            continue
        try:
            out[label] = psnr_y(sr, hr, scale)
        except ValueError as e:  # HR of another size than the SR output
            rf.missing.append(f"{row['name']}: {label} not measured against {files['hr']} ({e})")
    return out


def _golden_output(rf: RunFolder, source) -> np.ndarray | None:
    if rf.golden is None or rf.art is None or not source:
        return None
    for gi in rf.golden.inputs:
        if gi.source == source or Path(gi.source).name == Path(source).name:
            return rf.golden.tensor(gi.index, rf.art.outputs[0])
    return None


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(xs)) if xs else None


def _assemble_summary(rf: RunFolder, scan: _Scan) -> None:
    """``summary`` fields of a folder without ``summary.json``, from the parts found."""
    s, model = rf.summary, (rf.art.model if rf.art is not None else {})
    scale = model.get("scale")
    s.update(model=model.get("name"), scale=scale if isinstance(scale, int) else 1, bits=model.get("bits"),
             method=model.get("method"))
    code_bits = model.get("code_bits")
    if isinstance(code_bits, dict) and code_bits:
        s["code_bits"], s["code_bits_per_layer"] = max(code_bits.values()), code_bits
    if rf.art is not None:
        s["realization"] = rf.art.numerics.realization
    rows = _image_rows(rf, scan)
    for row in rows:
        row["psnr_db"] = _measure(rf, row, s["scale"])
    s["per_image"] = rows
    s["images"] = len(rows)
    s["psnr_db"] = {k: _mean(r["psnr_db"].get(k) for r in rows) for k in ("bicubic", "golden", "intsim")}
    s["psnr_db"] = {k: v for k, v in s["psnr_db"].items() if v is not None}
    s.setdefault("bit_exact", None)
    for part, rel in rf.found.items():
        s.setdefault(part, rel)
