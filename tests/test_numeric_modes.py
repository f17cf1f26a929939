"""The rounding modes and overflow policies are defined once (intsim/rounding.py,
intsim/overflow.py); every other list of their names must equal the enum's, and the
kernels compare against the enum members, never against bare integers."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from intsim import validate
from intsim.artifact import Numerics
from intsim.overflow import OverflowPolicy
from intsim.rounding import RoundingMode

ROOT = Path(__file__).resolve().parents[1]


def test_enum_names_are_the_spec_names():
    # the first four keep their values: artifacts carry the names, the RTL and kernels the values
    assert RoundingMode.names()[:4] == ("half_up", "half_away", "half_even", "floor")
    assert [int(m) for m in RoundingMode] == list(range(len(RoundingMode)))
    assert OverflowPolicy.names() == ("error", "saturate", "wrap")
    for enum_cls in (RoundingMode, OverflowPolicy):
        for m in enum_cls:
            assert enum_cls.parse(m.spec_name) is m
            assert enum_cls.parse(m) is m


def test_unknown_names_fail_naming_the_choices():
    with pytest.raises(ValueError, match="unknown rounding mode 'nearest'; expected one of half_up, half_away"):
        RoundingMode.parse("nearest")
    with pytest.raises(ValueError, match="unknown overflow policy 'clip'; expected one of error, saturate, wrap"):
        OverflowPolicy.parse("clip")


def test_numerics_resolves_strings_to_enums():
    n = Numerics(rounding="half_even", overflow="wrap")
    assert n.rounding_mode is RoundingMode.HALF_EVEN and n.overflow_policy is OverflowPolicy.WRAP
    with pytest.raises(ValueError, match="unknown rounding mode"):
        Numerics(rounding="nearest").rounding_mode


def test_validation_and_golden_lists_match_the_enums():
    """Validation derives its lists from the enums; golden (an independent implementation of the
    spec) keeps its own tuples, which must name exactly the enum's members, in order."""
    assert tuple(validate.ROUNDINGS) == RoundingMode.names()
    assert tuple(validate.OVERFLOWS) == OverflowPolicy.names()
    golden_numerics = pytest.importorskip("golden.numerics")
    assert tuple(golden_numerics.ROUNDING_MODES) == RoundingMode.names()
    assert tuple(golden_numerics.OVERFLOW_POLICIES) == OverflowPolicy.names()


def test_cli_choices_derive_from_the_enums():
    pytest.importorskip("torch")
    from intsim_cli.parser import build_parser

    sub = next(a for a in build_parser()._actions if a.choices and "calibrate" in a.choices)
    cal = sub.choices["calibrate"]
    opts = {a.dest: a for a in cal._actions}
    assert tuple(opts["rounding"].choices) == RoundingMode.names()
    assert tuple(opts["overflow"].choices) == OverflowPolicy.names()
    assert opts["rounding"].default == Numerics.rounding and opts["overflow"].default == Numerics.overflow


def test_no_magic_mode_integers_in_the_engine():
    out = subprocess.run(["git", "grep", "-n", "-E", r"(rmode|mode|policy) ?[!=]= ?[0-9]", "--", "intsim"],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        pytest.skip("not a git checkout")
    hits = [ln for ln in out.stdout.splitlines() if not re.search(r"ndim|shape", ln)]
    assert hits == []
