"""golden: the float64 fake-quant executor of an intsim artifact (torch).

An implementation of docs/arithmetic.md independent of ``intsim``'s integer
engine: every op evaluates its *real form* in torch float64 (exact, §9) and
rounds once. Entry points: :func:`golden.executor.run_golden` (one image →
every tensor and the per-op events) and :func:`golden.writer.write_golden`
(a golden directory for a list of images).
"""
