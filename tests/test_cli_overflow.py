"""What ``intsim run`` / ``intsim golden`` say about overflow: exit code 4 for an overflow under the
``error`` policy (not 2, a bad input), one notice line naming the worst ops when values were
saturated or wrapped, and the ``--json`` summaries."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from intsim.artifact import load_artifact, save_artifact
from intsim_cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_OVERFLOW
from intsim.engine import run
from intsim.images import write_png
from intsim.overflow import event_summary, events_notice
from tests.artifact_factory import make_random_artifact
from tests.test_cli import cli, images, one_line_error


def _with(art, **numerics):
    return replace(art, numerics=replace(art.numerics, **numerics))


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    """Artifacts whose 16-bit accumulators overflow on random images, under each policy."""
    d = tmp_path_factory.mktemp("ovf")
    base = make_random_artifact(0)
    out = {"quiet": d / "quiet.intsim"}
    save_artifact(make_random_artifact(0, ops="minimal"), out["quiet"])
    for pol in ("error", "wrap", "saturate"):
        out[pol] = d / f"{pol}.intsim"
        save_artifact(_with(base, overflow=pol, acc_bits=16), out[pol])
    return out


@pytest.fixture
def img_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for name, px in images():
        write_png(d / name, px)
    return d


def test_exit_codes_are_distinct():
    assert EXIT_OVERFLOW == 4 and EXIT_OVERFLOW != EXIT_BAD_INPUT


def test_overflow_under_error_policy_exits_4(capsys, arts, img_dir, tmp_path):
    code, out, err = cli(capsys, "run", arts["error"], img_dir, "-o", tmp_path / "sr")
    assert code == EXIT_OVERFLOW
    one_line_error(err, "head.conv", "overflow")
    assert not (tmp_path / "sr").exists() and out == ""
    # a missing file is still a bad input (2)
    code, _, _ = cli(capsys, "run", arts["error"], tmp_path / "none.png", "-o", tmp_path / "sr")
    assert code == EXIT_BAD_INPUT


def test_help_documents_exit_code_4(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == EXIT_OK and "4 arithmetic overflow" in out


@pytest.mark.parametrize("policy,verb", [("wrap", "wrapped"), ("saturate", "saturated")])
def test_run_names_the_worst_ops_once(capsys, arts, img_dir, tmp_path, policy, verb):
    code, out, err = cli(capsys, "run", arts[policy], img_dir, "-o", tmp_path / "sr")
    assert code == EXIT_OK, err
    notes = [ln for ln in err.splitlines() if "overflow" in ln or "saturat" in ln]
    assert len(notes) == 1, err
    assert notes[0].startswith("intsim: notice: ") and "head.conv" in notes[0] and verb in notes[0]
    assert "accumulator overflow" in notes[0] and "--counters" in notes[0]


def test_run_without_events_says_nothing(capsys, arts, tmp_path):
    px = images(2)[1][1]
    assert not any(run(load_artifact(arts["quiet"]), px).counters["totals"][k]
                   for k in ("acc_overflow", "stream_overflow", "saturations"))
    write_png(tmp_path / "one.png", px)
    code, _, err = cli(capsys, "run", arts["quiet"], tmp_path / "one.png", "-o", tmp_path / "sr")
    assert code == EXIT_OK and "notice" not in err


def test_run_json_summary(capsys, arts, img_dir, tmp_path):
    code, out, err = cli(capsys, "run", arts["wrap"], img_dir, "-o", tmp_path / "sr", "--json",
                         "--accel", "edge_npu", "--counters", tmp_path / "c.json")
    assert code == EXIT_OK, err
    res = json.loads(out)
    assert res["output_dir"] == str(tmp_path / "sr") and len(res["images"]) == 2
    assert {im["output"] for im in res["images"]} == {"img0.png", "img1.png"}
    assert res["counters"] == str(tmp_path / "c.json") and res["overflow_policy"] == "wrap"
    rec = json.loads((tmp_path / "c.json").read_text())
    total = sum(im["counters"]["totals"]["acc_overflow"] for im in rec["images"])
    assert res["events"]["totals"]["acc_overflow"] == total > 0
    assert res["events"]["ops"]["head.conv"]["acc_overflow"] > 0
    assert res["cost"]["accelerator"] and res["cost"]["scheme"] == "artifact"


def test_event_summary_and_notice():
    counters = [{"ops": {"a": {"op": "conv2d", "acc_overflow": 3, "stream_overflow": 0, "saturations": 1},
                         "b": {"op": "encode", "acc_overflow": 0, "stream_overflow": 0, "saturations": 9},
                         "c": {"op": "relu", "acc_overflow": 0, "stream_overflow": 0, "saturations": 0}}}] * 2
    s = event_summary(counters)
    assert s["images"] == 2
    assert s["totals"] == {"acc_overflow": 6, "stream_overflow": 0, "saturations": 20}
    assert list(s["ops"]) == ["b", "a"]  # worst first, ops without events left out
    line = events_notice(s, "wrap")
    assert "6 accumulator overflows wrapped" in line and "20 values clamped" in line
    assert line.index("b (clamped 18)") < line.index("a (clamped 2, acc 6)")
    assert events_notice(event_summary([{"ops": {}}]), "wrap") is None


def test_golden_json_and_overflow_exit_4(capsys, arts, tmp_path):
    pytest.importorskip("torch")
    write_png(tmp_path / "one.png", images(1)[0][1])
    code, out, err = cli(capsys, "golden", arts["quiet"], tmp_path / "one.png", "-o", tmp_path / "g", "--json")
    assert code == EXIT_OK, err
    res = json.loads(out)
    assert res["golden_dir"] == str(tmp_path / "g") and [i["source"] for i in res["inputs"]] == [
        str(tmp_path / "one.png")]
    code, out, err = cli(capsys, "golden", arts["error"], tmp_path / "one.png", "-o", tmp_path / "g2")
    assert code == EXIT_OVERFLOW, err
    one_line_error(err, "overflow")
