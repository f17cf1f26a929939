"""Robustness cases: environment (see harness.py)."""
from __future__ import annotations

from tests.robustness.harness import Case

CASES: list[Case] = []
