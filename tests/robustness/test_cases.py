"""Issue 7's contract on every case of the table (cases.py); docs/robustness.md shows the same rows.

Refused: exit 2, one stderr line ``intsim: error: …`` naming the file and the problem, no output
created or changed. Accepted: exit 0 and the stated notice.
"""
from __future__ import annotations

import importlib.util
import re

import pytest

from tests.robustness.cases import ALL_CASES
from tests.robustness.harness import DATA_ROOT as _DATA_ROOT
from tests.robustness.harness import run_case
from tests.robustness.make_doc import DOC, doc_row


def _skip_reason(case) -> str | None:
    if "torch" in case.needs and importlib.util.find_spec("torch") is None:
        return "needs torch (pip install torch==2.13.0)"
    if "data" in case.needs and not _DATA_ROOT.is_dir():
        return f"needs the data root {_DATA_ROOT} (set INTSIM_DATA_ROOT)"
    return None


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_case(case, tmp_path):
    reason = _skip_reason(case)
    if reason:
        pytest.skip(reason)
    setup, o = run_case(case, tmp_path)
    assert "Traceback" not in o.stderr, o.stderr
    if case.kind == "refused":
        assert o.code == 2, (o.code, o.stderr)
        assert len(o.lines) == 1, f"expected one stderr line, got:\n{o.stderr}"
        line = o.lines[0]
        assert line.startswith("intsim: error: "), line
        assert setup.names in line, f"the message does not name {setup.names!r}: {line}"
        assert case.expect in line, f"{case.expect!r} not in {line!r}"
        assert not o.changed, f"outputs created or changed: {o.changed}"
    else:
        assert o.code == 0, (o.code, o.stderr)
        assert any(case.expect in ln for ln in o.lines), f"{case.expect!r} not in:\n{o.stderr}"
    # the committed page shows this case with the message users see today
    row = doc_row(case, o, tmp_path)
    assert row in DOC.read_text(encoding="utf-8"), (
        f"docs/robustness.md is out of date for {case.id}; regenerate with "
        f"`python -m tests.robustness.make_doc`.\nexpected row:\n{row}")


def test_doc_lists_no_stale_cases():
    text = DOC.read_text(encoding="utf-8")
    listed = set(re.findall(r"`test_case\[([^\]]+)\]`", text))
    known = {c.id for c in ALL_CASES}
    assert listed <= known, f"docs/robustness.md lists cases that no longer exist: {sorted(listed - known)}"


def test_doc_sections_current():
    """The durability rows name tests that exist, and the page carries today's hand-written sections."""
    from tests import test_durability
    from tests.robustness.sections import DURABILITY_TESTS, extra_sections

    missing = [name for name, _ in DURABILITY_TESTS if not callable(getattr(test_durability, name, None))]
    assert not missing, f"docs name durability tests that do not exist: {missing}"
    assert extra_sections().strip() in DOC.read_text(encoding="utf-8"), (
        "docs/robustness.md is out of date; regenerate with `python -m tests.robustness.make_doc`")
