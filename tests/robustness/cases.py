"""Every robustness case, in the order docs/robustness.md lists them."""
from __future__ import annotations

from tests.robustness import (
    cases_artifacts,
    cases_checkpoints,
    cases_config,
    cases_environment,
    cases_goldens,
    cases_images,
    cases_vectors,
)
from tests.robustness.harness import Case

GROUPS = ("Images", "Artifacts", "Goldens", "Checkpoints", "Configuration", "Environment", "Test vectors")

ALL_CASES: list[Case] = [*cases_images.CASES, *cases_artifacts.CASES, *cases_goldens.CASES,
                         *cases_checkpoints.CASES, *cases_config.CASES, *cases_environment.CASES,
                         *cases_vectors.CASES]


def _check_registry() -> None:
    ids = [c.id for c in ALL_CASES]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"duplicate case ids: {sorted(dup)}"
    bad = [c.id for c in ALL_CASES if c.group not in GROUPS or c.kind not in ("refused", "accepted")]
    assert not bad, f"cases with an unknown group or kind: {bad}"


_check_registry()
