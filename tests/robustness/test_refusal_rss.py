"""Issue 18: every resource refusal exits 2 with one line and peaks at or below 500 MB, measured as a fresh
process (tests/robustness/refusal_rss.py; its full table is benchmarks/results/refusal_rss.json)."""
from __future__ import annotations

import pytest

from tests.robustness.refusal_rss import LIMIT_MIB, cases, measure, runnable


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_refusal_peak_rss(case):
    why = runnable(case)
    if why:
        pytest.skip(why)
    r = measure(case)
    assert r["exit"] == 2 and len(r["stderr_lines"]) == 1, r
    assert r["peak_rss_mib"] <= LIMIT_MIB, r
