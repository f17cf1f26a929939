"""The sweep's driver (reports.sweep.run_sweep / _drive) with an in-process stand-in for Ray and synthetic
cell results: the real ordering, windowing, page rewriting, interruption and --resume code runs; only the
calibration and evaluation of a cell (tested end to end in test_sweep.py) are replaced."""
from __future__ import annotations

import json
import sys
import types

import pytest

import reports.sweep as sw
import reports.sweep_cell as sweep_cell
from intsim.cost._toml import ConfigError
from reports.sweep_order import order_cells, order_configs
from tests.reports.test_results_page import _cell


class _Ref:
    def __init__(self, fn, args):
        self.fn, self.args, self.ran, self.value, self.error = fn, args, False, None, None

    def run(self):
        if not self.ran:
            self.ran = True
            args = [a.result() if isinstance(a, _Ref) else a for a in self.args]
            try:
                self.value = self.fn(*args)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - kept for ray.get, as Ray does
                self.error = e
        return self

    def result(self):
        self.run()
        if self.error is not None:
            raise self.error
        return self.value


class _Remote:
    def __init__(self, fn, ray):
        self.fn, self.ray = fn, ray

    def options(self, **kw):
        self.ray.options.append((self.fn.__name__, kw))
        return self

    def remote(self, *args):
        ref = _Ref(self.fn, args)
        if self.fn.__name__ == "cell_task":  # how many cells are in flight once this one is submitted
            self.ray.submitted.append(ref)
            self.ray.in_flight.append(sum(not r.ran for r in self.ray.submitted))
        return ref


def fake_ray(cpus: int = 1, memory: float = 0) -> types.ModuleType:
    """Ray's API as the sweep uses it, lazily in one process: ``wait`` runs the oldest pending task.
    ``memory``: the node's memory (bytes; 0: not reported). ``options`` records (task name, options)."""
    ray = types.ModuleType("ray")
    ray.init = lambda **kw: None
    ray.shutdown = lambda: None
    ray.cluster_resources = lambda: {"CPU": cpus, **({"memory": memory} if memory else {})}
    ray.remote = lambda **kw: (lambda fn: _Remote(fn, ray))
    ray.submitted, ray.in_flight, ray.options = [], [], []

    def wait(refs, num_returns=1, timeout=None):
        done = [r for r in refs if r.ran]
        for r in refs:
            if len(done) >= num_returns or timeout == 0:
                break
            if not r.ran:
                done.append(r.run())
        return done[:num_returns] if timeout != 0 else done, [r for r in refs if r not in done]

    ray.wait = wait
    ray.get = lambda ref: ref.result()
    return ray


def _toml(tmp_path, golden=""):
    p = tmp_path / "s.toml"
    p.write_text('[sweep]\ntitle="T"\nout="out"\nmodels=["fsrcnn:4","imdn:4"]\nbits=["W8A8","W4A4"]\n'
                 'methods=["minmax","recon"]\ndatasets=["Urban100","Set5","Set14"]\n'
                 '[report]\npage="docs/results.md"\n' + golden)
    return sw.load_sweep(p)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """The fake Ray installed, calibration and evaluation replaced by synthetic records; ``log`` records
    (event, id, number of cells the page showed done at that moment)."""
    ray = fake_ray()
    monkeypatch.setitem(sys.modules, "ray", ray)
    log, fail, stop = [], set(), set()

    def page_done(out):
        page = out.parent / "docs" / "results.md"
        if not page.is_file():
            return None
        text = page.read_text()
        assert "**In progress** — a sweep is running:" in text  # while it runs, the page says so
        return json.loads(text.split("cells done")[0].split()[-1])

    def calibrate(config, recipe, out_dir, reuse):
        log.append(("calibrate", config.id, None))
        return {"allocation": None, "code_bits": {"a": 4}, "calib_seconds": 1, "artifact_sha256": config.id}

    def evaluate(rec, cell, recipe, golden):
        from pathlib import Path

        log.append(("cell", cell.id, page_done(Path(tmp_path / "out"))))
        if cell.id in stop:
            raise KeyboardInterrupt
        if cell.id in fail:
            raise RuntimeError("boom")
        c = cell.config
        r = _cell(c.method, cell.dataset, 20.0 + len(log), bits=c.bits)
        return {**r, "cell": cell.id, "model": c.model, "scale": c.scale, "recipe": sw.recipe_digest(c, recipe),
                "artifact_sha256": rec["artifact_sha256"]}

    monkeypatch.setattr(sw, "calibrate_config", calibrate)
    monkeypatch.setattr(sw, "evaluate_cell", evaluate)
    return types.SimpleNamespace(log=log, fail=fail, stop=stop, tmp=tmp_path, ray=ray)


def test_cells_run_in_order_and_the_page_is_rewritten_as_each_lands(world):
    s = _toml(world.tmp)
    res = sw.run_sweep(s, progress=False)
    cells = [e for e in world.log if e[0] == "cell"]
    assert [e[1] for e in cells] == [c.id for c in order_cells(s.cells)]  # the real order, nothing skipped
    assert cells[0][1] == "fsrcnn_x4_w4a4_recon_set5" and cells[-1][1] == "imdn_x4_w8a8_minmax_urban100"
    # each cell, when it ran, saw a page counting every cell that landed before it (written at the start too)
    assert [e[2] for e in cells] == list(range(len(cells)))
    # each calibration is submitted with its configuration's first cell, not all up front
    calibrations = [e[1] for e in world.log if e[0] == "calibrate"]
    assert calibrations == [c.id for c in order_configs(s.cells)]
    for cfg in calibrations:  # submitted with its configuration's first cell: run just before it (window 2)
        i = world.log.index(("calibrate", cfg, None))
        assert world.log[i + 1][1].startswith(cfg + "_") or world.log[i - 1][1].startswith(cfg + "_")
    assert max(world.ray.in_flight) == 2 and len(world.ray.in_flight) == 24  # window: 2 × 1 CPU
    assert len(res["done"]) == 24 and not res["failed"] and not res["interrupted"]
    page = (world.tmp / "docs" / "results.md").read_text()
    assert "24 cells done, 0 failed." in page and "In progress" not in page and "not computed yet" not in page


def test_interrupted_then_resumed_with_failures_and_missing_cells_on_the_page(world):
    s = _toml(world.tmp)
    order = order_cells(s.cells)
    world.fail.add(order[1].id)
    world.stop.add(order[5].id)
    res = sw.run_sweep(s, progress=False)
    assert res["interrupted"] and res["done"] == [c.id for c in order[:5] if c != order[1]]
    assert res["failed"] == [order[1].id]
    rec = json.loads((s.out / "cells" / f"{order[1].id}.json").read_text())
    assert rec["status"] == "failed" and rec["error"] == "RuntimeError: boom"
    page = (world.tmp / "docs" / "results.md").read_text()
    assert "4 cells done, 1 failed, **19 not computed yet**" in page
    assert "**19 cell(s)** asked for are not computed: no sweep run has reached them yet" in page
    # fsrcnn W4A4: recon Set5 done, recon Set14 failed (recorded: not missing), minmax Set5 done
    assert "| model | scale | W4A4 | W8A8 | all |" in page
    assert "| fsrcnn | ×4 | 3 | 6 | 9 |" in page and "| imdn | ×4 | 4 | 6 | 10 |" in page
    assert "By method: minmax 11, recon 8." in page and "By dataset: Urban100 8, Set14 6, Set5 5." in page
    assert f"`{order[5].id}`" in page and f"`{order[0].id}`" not in page.split("## Cells not computed yet")[1]

    with pytest.raises(ConfigError, match="pass --resume"):  # finished cells are never thrown away
        sw.run_sweep(s, progress=False)
    world.stop.clear()
    world.fail.clear()
    kept = (s.out / "cells" / f"{order[0].id}.json").read_bytes()
    del world.log[:]
    res = sw.run_sweep(s, resume=True, progress=False)
    assert len(res["skipped"]) == 4 and len(res["done"]) == 20 and not res["interrupted"]
    assert [e[1] for e in world.log if e[0] == "cell"] == [c.id for c in order if c.id in res["done"]]
    assert order[1].id in res["done"]  # a failed cell is recomputed
    assert (s.out / "cells" / f"{order[0].id}.json").read_bytes() == kept
    page = (world.tmp / "docs" / "results.md").read_text()
    assert "24 cells done, 0 failed." in page and "not computed yet" not in page
    runs = json.loads((s.out / "runs.json").read_text())
    assert [r["interrupted"] for r in runs] == [True, False]


def test_only_runs_the_matching_cells_and_the_page_counts_the_rest(world):
    s = _toml(world.tmp)
    res = sw.run_sweep(s, progress=False, only=["FSRCNN_x4_w8a8_minmax_set5"])
    assert res["done"] == ["fsrcnn_x4_w8a8_minmax_set5"]
    page = (world.tmp / "docs" / "results.md").read_text()
    assert "1 cells done, 0 failed, **23 not computed yet**" in page
    assert "| fsrcnn | ×4 | 6 | 5 | 11 |" in page and "| imdn | ×4 | 6 | 6 | 12 |" in page
    assert "By method: recon 12, minmax 11." in page and "By dataset: Set14 8, Urban100 8, Set5 7." in page
    # tier 0: W4A4 recon/minmax on Set5/Set14 of both models (8); tier 3: W4A4 on Urban100 (4); tier 4: the same
    # at W8A8 less the one cell run (7); tier 7: W8A8 on Urban100 (4)
    assert ("W4A4/W6A6 on Set5 and Set14): tier 0 8, tier 3 4, tier 4 7, tier 7 4.") in page


class _Estimate:
    def __init__(self, total):
        self.total = total

    def describe(self):
        return f"{self.total / 2 ** 20:.0f} MiB (made up)"


def test_calibrations_reserve_their_estimated_memory_and_too_large_ones_fail_their_cells(world, monkeypatch):
    """Each calibration task asks Ray for its configuration's estimated peak (calib.memory_estimate), estimated
    once per configuration less its bits; a configuration whose estimate exceeds the node's memory is never
    started and its cells fail with one line saying so."""
    gib = 2 ** 30
    world.ray.cluster_resources = lambda: {"CPU": 1, "memory": 16 * gib}
    asked = []

    def estimate(config, recipe):
        asked.append(config)
        return _Estimate((40 if config.model == "imdn" and config.method == "recon" else 3) * gib)

    monkeypatch.setattr(sweep_cell, "calibration_memory", estimate)
    s = _toml(world.tmp)
    res = sw.run_sweep(s, progress=False)
    calibrated = [e[1] for e in world.log if e[0] == "calibrate"]
    assert sorted(calibrated) == sorted(c.id for c in s.configs if not (c.model == "imdn" and c.method == "recon"))
    assert sorted((c.model, c.method) for c in asked) == sorted({(c.model, c.method) for c in s.configs})
    reserved = [kw for name, kw in world.ray.options if name == "calibrate_task"]
    assert reserved == [{"memory": 3 * gib}] * len(calibrated)
    cells = [kw["memory"] for name, kw in world.ray.options if name == "cell_task"]  # cells keep their share
    shares = {int(sw.MEMORY_SHARE[d] * 16 * gib) for d in ("Set5", "Set14", "Urban100")}
    assert len(cells) == 18 and set(cells) == shares
    refused = sorted(c.id for c in s.cells if c.config.model == "imdn" and c.config.method == "recon")
    assert sorted(res["failed"]) == refused and len(res["done"]) == 18
    rec = json.loads((s.out / "cells" / f"{refused[0]}.json").read_text())
    assert rec["status"] == "failed" and rec["error"].startswith(
        "calibration needs an estimated 40960 MiB, more than the Ray node's 16384 MiB of memory; not started")
    assert "\n" not in rec["error"]


def test_a_reused_calibration_reserves_nothing_and_a_failed_estimate_fails_its_cells(world, monkeypatch):
    world.ray.cluster_resources = lambda: {"CPU": 1, "memory": 2 ** 34}

    def estimate(config, recipe):
        if config.model == "imdn":
            raise FileNotFoundError("no imdn checkpoint")
        return _Estimate(2 ** 30)

    monkeypatch.setattr(sweep_cell, "calibration_memory", estimate)
    monkeypatch.setattr(sweep_cell, "reused_calibration",
                        lambda config, recipe, out: {} if config.method == "minmax" else None)
    s = _toml(world.tmp)
    res = sw.run_sweep(s, resume=True, progress=False)
    reserved = [kw for name, kw in world.ray.options if name == "calibrate_task"]
    assert reserved == [{"memory": 2 ** 30}] * 2  # fsrcnn recon W4A4 and W8A8; the minmax ones are reused
    assert len(res["failed"]) == 6 and all(c.startswith("imdn_x4_") and "_recon_" in c for c in res["failed"])
    rec = json.loads((s.out / "cells" / f"{res['failed'][0]}.json").read_text())
    assert rec["error"] == "memory estimate of the calibration failed: FileNotFoundError: no imdn checkpoint"
