"""benchmarks.behaviour_compare and benchmarks.compare_checkouts on hand-made inputs: a changed digest is
reported as different with the field that changed, and the speed ratio is after/before per round."""
from __future__ import annotations

from benchmarks.behaviour_compare import compare, json_diff
from benchmarks.compare_checkouts import summarize


def _row(counter: int, artifact: str = "a") -> dict:
    return {"case": "m x4 minmax W8A8", "realization": "split", "weights": "random (seed 0)",
            "artifact": artifact, "artifact_members": {"graph.json": artifact},
            "golden": {"all": "g", "tensors": "t", "files": {}}, "golden_manifest": {},
            "intsim": {"tensors": "i", "output": "o", "counters": str(counter), "tiled_output": "o",
                       "tiled_counters": "c", "facts": "f", "counters_json": {"ops": {"c1": {"sat": counter}}},
                       "facts_json": {}}}


def _result(row: dict) -> dict:
    return {"commit": "x", "rows": [row], "committed_test_files": {}}


def test_json_diff_names_the_changed_leaf():
    assert json_diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == ["/a/c: 2 -> 3"]
    assert json_diff({"a": 1}, {"a": 1, "k": 0}) == ["/k: only after"]
    assert json_diff([1, 2], [1, 2]) == []


def test_equal_rows_are_equal_and_a_changed_counter_is_found():
    same = compare(_result(_row(1)), _result(_row(1)))["rows"][0]
    assert all(same[k]["equal"] for k in ("artifact", "intsim counters", "golden files"))
    assert same["diff"] == {}
    changed = compare(_result(_row(1)), _result(_row(2, artifact="b")))["rows"][0]
    assert not changed["intsim counters"]["equal"] and not changed["artifact"]["equal"]
    assert changed["intsim tensors"]["equal"]
    assert changed["diff"]["intsim counters"] == ["/ops/c1/sat: 1 -> 2"]
    assert changed["diff"]["artifact members"] == ['/graph.json: "a" -> "b"']


def test_speed_ratio_is_after_over_before_per_round():
    rounds = [{"before": {"t": 2.0}, "after": {"t": 1.0}}, {"before": {"t": 4.0}, "after": {"t": 4.0}},
              {"before": {"t": 1.0}, "after": {"t": 3.0}}]
    s = summarize(rounds)["t"]
    assert s["ratios"] == [0.5, 1.0, 3.0]
    assert s["ratio_median"] == 1.0 and s["before_median_s"] == 2.0 and s["after_median_s"] == 3.0
