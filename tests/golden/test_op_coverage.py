"""Golden and the engine cover one op set: golden's dispatch table (golden/executor.py ``OPS``) has
exactly the op types of the engine's registry (intsim/ops/opdef.py). Golden keeps its own
arithmetic by design; only the set of op types is shared."""
from __future__ import annotations

from golden import executor
from intsim.ops.opdef import OPS


def test_golden_covers_exactly_the_registry_ops():
    missing = sorted(set(OPS) - set(executor.OPS))
    extra = sorted(set(executor.OPS) - set(OPS))
    assert (missing, extra) == ([], []), f"golden lacks {missing}, has ops the registry lacks {extra}"


def test_golden_arity_agrees_with_the_registry_kinds():
    """Ops golden feeds two inputs (``ARITY``) are the registry's two-input ops."""
    two = {n for n, d in OPS.items() if len(d.inputs) == 2}
    assert set(executor.ARITY) == two and all(v == 2 for v in executor.ARITY.values())
